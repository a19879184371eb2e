//! Where a model's one-step predictive on the bimodal walk gets its width: the predictive's
//! within-mode spread set beside its three sources — the encoder's spread of the last latent, the
//! transition's spread from one fixed history, the emission's noise — and beside the exact values
//! (the Gaussian-sum filter's posterior spread, zero for the deterministic-given-the-sign latent
//! step, the simulator's emission noise). With a diffusion transition the schedule's smallest
//! noise levels are reported in the latent's own scale, since they bound how sharp the
//! transition's modes can be (Eq. 33's `k = 1` term is a Gaussian of variance `β_1`).
//!
//! "Within-mode" splits each sequence's draws at the centre `φ·x_{T−1}` between the two modes
//! (latent draws by the side their emission mean falls on) and pools the two groups' variances;
//! widths are root-mean-square over sequences.
//!
//! The *centring* says where the predictive's modes sit. Given `x_{1:T−1}` the exact predictive's
//! midpoint between its two modes is `φ·z_{T−1}`, which the data pin, and differs from `φ·x_{T−1}`
//! by `φ` times the last observation's noise (standard deviation `φ·σ_x`, as large as the modes'
//! width). The slope of the model's midpoint on the exact one across sequences (least squares,
//! both less `φ·x_{T−1}`) is 1 for a model that knows the state and 0 for one that takes the last
//! observation for it — which is what the paper's two-Gaussian reference (`jsd_paper`) assumes.
//!
//! The *encoder's centring* asks the same of the state estimate alone, before the transition: the
//! slope, across sequences, of the encoder's mean emission `μ_θ(z_{T−1})` (over its draws) on the
//! exact filter's `E[z_{T−1} | x_{1:T−1}]`, both less `x_{T−1}`. The exact posterior mean differs
//! from `x_{T−1}` by (minus) that observation's noise, so the slope is one less the encoder's slope
//! on the observation noise: 1 for an encoder that infers the state from the dynamics, 0 for one
//! that copies the observation. Set beside the predictive's centring it says whether a predictive
//! sitting on the last observation got there in the encoder or in the transition.

use candle_core::{DType, Tensor};
use ddssm_diffusion::{NoiseSchedule, ReverseVariance};
use ddssm_model::{Batch, Model, OneStepParts};
use ddssm_tensor_ops::{GaussianMixture, SeededNoise};
use serde::{Deserialize, Serialize};

use crate::{BimodalRandomWalk, Result, Series};

/// 1: `σ_data` and the diffusion scale of a diagnosis written before they were recorded.
fn one() -> f64 {
    1.0
}

/// The diffusion schedule's levels that matter for sharp modes (absent for a Gaussian transition).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleFacts {
    /// `K`.
    pub levels: usize,
    /// `s`: the diffusion runs on `z / s`, so its levels below are in units of `s` (1 unless
    /// the transition learns the latent's scale; diagnoses written before the field read as 1).
    #[serde(default = "one")]
    pub diffusion_scale: f64,
    /// EDM's `σ_data` (the scale the preconditioning assumes for the clean latents). Diagnoses
    /// written before the field existed read as 1, the only value the code had then.
    #[serde(default = "one")]
    pub sigma_data: f64,
    /// `σ_1 = √((1 − ᾱ_1)/ᾱ_1)`, the smallest noise level the denoiser is trained at.
    pub sigma_1: f64,
    /// `σ_K`, the largest.
    pub sigma_k: f64,
    /// `ᾱ_K`.
    pub alpha_bar_k: f64,
    /// The reverse kernels' variance the bound is written for (`transition.schedule.
    /// reverse_variance`: `β_k`, the paper's, or `β̃_k` for `k ≥ 2`). Diagnoses written before
    /// the field existed read as `β`, the only value the code had then.
    #[serde(default)]
    pub reverse_variance: ReverseVariance,
    /// `√β_1`: the standard deviation of the bound's last reverse kernel `p(z⁰ | z¹)` (Eq. 33;
    /// the same under either reverse variance).
    pub sqrt_beta_1: f64,
    /// `√β_2`: the noise the ancestral sampler (variance `β`) adds at its last noisy step.
    pub sqrt_beta_2: f64,
    /// `√β̃_2`: the same with the variance `β̃`.
    pub sqrt_beta_tilde_2: f64,
    /// The ELBO weight `K·w̃_k` (Eq. 44) at `k = 1` …
    pub weight_1: f64,
    /// … and at `k = K`.
    pub weight_k: f64,
}

impl ScheduleFacts {
    /// The facts of `schedule`.
    pub fn of(schedule: &NoiseSchedule) -> Self {
        let k = schedule.num_steps();
        Self {
            levels: k,
            diffusion_scale: 1.0,
            sigma_data: schedule.config().sigma_data,
            sigma_1: schedule.sigma[0],
            sigma_k: schedule.sigma[k - 1],
            alpha_bar_k: schedule.alpha_bar_final(),
            reverse_variance: schedule.config().reverse_variance,
            sqrt_beta_1: schedule.beta[0].sqrt(),
            sqrt_beta_2: schedule.beta[1].sqrt(),
            sqrt_beta_tilde_2: schedule.beta_tilde[1].sqrt(),
            weight_1: k as f64 * schedule.w_tilde[0],
            weight_k: k as f64 * schedule.w_tilde[k - 1],
        }
    }
}

/// The width decomposition of a model's one-step predictive on a set of test sequences; see the
/// module documentation. Data-unit widths unless named `_latent`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WidthDiagnosis {
    /// Test sequences used.
    pub sequences: usize,
    /// Draws of each part per sequence.
    pub draws: usize,
    /// Within-mode standard deviation of the model's one-step predictive.
    pub predictive: f64,
    /// The same of the exact predictive.
    pub exact_predictive: f64,
    /// Spread of the emission mean `μ_θ(z_{T−1})` over encoder draws.
    pub encoder: f64,
    /// The exact posterior spread of `x`'s noiseless part at `T − 1`: `√(s² − σ_x²)/φ` of the
    /// exact predictive's components.
    pub exact_encoder: f64,
    /// Within-mode spread of `μ_θ(z_T)` with the history fixed at one encoder draw (exact: 0,
    /// the latent step is deterministic given its sign).
    pub transition: f64,
    /// Mean emission standard deviation at those draws (exact: the simulator's `σ_x`).
    pub emission: f64,
    /// The exact emission standard deviation `σ_x`.
    pub exact_emission: f64,
    /// Spread of `z_{T−1}` over encoder draws, in latent units.
    pub encoder_latent: f64,
    /// Within-mode spread of `z_T` from the fixed history, in latent units.
    pub transition_latent: f64,
    /// Distance between the two modes' mean `z_T` from the fixed history, in latent units (the
    /// exact distance is `2c` in data units: this sets the latent's scale).
    pub mode_separation_latent: f64,
    /// The same distance between the two modes' emission means, in data units.
    pub mode_separation: f64,
    /// Standard deviation of `z_{T−1}` over all sequences and draws: the latent's overall scale
    /// (EDM's preconditioning assumes `σ_data = 1`).
    pub latent_scale: f64,
    /// The diffusion schedule's facts (a diffusion transition only).
    pub schedule: Option<ScheduleFacts>,
    /// Slope of the model predictive's midpoint on the exact predictive's, across sequences
    /// (exact: 1; 0 when the model takes the last observation for the state); `None` with fewer
    /// than three sequences whose draws fall on both sides, or in a diagnosis written before it
    /// was recorded.
    #[serde(default)]
    pub centring: Option<f64>,
    /// The least-squares standard error of `centring`.
    #[serde(default)]
    pub centring_se: Option<f64>,
    /// Slope of the encoder's mean emission at `T − 1` on the exact posterior mean, across
    /// sequences, both less `x_{T−1}` (exact: 1; 0 for an encoder that copies the observation;
    /// see the module documentation); `None` with fewer than three sequences, for `φ = 0`, or in
    /// a diagnosis written before it was recorded.
    #[serde(default)]
    pub encoder_centring: Option<f64>,
    /// The least-squares standard error of `encoder_centring`.
    #[serde(default)]
    pub encoder_centring_se: Option<f64>,
}

/// `values` split by `upper` into the lower and the upper group.
fn sides(values: &[f64], upper: &[bool]) -> [Vec<f64>; 2] {
    [false, true].map(|side| {
        values
            .iter()
            .zip(upper)
            .filter(|(_, u)| **u == side)
            .map(|(v, _)| *v)
            .collect()
    })
}

/// Pooled within-group variance of `values` split by `upper` (groups of fewer than two are
/// skipped); `None` when neither group has two members.
fn pooled_variance(values: &[f64], upper: &[bool]) -> Option<f64> {
    let mut sum_sq = 0.0;
    let mut dof = 0usize;
    for group in sides(values, upper).iter().filter(|g| g.len() >= 2) {
        let mean = group.iter().sum::<f64>() / group.len() as f64;
        sum_sq += group.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        dof += group.len() - 1;
    }
    (dof > 0).then(|| sum_sq / dof as f64)
}

/// Mean of each side's values (`None` for an empty side).
fn side_means(values: &[f64], upper: &[bool]) -> [Option<f64>; 2] {
    sides(values, upper).map(|g| (!g.is_empty()).then(|| g.iter().sum::<f64>() / g.len() as f64))
}

/// The components of mixture `m` below and above `centre`, each side with its weighted mean;
/// `None` for a side without weight.
fn mixture_sides(m: &GaussianMixture, centre: f64) -> [Option<(Vec<usize>, f64)>; 2] {
    [false, true].map(|upper| {
        let comps: Vec<usize> = (0..m.weights().len())
            .filter(|&i| (m.means()[i] > centre) == upper)
            .collect();
        let w: f64 = comps.iter().map(|&i| m.weights()[i]).sum();
        let wm: f64 = comps.iter().map(|&i| m.weights()[i] * m.means()[i]).sum();
        (w > 0.0).then(|| (comps, wm / w))
    })
}

/// The midpoint between the two modes of `samples` split at `centre`, and the same of the `exact`
/// mixture's two sides (each side's weighted mean), both less `centre`; `None` when a side of
/// either is empty.
pub fn midpoint_offsets(
    samples: &[f64],
    centre: f64,
    exact: &GaussianMixture,
) -> Option<(f64, f64)> {
    let upper: Vec<bool> = samples.iter().map(|&x| x > centre).collect();
    let [Some(lo), Some(hi)] = side_means(samples, &upper) else {
        return None;
    };
    let [Some(exact_lo), Some(exact_hi)] = mixture_sides(exact, centre).map(|s| s.map(|s| s.1))
    else {
        return None;
    };
    Some((
        0.5 * (lo + hi) - centre,
        0.5 * (exact_lo + exact_hi) - centre,
    ))
}

/// The encoder's state estimate and the exact one at the last observed step, both less that
/// observation `x_last`: the mean of `emission_means` (the emission mean `μ_θ(z_{T−1})` at each
/// encoder draw) and `E[z_{T−1} | x_{1:T−1}]`, read off the exact predictive `exact` of `x_T`
/// (unshifted), whose mean is `φ·E[z_{T−1} | x_{1:T−1}]` since the step's two signs are equally
/// likely. `None` for no draws or `φ = 0` (the predictive then says nothing of `z_{T−1}`).
pub fn state_offsets(
    emission_means: &[f64],
    x_last: f64,
    exact: &GaussianMixture,
    phi: f64,
) -> Option<(f64, f64)> {
    if emission_means.is_empty() || phi == 0.0 {
        return None;
    }
    let model = emission_means.iter().sum::<f64>() / emission_means.len() as f64;
    let predictive_mean: f64 = exact
        .weights()
        .iter()
        .zip(exact.means())
        .map(|(w, m)| w * m)
        .sum();
    Some((model - x_last, predictive_mean / phi - x_last))
}

/// The least-squares slope of `y` on `x` and its standard error (residual variance on `n − 2`
/// degrees of freedom over the spread of `x`); `None` with fewer than three points or a constant
/// `x`.
pub fn slope_with_se(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let sxx: f64 = x[..n].iter().map(|v| (v - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x[..n].iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let rss: f64 = x[..n]
        .iter()
        .zip(y)
        .map(|(a, b)| (b - my - slope * (a - mx)).powi(2))
        .sum();
    Some((slope, (rss / (n as f64 - 2.0) / sxx).sqrt()))
}

fn variance(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)
}

/// Root of the mean of `v` (0 when empty).
fn rms(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    (v.iter().sum::<f64>() / v.len() as f64).sqrt()
}

/// `[n, B, 1]` → per sequence `b`, its `n` values.
fn columns(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    let rows = t.flatten_from(1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let b = rows.first().map_or(0, Vec::len);
    Ok((0..b)
        .map(|j| rows.iter().map(|r| r[j]).collect())
        .collect())
}

/// Per-sequence accumulators of [`width_diagnosis`].
#[derive(Default)]
struct Sums {
    predictive: Vec<f64>,
    exact_predictive: Vec<f64>,
    encoder: Vec<f64>,
    exact_encoder: Vec<f64>,
    transition: Vec<f64>,
    emission: Vec<f64>,
    encoder_latent: Vec<f64>,
    transition_latent: Vec<f64>,
    separation_latent: Vec<f64>,
    separation: Vec<f64>,
    latent: Vec<f64>,
    midpoint: Vec<f64>,
    exact_midpoint: Vec<f64>,
    state: Vec<f64>,
    exact_state: Vec<f64>,
}

/// The width decomposition of `model`'s one-step predictive of `x_T` given `x_{1:T−1}` on the
/// first `sequences` of `test` (`[N, T, 1]`, the bimodal walk `sim`), `draws` of each part per
/// sequence, at most `max_chains` chains per call; every draw from `noise`.
pub fn width_diagnosis(
    model: &Model,
    sim: &BimodalRandomWalk,
    test: &Series,
    sequences: usize,
    draws: usize,
    max_chains: usize,
    noise: &mut SeededNoise,
) -> Result<WidthDiagnosis> {
    let n_seq = sequences.min(test.n);
    let t = test.t;
    let per_call = (max_chains / draws.max(1)).clamp(1, n_seq.max(1));
    let mut sums = Sums::default();
    let r2 = sim.obs_noise_std.powi(2);
    for start in (0..n_seq).step_by(per_call) {
        let len = per_call.min(n_seq - start);
        let prefix: Vec<f32> = (start..start + len)
            .flat_map(|i| test.values[i * t..i * t + t - 1].iter().map(|&v| v as f32))
            .collect();
        let x = Tensor::from_vec(prefix, (len, t - 1, 1), model.device())?;
        let parts: OneStepParts = model.one_step_parts(&Batch::new(x), draws, noise)?;
        let samples = columns(&parts.samples)?;
        let mean_last = columns(&parts.mean_last)?;
        let z_last = columns(&parts.z_last)?;
        let mean_next = columns(&parts.mean_next_fixed)?;
        let std_next = columns(&parts.std_next_fixed)?;
        let z_next = columns(&parts.z_next_fixed)?;
        for b in 0..len {
            let row = &test.values[(start + b) * t..(start + b + 1) * t];
            let centre = sim.phi * row[t - 2];
            let side = |v: &[f64]| -> Vec<bool> { v.iter().map(|&x| x > centre).collect() };
            if let Some(v) = pooled_variance(&samples[b], &side(&samples[b])) {
                sums.predictive.push(v);
            }
            // The exact predictive's components, split at the same centre.
            let exact = sim.exact_predictive(&row[..t - 1], 0.0)?;
            let m = &exact.mixture;
            let mut pooled = 0.0;
            let mut posterior = 0.0;
            for (comps, mean) in mixture_sides(m, centre).into_iter().flatten() {
                pooled += comps
                    .iter()
                    .map(|&i| {
                        m.weights()[i] * (m.stds()[i].powi(2) + (m.means()[i] - mean).powi(2))
                    })
                    .sum::<f64>();
            }
            for i in 0..m.weights().len() {
                posterior += m.weights()[i] * (m.stds()[i].powi(2) - r2).max(0.0);
            }
            if let Some((model_mid, exact_mid)) = midpoint_offsets(&samples[b], centre, m) {
                sums.midpoint.push(model_mid);
                sums.exact_midpoint.push(exact_mid);
            }
            if let Some((model_state, exact_state)) =
                state_offsets(&mean_last[b], row[t - 2], m, sim.phi)
            {
                sums.state.push(model_state);
                sums.exact_state.push(exact_state);
            }
            sums.exact_predictive.push(pooled);
            sums.exact_encoder.push(posterior / sim.phi.powi(2));
            sums.encoder.push(variance(&mean_last[b]));
            sums.encoder_latent.push(variance(&z_last[b]));
            sums.latent.extend(&z_last[b]);
            let split = side(&mean_next[b]);
            if let Some(v) = pooled_variance(&mean_next[b], &split) {
                sums.transition.push(v);
            }
            if let Some(v) = pooled_variance(&z_next[b], &split) {
                sums.transition_latent.push(v);
            }
            if let [Some(lo), Some(hi)] = side_means(&z_next[b], &split) {
                sums.separation_latent.push((hi - lo).abs());
            }
            if let [Some(lo), Some(hi)] = side_means(&mean_next[b], &split) {
                sums.separation.push(hi - lo);
            }
            sums.emission
                .extend(std_next[b].iter().map(|s| s * s / std_next[b].len() as f64));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let centring = slope_with_se(&sums.exact_midpoint, &sums.midpoint);
    let encoder_centring = slope_with_se(&sums.exact_state, &sums.state);
    Ok(WidthDiagnosis {
        sequences: n_seq,
        draws,
        predictive: rms(&sums.predictive),
        exact_predictive: rms(&sums.exact_predictive),
        encoder: rms(&sums.encoder),
        exact_encoder: rms(&sums.exact_encoder),
        transition: rms(&sums.transition),
        emission: (sums.emission.iter().sum::<f64>() / n_seq.max(1) as f64).sqrt(),
        exact_emission: sim.obs_noise_std,
        encoder_latent: rms(&sums.encoder_latent),
        transition_latent: rms(&sums.transition_latent),
        mode_separation_latent: mean(&sums.separation_latent),
        mode_separation: mean(&sums.separation),
        latent_scale: variance(&sums.latent).sqrt(),
        schedule: match model.transition().schedule() {
            Some(schedule) => Some(ScheduleFacts {
                diffusion_scale: model.transition().latent_scale()?,
                ..ScheduleFacts::of(schedule)
            }),
            None => None,
        },
        centring: centring.map(|c| c.0),
        centring_se: centring.map(|c| c.1),
        encoder_centring: encoder_centring.map(|c| c.0),
        encoder_centring_se: encoder_centring.map(|c| c.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well-separated groups: the pooled variance is each group's, not the spread between.
    #[test]
    fn pooled_variance_ignores_the_distance_between_modes() {
        let values = [-4.1, -3.9, -4.0, 3.9, 4.1, 4.0];
        let upper: Vec<bool> = values.iter().map(|v| *v > 0.0).collect();
        // Each group: deviations ±0.1 and 0 → sum of squares 0.02 over 2 dof; pooled 0.04 / 4.
        let v = pooled_variance(&values, &upper).unwrap();
        assert!((v - 0.01).abs() < 1e-12, "{v}");
        let means = side_means(&values, &upper);
        assert!((means[0].unwrap() + 4.0).abs() < 1e-12);
        assert!((means[1].unwrap() - 4.0).abs() < 1e-12);
        assert!(pooled_variance(&[1.0], &[true]).is_none());
    }

    /// The schedule facts record the bound's reverse variance, and a diagnosis written before
    /// they did reads as the paper's `β`.
    #[test]
    fn schedule_facts_record_the_reverse_variance() {
        let tilde = ddssm_diffusion::NoiseScheduleConfig {
            reverse_variance: ReverseVariance::BetaTilde,
            ..Default::default()
        }
        .build()
        .unwrap();
        let facts = ScheduleFacts::of(&tilde);
        assert_eq!(facts.reverse_variance, ReverseVariance::BetaTilde);
        let mut old = serde_json::to_value(facts).unwrap();
        old.as_object_mut().unwrap().remove("reverse_variance");
        let read: ScheduleFacts = serde_json::from_value(old).unwrap();
        assert_eq!(read.reverse_variance, ReverseVariance::Beta);
    }

    /// The encoder's centring on state estimates of known centring: emission means scattered
    /// around the exact posterior mean give a slope of 1, around the last observation a slope of
    /// 0. Seeded; the tolerance is four of the estimator's own standard errors (256 sequences ×
    /// 32 draws of SD 0.15: per-sequence mean noise 0.027 against an exact offset spread of about
    /// σ_x = 0.2, so the SE is about 0.008).
    #[test]
    fn encoder_centring_is_one_for_the_posterior_mean_and_zero_for_the_observation() {
        // By hand: the predictive's mean is φ·E[z], whatever the step.
        let m = GaussianMixture::new(&[0.5, 0.5], &[0.9 * 2.0 + 4.0, 0.9 * 2.0 - 4.0], &[0.2; 2])
            .unwrap();
        let (model, exact) = state_offsets(&[1.0, 2.0], 1.25, &m, 0.9).unwrap();
        assert!((model - 0.25).abs() < 1e-12 && (exact - 0.75).abs() < 1e-12);
        assert!(state_offsets(&[], 0.0, &m, 0.9).is_none());
        assert!(state_offsets(&[1.0], 0.0, &m, 0.0).is_none());

        let sim = BimodalRandomWalk::default();
        let mut noise = SeededNoise::new(23);
        let (_, x) = sim.simulate(256, &mut noise).unwrap();
        let t = x.t;
        let (mut exact, mut knows, mut copies) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..x.n {
            let row = &x.values[i * t..(i + 1) * t];
            let last = row[t - 2];
            let m = sim.exact_predictive(&row[..t - 1], 0.0).unwrap().mixture;
            let posterior = state_offsets(&[0.0], last, &m, sim.phi).unwrap().1 + last;
            let mut scatter = |centre: f64| -> Vec<f64> {
                let one = GaussianMixture::new(&[1.0], &[centre], &[0.15]).unwrap();
                crate::metrics::sample_mixture(&one, 32, &mut noise)
            };
            let (k, e) = state_offsets(&scatter(posterior), last, &m, sim.phi).unwrap();
            knows.push(k);
            exact.push(e);
            copies.push(state_offsets(&scatter(last), last, &m, sim.phi).unwrap().0);
        }
        // The exact offsets are minus the last observation's noise, to the posterior's 0.004.
        let spread = variance(&exact).sqrt();
        assert!((spread - 0.2).abs() < 0.03, "exact offset spread {spread}");
        let (one, se) = slope_with_se(&exact, &knows).unwrap();
        assert!(se > 0.0 && se < 0.02, "se {se}");
        assert!((one - 1.0).abs() < 4.0 * se, "slope {one} ± {se}");
        let (zero, se) = slope_with_se(&exact, &copies).unwrap();
        assert!(zero.abs() < 4.0 * se, "slope {zero} ± {se}");
    }

    /// The centring estimator on draws of known centring: draws from the exact predictive give a
    /// slope of 1, draws from the paper's reference placed at `φ·x_{T−1}` (the last observation
    /// taken for the state) a slope of 0. Seeded; the tolerance is four of the estimator's own
    /// standard errors (with 256 sequences × 128 draws the SE is about 0.05: per-sequence
    /// midpoint noise ≈ 0.2/√128 against an exact midpoint spread φσ_x = 0.18).
    #[test]
    fn centring_is_one_for_the_exact_predictive_and_zero_for_the_observation() {
        let sim = BimodalRandomWalk::default();
        let mut noise = SeededNoise::new(17);
        let (_, x) = sim.simulate(256, &mut noise).unwrap();
        let t = x.t;
        let mut exact_mid = Vec::new();
        let mut from_exact = Vec::new();
        let mut from_observation = Vec::new();
        for i in 0..x.n {
            let row = &x.values[i * t..(i + 1) * t];
            let centre = sim.phi * row[t - 2];
            let exact = sim.exact_predictive(&row[..t - 1], 0.0).unwrap().mixture;
            let naive = GaussianMixture::new(
                &[0.5, 0.5],
                &[centre - sim.step, centre + sim.step],
                &[sim.obs_noise_std; 2],
            )
            .unwrap();
            let draws = crate::metrics::sample_mixture(&exact, 128, &mut noise);
            let (m, e) = midpoint_offsets(&draws, centre, &exact).unwrap();
            from_exact.push(m);
            exact_mid.push(e);
            let draws = crate::metrics::sample_mixture(&naive, 128, &mut noise);
            from_observation.push(midpoint_offsets(&draws, centre, &exact).unwrap().0);
        }
        // The exact midpoints scatter by about φσ_x = 0.18 around φ·x_{T−1} (the SD's SE at 256
        // sequences is ≈ 0.008; 0.03 is four of it).
        let spread = variance(&exact_mid).sqrt();
        assert!(
            (spread - 0.18).abs() < 0.03,
            "exact midpoint spread {spread}"
        );
        let (one, se) = slope_with_se(&exact_mid, &from_exact).unwrap();
        assert!(se > 0.0 && se < 0.1, "se {se}");
        assert!((one - 1.0).abs() < 4.0 * se, "slope {one} ± {se}");
        let (zero, se) = slope_with_se(&exact_mid, &from_observation).unwrap();
        assert!(zero.abs() < 4.0 * se, "slope {zero} ± {se}");
        // The slope and its SE by hand: Sxx = 5, Sxy = 8, slope 1.6.
        let (b, se) = slope_with_se(&[0.0, 1.0, 2.0, 3.0], &[1.0, 1.0, 5.0, 5.0]).unwrap();
        assert!((b - 1.6).abs() < 1e-12, "{b}");
        // Residuals from the fit: (0.4, −1.2, 1.2, −0.4): RSS 3.2 on 2 dof over Sxx = 5.
        assert!((se - (3.2f64 / 2.0 / 5.0).sqrt()).abs() < 1e-12, "{se}");
        assert!(slope_with_se(&[1.0, 1.0, 1.0], &[0.0, 1.0, 2.0]).is_none());
    }
}
