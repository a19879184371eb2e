//! `cargo xtask compare`: the ablation and seed tables of finished `bimodal-experiment` folders.
//! Each folder's `results.json` (and `diagnosis.json`, when `cargo xtask diagnose` ran on it)
//! gives one row: what its DDSSM run changes against the paper's (every differing setting, seeds
//! aside), its seed, `jsd_exact`, the predictive's within-mode width, −ELBO, −IWAE and the exact
//! −log p(x). Rows with the same changes are then pooled over their seeds (mean ± standard error
//! across seeds, the worst seed), and each change is paired with the paper's configuration on the
//! seeds both ran.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ddssm_eval::MeanSem;
use ddssm_train::experiment::{pool_over_seeds, AblationRun, Results};
use serde_json::Value;

/// One finished run.
struct Row {
    folder: String,
    seed: u64,
    changes: String,
    jsd_exact: MeanSem,
    negative_elbo: Option<MeanSem>,
    width: Option<(f64, f64)>,
    iwae: Option<(u64, f64, f64)>,
    exact_nll: f64,
}

fn read_row(folder: &Path) -> Result<Row> {
    let path = folder.join("results.json");
    let r: Results = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{}: not a bimodal-experiment results.json", path.display()))?;
    let ddssm = r
        .models
        .get("ddssm")
        .with_context(|| format!("{}: no DDSSM scores", path.display()))?;
    let diagnosis: Option<Value> = std::fs::read_to_string(folder.join("diagnosis.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let d = diagnosis.as_ref().map(|v| &v["models"]["ddssm"]);
    let width = d.and_then(|d| Some((d["predictive"].as_f64()?, d["exact_predictive"].as_f64()?)));
    let iwae = diagnosis.as_ref().and_then(|v| {
        let l = &v["likelihood"]["ddssm"]["negative_iwae"];
        let last = l.as_array()?.last()?;
        Some((
            last[0].as_u64()?,
            last[1]["mean"].as_f64()?,
            last[1]["sem"].as_f64()?,
        ))
    });
    Ok(Row {
        folder: folder.display().to_string(),
        seed: r.config.seed,
        changes: r.config.ddssm_changes()?,
        jsd_exact: ddssm.jsd_exact,
        negative_elbo: ddssm.negative_elbo,
        width,
        iwae,
        exact_nll: r.exact_negative_log_likelihood.mean,
    })
}

/// The tables of the folders `runs`, in markdown.
/// `mean ± SE` across `seeds` seeds; one seed has no spread, and says so instead of `± 0`.
fn across(m: MeanSem, seeds: usize, digits: usize) -> String {
    if seeds < 2 {
        format!("{:.digits$} (one seed: no spread)", m.mean)
    } else {
        format!("{:.digits$} ± {:.digits$}", m.mean, m.sem)
    }
}

pub fn tables(runs: &[PathBuf]) -> Result<String> {
    let rows: Vec<Row> = runs.iter().map(|p| read_row(p)).collect::<Result<_>>()?;
    let mut s = String::from(
        "| run | seed | DDSSM changes against the paper's | jsd_exact | mode width (exact) | \
         −ELBO | −IWAE-k | exact −log p(x) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} |\n",
            r.folder,
            r.seed,
            r.changes,
            r.jsd_exact,
            r.width
                .map_or("–".into(), |(w, e)| format!("{w:.3} ({e:.3})")),
            r.negative_elbo
                .map_or("–".into(), |e| format!("{:.2} ± {:.2}", e.mean, e.sem)),
            r.iwae.map_or("–".into(), |(k, m, se)| format!(
                "k = {k}: {m:.2} ± {se:.2}"
            )),
            r.exact_nll
        ));
    }
    s.push_str(
        "\n| DDSSM changes | seeds | jsd_exact, mean ± SE across seeds | worst seed | \
         −ELBO across seeds | paired with the paper's config (same seeds): Δ jsd_exact |\n\
         |---|---|---|---|---|---|\n",
    );
    let runs: Vec<AblationRun> = rows
        .iter()
        .map(|r| AblationRun {
            changes: r.changes.clone(),
            seed: r.seed,
            jsd_exact: r.jsd_exact.mean,
            negative_elbo: r.negative_elbo.map(|e| e.mean),
        })
        .collect();
    for p in pool_over_seeds(&runs) {
        let seeds: Vec<u64> = p.jsd_exact.iter().map(|(s, _)| *s).collect();
        let values: Vec<String> = p.jsd_exact.iter().map(|(_, v)| format!("{v:.4}")).collect();
        let paired: Vec<String> = p
            .paired_with_paper
            .iter()
            .map(|(seed, d)| format!("seed {seed}: {d:+.4}"))
            .collect();
        s.push_str(&format!(
            "| {} | {seeds:?} | {} ({}) | {:.4} | {} | {} |\n",
            p.changes,
            across(p.pooled, seeds.len(), 4),
            values.join(", "),
            p.worst,
            p.negative_elbo
                .map_or("–".into(), |e| across(e, seeds.len(), 2)),
            if paired.is_empty() {
                "–".into()
            } else {
                paired.join("; ")
            }
        ));
    }
    Ok(s)
}

/// Prints the tables of `runs` and writes them to `out` when given.
pub fn run(runs: &[PathBuf], out: Option<&PathBuf>) -> Result<()> {
    anyhow::ensure!(!runs.is_empty(), "give at least one run folder");
    let text = tables(runs)?;
    if let Some(path) = out {
        ddssm_model::checkpoint::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_prints_no_spread() {
        let m = MeanSem {
            mean: 0.15571,
            sem: 0.0,
            n: 1,
        };
        assert_eq!(across(m, 1, 4), "0.1557 (one seed: no spread)");
        let m = MeanSem {
            mean: 0.1667,
            sem: 0.0096,
            n: 3,
        };
        assert_eq!(across(m, 3, 4), "0.1667 ± 0.0096");
    }
}
