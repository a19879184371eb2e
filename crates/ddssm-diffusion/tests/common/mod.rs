//! Shared by the loss tests: the diffusion bound of a Gaussian target under its exact denoiser,
//! in closed form and by Monte Carlo through `diffusion_loss`.

use candle_core::{DType, Device, Tensor};
use ddssm_diffusion::{
    diffusion_loss, DiffusionLossConfig, GaussianMixtureDenoiser, NoiseSchedule,
};
use ddssm_tensor_ops::SeededNoise;

pub fn f64s(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// For the exact denoiser of N(m, sd²) and z⁰ from it: the expected bound, in closed form
/// (`L_fwd + Σ_k w_k ᾱ_k sd²/(ᾱ_k sd² + 1 − ᾱ_k) + C`, the posterior variance of ε given z^k),
/// minus the target's entropy.
pub fn closed_form_gap(s: &NoiseSchedule, m: f64, sd: f64) -> f64 {
    let ab_k = s.alpha_bar_final();
    let fwd = 0.5 * (ab_k * (m * m + sd * sd) - ab_k - (1.0 - ab_k).ln());
    let reg: f64 = (0..s.num_steps())
        .map(|i| {
            s.w[i] * s.alpha_bar[i] * sd * sd / (s.alpha_bar[i] * sd * sd + 1.0 - s.alpha_bar[i])
        })
        .sum();
    fwd + reg + s.bound_constant_per_dim()
        - 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * sd * sd).ln()
}

/// `n` latents from N(m, sd²) (seed 7, the loss drawing from the same stream after them), each
/// scored by `diffusion_loss`'s bound under `cfg` with the exact denoiser: the mean of the paired
/// differences bound − exact NLL, and its standard error.
pub fn monte_carlo_gap(
    s: &NoiseSchedule,
    m: f64,
    sd: f64,
    n: usize,
    cfg: &DiffusionLossConfig,
) -> (f64, f64) {
    let exact = GaussianMixtureDenoiser::new(&[1.0], &[m], &[sd]).unwrap();
    let mut noise = SeededNoise::new(7);
    let z0 = (noise.randn((n, 1), DType::F64, &Device::Cpu).unwrap() * sd)
        .unwrap()
        .affine(1.0, m)
        .unwrap();
    let loss = diffusion_loss(&exact, s, &z0, &(), cfg, &mut noise).unwrap();
    let bound = f64s(&loss.bound().unwrap());
    let diffs: Vec<f64> = f64s(&z0)
        .iter()
        .zip(&bound)
        .map(|(z, b)| {
            b - 0.5 * ((2.0 * std::f64::consts::PI * sd * sd).ln() + ((z - m) / sd).powi(2))
        })
        .collect();
    let gap = diffs.iter().sum::<f64>() / n as f64;
    let se =
        (diffs.iter().map(|d| (d - gap).powi(2)).sum::<f64>() / (n as f64 - 1.0) / n as f64).sqrt();
    (gap, se)
}
