//! One-dimensional Gaussian mixtures: densities, CDFs, bin probabilities and the histogram
//! Jensen–Shannon divergence used to compare samples with an exact distribution (the exact
//! denoiser of `ddssm-diffusion`, the exact predictive of `ddssm-eval`).

use crate::{Error, Result};

/// `Σ_i π_i N(m_i, s_i²)` on the real line.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: Vec<f64>,
    stds: Vec<f64>,
}

impl GaussianMixture {
    /// A mixture with these weights (normalised here), means and standard deviations.
    pub fn new(weights: &[f64], means: &[f64], stds: &[f64]) -> Result<Self> {
        let ok = !weights.is_empty()
            && weights.len() == means.len()
            && means.len() == stds.len()
            && weights.iter().all(|w| *w > 0.0 && w.is_finite())
            && means.iter().all(|m| m.is_finite())
            && stds.iter().all(|s| *s > 0.0 && s.is_finite());
        if !ok {
            return Err(Error::InvalidArgument {
                name: "mixture",
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
        self.weights
            .iter()
            .zip(self.means.iter().zip(&self.stds))
            .map(|(w, (m, s))| {
                w * (-(x - m).powi(2) / (2.0 * s * s)).exp()
                    / (2.0 * std::f64::consts::PI * s * s).sqrt()
            })
            .sum()
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
