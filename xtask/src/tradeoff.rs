//! `cargo xtask sampler-tradeoff`: accuracy against cost of the diffusion samplers on a trained
//! DDSSM (issue 8: "show the JSD-vs-steps trade-off and pick a default that loses no measurable
//! accuracy").
//!
//! It reads a finished `bimodal-experiment` folder (`config.toml`, `ddssm.safetensors`),
//! regenerates the validation split from the config's seed, and for every sampler draws the
//! one-step predictive of the first `--sequences` validation sequences with the same noise
//! stream, scoring `jsd_exact` per sequence. Each few-step sampler is compared with the
//! ancestral one (all K steps, the model the ELBO bounds) by the paired per-sequence difference,
//! mean ± SE; "no measurable loss" means that difference is below 2 SE (or below zero).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_diffusion::{ReverseVariance, Sampler};
use ddssm_eval::MeanSem;
use ddssm_model::Model;
use ddssm_tensor_ops::SeededNoise;
use serde_json::{json, Value};

use ddssm_train::experiment::{validation_scores, ExperimentConfig, Splits};

/// Validation sequences scored when `--sequences` is not given (fewer if the run holds fewer).
pub const DEFAULT_SEQUENCES: usize = 64;

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// The experiment folder.
    pub run: PathBuf,
    /// Validation sequences scored (None: up to 64, at most what the run's data holds).
    pub sequences: Option<usize>,
    /// Draws per sequence.
    pub samples: usize,
    /// Device.
    pub device: Device,
}

/// The samplers compared: the ancestral reference, then few-step ones with fewer levels than the
/// chain's `k`.
fn samplers(k: usize) -> Vec<(String, Sampler)> {
    let mut out = vec![(
        "ancestral".to_string(),
        Sampler::Ancestral {
            variance: ReverseVariance::Beta,
        },
    )];
    for steps in [5, 10, 20, 50] {
        out.push((format!("ddim-{steps}"), Sampler::Ddim { steps }));
    }
    for steps in [5, 10, 20] {
        out.push((
            format!("dpm-solver++2m-{steps}"),
            Sampler::DpmSolver2M { steps },
        ));
    }
    for steps in [5, 10] {
        out.push((format!("edm-heun-{steps}"), Sampler::EdmHeun { steps }));
    }
    out.retain(|(_, s)| match *s {
        Sampler::Ancestral { .. } => true,
        Sampler::Ddim { steps } | Sampler::DpmSolver2M { steps } | Sampler::EdmHeun { steps } => {
            steps < k
        }
    });
    out
}

/// Runs the comparison; prints a table and writes `sampler-tradeoff.{json,md}` into the run
/// folder (and says so).
pub fn run(args: &Args) -> Result<()> {
    let config_path = args.run.join("config.toml");
    let mut cfg: ExperimentConfig = crate::read_toml(&config_path, "experiment config")?;
    let sequences = args
        .sequences
        .unwrap_or(DEFAULT_SEQUENCES.min(cfg.data.validation));
    anyhow::ensure!(
        sequences >= 1 && sequences <= cfg.data.validation,
        "--sequences {sequences}: expected 1 ..= {} (the run's data.validation)",
        cfg.data.validation
    );
    anyhow::ensure!(args.samples >= 2, "--samples: expected at least 2");
    cfg.evaluation.validation_sequences = sequences;
    cfg.evaluation.validation_samples = args.samples;
    let checkpoint = args.run.join("ddssm.safetensors");
    let mut model = Model::load(&checkpoint, &args.device)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let data = Splits::new(&cfg, &args.device)?;
    let schedule = match &model.config().transition {
        ddssm_model::TransitionConfig::Diffusion(d) => d.schedule.build()?,
        ddssm_model::TransitionConfig::Gaussian(_) => {
            anyhow::bail!("{}: not a diffusion model", checkpoint.display())
        }
    };
    let mut rows: Vec<Value> = Vec::new();
    let mut reference: Option<Vec<f64>> = None;
    let mut table = String::from(
        "| sampler | network calls | jsd_exact | paired difference to ancestral | samples/s |\n\
         |---|---:|---|---|---:|\n",
    );
    for (name, sampler) in samplers(schedule.num_steps()) {
        model.set_sampler(sampler)?;
        let mut noise = SeededNoise::new(cfg.seed).fork("sampler-tradeoff");
        let began = Instant::now();
        let scores = validation_scores(&cfg, &model, &data.validation, &mut noise)?;
        let seconds = began.elapsed().as_secs_f64();
        let per = scores.per_sequence_jsd_exact.clone();
        let diff = reference.as_ref().map(|r| {
            let d: Vec<f64> = per.iter().zip(r).map(|(a, b)| a - b).collect();
            MeanSem::of(&d)
        });
        if reference.is_none() {
            reference = Some(per);
        }
        let rate = (sequences * args.samples) as f64 / seconds;
        let calls = sampler.network_calls(&schedule);
        tracing::info!(
            "{name}: {calls} calls, jsd_exact {}, {rate:.0} samples/s",
            scores.jsd_exact
        );
        table.push_str(&format!(
            "| {name} | {calls} | {} | {} | {rate:.0} |\n",
            scores.jsd_exact,
            diff.map_or("–".into(), |d| d.to_string())
        ));
        rows.push(json!({
            "sampler": name,
            "config": sampler,
            "network_calls": calls,
            "jsd_exact": scores.jsd_exact,
            "paired_difference_to_ancestral": diff,
            "samples_per_second": rate,
            "seconds": seconds,
        }));
    }
    let out = json!({
        "run": args.run,
        "sequences": sequences,
        "samples": args.samples,
        "samplers": rows,
    });
    let header = format!(
        "Sampler trade-off on {} ({} validation sequences × {} samples; \
         paired difference: mean ± SE over sequences, same noise stream)\n\n",
        checkpoint.display(),
        sequences,
        args.samples
    );
    let (json_path, md_path) = (
        args.run.join("sampler-tradeoff.json"),
        args.run.join("sampler-tradeoff.md"),
    );
    ddssm_model::checkpoint::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&out)?.as_bytes(),
    )?;
    ddssm_model::checkpoint::write_atomic(&md_path, format!("{header}{table}").as_bytes())?;
    println!("{header}{table}");
    tracing::info!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}
