//! Accuracy against cost of the diffusion samplers on a trained DDSSM (issue 8): every sampler
//! draws the one-step predictive of the same validation sequences with the same noise stream,
//! scored by `jsd_exact` per sequence; each few-step sampler is compared with the ancestral one
//! (all K steps, the model the ELBO bounds) by the paired per-sequence difference, mean ± SE.
//! "No measurable loss" means that difference is below 2 SE (or below zero).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;

use ddssm_diffusion::{ReverseVariance, Sampler};
use ddssm_eval::MeanSem;
use ddssm_model::{Model, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use super::{invalid, validation_scores, ExperimentConfig, RunFolder, Splits};
use crate::{Error, Result};

/// One sampler's row of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplerRow {
    /// Its name (`ancestral`, `ddim-20`, …).
    pub sampler: String,
    /// The sampler.
    pub config: Sampler,
    /// Denoiser calls per draw.
    pub network_calls: usize,
    /// One-step `jsd_exact` over the validation sequences.
    pub jsd_exact: MeanSem,
    /// Mean ± SE of the per-sequence difference to the ancestral sampler (None for it).
    pub paired_difference_to_ancestral: Option<MeanSem>,
    /// Draws per second.
    pub samples_per_second: f64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The samplers compared: the ancestral reference, then few-step ones with fewer levels than the
/// chain's `k`.
fn samplers(k: usize) -> Vec<(String, Sampler)> {
    let mut out = vec![Sampler::Ancestral {
        variance: ReverseVariance::Beta,
    }];
    out.extend([5, 10, 20, 50].map(|steps| Sampler::Ddim { steps }));
    out.extend([5, 10, 20].map(|steps| Sampler::DpmSolver2M { steps }));
    out.extend([5, 10].map(|steps| Sampler::EdmHeun { steps }));
    let mut out: Vec<(String, Sampler)> = out.into_iter().map(|s| (s.to_string(), s)).collect();
    out.retain(|(_, s)| match *s {
        Sampler::Ancestral { .. } => true,
        Sampler::Ddim { steps } | Sampler::DpmSolver2M { steps } | Sampler::EdmHeun { steps } => {
            steps < k
        }
    });
    out
}

/// Validation sequences [`sampler_tradeoff_of_run`] scores when not told (fewer if the run
/// holds fewer).
pub const TRADEOFF_SEQUENCES: usize = 64;

/// [`sampler_tradeoff`] on the DDSSM of the finished experiment folder `run` (`config.toml`,
/// `ddssm.safetensors`, [`RunFolder`]) on `device`: the validation split regenerated from the
/// config's seed, `sequences` of it (None: up to [`TRADEOFF_SEQUENCES`]; else in
/// `1 ..= data.validation`) with `samples` draws each (at least 2). Returns the sequences scored
/// and the rows.
pub fn sampler_tradeoff_of_run(
    run: &Path,
    sequences: Option<usize>,
    samples: usize,
    device: &Device,
) -> Result<(usize, Vec<SamplerRow>)> {
    let mut folder = RunFolder::open(run, device)?;
    let mut cfg = folder.config.clone();
    let available = cfg.data.validation;
    let sequences = sequences.unwrap_or(TRADEOFF_SEQUENCES.min(available));
    if sequences == 0 || sequences > available {
        return Err(invalid(
            "sequences",
            sequences,
            &format!("1 ..= {available} (the run's data.validation)"),
        ));
    }
    if samples < 2 {
        return Err(invalid("samples", samples, "at least 2"));
    }
    cfg.evaluation.validation_sequences = sequences;
    cfg.evaluation.validation_samples = samples;
    let mut model = folder.take("ddssm", run)?;
    let data = Splits::new(&cfg, device)?;
    let rows = sampler_tradeoff(&cfg, &mut model, &data)
        .map_err(|e| Error::State(format!("{}: {e}", run.join("ddssm.safetensors").display())))?;
    Ok((sequences, rows))
}

/// Compares every sampler on `model` (a diffusion model; its sampler is switched in turn and left
/// at the last one) over `data.validation` with `cfg.evaluation`'s validation sample count.
pub fn sampler_tradeoff(
    cfg: &ExperimentConfig,
    model: &mut Model,
    data: &Splits,
) -> Result<Vec<SamplerRow>> {
    let schedule = match &model.config().transition {
        TransitionConfig::Diffusion(d) => d.schedule.build().map_err(ddssm_model::Error::from)?,
        TransitionConfig::Gaussian(_) => {
            return Err(Error::State("not a diffusion model".into()));
        }
    };
    let draws = data.validation.n * cfg.evaluation.validation_samples;
    let mut rows: Vec<SamplerRow> = Vec::new();
    let mut reference: Option<Vec<f64>> = None;
    for (name, sampler) in samplers(schedule.num_steps()) {
        model.set_sampler(sampler)?;
        let mut noise = SeededNoise::new(cfg.seed).fork("sampler-tradeoff");
        let began = Instant::now();
        let scores = validation_scores(cfg, model, &data.validation, &mut noise)?;
        let seconds = began.elapsed().as_secs_f64();
        let per = scores.per_sequence_jsd_exact;
        let diff = reference.as_ref().map(|r| {
            let d: Vec<f64> = per.iter().zip(r).map(|(a, b)| a - b).collect();
            MeanSem::of(&d)
        });
        if reference.is_none() {
            reference = Some(per);
        }
        let row = SamplerRow {
            sampler: name,
            config: sampler,
            network_calls: sampler.network_calls(&schedule),
            jsd_exact: scores.jsd_exact,
            paired_difference_to_ancestral: diff,
            samples_per_second: draws as f64 / seconds,
            seconds,
        };
        tracing::info!(
            "{}: {} calls, jsd_exact {}, {:.0} samples/s",
            row.sampler,
            row.network_calls,
            row.jsd_exact,
            row.samples_per_second
        );
        rows.push(row);
    }
    Ok(rows)
}
