//! Scoring models on a set of bimodal-walk sequences (Sec. 4): the one-step predictive against
//! the exact and the paper's references, the negative ELBO per sequence, and the LOCF baseline.

use candle_core::{DType, Tensor};
use ddssm_model::{Batch, ElboOptions, Model};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{score_sequence, BimodalRandomWalk, JsdHistogram, MeanSem, Result, Series};

/// Share of samples outside the JSD histogram above which a model's one-step figures are flagged
/// (1 %).
pub const OUT_OF_RANGE_WARNING: f64 = 0.01;

/// One model's scores on a set of sequences (the rows of the experiment's results table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelScores {
    /// One-step JSD against the paper's reference.
    pub jsd_paper: MeanSem,
    /// One-step JSD against the exact predictive.
    pub jsd_exact: MeanSem,
    /// Noise floor of `jsd_paper` at this sample count.
    pub floor_paper: MeanSem,
    /// Noise floor of `jsd_exact` at this sample count.
    pub floor_exact: MeanSem,
    /// CRPS of the one-step predictive (original units).
    pub crps: MeanSem,
    /// Negative ELBO per sequence, nats, original units (None for a baseline).
    pub negative_elbo: Option<MeanSem>,
    /// Share of centred samples between the modes (|x̂ − φx| < c/2).
    pub between_modes: f64,
    /// Share of centred samples outside the JSD histogram's range (`jsd_paper` drops them,
    /// `jsd_exact` counts them in its tail bins); above [`OUT_OF_RANGE_WARNING`] a warning.
    #[serde(default)]
    pub out_of_range: f64,
    /// Root mean square of the centred samples (`x̂ − φ·x_{T−1}`; the exact predictive's is about
    /// `√(c² + 0.2²)`, 4.0 at the paper's settings): tells a wide predictive whose tails leave the
    /// histogram from a diverged one. Not finite when a sample is not; `None` in results written
    /// before it was recorded.
    #[serde(default)]
    pub centred_rms: Option<f64>,
    /// Training wall time, seconds (0 for a baseline).
    pub train_seconds: f64,
    /// Per-sequence `jsd_exact` (for figures and re-analysis).
    pub per_sequence_jsd_exact: Vec<f64>,
    /// The average histogram of centred samples over the sequences (the JSD histogram's bins).
    pub mean_histogram: Vec<f64>,
}

impl ModelScores {
    /// The warning for more than [`OUT_OF_RANGE_WARNING`] of the centred samples outside `hist`
    /// (`name` names the model), or `None`. It calls the predictive wide when the centred
    /// samples' root mean square ([`ModelScores::centred_rms`]) lies inside the histogram's range
    /// (only the tails leave it), and asks whether the run diverged otherwise or when that is
    /// unknown.
    pub fn out_of_range_warning(&self, name: &str, hist: &JsdHistogram) -> Option<String> {
        (self.out_of_range > OUT_OF_RANGE_WARNING).then(|| {
            let half_range = hist.lo.abs().min(hist.hi.abs());
            let cause = match self.centred_rms {
                Some(rms) if rms.is_finite() && rms <= half_range => {
                    format!("their RMS is {rms:.2}: a wide predictive, not a diverged one")
                }
                Some(rms) => format!("their RMS is {rms:.3e}: diverged?"),
                None => "diverged?".to_string(),
            };
            format!(
                "{name}: {:.1} % of the centred one-step samples fall outside the histogram's \
                 [{}, {}] ({cause}): jsd_exact counts them in its tail bins, jsd_paper drops \
                 them and is not to be trusted",
                100.0 * self.out_of_range,
                hist.lo,
                hist.hi
            )
        })
    }
}

/// Scores one-step predictive `samples` (one vector of draws of `x_T` per sequence, original
/// units) of the sequences `x` (`[N, T]`): JSDs with their noise floors, CRPS, the share between
/// the modes and outside the histogram, and the average centred histogram. `noise` draws the
/// noise-floor samples.
pub fn score_one_step(
    sim: &BimodalRandomWalk,
    hist: &JsdHistogram,
    x: &Series,
    samples: &[Vec<f64>],
    noise: &mut SeededNoise,
) -> Result<ModelScores> {
    let t = x.t;
    let (mut jp, mut je, mut fp, mut fe, mut cr) = (vec![], vec![], vec![], vec![], vec![]);
    let mut mean_hist = vec![0.0; hist.bins];
    let (mut between, mut total) = (0usize, 0usize);
    let mut outside = 0.0;
    let mut sum_sq = 0.0;
    for (i, draws) in samples.iter().enumerate() {
        let row = &x.values[i * t..(i + 1) * t];
        let s = score_sequence(sim, hist, &row[..t - 1], row[t - 1], draws, noise)?;
        jp.push(s.jsd_paper);
        je.push(s.jsd_exact);
        fp.push(s.floor_paper);
        fe.push(s.floor_exact);
        cr.push(s.crps);
        outside += s.out_of_range * draws.len() as f64;
        let shift = sim.phi * row[t - 2];
        let centred: Vec<f64> = draws.iter().map(|d| d - shift).collect();
        for (m, h) in mean_hist.iter_mut().zip(hist.histogram(&centred)) {
            *m += h / samples.len() as f64;
        }
        between += centred.iter().filter(|c| c.abs() < 0.5 * sim.step).count();
        sum_sq += centred.iter().map(|c| c * c).sum::<f64>();
        total += centred.len();
    }
    Ok(ModelScores {
        jsd_paper: MeanSem::of(&jp),
        jsd_exact: MeanSem::of(&je),
        floor_paper: MeanSem::of(&fp),
        floor_exact: MeanSem::of(&fe),
        crps: MeanSem::of(&cr),
        negative_elbo: None,
        between_modes: between as f64 / total.max(1) as f64,
        out_of_range: outside / total.max(1) as f64,
        centred_rms: Some((sum_sq / total.max(1) as f64).sqrt()),
        train_seconds: 0.0,
        per_sequence_jsd_exact: je,
        mean_histogram: mean_hist,
    })
}

/// The negative ELBO of each sequence of `x` (`[N, T, D]`, the data's units; the model applies
/// its standardisation and Jacobian) with `samples` encoder trajectories each, in chunks of 128
/// sequences on the worker threads, each chunk with its own noise stream.
pub fn negative_elbo_per_sequence(
    model: &Model,
    x: &Tensor,
    samples: usize,
    noise: &mut SeededNoise,
) -> Result<Vec<f64>> {
    let n = x.dim(0)?;
    ddssm_tensor_ops::map_chunks(n, 128, noise, |start, len, chunk_noise| {
        let terms = model.elbo(
            &Batch::new(x.narrow(0, start, len)?),
            &ElboOptions {
                samples,
                ..ElboOptions::default()
            },
            chunk_noise,
        )?;
        Ok::<_, crate::Error>(
            terms
                .negative_elbo()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?,
        )
    })
}

/// `log((1/n) Σ exp(v_i))`, computed stably.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + (v.iter().map(|x| (x - max).exp()).sum::<f64>() / v.len() as f64).ln()
}

/// Importance-weighted bounds (IWAE) on `log p(x)` of each sequence of `x` (`[N, T, D]`, the
/// data's units), nats: for each `k` of `ks`, the mean over the `draws / k` disjoint groups of
/// `log (1/k) Σ_{i ∈ group} w_i` of `draws` weights per sequence ([`Model::log_weights`]).
/// `k = 1` is a sampled ELBO; the bound rises toward `log p(x)` with `k`. `draws` must be a
/// multiple of every `k`. Chunks of `chunk` sequences run on the worker threads, each with its own
/// noise stream. Returns one `[N]` vector per `k`.
pub fn iwae_per_sequence(
    model: &Model,
    x: &Tensor,
    ks: &[usize],
    draws: usize,
    chunk: usize,
    noise: &mut SeededNoise,
) -> Result<Vec<Vec<f64>>> {
    if let Some(bad) = ks.iter().find(|&&k| k == 0 || !draws.is_multiple_of(k)) {
        return Err(crate::Error::InvalidConfig {
            field: "k",
            value: bad.to_string(),
            allowed: format!("a divisor ≥ 1 of draws = {draws}"),
        });
    }
    let n = x.dim(0)?;
    // Per sequence, its `draws` weights.
    let weights: Vec<Vec<f64>> =
        ddssm_tensor_ops::map_chunks(n, chunk.max(1), noise, |start, len, chunk_noise| {
            let w = model
                .log_weights(&Batch::new(x.narrow(0, start, len)?), draws, chunk_noise)?
                .to_dtype(DType::F64)?
                .t()?
                .to_vec2::<f64>()?;
            Ok::<_, crate::Error>(w)
        })?;
    Ok(ks
        .iter()
        .map(|&k| {
            weights
                .iter()
                .map(|w| {
                    let groups = w.chunks(k).map(log_mean_exp);
                    groups.sum::<f64>() / (draws / k) as f64
                })
                .collect()
        })
        .collect())
}

/// The last-observation-carried-forward baseline's one-step "samples": `n` copies of `x_{T−1}`
/// for each sequence of `x` (`[N, T]`), a point mass.
pub fn locf_samples(x: &Series, n: usize) -> Vec<Vec<f64>> {
    let t = x.t;
    (0..x.n).map(|i| vec![x.values[i * t + t - 2]; n]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_mixture;

    /// Draws from the exact predictive score at their noise floor (`jsd_exact` within 4 standard
    /// errors of the mean floor) and are not flagged; LOCF's point mass and a diverged sampler
    /// score far worse, the diverged one flagged.
    #[test]
    fn exact_draws_sit_at_the_floor_and_baselines_do_not() -> Result<()> {
        let sim = BimodalRandomWalk {
            t: 8,
            ..BimodalRandomWalk::default()
        };
        let hist = JsdHistogram::default();
        let (_, x) = sim.simulate(16, &mut SeededNoise::new(4))?;
        let mut draw_noise = SeededNoise::new(5);
        let exact: Vec<Vec<f64>> = (0..x.n)
            .map(|i| {
                let row = &x.values[i * 8..(i + 1) * 8];
                let p = sim.exact_predictive(&row[..7], 0.0)?;
                Ok(sample_mixture(&p.mixture, 512, &mut draw_noise))
            })
            .collect::<Result<_>>()?;
        let s = score_one_step(&sim, &hist, &x, &exact, &mut SeededNoise::new(6))?;
        let gap = (s.jsd_exact.mean - s.floor_exact.mean).abs();
        let se = (s.jsd_exact.sem.powi(2) + s.floor_exact.sem.powi(2)).sqrt();
        assert!(gap < 4.0 * se, "{} vs floor {}", s.jsd_exact, s.floor_exact);
        assert!(s.out_of_range_warning("exact", &hist).is_none());
        let locf = locf_samples(&x, 512);
        assert_eq!(locf[3][0], x.values[3 * 8 + 6]);
        let l = score_one_step(&sim, &hist, &x, &locf, &mut SeededNoise::new(6))?;
        assert!(l.jsd_exact.mean > s.jsd_exact.mean + 0.3);
        let diverged = vec![vec![-1e9; 512]; 16];
        let d = score_one_step(&sim, &hist, &x, &diverged, &mut SeededNoise::new(6))?;
        assert!(d.jsd_exact.mean > l.jsd_exact.mean.min(0.69));
        let warning = d.out_of_range_warning("diverged", &hist).unwrap();
        assert!(warning.contains("diverged?"), "{warning}");
        // A wide but sane predictive: N(φ·x_{T−1}, 6²) puts about 10 % of its draws beyond ±10
        // while their RMS (≈ 6) stays inside the range, so it is called wide, not diverged.
        let mut wide_noise = SeededNoise::new(7);
        let wide: Vec<Vec<f64>> = (0..x.n)
            .map(|i| {
                let centre = sim.phi * x.values[i * 8 + 6];
                let z = wide_noise.normals(512);
                z.iter().map(|z| centre + 6.0 * z).collect()
            })
            .collect();
        let w = score_one_step(&sim, &hist, &x, &wide, &mut SeededNoise::new(6))?;
        // 8192 draws: the RMS's standard error is about 6/√(2·8192) = 0.05; 0.2 is 4 of them.
        let rms = w.centred_rms.unwrap();
        assert!((rms - 6.0).abs() < 0.2, "{rms}");
        let warning = w.out_of_range_warning("wide", &hist).unwrap();
        assert!(warning.contains("a wide predictive"), "{warning}");
        assert!(!warning.contains("diverged?"), "{warning}");
        // An old results file without the RMS keeps the cautious wording.
        let old = ModelScores {
            centred_rms: None,
            ..w
        };
        assert!(old
            .out_of_range_warning("old", &hist)
            .unwrap()
            .contains("diverged?"));
        Ok(())
    }
}
