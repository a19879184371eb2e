//! A finished `bimodal-experiment` folder read back: the scores of its DDSSM run, labelled by
//! what its configuration changes against the paper's, for ablation and seed tables.

use std::path::Path;

use ddssm_eval::MeanSem;
use serde_json::Value;

use super::{pool_over_seeds, AblationRun, Results};
use crate::{Error, Result};

/// One finished run: its `results.json` and, where `cargo xtask diagnose` ran on it, its
/// `diagnosis.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRun {
    /// The folder, as given.
    pub folder: String,
    /// The experiment's seed.
    pub seed: u64,
    /// What the run changes against the paper ([`super::ExperimentConfig::ddssm_changes`]), and
    /// "warm start from FOLDER" where its DDSSM started from the checkpoint of another run (in
    /// FOLDER): runs from different starting points are never pooled as seeds of one change.
    pub changes: String,
    /// The DDSSM's one-step `jsd_exact` over the test sequences.
    pub jsd_exact: MeanSem,
    /// The DDSSM's −ELBO per test sequence, where scored.
    pub negative_elbo: Option<MeanSem>,
    /// The predictive's within-mode width and the exact one (from the diagnosis).
    pub width: Option<(f64, f64)>,
    /// The largest IWAE `k` of the diagnosis with −IWAE-k's mean and SE.
    pub iwae: Option<(u64, f64, f64)>,
    /// The predictive's centring and its standard error (from the diagnosis; the exact
    /// predictive's is 1, an observation-copying one's 0: `ddssm_eval::diagnosis`).
    pub centring: Option<(f64, f64)>,
    /// The encoder's centring and its standard error, where the diagnosis has it (the
    /// diagnoses of before 2026-12-03 do not).
    pub encoder_centring: Option<(f64, f64)>,
    /// How far ahead the encoder reads: its gain on `x_{t+1}` over its gain on `x_t`, where the
    /// diagnosis has it (those of before 2026-12-05 do not; `ddssm_eval::encoder_lookahead`).
    pub lookahead: Option<f64>,
    /// The exact −log p(x) per test sequence (mean).
    pub exact_nll: f64,
}

/// The folder of the checkpoint a run's DDSSM was warm-started from, if it was: from
/// `Results::ddssm_init`, or for results written before that field (commit a0980de) from the
/// warm start's warning.
fn warm_start(r: &Results) -> Option<String> {
    let path = r.ddssm_init.clone().or_else(|| {
        r.warnings.iter().find_map(|w| {
            let rest = w.strip_prefix(super::run::WARM_START)?.trim_start();
            Some(rest.split(" (not seed").next().unwrap_or(rest).to_string())
        })
    })?;
    let p = Path::new(&path);
    Some(
        p.parent()
            .and_then(|d| d.file_name())
            .map_or(path.clone(), |f| f.to_string_lossy().into_owned()),
    )
}

impl FinishedRun {
    /// Reads `folder/results.json` (required: an error names the file when it is missing, not a
    /// bimodal-experiment result, or has no DDSSM scores) and `folder/diagnosis.json` (optional).
    pub fn read(folder: &Path) -> Result<Self> {
        let path = folder.join("results.json");
        let r = Results::read(folder)?;
        let ddssm = r
            .models
            .get("ddssm")
            .ok_or_else(|| Error::State(format!("{}: no DDSSM scores", path.display())))?;
        let diagnosis: Option<Value> = std::fs::read_to_string(folder.join("diagnosis.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let d = diagnosis.as_ref().map(|v| &v["models"]["ddssm"]);
        let width =
            d.and_then(|d| Some((d["predictive"].as_f64()?, d["exact_predictive"].as_f64()?)));
        let pair =
            |value: &str, se: &str| d.and_then(|d| Some((d[value].as_f64()?, d[se].as_f64()?)));
        let centring = pair("centring", "centring_se");
        let encoder_centring = pair("encoder_centring", "encoder_centring_se");
        let iwae = diagnosis.as_ref().and_then(|v| {
            let last = v["likelihood"]["ddssm"]["negative_iwae"]
                .as_array()?
                .last()?;
            Some((
                last[0].as_u64()?,
                last[1]["mean"].as_f64()?,
                last[1]["sem"].as_f64()?,
            ))
        });
        let lookahead = diagnosis.as_ref().and_then(|v| {
            let gains = v["lookahead"]["ddssm"]["gains"].as_array()?;
            Some(gains.get(1)?.as_f64()? / gains.first()?.as_f64()?)
        });
        Ok(Self {
            folder: folder.display().to_string(),
            seed: r.config.seed,
            changes: match warm_start(&r) {
                Some(from) => format!("{}; warm start from {from}", r.config.ddssm_changes()?),
                None => r.config.ddssm_changes()?,
            },
            jsd_exact: ddssm.jsd_exact,
            negative_elbo: ddssm.negative_elbo,
            width,
            iwae,
            centring,
            encoder_centring,
            lookahead,
            exact_nll: r.exact_negative_log_likelihood.mean,
        })
    }

    /// Its label, seed and mean scores, for [`super::pool_over_seeds`].
    pub fn ablation_run(&self) -> AblationRun {
        AblationRun {
            changes: self.changes.clone(),
            seed: self.seed,
            jsd_exact: self.jsd_exact.mean,
            negative_elbo: self.negative_elbo.map(|e| e.mean),
        }
    }
}

/// `mean ± SE` across `seeds` seeds; one seed has no spread, and says so instead of `± 0`.
fn across(m: MeanSem, seeds: usize, digits: usize) -> String {
    if seeds < 2 {
        format!("{:.digits$} (one seed: no spread)", m.mean)
    } else {
        format!("{:.digits$} ± {:.digits$}", m.mean, m.sem)
    }
}

/// The ablation and seed tables of finished runs, in markdown: one row per run (its changes
/// against the paper's config, seed, `jsd_exact`, the predictive's width, its centring and the
/// encoder's, the encoder's lookahead, −ELBO, −IWAE, the exact −log p(x)), then the runs pooled over seeds by change ([`pool_over_seeds`]: mean ± SE across
/// seeds, the worst seed, the paired difference to the paper's config on shared seeds).
pub fn comparison_tables(rows: &[FinishedRun]) -> String {
    let mut s = String::from(
        "| run | seed | DDSSM changes against the paper's | jsd_exact | mode width (exact) | \
         centring (exact 1) | encoder centring (exact 1) | encoder lookahead x_(t+1)/x_t | \
         −ELBO | −IWAE-k | exact −log p(x) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let centring =
        |c: Option<(f64, f64)>| c.map_or("–".into(), |(v, se)| format!("{v:.2} ± {se:.2}"));
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |\n",
            r.folder,
            r.seed,
            r.changes,
            r.jsd_exact,
            r.width
                .map_or("–".into(), |(w, e)| format!("{w:.3} ({e:.3})")),
            centring(r.centring),
            centring(r.encoder_centring),
            r.lookahead.map_or("–".into(), |l| format!("{l:.3}")),
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
        let reruns = if p.reruns.is_empty() {
            String::new()
        } else {
            format!(
                " (reruns of seeds {:?} left out: the first run of each is pooled)",
                p.reruns
            )
        };
        s.push_str(&format!(
            "| {} | {seeds:?}{reruns} | {} ({}) | {:.4} | {} | {} |\n",
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
    s
}

impl Results {
    /// The `results.json` of a finished experiment folder.
    pub fn read(folder: &Path) -> Result<Self> {
        let path = folder.join("results.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::State(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::State(format!(
                "{}: not a bimodal-experiment results.json ({e})",
                path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed run of record reads back with its diagnosis; a folder without results is an
    /// error naming the file.
    #[test]
    fn a_run_of_record_reads_back_and_a_missing_one_is_named() {
        let runs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results/bimodal/runs");
        let r = FinishedRun::read(&runs.join("paper-s0")).unwrap();
        assert_eq!((r.seed, r.changes.as_str()), (0, "paper"));
        assert!(
            (r.jsd_exact.mean - 0.1747).abs() < 5e-5,
            "{}",
            r.jsd_exact.mean
        );
        assert!(r.width.is_some() && r.iwae.is_some());
        assert_eq!(r.ablation_run().jsd_exact, r.jsd_exact.mean);
        let longer = FinishedRun::read(&runs.join("steps6000-s0")).unwrap();
        assert_eq!(longer.changes, "ddssm.train.steps = 6000");
        // Diagnosed before the centring existed: no centring, and a dash in its column.
        assert!(r.centring.is_none() && r.encoder_centring.is_none());
        let split = FinishedRun::read(&runs.join("split-beta-tilde-clip5-s0")).unwrap();
        let (c, se) = split.centring.unwrap();
        assert!(
            (c - 0.0433).abs() < 5e-5 && (se - 0.0816).abs() < 5e-5,
            "{c} ± {se}"
        );
        let (e, _) = split.encoder_centring.unwrap();
        assert!((e - 0.0124).abs() < 5e-5, "{e}");
        let table = comparison_tables(&[r.clone(), split.clone()]);
        let row = |folder: &str| {
            table
                .lines()
                .find(|l| l.contains(folder))
                .unwrap()
                .to_string()
        };
        assert!(
            row("split-beta-tilde-clip5-s0").contains("| 0.04 ± 0.08 | 0.01 ± "),
            "{table}"
        );
        assert!(row("paper-s0").contains("| – | – |"), "{table}");
        // A diagnosis with the encoder's lookahead: the ratio of the gains on x_(t+1) and x_t.
        assert!(split.lookahead.is_none());
        let scratch = tempfile::tempdir().unwrap();
        let from = runs.join("split-beta-tilde-clip5-s0");
        std::fs::copy(
            from.join("results.json"),
            scratch.path().join("results.json"),
        )
        .unwrap();
        let mut d: Value =
            serde_json::from_str(&std::fs::read_to_string(from.join("diagnosis.json")).unwrap())
                .unwrap();
        d["lookahead"] = serde_json::json!({ "ddssm": { "gains": [0.8, 0.2, 0.01, 0.0] } });
        std::fs::write(scratch.path().join("diagnosis.json"), d.to_string()).unwrap();
        let probed = FinishedRun::read(scratch.path()).unwrap();
        assert_eq!(probed.lookahead, Some(0.25));
        assert!(comparison_tables(&[probed]).contains("| 0.250 |"));
        let undiagnosed = FinishedRun::read(&runs.join("paper-s1")).unwrap();
        assert!(undiagnosed.width.is_none() && undiagnosed.iwae.is_none());
        assert!(undiagnosed.centring.is_none());
        let err = FinishedRun::read(&runs.join("no-such-run")).unwrap_err();
        assert!(err.to_string().contains("results.json"), "{err}");
    }

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
