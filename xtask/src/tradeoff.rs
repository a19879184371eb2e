//! `cargo xtask sampler-tradeoff`: the command line around
//! [`ddssm_train::experiment::sampler_tradeoff`] on a finished `bimodal-experiment` folder
//! (`config.toml`, `ddssm.safetensors`): regenerates the validation split from the config's seed,
//! compares every sampler, prints the table and writes `sampler-tradeoff.{json,md}` into the
//! folder.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use serde_json::json;

use ddssm_train::experiment::sampler_tradeoff_of_run;

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

/// Runs the comparison; prints a table and writes `sampler-tradeoff.{json,md}` into the run
/// folder (and says so).
pub fn run(args: &Args) -> Result<()> {
    let (sequences, rows) =
        sampler_tradeoff_of_run(&args.run, args.sequences, args.samples, &args.device)?;
    let checkpoint = args.run.join("ddssm.safetensors");
    let mut table = String::from(
        "| sampler | network calls | jsd_exact | paired difference to ancestral | samples/s |\n\
         |---|---:|---|---|---:|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} |\n",
            r.sampler,
            r.network_calls,
            r.jsd_exact,
            r.paired_difference_to_ancestral
                .map_or("–".into(), |d| d.to_string()),
            r.samples_per_second
        ));
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
