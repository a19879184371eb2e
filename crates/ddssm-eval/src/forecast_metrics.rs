//! Scores of probabilistic forecasts from sample paths, as forecasting libraries report them:
//! the fair CRPS, the energy score of a multivariate step, the coverage of central intervals, and
//! the absolute error of the median with the MASE scale. Lower is better for every score; a
//! coverage should match its level.

/// The fair (unbiased) CRPS of the `m` samples at the observation `y`:
/// `E|X − y| − ½ E|X − X'|` with the second term over distinct pairs, `1/(m(m−1))` (Ferro 2014),
/// so that it is unbiased for the CRPS of the distribution the samples come from. One sample is a
/// point forecast: its CRPS is the absolute error.
pub fn crps_fair(samples: &[f64], y: f64) -> f64 {
    if samples.len() == 1 {
        return (samples[0] - y).abs();
    }
    let (first, pairs) = crps_parts(samples, y);
    let m = samples.len() as f64;
    first - pairs / (m * (m - 1.0))
}

/// `(E|X − y|, Σ_{i<j} |x_i − x_j|)` of the samples, the latter from the sorted values as
/// `Σ_i (2i − m − 1) x_(i)` (1-based `i`): the two parts of every CRPS estimator.
pub(crate) fn crps_parts(samples: &[f64], y: f64) -> (f64, f64) {
    let m = samples.len() as f64;
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let first = s.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
    let pairs = s
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - m - 1.0) * x)
        .sum();
    (first, pairs)
}

/// The energy score of `m` sample vectors (`samples[i]`, each of dimension `d`) at `y`:
/// `E‖X − y‖ − ½ E‖X − X'‖` over distinct pairs (fair form); for `d = 1` the fair CRPS.
pub fn energy_score(samples: &[Vec<f64>], y: &[f64]) -> f64 {
    let norm = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(u, v)| (u - v).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let m = samples.len() as f64;
    let first = samples.iter().map(|x| norm(x, y)).sum::<f64>() / m;
    let mut pairs = 0.0;
    for i in 0..samples.len() {
        for j in i + 1..samples.len() {
            pairs += norm(&samples[i], &samples[j]);
        }
    }
    first - pairs / (m * (m - 1.0))
}

/// Whether `y` lies in the central `level` interval of the samples (between their
/// `(1 − level)/2` and `(1 + level)/2` quantiles).
pub fn covered(samples: &[f64], y: f64, level: f64) -> bool {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let lo = sorted_quantile(&s, (1.0 - level) / 2.0);
    let hi = sorted_quantile(&s, (1.0 + level) / 2.0);
    lo <= y && y <= hi
}

/// The `q`-quantile of sorted values, interpolating linearly between order statistics.
pub fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// The MASE scale of a history: the mean absolute `season`-step difference of the observed
/// values (`None` entries are missing; pairs with a missing end are skipped). `None` when no pair
/// is observed or the scale is 0.
pub fn mase_scale(history: &[Option<f64>], season: usize) -> Option<f64> {
    let diffs: Vec<f64> = history
        .windows(season + 1)
        .filter_map(|w| Some((w[season]? - w[0]?).abs()))
        .collect();
    let scale = diffs.iter().sum::<f64>() / diffs.len().max(1) as f64;
    (!diffs.is_empty() && scale > 0.0).then_some(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_mixture;
    use ddssm_tensor_ops::{GaussianMixture, SeededNoise};

    /// Against the closed form of a Gaussian, σ[z(2Φ(z) − 1) + 2φ(z) − 1/√π] with z = (y − μ)/σ:
    /// the fair estimator is unbiased, so 400 repetitions of 50 draws average to it within 4
    /// standard errors of that average (its SE from the repetitions' spread).
    #[test]
    fn fair_crps_is_unbiased_for_a_gaussian() {
        let (mu, sigma, y): (f64, f64, f64) = (1.0, 2.0, 2.5);
        let z = (y - mu) / sigma;
        let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let closed = sigma
            * (z * (2.0 * ddssm_tensor_ops::normal_cdf(z) - 1.0) + 2.0 * pdf
                - 1.0 / std::f64::consts::PI.sqrt());
        let g = GaussianMixture::new(&[1.0], &[mu], &[sigma]).unwrap();
        let mut noise = SeededNoise::new(12);
        let reps: Vec<f64> = (0..400)
            .map(|_| crps_fair(&sample_mixture(&g, 50, &mut noise), y))
            .collect();
        let m = crate::MeanSem::of(&reps);
        assert!((m.mean - closed).abs() < 4.0 * m.sem, "{m} vs {closed}");
        // The biased (V-statistic) form is lower by ½E|X − X'|/m = σ/(√π·50) ≈ 0.0226 here.
        assert!(crps_fair(&[1.0, 1.0], 1.0).abs() < 1e-15);
        assert_eq!(crps_fair(&[3.0], 1.0), 2.0);
        let es = energy_score(&[vec![0.0], vec![2.0]], &[1.0]);
        assert!((es - crps_fair(&[0.0, 2.0], 1.0)).abs() < 1e-12);
    }

    /// For draws from the forecast distribution itself, a central 90 % interval covers a fresh
    /// draw 90 % of the time: 2000 trials, binomial SE √(0.9·0.1/2000) = 0.0067, tolerance 4 SE
    /// (plus the interval's own finite-sample width error, O(1/200), well inside it).
    #[test]
    fn coverage_of_a_known_distribution() {
        let g = GaussianMixture::new(&[1.0], &[0.0], &[1.0]).unwrap();
        let mut noise = SeededNoise::new(5);
        let hits = (0..2000)
            .filter(|_| {
                let s = sample_mixture(&g, 200, &mut noise);
                let y = sample_mixture(&g, 1, &mut noise)[0];
                covered(&s, y, 0.9)
            })
            .count() as f64
            / 2000.0;
        assert!(
            (hits - 0.9).abs() < 4.0 * (0.9f64 * 0.1 / 2000.0).sqrt(),
            "{hits}"
        );
        assert_eq!(sorted_quantile(&[1.0, 2.0, 3.0], 0.25), 1.5);
        assert_eq!(
            mase_scale(&[Some(1.0), None, Some(4.0), Some(6.0)], 1),
            Some(2.0)
        );
        assert_eq!(mase_scale(&[Some(1.0), Some(1.0)], 1), None);
    }
}
