//! `cargo xtask compare`: the ablation and seed tables of finished `bimodal-experiment` folders
//! (`ddssm_train::experiment::comparison_tables`).
//! Each folder's `results.json` (and `diagnosis.json`, when `cargo xtask diagnose` ran on it)
//! gives one row: what its DDSSM run changes against the paper's (every differing setting, seeds
//! aside), its seed, `jsd_exact`, the predictive's within-mode width, its centring and the
//! encoder's (where the diagnosis has them), −ELBO, −IWAE and the exact −log p(x). Rows with the same changes are then pooled over their seeds (mean ± standard error
//! across seeds, the worst seed), and each change is paired with the paper's configuration on the
//! seeds both ran.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ddssm_train::experiment::{comparison_tables, FinishedRun};

/// Prints the tables of `runs` ([`comparison_tables`]) and writes them to `out` when given.
pub fn run(runs: &[PathBuf], out: Option<&PathBuf>) -> Result<()> {
    anyhow::ensure!(!runs.is_empty(), "give at least one run folder");
    let rows: Vec<FinishedRun> = runs
        .iter()
        .map(|p| FinishedRun::read(p))
        .collect::<Result<_, _>>()?;
    let text = comparison_tables(&rows);
    if let Some(path) = out {
        ddssm_model::checkpoint::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}
