//! Metrics of Sec. 4: the histogram Jensen–Shannon divergence of one-step predictive samples
//! against a reference distribution, its noise floor, the CRPS, and mean ± SEM summaries.

use ddssm_tensor_ops::{GaussianMixture, SeededNoise};
use serde::{Deserialize, Serialize};

/// The histogram used by the JSD: `bins` equal bins on `[lo, hi]`, probabilities clipped below at
/// `clip`, natural log. The defaults are the paper authors' published evaluation (300 bins on
/// `[−10, 10]`, clip 1e-12).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsdHistogram {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Number of bins.
    pub bins: usize,
    /// Probability floor.
    pub clip: f64,
}

impl Default for JsdHistogram {
    fn default() -> Self {
        Self {
            lo: -10.0,
            hi: 10.0,
            bins: 300,
            clip: 1e-12,
        }
    }
}

impl JsdHistogram {
    /// The normalised histogram of `samples`: samples outside `[lo, hi]` are dropped and the rest
    /// normalised (numpy's `histogram(..., range, density)` convention). All-outside samples give
    /// the uniform-zero histogram, which the clip turns into a maximal divergence.
    pub fn histogram(&self, samples: &[f64]) -> Vec<f64> {
        let w = (self.hi - self.lo) / self.bins as f64;
        let mut counts = vec![0.0; self.bins];
        let mut inside = 0.0;
        for &x in samples {
            if x >= self.lo && x <= self.hi {
                let b = (((x - self.lo) / w) as usize).min(self.bins - 1);
                counts[b] += 1.0;
                inside += 1.0;
            }
        }
        if inside > 0.0 {
            for c in &mut counts {
                *c /= inside;
            }
        }
        counts
    }

    /// The reference's bin probabilities on `[lo, hi]`, renormalised to the range.
    pub fn reference(&self, reference: &GaussianMixture) -> Vec<f64> {
        let w = (self.hi - self.lo) / self.bins as f64;
        let cdf: Vec<f64> = (0..=self.bins)
            .map(|b| reference.cdf(self.lo + b as f64 * w))
            .collect();
        let total = cdf[self.bins] - cdf[0];
        cdf.windows(2)
            .map(|c| (c[1] - c[0]) / total.max(f64::MIN_POSITIVE))
            .collect()
    }

    /// `JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m)`, `m = (p + q)/2`, after clipping both at `clip`.
    pub fn jsd(&self, p: &[f64], q: &[f64]) -> f64 {
        let mut total = 0.0;
        for (&a, &b) in p.iter().zip(q) {
            let (a, b) = (a.max(self.clip), b.max(self.clip));
            let m = 0.5 * (a + b);
            total += 0.5 * a * (a / m).ln() + 0.5 * b * (b / m).ln();
        }
        total
    }

    /// The JSD between the histogram of `samples` and `reference`'s bins.
    pub fn sample_jsd(&self, samples: &[f64], reference: &GaussianMixture) -> f64 {
        self.jsd(&self.histogram(samples), &self.reference(reference))
    }

    /// The estimator's noise floor for `n` samples: the JSD of `n` draws from `reference` itself.
    pub fn noise_floor(
        &self,
        reference: &GaussianMixture,
        n: usize,
        noise: &mut SeededNoise,
    ) -> f64 {
        self.sample_jsd(&sample_mixture(reference, n, noise), reference)
    }
}

/// `n` draws from a 1-D mixture.
pub fn sample_mixture(mixture: &GaussianMixture, n: usize, noise: &mut SeededNoise) -> Vec<f64> {
    let u = noise.uniform01(n);
    let z = noise.normals(n);
    let cum: Vec<f64> = mixture
        .weights()
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect();
    u.iter()
        .zip(z)
        .map(|(&u, z)| {
            let k = cum.iter().position(|&c| u < c).unwrap_or(cum.len() - 1);
            mixture.means()[k] + mixture.stds()[k] * z
        })
        .collect()
}

/// The continuous ranked probability score of the empirical distribution of `samples` at the
/// observation `y`: `E|X − y| − ½ E|X − X'|` (the sorted-sample form of the second term; lower is
/// better, 0 for a point mass at `y`).
pub fn crps(samples: &[f64], y: f64) -> f64 {
    let n = samples.len() as f64;
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let first: f64 = s.iter().map(|x| (x - y).abs()).sum::<f64>() / n;
    let spread: f64 = s
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
        .sum::<f64>()
        * 2.0
        / (n * n);
    first - 0.5 * spread
}

/// A mean with its standard error over `n` values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSem {
    /// The mean.
    pub mean: f64,
    /// The standard error of the mean (sample standard deviation over √n).
    pub sem: f64,
    /// The number of values.
    pub n: usize,
}

impl MeanSem {
    /// Mean and SEM of `values` (SEM 0 for fewer than two).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let sem = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        Self { mean, sem, n }
    }
}

impl std::fmt::Display for MeanSem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4} ± {:.4}", self.mean, self.sem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper_mixture() -> GaussianMixture {
        GaussianMixture::new(&[0.5, 0.5], &[-4.0, 4.0], &[0.2, 0.2]).unwrap()
    }

    #[test]
    fn jsd_is_zero_for_identical_histograms_and_ln2_for_disjoint_ones() {
        let h = JsdHistogram::default();
        let q = h.reference(&paper_mixture());
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(h.jsd(&q, &q).abs() < 1e-15);
        let mut a = vec![0.0; 300];
        let mut b = vec![0.0; 300];
        a[0] = 1.0;
        b[299] = 1.0;
        assert!((h.jsd(&a, &b) - std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn the_noise_floor_shrinks_like_one_over_n() {
        // For n exact draws the expected JSD is about (occupied bins − 1)/(8n): halving with each
        // doubling of n. Averages over 20 repetitions; the tolerance is loose (factor 1.5) because
        // the clipped, range-normalised estimator only follows the asymptotic rate.
        let h = JsdHistogram::default();
        let m = paper_mixture();
        let mut noise = SeededNoise::new(3);
        let avg = |n: usize, noise: &mut SeededNoise| -> f64 {
            (0..20).map(|_| h.noise_floor(&m, n, noise)).sum::<f64>() / 20.0
        };
        let a = avg(1024, &mut noise);
        let b = avg(4096, &mut noise);
        assert!(a / b > 4.0 / 1.5 && a / b < 4.0 * 1.5, "{a} {b}");
        // A sampler putting one mode at the wrong place is far above the floor.
        let wrong = GaussianMixture::new(&[0.5, 0.5], &[-4.0, 3.0], &[0.2, 0.2]).unwrap();
        let s = sample_mixture(&wrong, 1024, &mut noise);
        assert!(h.sample_jsd(&s, &m) > 10.0 * a);
    }

    #[test]
    fn crps_matches_closed_forms() {
        // A point mass: |x − y|.
        assert!((crps(&[1.5; 10], 0.5) - 1.0).abs() < 1e-12);
        // Standard normal at y = 0: 2φ(0) − 1/√π ≈ 0.2337; Monte Carlo with 20 000 draws has
        // standard error ≈ 0.003, tolerance 4 SE.
        let z = SeededNoise::new(9).normals(20_000);
        let expected =
            2.0 / (2.0 * std::f64::consts::PI).sqrt() - 1.0 / std::f64::consts::PI.sqrt();
        assert!((crps(&z, 0.0) - expected).abs() < 0.012);
    }

    #[test]
    fn mean_sem() {
        let m = MeanSem::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.mean, 2.5);
        assert!((m.sem - (5.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
    }
}
