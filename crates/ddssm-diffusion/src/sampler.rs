//! Samplers: draw `z⁰ ~ p_ψ(z⁰ | c)` with a preconditioned denoiser. One shared shape:
//! [`sample`]`(denoiser, schedule, sampler, cond, (N, M), noise) -> z⁰`.
//!
//! - [`Sampler::Ancestral`]: the reverse chain of Eq. (27) over all `K` levels, with the mean of
//!   Eq. (31) and variance `σ_k² = β_k` (the variance the bound of Eq. 33 assumes) or `β̃_k`. As in
//!   Ho et al.'s Algorithm 2, the last step (`k = 1`) returns the mean without noise.
//! - [`Sampler::Ddim`]: deterministic DDIM (η = 0; Song et al. 2021) on a subset of the levels. In
//!   the rescaled variable `ẑ = z/√ᾱ` it is the Euler step of the probability-flow ODE,
//!   `ẑ ← D + (σ_next/σ)(ẑ − D)`.
//! - [`Sampler::EdmHeun`]: Karras et al.'s Algorithm 1 (Heun's second-order method, no churn) on
//!   the same levels: `2·steps − 1` network calls.
//! - [`Sampler::DpmSolver2M`]: DPM-Solver++(2M), second order at one call per level. With
//!   `λ = −ln σ`, `h_i = λ_{i+1} − λ_i` and `r = h_{i−1}/h_i`, the update is
//!   `ẑ ← (σ_{i+1}/σ_i) ẑ + (1 − σ_{i+1}/σ_i) D'` with
//!   `D' = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1}` (first order, `D' = D_i`, at the first step and at
//!   the final step to σ = 0).
//!
//! The few-step levels are Karras et al.'s ρ = 7 spacing between `σ_1` and `σ_K`, snapped to the
//! nearest trained level `σ_k` (the network only ever saw those), always including `K` and `1`;
//! the last step goes to σ = 0. Every draw comes from the injected [`SeededNoise`]; outputs of
//! each step are detached so no autograd graph grows across steps.

use candle_core::{DType, Device, Tensor};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{Denoiser, EdmPreconditioning, Error, NoiseSchedule, Result};

/// The reverse-kernel variance of the ancestral sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReverseVariance {
    /// `σ_k² = β_k`: the model the ELBO of Eq. (33) is a bound for (the paper's).
    #[default]
    Beta,
    /// `σ_k² = β̃_k`, the forward posterior's variance: the model bounded when the schedule's
    /// [`crate::NoiseScheduleConfig::reverse_variance`] is `beta_tilde` (not in the paper).
    BetaTilde,
}

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sampler {
    /// All `K` ancestral steps (Eq. 27).
    Ancestral {
        /// The reverse variance.
        #[serde(default)]
        variance: ReverseVariance,
    },
    /// Deterministic DDIM on `steps` levels.
    Ddim {
        /// Number of noise levels visited (network calls).
        steps: usize,
    },
    /// EDM's Heun sampler on `steps` levels.
    EdmHeun {
        /// Number of noise levels visited (`2·steps − 1` network calls).
        steps: usize,
    },
    /// DPM-Solver++(2M) (Lu et al. 2022): second order with one network call per level, reusing
    /// the previous level's denoised estimate.
    DpmSolver2M {
        /// Number of noise levels visited (network calls).
        steps: usize,
    },
}

impl Default for Sampler {
    fn default() -> Self {
        Self::Ancestral {
            variance: ReverseVariance::Beta,
        }
    }
}

impl Sampler {
    /// The number of network evaluations one draw costs with this schedule.
    pub fn network_calls(&self, schedule: &NoiseSchedule) -> usize {
        match *self {
            Sampler::Ancestral { .. } => schedule.num_steps(),
            Sampler::Ddim { steps } | Sampler::DpmSolver2M { steps } => {
                few_step_levels(schedule, steps).len()
            }
            Sampler::EdmHeun { steps } => 2 * few_step_levels(schedule, steps).len() - 1,
        }
    }
}

/// The sampler's short name, as command lines and reports write it: `ancestral`,
/// `ancestral-beta-tilde`, `ddim-N`, `edm-heun-N` or `dpm-solver++2m-N` (`N` levels visited).
/// [`Sampler::from_str`](std::str::FromStr) reads the same names back.
impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Sampler::Ancestral {
                variance: ReverseVariance::Beta,
            } => write!(f, "ancestral"),
            Sampler::Ancestral {
                variance: ReverseVariance::BetaTilde,
            } => write!(f, "ancestral-beta-tilde"),
            Sampler::Ddim { steps } => write!(f, "ddim-{steps}"),
            Sampler::EdmHeun { steps } => write!(f, "edm-heun-{steps}"),
            Sampler::DpmSolver2M { steps } => write!(f, "dpm-solver++2m-{steps}"),
        }
    }
}

impl std::str::FromStr for Sampler {
    type Err = Error;

    /// Parses a name written by [`Sampler`]'s `Display`; an unknown name or a level count that is
    /// not a positive integer is an error listing the accepted forms.
    fn from_str(name: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig {
            field: "sampler",
            value: format!("{name:?}"),
            allowed: "ancestral, ancestral-beta-tilde, ddim-N, edm-heun-N or dpm-solver++2m-N \
                      (N ≥ 1 noise levels visited)"
                .to_string(),
        };
        let name = name.trim();
        match name {
            "ancestral" => return Ok(Sampler::default()),
            "ancestral-beta-tilde" => {
                return Ok(Sampler::Ancestral {
                    variance: ReverseVariance::BetaTilde,
                })
            }
            _ => {}
        }
        let (kind, steps) = name.rsplit_once('-').ok_or_else(bad)?;
        let steps: usize = match steps.parse() {
            Ok(n) if n >= 1 => n,
            _ => return Err(bad()),
        };
        match kind {
            "ddim" => Ok(Sampler::Ddim { steps }),
            "edm-heun" => Ok(Sampler::EdmHeun { steps }),
            "dpm-solver++2m" => Ok(Sampler::DpmSolver2M { steps }),
            _ => Err(bad()),
        }
    }
}

/// The levels `k` (1-based, decreasing from `K` to 1) a few-step sampler visits: Karras et al.'s
/// ρ = 7 spacing in σ between `σ_1` and `σ_K`, snapped to the nearest `σ_k` in log space, without
/// repeats. `steps ≥ K` visits every level; `steps` is at least 2.
pub fn few_step_levels(schedule: &NoiseSchedule, steps: usize) -> Vec<usize> {
    let k_max = schedule.num_steps();
    if steps >= k_max {
        return (1..=k_max).rev().collect();
    }
    let steps = steps.max(2);
    let rho = 7.0;
    let (lo, hi) = (
        schedule.sigma[0].powf(1.0 / rho),
        schedule.sigma[k_max - 1].powf(1.0 / rho),
    );
    let mut levels: Vec<usize> = Vec::with_capacity(steps);
    for i in 0..steps {
        let s = (hi + i as f64 / (steps - 1) as f64 * (lo - hi)).powf(rho);
        let k = (0..k_max)
            .min_by(|&a, &b| {
                let da = (schedule.sigma[a].ln() - s.ln()).abs();
                let db = (schedule.sigma[b].ln() - s.ln()).abs();
                da.total_cmp(&db)
            })
            .expect("K ≥ 2")
            + 1;
        if levels.last() != Some(&k) {
            levels.push(k);
        }
    }
    levels
}

/// What a sampler produces: `n` latents of dimension `m`, of `dtype`, on `device`.
#[derive(Debug, Clone)]
pub struct LatentShape {
    /// Number of samples (rows).
    pub n: usize,
    /// Latent dimension `M`.
    pub m: usize,
    /// Floating-point type.
    pub dtype: DType,
    /// Where the samples live.
    pub device: Device,
}

impl LatentShape {
    /// `n` f32 latents of dimension `m` on the CPU.
    pub fn cpu_f32(n: usize, m: usize) -> Self {
        Self {
            n,
            m,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// The mean `μ_ψ(z^k, k, c)` of the reverse kernel `p_ψ(z^{k−1} | z^k, c)` (Eq. 31,
/// `μ = (z^k − β_k/√(1 − ᾱ_k) ε_ψ)/√α_k`, with `ε_ψ = (ẑ − D_ψ(ẑ, σ_k, c))/σ_k` at
/// `ẑ = z^k/√ᾱ_k`), detached. `k` is 1-based.
pub(crate) fn reverse_mean<N: Denoiser + ?Sized>(
    precond: &EdmPreconditioning<'_, N>,
    schedule: &NoiseSchedule,
    z: &Tensor,
    k: usize,
    cond: &N::Cond,
) -> Result<Tensor> {
    let i = k - 1;
    let sigma = schedule.sigma[i];
    let z_hat = (z / schedule.alpha_bar[i].sqrt())?;
    let d = precond.denoise(&z_hat, sigma, cond)?.detach();
    let eps = ((z_hat - d)? / sigma)?;
    let coef = schedule.beta[i] / (1.0 - schedule.alpha_bar[i]).sqrt();
    Ok(((z - (eps * coef)?)? / schedule.alpha[i].sqrt())?)
}

/// The denoiser's estimate of the mean `E[z⁰ | cond]` of `p_ψ(z⁰ | cond)`: `D_ψ(0, σ_K, cond)`, the
/// posterior mean at the top noise level of a noisy latent at zero, the centre of where the
/// reverse chain starts. For a target of mean `m` and spread `s` this is `m` up to a shrinkage of
/// order `(m² + s²)/σ_K²` relative (below 1e-3 at the paper's `σ_K ≈ 150`, App. E.2), and it costs
/// one network call instead of a sampler's `K`. Unlike [`sample`] it keeps the autograd graph, so
/// a loss built on it reaches the denoiser's parameters.
pub fn top_level_mean<N: Denoiser + ?Sized>(
    net: &N,
    schedule: &NoiseSchedule,
    cond: &N::Cond,
    out: &LatentShape,
) -> Result<Tensor> {
    let precond = EdmPreconditioning::for_schedule(net, schedule);
    let sigma = schedule.sigma[schedule.num_steps() - 1];
    let zero = Tensor::zeros((out.n, out.m), out.dtype, &out.device)?;
    precond.denoise(&zero, sigma, cond)
}

/// Draws `out.n` samples of dimension `out.m` from `p_ψ(z⁰ | cond)` (`cond` has batch `out.n`).
pub fn sample<N: Denoiser + ?Sized>(
    net: &N,
    schedule: &NoiseSchedule,
    sampler: &Sampler,
    cond: &N::Cond,
    out: &LatentShape,
    noise: &mut SeededNoise,
) -> Result<Tensor> {
    let precond = EdmPreconditioning::for_schedule(net, schedule);
    let (shape, dtype, device) = ((out.n, out.m), out.dtype, &out.device);
    let z_k = noise.randn(shape, dtype, device)?;
    match *sampler {
        Sampler::Ancestral { variance } => {
            let mut z = z_k;
            for k in (1..=schedule.num_steps()).rev() {
                let i = k - 1;
                let mean = reverse_mean(&precond, schedule, &z, k, cond)?;
                z = if k > 1 {
                    let var = match variance {
                        ReverseVariance::Beta => schedule.beta[i],
                        ReverseVariance::BetaTilde => schedule.beta_tilde[i],
                    };
                    let xi = noise.randn(shape, dtype, device)?;
                    (mean + (xi * var.sqrt())?)?
                } else {
                    mean
                };
            }
            Ok(z)
        }
        Sampler::Ddim { steps } | Sampler::EdmHeun { steps } | Sampler::DpmSolver2M { steps } => {
            if steps < 2 {
                return Err(Error::InvalidConfig {
                    field: "steps",
                    value: steps.to_string(),
                    allowed: "an integer ≥ 2".into(),
                });
            }
            let heun = matches!(sampler, Sampler::EdmHeun { .. });
            let multistep = matches!(sampler, Sampler::DpmSolver2M { .. });
            let levels = few_step_levels(schedule, steps);
            let mut sigmas: Vec<f64> = levels.iter().map(|&k| schedule.sigma[k - 1]).collect();
            sigmas.push(0.0);
            // ẑ_K = z^K/√ᾱ_K.
            let mut z_hat = (z_k / schedule.alpha_bar[levels[0] - 1].sqrt())?;
            let mut previous: Option<(Tensor, f64)> = None;
            for w in sigmas.windows(2) {
                let (s, s_next) = (w[0], w[1]);
                let d = precond.denoise(&z_hat, s, cond)?.detach();
                if s_next == 0.0 {
                    z_hat = d;
                    break;
                }
                if multistep {
                    let h = (s / s_next).ln();
                    let d_prime = match &previous {
                        Some((d_prev, h_prev)) => {
                            let r = h_prev / h;
                            ((&d * (1.0 + 0.5 / r))? - (d_prev * (0.5 / r))?)?
                        }
                        None => d.clone(),
                    };
                    let ratio = s_next / s;
                    z_hat = ((&z_hat * ratio)? + (d_prime * (1.0 - ratio))?)?;
                    previous = Some((d, h));
                    continue;
                }
                // Euler/DDIM: ẑ' = D + (σ'/σ)(ẑ − D) = ẑ + (σ' − σ)·(ẑ − D)/σ.
                let slope = ((&z_hat - &d)? / s)?;
                let euler = (&z_hat + (&slope * (s_next - s))?)?;
                z_hat = if heun {
                    let d2 = precond.denoise(&euler, s_next, cond)?.detach();
                    let slope2 = ((&euler - d2)? / s_next)?;
                    (&z_hat + ((slope + slope2)? * (0.5 * (s_next - s)))?)?
                } else {
                    euler
                };
            }
            Ok(z_hat)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_names_round_trip_and_bad_names_say_what_is_allowed() {
        let all = [
            Sampler::default(),
            Sampler::Ancestral {
                variance: ReverseVariance::BetaTilde,
            },
            Sampler::Ddim { steps: 20 },
            Sampler::EdmHeun { steps: 10 },
            Sampler::DpmSolver2M { steps: 20 },
        ];
        for s in all {
            assert_eq!(s.to_string().parse::<Sampler>().unwrap(), s, "{s}");
        }
        assert_eq!(
            "dpm-solver++2m-20".parse::<Sampler>().unwrap(),
            Sampler::DpmSolver2M { steps: 20 }
        );
        for bad in [
            "",
            "ddim",
            "ddim-0",
            "ddim-x",
            "heun-5",
            "dpm-20",
            "ancestral-2",
        ] {
            let err = bad.parse::<Sampler>().unwrap_err().to_string();
            assert!(
                err.contains("sampler") && err.contains("dpm-solver++2m-N"),
                "{bad:?}: {err}"
            );
        }
    }
}
