//! The discrete noise schedule `β_1 … β_K` and every quantity derived from it (App. D–E).
//!
//! Forward process: `q(z^k | z^{k−1}) = N(√(1 − β_k) z^{k−1}, β_k I)`, so
//! `q(z^k | z^0) = N(√ᾱ_k z^0, (1 − ᾱ_k) I)` with `α_k = 1 − β_k`, `ᾱ_k = Π_{i≤k} α_i`.
//!
//! Derived per level `k = 1 … K` (stored at index `k − 1`):
//! - `σ_k = √((1 − ᾱ_k)/ᾱ_k)`, the noise of the rescaled variable `ẑ^k = z^k/√ᾱ_k` (Eq. 36);
//! - `β̃_k = (1 − ᾱ_{k−1})/(1 − ᾱ_k) · β_k`, the posterior variance of `q(z^{k−1} | z^k, z^0)`
//!   (`ᾱ_0 = 1`, so `β̃_1 = 0`);
//! - `σ_k²` of the reverse kernel `p_ψ(z^{k−1} | z^k) = N(μ_ψ, σ_k² I)` (Eq. 31): `β_k` (the
//!   paper's Eq. 33, the default) or `β̃_k` for `k ≥ 2` ([`NoiseScheduleConfig::reverse_variance`]);
//!   `σ_1² = β_1` in both, as `β̃_1 = 0` would make the last step a point mass;
//! - `w_k = β_k² / (2 σ_k² α_k (1 − ᾱ_k))`, the weight of `‖ε − ε_ψ‖²` (Eq. 32), which is
//!   `β_k / (2 α_k (1 − ᾱ_k))` of Eq. (33) at `σ_k² = β_k`;
//! - `w̃_k = w_k c_out²/σ_k²`, the weight of the preconditioned regression (Eq. 42; Eq. 44 at
//!   `σ_k² = β_k` and `σ_data = 1`).
//!
//! # The linear range for K = 128
//! The usual DDPM range `β = 1e-4 … 0.02` was designed for `K = 1000`; with `K = 128` it ends at
//! `ᾱ_K ≈ 0.27`, far from the `z^K ≈ N(0, I)` that the derivation of Eq. (30) needs. The default
//! range is therefore scaled by `1000/K`: `β_1 = 0.1/K`, `β_K = 20/K` (`ᾱ_K ≈ 2·10⁻⁵` at
//! `K = 128`), which keeps the continuous-time process of the DDPM schedule for any `K`. Either
//! end can be set explicitly. See `docs/paper-notes.md`.

use serde::{Deserialize, Serialize};

use crate::{Error, Result, ReverseVariance};

/// The shape of the `β` sequence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BetaSchedule {
    /// `β_k` linear in `k` from `beta_start` to `beta_end` (Ho et al. 2020; the paper's choice).
    Linear {
        /// `β_1`; default `0.1/K` (DDPM's 1e-4 scaled by 1000/K).
        #[serde(default)]
        beta_start: Option<f64>,
        /// `β_K`; default `20/K` (DDPM's 0.02 scaled by 1000/K).
        #[serde(default)]
        beta_end: Option<f64>,
    },
    /// `ᾱ(τ) ∝ cos²((τ + s)/(1 + s) · π/2)` (Nichol & Dhariwal 2021), with `β_k` clipped to
    /// `max_beta`.
    Cosine {
        /// The offset `s` (0.008 in Nichol & Dhariwal).
        #[serde(default = "default_cosine_offset")]
        offset: f64,
        /// The largest allowed `β_k` (0.999 in Nichol & Dhariwal).
        #[serde(default = "default_max_beta")]
        max_beta: f64,
    },
}

fn default_cosine_offset() -> f64 {
    0.008
}
fn default_max_beta() -> f64 {
    0.999
}

impl Default for BetaSchedule {
    fn default() -> Self {
        Self::Linear {
            beta_start: None,
            beta_end: None,
        }
    }
}

/// Configuration of a [`NoiseSchedule`]; the defaults are the paper's (Table 2: K = 128, linear).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseScheduleConfig {
    /// The number of diffusion steps `K`.
    pub num_steps: usize,
    /// The shape of the `β` sequence.
    #[serde(default)]
    pub betas: BetaSchedule,
    /// EDM's `σ_data`, the scale the preconditioning assumes for the clean latents (App. E.2; the
    /// paper: 1). The ELBO weights `w̃_k` follow it, so the loss stays Eq. (33)'s bound.
    #[serde(
        default = "default_sigma_data",
        skip_serializing_if = "is_default_sigma_data"
    )]
    pub sigma_data: f64,
    /// The variance `σ_k²` of the reverse kernel that the bound is written for (Eq. 31–32):
    /// `beta` (the paper's Eq. 33) or `beta_tilde` (not in the paper: `β̃_k` for `k ≥ 2`, the
    /// forward posterior's variance, which Ho et al. 2020 found as good as `β_k` and which is
    /// exact when the clean latent is determined by its history; `σ_1² = β_1` in both). It sets
    /// the weights `w_k`, `w̃_k` and the constant of the bound and the path weights of the
    /// likelihood; an ancestral sampler whose own `variance` differs samples another model than
    /// the one bounded. Written only when it is not the paper's, so configs and checkpoints
    /// without it read as before.
    #[serde(default, skip_serializing_if = "is_paper_variance")]
    pub reverse_variance: ReverseVariance,
}

fn is_paper_variance(v: &ReverseVariance) -> bool {
    *v == ReverseVariance::Beta
}

fn default_sigma_data() -> f64 {
    1.0
}

fn is_default_sigma_data(v: &f64) -> bool {
    *v == 1.0
}

impl Default for NoiseScheduleConfig {
    fn default() -> Self {
        Self {
            num_steps: 128,
            betas: BetaSchedule::default(),
            sigma_data: 1.0,
            reverse_variance: ReverseVariance::Beta,
        }
    }
}

impl NoiseScheduleConfig {
    /// Validates the config and computes the schedule.
    pub fn build(&self) -> Result<NoiseSchedule> {
        NoiseSchedule::new(self)
    }
}

/// A computed noise schedule: every per-level quantity in `f64`, index `k − 1` for level `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    config: NoiseScheduleConfig,
    /// `β_k`.
    pub beta: Vec<f64>,
    /// `α_k = 1 − β_k`.
    pub alpha: Vec<f64>,
    /// `ᾱ_k = Π_{i≤k} α_i`.
    pub alpha_bar: Vec<f64>,
    /// `σ_k = √((1 − ᾱ_k)/ᾱ_k)` (Eq. 36).
    pub sigma: Vec<f64>,
    /// `β̃_k = (1 − ᾱ_{k−1})/(1 − ᾱ_k) β_k` (zero at `k = 1`).
    pub beta_tilde: Vec<f64>,
    /// `σ_k²`, the reverse kernel's variance of the bound (Eq. 31): `β_k`, or `β̃_k` for `k ≥ 2`
    /// under [`ReverseVariance::BetaTilde`]; `β_1` at `k = 1`.
    pub reverse_variance: Vec<f64>,
    /// `w_k = β_k² / (2 σ_k² α_k (1 − ᾱ_k))` (Eq. 32; `β_k / (2 α_k (1 − ᾱ_k))` of Eq. 33 at
    /// `σ_k² = β_k`).
    pub w: Vec<f64>,
    /// `w̃_k = w_k c_out²/σ_k²` (Eq. 42; `β_k ᾱ_k / (2 α_k (1 − ᾱ_k))` of Eq. 44 at `σ_k² = β_k`,
    /// `σ_data = 1`).
    pub w_tilde: Vec<f64>,
}

/// `σ² = (1 − ᾱ)/ᾱ`.
fn sigma_sq(alpha_bar: f64) -> f64 {
    (1.0 - alpha_bar) / alpha_bar
}

fn invalid(field: &'static str, value: impl ToString, allowed: &str) -> Error {
    Error::InvalidConfig {
        field,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

impl NoiseSchedule {
    /// Computes the schedule of `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field by its path in [`NoiseScheduleConfig`]
    /// (`num_steps`, `sigma_data`, `betas.beta_start`, …) when `K < 2`, a `β` is outside
    /// `(0, 1)`, the linear range is decreasing, or a cosine parameter is out of range.
    pub fn new(config: &NoiseScheduleConfig) -> Result<Self> {
        let k_max = config.num_steps;
        if k_max < 2 {
            return Err(invalid("num_steps", k_max, "an integer ≥ 2"));
        }
        let kf = k_max as f64;
        let sd = config.sigma_data;
        if !(sd.is_finite() && sd > 0.0) {
            return Err(invalid("sigma_data", sd, "a finite number > 0"));
        }
        let beta: Vec<f64> = match config.betas {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
            } => {
                let start = beta_start.unwrap_or(0.1 / kf);
                let end = beta_end.unwrap_or(20.0 / kf);
                if !(start > 0.0 && start < 1.0) {
                    return Err(invalid("betas.beta_start", start, "0 < beta_start < 1"));
                }
                if !(end >= start && end < 1.0) {
                    return Err(invalid("betas.beta_end", end, "beta_start ≤ beta_end < 1"));
                }
                (0..k_max)
                    .map(|i| start + (end - start) * i as f64 / (kf - 1.0))
                    .collect()
            }
            BetaSchedule::Cosine { offset, max_beta } => {
                if !(offset > 0.0 && offset < 1.0) {
                    return Err(invalid("betas.offset", offset, "0 < offset < 1"));
                }
                if !(max_beta > 0.0 && max_beta < 1.0) {
                    return Err(invalid("betas.max_beta", max_beta, "0 < max_beta < 1"));
                }
                let f = |tau: f64| {
                    ((tau + offset) / (1.0 + offset) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (1..=k_max)
                    .map(|k| {
                        (1.0 - f(k as f64 / kf) / f((k - 1) as f64 / kf)).clamp(1e-12, max_beta)
                    })
                    .collect()
            }
        };
        let alpha: Vec<f64> = beta.iter().map(|b| 1.0 - b).collect();
        let mut alpha_bar = Vec::with_capacity(k_max);
        let mut acc = 1.0;
        for a in &alpha {
            acc *= a;
            alpha_bar.push(acc);
        }
        let sigma = alpha_bar
            .iter()
            .map(|ab| ((1.0 - ab) / ab).sqrt())
            .collect();
        let beta_tilde: Vec<f64> = (0..k_max)
            .map(|i| {
                let prev = if i == 0 { 1.0 } else { alpha_bar[i - 1] };
                (1.0 - prev) / (1.0 - alpha_bar[i]) * beta[i]
            })
            .collect();
        let reverse_variance: Vec<f64> = match config.reverse_variance {
            ReverseVariance::Beta => beta.clone(),
            ReverseVariance::BetaTilde => (0..k_max)
                .map(|i| if i == 0 { beta[0] } else { beta_tilde[i] })
                .collect(),
        };
        // β_k/σ_k², by which Eq. (32)'s weight exceeds Eq. (33)'s: 1 under the paper's σ_k² = β_k
        // (kept out of the products there, so the paper's weights keep their bits).
        let ratio = |i: usize| match config.reverse_variance {
            ReverseVariance::Beta => None,
            ReverseVariance::BetaTilde => Some(beta[i] / reverse_variance[i]),
        };
        let w: Vec<f64> = (0..k_max)
            .map(|i| {
                let w = beta[i] / (2.0 * alpha[i] * (1.0 - alpha_bar[i]));
                ratio(i).map_or(w, |r| w * r)
            })
            .collect();
        // w̃_k = w_k c_out²/σ_k² (Eq. 42): w_k ᾱ_k at σ_data = 1 (Eq. 44), in general
        // w_k σ_d²/(σ_k² + σ_d²).
        let w_tilde = (0..k_max)
            .map(|i| {
                if sd == 1.0 {
                    let w = beta[i] * alpha_bar[i] / (2.0 * alpha[i] * (1.0 - alpha_bar[i]));
                    ratio(i).map_or(w, |r| w * r)
                } else {
                    w[i] * sd * sd / (sigma_sq(alpha_bar[i]) + sd * sd)
                }
            })
            .collect();
        Ok(Self {
            config: *config,
            beta,
            alpha,
            alpha_bar,
            sigma,
            beta_tilde,
            reverse_variance,
            w,
            w_tilde,
        })
    }

    /// The config this schedule was computed from.
    pub fn config(&self) -> &NoiseScheduleConfig {
        &self.config
    }

    /// The number of levels `K`.
    pub fn num_steps(&self) -> usize {
        self.beta.len()
    }

    /// `ᾱ_K`, how much of the clean signal survives at the last level.
    pub fn alpha_bar_final(&self) -> f64 {
        self.alpha_bar[self.num_steps() - 1]
    }

    /// The constant `C` of Eq. (33) per latent dimension, so that for `d`-dimensional latents
    /// `L_forward + Σ_k w_k‖ε − ε_ψ‖² + d·C` bounds `−log p_ψ(z⁰ | c)` (reverse variance
    /// `σ_k²`, [`NoiseSchedule::reverse_variance`]):
    /// - `k ≥ 2` (Eq. 32): `C_k = ½ [β̃_k/σ_k² − 1 − ln(β̃_k/σ_k²)]`, the variance part of
    ///   `KL(N(μ̃, β̃_k) ‖ N(μ_ψ, σ_k²))` (zero at `σ_k² = β̃_k`);
    /// - `k = 1`: the Gaussian normaliser of `−log p_ψ(z⁰ | z¹) `, `½ ln(2π σ_1²)` (its quadratic
    ///   part is `w_1‖ε − ε_ψ‖²` because `μ̃_1(z¹, z⁰) = z⁰`).
    pub fn bound_constant_per_dim(&self) -> f64 {
        let normaliser = 0.5 * (2.0 * std::f64::consts::PI * self.reverse_variance[0]).ln();
        let variance_terms: f64 = (1..self.num_steps())
            .map(|i| {
                let r = self.beta_tilde[i] / self.reverse_variance[i];
                0.5 * (r - 1.0 - r.ln())
            })
            .sum();
        normaliser + variance_terms
    }

    /// `L_forward` per latent dimension is `½[ᾱ_K z² − ᾱ_K − ln(1 − ᾱ_K)]`; this returns the
    /// `z`-independent part `½[−ᾱ_K − ln(1 − ᾱ_K)]` and the coefficient `½ ᾱ_K` of `z²`.
    pub fn forward_kl_coefficients(&self) -> (f64, f64) {
        let ab = self.alpha_bar_final();
        (0.5 * (-ab - (1.0 - ab).ln()), 0.5 * ab)
    }

    /// EDM's coefficients at level `k` (1-based) with the config's `σ_data` (App. E.2).
    pub fn preconditioning(&self, k: usize) -> crate::EdmCoefficients {
        crate::EdmCoefficients::at_sigma_with(self.sigma[k - 1], self.config.sigma_data)
    }
}
