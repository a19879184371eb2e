//! Does a trained encoder read ahead? The mean of `q(z_t | z_{t−1}, h_t)` moves with the step's
//! own observation `x_t`; an encoder that is the smoothing posterior also moves with the later
//! observations `x_{t+1}, x_{t+2}, …` (they inform `z_t` through the dynamics), a filter does not.
//! Issue 17 (docs/results/bimodal.md, "λ and the loop's fixed point") found the paper config's
//! encoder reading `x_{t+1}` at 0.05 of its gain on `x_t` where the model's own posterior reads it
//! at about 0.3.
//!
//! [`encoder_lookahead`] holds one encoder trajectory fixed and moves one observation `x_{t+k}` by
//! `±δ` data units for every probed step `t`: the central difference of the posterior mean at `t`
//! is the encoder's gain on `x_{t+k}` (latent units per data unit), averaged over sequences and
//! steps. The ratio of the gain on `x_{t+1}` to the gain on `x_t` does not depend on the latent's
//! scale: 0 for a filter; for the exact posterior of the walk with transition width `w` and
//! emission `σ` (λ-tempered) it is `φλσ²/(w² + λσ²)` to first order.

use std::ops::Range;

use candle_core::{DType, IndexOp, Tensor};
use ddssm_model::Model;
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{check, Result};

/// The encoder's gains on the observations at and after each probed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookahead {
    /// Sequences probed.
    pub sequences: usize,
    /// The move `δ`, in data units.
    pub delta: f64,
    /// The probed steps `t` (0-based, end exclusive).
    pub steps: (usize, usize),
    /// `gains[k]`: the mean derivative of `E_q[z_t]` (latent dimension 0) with respect to
    /// `x_{t+k}` (observed dimension 0), in latent units per data unit.
    pub gains: Vec<f64>,
}

impl Lookahead {
    /// `gains[k] / gains[0]`: how far ahead the encoder reads, independent of the latent's scale
    /// (the lookahead on `x_{t+1}` is `ratio(1)`).
    pub fn ratio(&self, k: usize) -> f64 {
        self.gains[k] / self.gains[0]
    }
}

/// The gains of `model`'s encoder on `x_{t+k}`, `k = 0 … ahead − 1`, for `t` in `steps`, on the
/// sequences `x` (`[N, T, D]` in data units; the model's standardisation is applied), along one
/// encoder trajectory per sequence drawn from `noise`; see the module documentation. Needs
/// `steps.end + ahead − 1 ≤ T`, `ahead ≥ 1`, a non-empty `steps` and a finite `delta > 0`.
pub fn encoder_lookahead(
    model: &Model,
    x: &Tensor,
    steps: Range<usize>,
    ahead: usize,
    delta: f64,
    noise: &mut SeededNoise,
) -> Result<Lookahead> {
    let (n, t_len, _) = x.dims3()?;
    check(ahead >= 1, "ahead", ahead, "an integer ≥ 1")?;
    check(
        !steps.is_empty() && steps.end + ahead <= t_len + 1,
        "steps",
        format!("{steps:?}"),
        &format!("a non-empty range of steps with end + ahead − 1 ≤ T = {t_len} (ahead = {ahead})"),
    )?;
    check(
        delta.is_finite() && delta > 0.0,
        "delta",
        delta,
        "a finite number > 0",
    )?;
    // The encoder reads standardised observations; the moves are in data units.
    let (scaled, scale) = match model.standardization() {
        Some(s) => (s.apply(x)?, 1.0 / s.std[0]),
        None => (x.clone(), 1.0),
    };
    let scaled = scaled.to_dtype(model.dtype())?;
    let encoder = model.encoder();
    let prior = model.residual_prior();
    let inputs = encoder.prepare(&scaled, None, None, None)?.detach();
    let z = encoder.sample_no_grad(&inputs, 1, noise, prior)?.z;
    // The posterior means of latent dimension 0 at every step for observations `x`, along `z`.
    let means = |x: &Tensor| -> Result<Vec<Vec<f64>>> {
        let inputs = encoder.prepare(x, None, None, None)?.detach();
        Ok(encoder
            .posteriors(&inputs, &z, prior)?
            .mean()
            .i((.., .., 0))?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?)
    };
    let moved = |t: usize, by: f64| -> Result<Tensor> {
        let step = Tensor::zeros_like(&scaled)?.slice_assign(
            &[0..n, t..t + 1, 0..1],
            &(Tensor::ones((n, 1, 1), scaled.dtype(), scaled.device())? * (by * scale))?,
        )?;
        Ok((&scaled + step)?)
    };
    let mut gains = Vec::with_capacity(ahead);
    for k in 0..ahead {
        let mut total = 0.0;
        for t in steps.clone() {
            let (up, down) = (
                means(&moved(t + k, delta)?)?,
                means(&moved(t + k, -delta)?)?,
            );
            total += (0..n).map(|b| up[b][t] - down[b][t]).sum::<f64>() / (2.0 * delta);
        }
        gains.push(total / (n * steps.len()) as f64);
    }
    Ok(Lookahead {
        sequences: n,
        delta,
        steps: (steps.start, steps.end),
        gains,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use ddssm_model::{ModelConfig, Standardization};

    use super::*;

    /// The probe is the derivative it claims: on a model (standardised, so the unit conversion is
    /// exercised) its central differences agree with autograd's derivative of the same posterior
    /// means with respect to the observations, for the step itself and the ones ahead. In f64
    /// with a move of 1e-5 data units: the difference's O(δ²) error and its rounding (≈ 1e-16 of
    /// the means over 2δ, ≈ 1e-11) are far below the tolerance, and almost no ReLU kink lies
    /// within the move (at δ = 0.01 kinks crossed inside it moved the untrained model's tiny
    /// gains by 10 %).
    #[test]
    fn the_gains_are_the_derivatives_of_the_posterior_means() -> Result<()> {
        let dev = Device::Cpu;
        let mut model = Model::new(&ModelConfig::paper_ddssm(), 3, DType::F64, &dev)?;
        let std = 2.5;
        model.set_standardization(Some(Standardization {
            mean: vec![0.3],
            std: vec![std],
        }))?;
        let (n, t_len) = (6, 12);
        let mut noise = SeededNoise::new(11);
        let x = (noise.randn((n, t_len, 1), DType::F64, &dev)? * 3.0)?;
        let (steps, ahead, delta) = (3..7, 3, 1e-5);
        let probe = encoder_lookahead(
            &model,
            &x,
            steps.clone(),
            ahead,
            delta,
            &mut noise.fork("a"),
        )?;
        assert_eq!(probe.gains.len(), ahead);

        // The same trajectory, then autograd through `prepare` and `posteriors`.
        let encoder = model.encoder();
        let prior = model.residual_prior();
        let scaled = Var::from_tensor(&model.standardization().unwrap().apply(&x)?)?;
        let inputs = encoder
            .prepare(scaled.as_tensor(), None, None, None)?
            .detach();
        let z = encoder
            .sample_no_grad(&inputs, 1, &mut noise.fork("a"), prior)?
            .z;
        let mut exact = vec![0.0; ahead];
        for t in steps.clone() {
            let inputs = encoder.prepare(scaled.as_tensor(), None, None, None)?;
            let m_t = encoder
                .posteriors(&inputs, &z, prior)?
                .mean()
                .i((.., t, 0))?
                .sum_all()?;
            let grads = m_t.backward()?;
            let g = grads
                .get(scaled.as_tensor())
                .expect("a gradient on the observations")
                .i((.., .., 0))?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
            for (k, e) in exact.iter_mut().enumerate() {
                // d/dx in data units = d/dx_scaled / std.
                *e += (0..n).map(|b| g[b][t + k]).sum::<f64>() / std;
            }
        }
        // 1 % of each derivative, plus 0.1 % of the gain on `x_t` for a derivative near 0 (f64:
        // the rounding of the differences is far below either).
        for (k, (probed, e)) in probe.gains.iter().zip(&exact).enumerate() {
            let e = e / (n * steps.len()) as f64;
            assert!(
                (probed - e).abs() <= 0.01 * e.abs() + 1e-3 * probe.gains[0].abs(),
                "k = {k}: probe {probed}, autograd {e} (gains {:?})",
                probe.gains
            );
        }
        assert!(probe.gains[0].abs() > 1e-5, "{:?}", probe.gains);
        Ok(())
    }

    /// Ranges the sequences cannot hold, no steps, and a bad move are refused, naming the option.
    #[test]
    fn bad_options_are_refused_by_name() -> Result<()> {
        let dev = Device::Cpu;
        let model = Model::new(&ModelConfig::paper_ddssm(), 3, DType::F32, &dev)?;
        let x = Tensor::zeros((2, 10, 1), DType::F32, &dev)?;
        let mut noise = SeededNoise::new(1);
        for (steps, ahead, delta, field) in [
            (5..9, 3, 0.2, "steps"),
            (5..5, 1, 0.2, "steps"),
            (2..4, 0, 0.2, "ahead"),
            (2..4, 1, 0.0, "delta"),
            (2..4, 1, f64::NAN, "delta"),
        ] {
            let err = encoder_lookahead(&model, &x, steps, ahead, delta, &mut noise)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("invalid {field}")), "{err}");
        }
        // The last range that fits: steps up to 8, two ahead, T = 10.
        encoder_lookahead(&model, &x, 5..9, 2, 0.2, &mut noise)?;
        Ok(())
    }
}
