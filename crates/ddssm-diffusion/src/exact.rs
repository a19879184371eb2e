//! The exact denoiser of a Gaussian-mixture target: a closed-form `F_ψ` for testing samplers and
//! losses independently of any training.
//!
//! For `z⁰ ~ Σ_i π_i N(m_i, s_i²)` (independently in every coordinate) and `ẑ = z⁰ + σ ε`,
//! `E[z⁰ | ẑ] = Σ_i r_i(ẑ) [m_i + s_i²/(s_i² + σ²) (ẑ − m_i)]` with responsibilities
//! `r_i ∝ π_i N(ẑ; m_i, s_i² + σ²)`. It is the minimiser of the denoising loss at every level, so a
//! sampler driven by it must reproduce the mixture. [`GaussianMixtureDenoiser`] returns the raw
//! `F = (E[z⁰ | ẑ] − c_skip ẑ)/c_out` so that EDM's preconditioning turns it back into `E[z⁰ | ẑ]`.

use candle_core::Tensor;

use crate::{Denoiser, EdmCoefficients, Error, Result};

/// A 1-D Gaussian mixture, applied independently to each latent coordinate.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixtureDenoiser {
    weights: Vec<f64>,
    means: Vec<f64>,
    stds: Vec<f64>,
}

impl GaussianMixtureDenoiser {
    /// A mixture with these weights (normalised here), means and standard deviations.
    pub fn new(weights: &[f64], means: &[f64], stds: &[f64]) -> Result<Self> {
        let ok = !weights.is_empty()
            && weights.len() == means.len()
            && means.len() == stds.len()
            && weights.iter().all(|w| *w > 0.0)
            && stds.iter().all(|s| *s > 0.0);
        if !ok {
            return Err(Error::InvalidConfig {
                field: "mixture",
                value: format!("weights {weights:?}, means {means:?}, stds {stds:?}"),
                allowed: "equally long, non-empty lists with positive weights and stds".into(),
            });
        }
        let total: f64 = weights.iter().sum();
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
            means: means.to_vec(),
            stds: stds.to_vec(),
        })
    }

    /// Mixture weights (summing to 1).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Component means.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// Component standard deviations.
    pub fn stds(&self) -> &[f64] {
        &self.stds
    }

    /// The mixture density at `x`.
    pub fn density(&self, x: f64) -> f64 {
        self.components(x, 0.0).iter().map(|(p, _)| p).sum()
    }

    /// The mixture CDF at `x`.
    pub fn cdf(&self, x: f64) -> f64 {
        self.weights
            .iter()
            .zip(self.means.iter().zip(&self.stds))
            .map(|(w, (m, s))| w * normal_cdf((x - m) / s))
            .sum()
    }

    /// Probabilities of `bins` equal bins on `[lo, hi]`; the outermost bins absorb the tails.
    pub fn bin_probabilities(&self, lo: f64, hi: f64, bins: usize) -> Vec<f64> {
        let w = (hi - lo) / bins as f64;
        let cdf_at = |b: usize| match b {
            0 => 0.0,
            b if b == bins => 1.0,
            b => self.cdf(lo + b as f64 * w),
        };
        (0..bins).map(|b| cdf_at(b + 1) - cdf_at(b)).collect()
    }

    /// The Jensen–Shannon divergence (nats) between the histogram of `samples` on `bins` equal
    /// bins over `[lo, hi]` (tails folded into the outermost bins) and the mixture's bin
    /// probabilities. For `N` exact draws its expectation is about `(bins − 1)/(8N)`: the
    /// estimator's noise floor.
    pub fn histogram_jsd(&self, samples: &[f64], lo: f64, hi: f64, bins: usize) -> f64 {
        let w = (hi - lo) / bins as f64;
        let mut p = vec![0.0; bins];
        for &x in samples {
            p[(((x - lo) / w).floor().max(0.0) as usize).min(bins - 1)] +=
                1.0 / samples.len() as f64;
        }
        let q = self.bin_probabilities(lo, hi, bins);
        let kl = |a: &[f64], m: &[f64]| -> f64 {
            a.iter()
                .zip(m)
                .filter(|(x, _)| **x > 0.0)
                .map(|(x, y)| x * (x / y).ln())
                .sum()
        };
        let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| 0.5 * (a + b)).collect();
        0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)
    }

    /// `(π_i N(ẑ; m_i, s_i² + σ²), E[z⁰ | ẑ, i])` for each component.
    fn components(&self, z_hat: f64, sigma: f64) -> Vec<(f64, f64)> {
        self.weights
            .iter()
            .zip(self.means.iter().zip(&self.stds))
            .map(|(w, (m, s))| {
                let v = s * s + sigma * sigma;
                let p = w * (-(z_hat - m).powi(2) / (2.0 * v)).exp()
                    / (2.0 * std::f64::consts::PI * v).sqrt();
                (p, m + s * s / v * (z_hat - m))
            })
            .collect()
    }

    /// `E[z⁰ | ẑ]` at noise level `σ` (log-sum-exp stable).
    pub fn posterior_mean(&self, z_hat: f64, sigma: f64) -> f64 {
        let logs: Vec<(f64, f64)> = self
            .weights
            .iter()
            .zip(self.means.iter().zip(&self.stds))
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

/// The standard normal CDF (Abramowitz–Stegun 7.1.26 through erf; absolute error < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    0.5 * (1.0 + if z >= 0.0 { erf } else { -erf })
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
