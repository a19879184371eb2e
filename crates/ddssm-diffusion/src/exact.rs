//! The exact denoiser of a Gaussian-mixture target: a closed-form `F_ψ` for testing samplers and
//! losses independently of any training.
//!
//! For `z⁰ ~ Σ_i π_i N(m_i, s_i²)` (independently in every coordinate) and `ẑ = z⁰ + σ ε`,
//! `E[z⁰ | ẑ] = Σ_i r_i(ẑ) [m_i + s_i²/(s_i² + σ²) (ẑ − m_i)]` with responsibilities
//! `r_i ∝ π_i N(ẑ; m_i, s_i² + σ²)`. It is the minimiser of the denoising loss at every level, so a
//! sampler driven by it must reproduce the mixture. [`GaussianMixtureDenoiser`] returns the raw
//! `F = (E[z⁰ | ẑ] − c_skip ẑ)/c_out` so that EDM's preconditioning turns it back into `E[z⁰ | ẑ]`.

use candle_core::Tensor;

use ddssm_tensor_ops::GaussianMixture;

use crate::{Denoiser, EdmCoefficients, Result};

/// The exact denoiser of a 1-D Gaussian mixture, applied independently to each latent coordinate
/// (its raw output assumes the preconditioning's `σ_data = 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixtureDenoiser {
    mixture: GaussianMixture,
}

impl std::ops::Deref for GaussianMixtureDenoiser {
    type Target = GaussianMixture;
    fn deref(&self) -> &GaussianMixture {
        &self.mixture
    }
}

impl GaussianMixtureDenoiser {
    /// A mixture with these weights (normalised here), means and standard deviations.
    pub fn new(weights: &[f64], means: &[f64], stds: &[f64]) -> Result<Self> {
        Ok(Self {
            mixture: GaussianMixture::new(weights, means, stds)?,
        })
    }

    /// The mixture this denoiser targets.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }

    /// `E[z⁰ | ẑ]` at noise level `σ` (log-sum-exp stable).
    pub fn posterior_mean(&self, z_hat: f64, sigma: f64) -> f64 {
        let logs: Vec<(f64, f64)> = self
            .weights()
            .iter()
            .zip(self.means().iter().zip(self.stds()))
            .map(|(w, (m, s))| {
                let v = s * s + sigma * sigma;
                let lp = w.ln() - (z_hat - m).powi(2) / (2.0 * v) - 0.5 * v.ln();
                (lp, m + s * s / v * (z_hat - m))
            })
            .collect();
        let max = logs
            .iter()
            .map(|(l, _)| *l)
            .fold(f64::NEG_INFINITY, f64::max);
        let (num, den) = logs.iter().fold((0.0, 0.0), |(n, d), (l, mu)| {
            let r = (l - max).exp();
            (n + r * mu, d + r)
        });
        num / den
    }
}

impl Denoiser for GaussianMixtureDenoiser {
    type Cond = ();

    fn forward(&self, x_in: &Tensor, c_noise: &Tensor, _cond: &()) -> Result<Tensor> {
        let (n, m) = x_in.dims2()?;
        let dtype = x_in.dtype();
        let xs = x_in.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?;
        let cn = c_noise
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let mut out = Vec::with_capacity(n * m);
        for (row, c) in xs.iter().zip(&cn) {
            let coeffs = EdmCoefficients::at_sigma((4.0 * c).exp());
            for &x in row {
                let z_hat = x / coeffs.c_in;
                let d = self.posterior_mean(z_hat, coeffs.sigma);
                out.push((d - coeffs.c_skip * z_hat) / coeffs.c_out);
            }
        }
        Ok(Tensor::from_vec(out, (n, m), x_in.device())?.to_dtype(dtype)?)
    }
}
