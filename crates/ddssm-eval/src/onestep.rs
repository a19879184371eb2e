//! Scoring one-step predictive samples on the bimodal walk (Sec. 4), and drawing them from a
//! model in chunks.
//!
//! Samples `x̂_{T}` given `x_{1:T−1}` are centred as `x̂_T − φ·x_{T−1}` and compared, by the
//! histogram JSD of [`JsdHistogram`], with
//! - `jsd_paper`: the mixture `½N(−c, σ_x²) + ½N(c, σ_x²)`, as the paper authors' published
//!   evaluation does, with their histogram convention ([`Tails::Dropped`]: samples outside the
//!   range are dropped);
//! - `jsd_exact`: the exact predictive of the Gaussian-sum filter, on the histogram with two open
//!   tail bins ([`Tails::Open`]), so mass outside the range counts against the model.
//!
//! The share of samples outside the histogram's range is reported with both: above 1 % the
//! `jsd_paper` figure is not to be trusted.
//!
//! Each comes with the estimator's noise floor for the same number of samples (draws from the
//! reference itself), and the CRPS of the samples at the observed `x_T`.

use candle_core::{DType, Tensor};
use ddssm_model::{Batch, Model};
use ddssm_tensor_ops::{GaussianMixture, SeededNoise};
use serde::{Deserialize, Serialize};

use crate::{crps, BimodalRandomWalk, JsdHistogram, Result, Tails};

/// The scores of one sequence's predictive samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequenceScores {
    /// JSD against the paper's two-Gaussian reference.
    pub jsd_paper: f64,
    /// JSD against the exact predictive.
    pub jsd_exact: f64,
    /// Noise floor of `jsd_paper` for this many samples.
    pub floor_paper: f64,
    /// Noise floor of `jsd_exact` for this many samples.
    pub floor_exact: f64,
    /// CRPS at the observed value (original units).
    pub crps: f64,
    /// Share of the centred samples outside the histogram's range.
    pub out_of_range: f64,
}

/// The paper's reference for the centred predictive: `½N(−c, σ_x²) + ½N(c, σ_x²)`.
pub fn paper_reference(sim: &BimodalRandomWalk) -> Result<GaussianMixture> {
    Ok(GaussianMixture::new(
        &[0.5, 0.5],
        &[-sim.step, sim.step],
        &[sim.obs_noise_std, sim.obs_noise_std],
    )?)
}

/// Scores `samples` of `x_T` (original units) for the series whose first `T − 1` values are
/// `prefix` and whose observed next value is `next`. `noise` draws the noise-floor samples.
pub fn score_sequence(
    sim: &BimodalRandomWalk,
    hist: &JsdHistogram,
    prefix: &[f64],
    next: f64,
    samples: &[f64],
    noise: &mut SeededNoise,
) -> Result<SequenceScores> {
    let shift = sim.phi * prefix[prefix.len() - 1];
    let centred: Vec<f64> = samples.iter().map(|x| x - shift).collect();
    let paper = paper_reference(sim)?;
    let exact = sim.exact_predictive(prefix, shift)?.mixture;
    Ok(SequenceScores {
        jsd_paper: hist.sample_jsd(&centred, &paper, Tails::Dropped),
        jsd_exact: hist.sample_jsd(&centred, &exact, Tails::Open),
        floor_paper: hist.noise_floor(&paper, samples.len(), Tails::Dropped, noise),
        floor_exact: hist.noise_floor(&exact, samples.len(), Tails::Open, noise),
        crps: crps(samples, next),
        out_of_range: hist.out_of_range_share(&centred),
    })
}

/// `n` draws of `x_{T'+1}` for each of the `B` series `prefix` (`[B, T', 1]`, original units), from
/// `model` (which applies its own standardisation). Runs
/// at most `max_chains` encoder chains per call. Returns `B` vectors of `n` values.
pub fn model_predictive_samples(
    model: &Model,
    prefix: &Tensor,
    n: usize,
    max_chains: usize,
    noise: &mut SeededNoise,
) -> Result<Vec<Vec<f64>>> {
    model_predictive_samples_with_progress(model, prefix, n, max_chains, noise, &|_| {})
}

/// [`model_predictive_samples`], calling `progress(k)` from the worker threads each time the
/// draws of `k` more series are done (for a progress bar; the draws do not depend on it).
pub fn model_predictive_samples_with_progress(
    model: &Model,
    prefix: &Tensor,
    n: usize,
    max_chains: usize,
    noise: &mut SeededNoise,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Vec<f64>>> {
    let b = prefix.dim(0)?;
    let per_call = (max_chains / n.max(1)).max(1);
    // Chunks run on the worker threads, each with its own noise stream (`map_chunks`).
    ddssm_tensor_ops::map_chunks(b, per_call, noise, |start, len, chunk_noise| {
        let x = prefix.narrow(0, start, len)?;
        let draws = model.one_step_predictive(&Batch::new(x), n, chunk_noise)?; // [n, len, D]
        let rows = draws
            .narrow(2, 0, 1)?
            .squeeze(2)?
            .t()?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?;
        progress(len);
        Ok::<_, crate::Error>(rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use ddssm_model::ModelConfig;

    /// Chunks of one series each, on one worker and on three: the same draws, in the same order,
    /// and a second call continues the stream instead of repeating it.
    #[test]
    fn draws_do_not_depend_on_the_worker_count() -> Result<()> {
        let model = Model::new(&ModelConfig::paper_ddssm(), 0, DType::F32, &Device::Cpu)?;
        let prefix = SeededNoise::new(3).randn((3, 5, 1), DType::F32, &Device::Cpu)?;
        type Draws = Vec<Vec<f64>>;
        let draw = |workers: usize| -> Result<(Draws, Draws)> {
            ddssm_tensor_ops::set_workers(workers);
            let mut noise = SeededNoise::new(8);
            let first = model_predictive_samples(&model, &prefix, 4, 4, &mut noise);
            let second = model_predictive_samples(&model, &prefix, 4, 4, &mut noise);
            ddssm_tensor_ops::set_workers(1);
            Ok((first?, second?))
        };
        let (one, one_again) = draw(1)?;
        let (three, three_again) = draw(3)?;
        assert_eq!(one.len(), 3);
        assert!(one.iter().all(|v| v.len() == 4));
        assert_eq!(one, three);
        assert_eq!(one_again, three_again);
        assert_ne!(one, one_again);
        Ok(())
    }
}
