//! The density `p_ψ(z⁰ | c)` of the reverse chain seen through one diffusion path: an importance
//! weight for likelihoods beyond the bound (e.g. an importance-weighted bound of a model that
//! uses the diffusion as a prior or a transition).
//!
//! Draw `z^{1:K} ~ q(z^{1:K} | z⁰)` backwards — `z^K ~ q(z^K | z⁰)`, then
//! `z^{k−1} ~ q(z^{k−1} | z^k, z⁰) = N(μ̃_k, β̃_k)` (App. D) — and return
//!
//! `log w = log N(z^K; 0, I) + Σ_{k=1}^K log N(z^{k−1}; μ_ψ(z^k, k, c), σ_k² I)
//!          − log q(z^K | z⁰) − Σ_{k=2}^K log N(z^{k−1}; μ̃_k, β̃_k I)`,
//!
//! the reverse chain with the schedule's variance `σ_k²` (`β_k` in the paper,
//! [`NoiseSchedule::reverse_variance`]) that Eq. (33) bounds. `E[w] = p_ψ(z⁰ | c)` (so
//! `log`-mean-`exp` of `n` weights is a lower bound on `log p_ψ(z⁰ | c)` that tightens with `n`),
//! and `E[log w]` is minus Eq. (33)'s bound, `−(L_forward + Σ_k w_k E‖ε − ε_ψ‖² + M·C)`.
//! The `K` network calls run on all rows at once, one level after another.

use candle_core::{Tensor, D};
use ddssm_tensor_ops::SeededNoise;

use crate::sampler::reverse_mean;
use crate::{Denoiser, EdmPreconditioning, Error, NoiseSchedule, Result};

/// `Σ_m log N(x_m; μ_m, var)` per row of `[N, M]` tensors: `[N]`.
fn log_normal(x: &Tensor, mean: &Tensor, var: f64) -> Result<Tensor> {
    let m = x.dim(D::Minus1)? as f64;
    let sq = (x - mean)?.sqr()?.sum(D::Minus1)?;
    Ok(sq.affine(
        -0.5 / var,
        -0.5 * m * (2.0 * std::f64::consts::PI * var).ln(),
    )?)
}

/// One path's log importance weight of `p_ψ(z⁰ | c)` for each row of `z0` (`[N, M]`, conditioning
/// `cond` of batch `N`): `[N]`, detached. Draws `K` tensors `[N, M]` from `noise` (`z^K` first,
/// then `z^{K−1}` … `z^1`).
pub fn path_log_weight<N: Denoiser + ?Sized>(
    net: &N,
    schedule: &NoiseSchedule,
    z0: &Tensor,
    cond: &N::Cond,
    noise: &mut SeededNoise,
) -> Result<Tensor> {
    if z0.rank() != 2 {
        return Err(Error::Shape {
            what: "path_log_weight z0",
            expected: "[N, M]".into(),
            got: z0.dims().to_vec(),
        });
    }
    let z0 = z0.detach();
    let (shape, dtype, device) = (z0.dims2()?, z0.dtype(), z0.device().clone());
    let precond = EdmPreconditioning::for_schedule(net, schedule);
    let k_max = schedule.num_steps();
    let ab = &schedule.alpha_bar;
    // z^K ~ q(z^K | z⁰) = N(√ᾱ_K z⁰, (1 − ᾱ_K) I).
    let last_mean = (&z0 * ab[k_max - 1].sqrt())?;
    let var_k = 1.0 - ab[k_max - 1];
    let mut z = (&last_mean + (noise.randn(shape, dtype, &device)? * var_k.sqrt())?)?;
    let zeros = z.zeros_like()?;
    let mut log_w = (log_normal(&z, &zeros, 1.0)? - log_normal(&z, &last_mean, var_k)?)?;
    for k in (1..=k_max).rev() {
        let i = k - 1;
        let mean = reverse_mean(&precond, schedule, &z, k, cond)?;
        let next = if k > 1 {
            // q(z^{k−1} | z^k, z⁰): μ̃_k = √ᾱ_{k−1} β_k/(1 − ᾱ_k) z⁰ + √α_k (1 − ᾱ_{k−1})/(1 − ᾱ_k) z^k.
            let (b, a, prev) = (schedule.beta[i], schedule.alpha[i], ab[i - 1]);
            let tilde = ((&z0 * (prev.sqrt() * b / (1.0 - ab[i])))?
                + (&z * (a.sqrt() * (1.0 - prev) / (1.0 - ab[i])))?)?;
            let var = schedule.beta_tilde[i];
            let draw = (&tilde + (noise.randn(shape, dtype, &device)? * var.sqrt())?)?;
            log_w = (log_w - log_normal(&draw, &tilde, var)?)?;
            draw
        } else {
            z0.clone()
        };
        log_w = (log_w + log_normal(&next, &mean, schedule.reverse_variance[i])?)?.detach();
        z = next;
    }
    Ok(log_w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diffusion_loss, DiffusionLossConfig, GaussianMixtureDenoiser, NoiseScheduleConfig,
        ReverseVariance,
    };
    use candle_core::{DType, Device};

    /// `E[log w]` is minus the bound of Eq. (33) (the diffusion loss with its constant), for each
    /// reverse variance: with the exact denoiser of a two-component target, the mean path weight
    /// of 4096 draws at fixed `z⁰` matches the mean bound of 4096 loss draws (S_k = 128 each)
    /// within 4 combined standard errors of the two means. And `log`-mean-`exp` of the weights
    /// lies above their mean (Jensen), as an importance-weighted bound must. The two variances
    /// bound two different chains: their mean bounds differ by more than 4 combined standard
    /// errors (so neither the loss nor the path weight ignores the setting).
    #[test]
    fn the_mean_path_weight_is_minus_the_diffusion_bound() -> Result<()> {
        let net = GaussianMixtureDenoiser::new(&[0.5, 0.5], &[-1.0, 1.0], &[0.05, 0.05])?;
        let n = 4096;
        let z0 = Tensor::full(0.97f64, (n, 1), &Device::Cpu)?;
        let stats = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            (m, (var / v.len() as f64).sqrt())
        };
        let mut bounds = Vec::new();
        for reverse_variance in [ReverseVariance::Beta, ReverseVariance::BetaTilde] {
            let schedule = NoiseScheduleConfig {
                reverse_variance,
                ..Default::default()
            }
            .build()?;
            let w = path_log_weight(&net, &schedule, &z0, &(), &mut SeededNoise::new(1))?
                .to_vec1::<f64>()?;
            let config = DiffusionLossConfig {
                s_k: 128,
                ..Default::default()
            };
            let loss =
                diffusion_loss(&net, &schedule, &z0, &(), &config, &mut SeededNoise::new(2))?;
            let bound = loss.bound()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let ((mw, sw), (mb, sb)) = (stats(&w), stats(&bound));
            let se = (sw * sw + sb * sb).sqrt();
            assert!(
                (mw + mb).abs() < 4.0 * se,
                "{reverse_variance:?}: mean log w {mw} ± {sw}, bound {mb} ± {sb}"
            );
            let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lme = max + (w.iter().map(|x| (x - max).exp()).sum::<f64>() / n as f64).ln();
            assert!(lme >= mw, "log-mean-exp {lme} below the mean {mw}");
            bounds.push((mb, sb));
        }
        let ((b0, s0), (b1, s1)) = (bounds[0], bounds[1]);
        assert!(
            (b0 - b1).abs() > 4.0 * (s0 * s0 + s1 * s1).sqrt(),
            "β: {b0} ± {s0}, β̃: {b1} ± {s1}"
        );
        Ok(())
    }
}
