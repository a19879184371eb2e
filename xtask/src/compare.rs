//! `cargo xtask compare`: the ablation and seed tables of finished `bimodal-experiment` folders.
//! Each folder's `results.json` (and `diagnosis.json`, when `cargo xtask diagnose` ran on it)
//! gives one row: what its DDSSM run changes against the paper's (every differing setting, seeds
//! aside), its seed, `jsd_exact`, the predictive's within-mode width, −ELBO, −IWAE and the exact
//! −log p(x). Rows with the same changes are then pooled over their seeds (mean ± standard error
//! across seeds, the worst seed), and each change is paired with the paper's configuration on the
//! seeds both ran.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ddssm_eval::MeanSem;
use ddssm_train::experiment::{pool_over_seeds, AblationRun, FinishedRun};

/// `mean ± SE` across `seeds` seeds; one seed has no spread, and says so instead of `± 0`.
fn across(m: MeanSem, seeds: usize, digits: usize) -> String {
    if seeds < 2 {
        format!("{:.digits$} (one seed: no spread)", m.mean)
    } else {
        format!("{:.digits$} ± {:.digits$}", m.mean, m.sem)
    }
}

/// The tables of the folders `runs`, in markdown.
pub fn tables(runs: &[PathBuf]) -> Result<String> {
    let rows: Vec<FinishedRun> = runs
        .iter()
        .map(|p| FinishedRun::read(p))
        .collect::<Result<_, _>>()?;
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
    let runs: Vec<AblationRun> = rows.iter().map(FinishedRun::ablation_run).collect();
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
