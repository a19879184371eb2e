//! `cargo xtask diagnose`: the command line around [`ddssm_train::experiment::diagnose`] on a
//! finished `bimodal-experiment` folder (`config.toml` and its checkpoints): regenerates the test
//! split from the config's seed, diagnoses each trained model (widths of the one-step predictive's
//! parts, the likelihood split), prints the report and writes `diagnosis.{json,md}` into the
//! folder (both made by [`ddssm_train::experiment::Diagnosis`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_model::Model;
use ddssm_train::experiment::{diagnose, DiagnosisOptions, RunFolder, Splits};

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// The experiment folder.
    pub run: PathBuf,
    /// Test sequences used (at most what the run holds).
    pub sequences: usize,
    /// Draws of each part per sequence.
    pub draws: usize,
    /// Test sequences of the likelihood split (0: none).
    pub iwae_sequences: usize,
    /// Importance weights per sequence (IWAE-k for k = 1, 16 and this).
    pub iwae_draws: usize,
    /// Device.
    pub device: Device,
}

/// Runs the diagnosis of every model the folder holds; prints the table and writes
/// `diagnosis.{json,md}` into the folder.
pub fn run(args: &Args) -> Result<()> {
    let folder = RunFolder::open(&args.run, &args.device)?;
    let cfg = &folder.config;
    let data = Splits::new(cfg, &args.device)?;
    let models: Vec<(&str, &Model)> = folder.models.iter().map(|(n, m)| (*n, m)).collect();
    let found = diagnose(
        cfg,
        &data,
        &models,
        &DiagnosisOptions {
            sequences: args.sequences,
            draws: args.draws,
            iwae_sequences: args.iwae_sequences,
            iwae_draws: args.iwae_draws,
        },
    )
    .with_context(|| args.run.display().to_string())?;
    let (json_path, md_path) = found.write(&args.run)?;
    println!("{}", found.markdown(&args.run.display().to_string()));
    tracing::info!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}
