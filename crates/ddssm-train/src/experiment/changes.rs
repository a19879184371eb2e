//! Ablations: what an experiment config changes against the paper's, and runs pooled over their
//! seeds and paired with the paper's configuration on shared seeds.

use std::collections::BTreeMap;

use ddssm_eval::MeanSem;
use serde_json::Value;

use super::ExperimentConfig;
use crate::{Error, Result};

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::State(e.to_string()))
}

/// Every leaf of `a` that differs from `b`, as `path = value`.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                differences(
                    &sub,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path} = {a}")),
    }
}

impl ExperimentConfig {
    /// What this experiment's DDSSM run, data and evaluation change against the paper's, every
    /// differing setting as `path = value` (seeds aside; "paper" when nothing): the row label of
    /// an ablation table.
    pub fn ddssm_changes(&self) -> Result<String> {
        let paper = ExperimentConfig::paper();
        let mut out = Vec::new();
        differences(
            "ddssm",
            &to_json(&self.ddssm)?,
            &to_json(&paper.ddssm)?,
            &mut out,
        );
        out.retain(|d| !d.starts_with("ddssm.train.seed "));
        for (path, ours, theirs) in [
            ("data", to_json(&self.data)?, to_json(&paper.data)?),
            (
                "evaluation",
                to_json(&self.evaluation)?,
                to_json(&paper.evaluation)?,
            ),
        ] {
            differences(path, &ours, &theirs, &mut out);
        }
        Ok(if out.is_empty() {
            "paper".into()
        } else {
            out.join(", ")
        })
    }
}

/// One finished run of an ablation: its label ([`ExperimentConfig::ddssm_changes`]), seed and
/// DDSSM scores.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationRun {
    /// What the run changes against the paper ("paper" for none).
    pub changes: String,
    /// Its seed.
    pub seed: u64,
    /// Its test `jsd_exact` (mean over the test sequences).
    pub jsd_exact: f64,
    /// Its test negative ELBO, when scored.
    pub negative_elbo: Option<f64>,
}

/// The runs of one label pooled over their seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedPool {
    /// The label.
    pub changes: String,
    /// Seeds, ascending, with each seed's `jsd_exact`.
    pub jsd_exact: Vec<(u64, f64)>,
    /// `jsd_exact`, mean ± SE across seeds.
    pub pooled: MeanSem,
    /// The worst seed's `jsd_exact`.
    pub worst: f64,
    /// The negative ELBO, mean ± SE across the seeds that have one.
    pub negative_elbo: Option<MeanSem>,
    /// `jsd_exact` minus the paper configuration's on each seed both ran (empty for "paper").
    pub paired_with_paper: Vec<(u64, f64)>,
    /// Seeds with more than one run under this label (reruns): only the first given is pooled,
    /// so that a rerun never counts as another seed.
    pub reruns: Vec<u64>,
}

/// Pools `runs` by label (labels in order), each over its seeds (one run per seed: the first given;
/// later runs of a seed are named in [`SeedPool::reruns`]), and pairs each label with the label
/// "paper" on shared seeds.
pub fn pool_over_seeds(runs: &[AblationRun]) -> Vec<SeedPool> {
    // One run per label and seed, the first given; the others are reruns.
    let mut groups: BTreeMap<&str, Vec<&AblationRun>> = BTreeMap::new();
    let mut reruns: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in runs {
        let g = groups.entry(r.changes.as_str()).or_default();
        if g.iter().any(|seen| seen.seed == r.seed) {
            reruns.entry(r.changes.as_str()).or_default().push(r.seed);
        } else {
            g.push(r);
        }
    }
    let paper: BTreeMap<u64, f64> = groups
        .get("paper")
        .map(|g| g.iter().map(|r| (r.seed, r.jsd_exact)).collect())
        .unwrap_or_default();
    groups
        .into_iter()
        .map(|(changes, mut g)| {
            g.sort_by_key(|r| r.seed);
            let mut reruns = reruns.remove(changes).unwrap_or_default();
            reruns.sort_unstable();
            reruns.dedup();
            let jsd: Vec<f64> = g.iter().map(|r| r.jsd_exact).collect();
            let elbo: Vec<f64> = g.iter().filter_map(|r| r.negative_elbo).collect();
            SeedPool {
                changes: changes.to_string(),
                jsd_exact: g.iter().map(|r| (r.seed, r.jsd_exact)).collect(),
                pooled: MeanSem::of(&jsd),
                worst: jsd.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                negative_elbo: (!elbo.is_empty()).then(|| MeanSem::of(&elbo)),
                paired_with_paper: if changes == "paper" {
                    Vec::new()
                } else {
                    g.iter()
                        .filter_map(|r| paper.get(&r.seed).map(|p| (r.seed, r.jsd_exact - p)))
                        .collect()
                },
                reruns,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds are not changes; every other differing setting is listed, with its value.
    #[test]
    fn changes_list_every_differing_setting_but_the_seed() -> Result<()> {
        let mut cfg = ExperimentConfig::paper();
        cfg.seed = 4;
        cfg.ddssm.train.seed = 4;
        assert_eq!(cfg.ddssm_changes()?, "paper");
        cfg.ddssm.train.lambda.lambda_end = 0.5;
        cfg.evaluation.samples = 64;
        let c = cfg.ddssm_changes()?;
        assert!(c.contains("ddssm.train.lambda.lambda_end = 0.5"), "{c}");
        assert!(c.contains("evaluation.samples = 64"), "{c}");
        Ok(())
    }

    /// Runs pool per label over seeds; a change pairs with the paper only on shared seeds.
    #[test]
    fn runs_pool_over_seeds_and_pair_on_shared_seeds() {
        let run = |changes: &str, seed, jsd, elbo| AblationRun {
            changes: changes.into(),
            seed,
            jsd_exact: jsd,
            negative_elbo: elbo,
        };
        let pools = pool_over_seeds(&[
            run("paper", 1, 0.15, Some(39.0)),
            run("paper", 0, 0.17, Some(41.0)),
            run("x = 1", 0, 0.12, None),
            run("x = 1", 2, 0.10, None),
        ]);
        assert_eq!(pools[0].changes, "paper");
        assert_eq!(pools[0].jsd_exact, vec![(0, 0.17), (1, 0.15)]);
        assert!((pools[0].pooled.mean - 0.16).abs() < 1e-12 && pools[0].worst == 0.17);
        assert!(pools[0].paired_with_paper.is_empty());
        assert_eq!(pools[1].paired_with_paper.len(), 1);
        assert!((pools[1].paired_with_paper[0].1 + 0.05).abs() < 1e-12);
        assert!(pools[1].negative_elbo.is_none());
        assert!(pools.iter().all(|p| p.reruns.is_empty()));
    }

    /// A rerun of a seed under the same label is not another seed: the first run given is pooled,
    /// and the rerun is named.
    #[test]
    fn a_rerun_of_a_seed_is_left_out_and_named() {
        let run = |seed, jsd| AblationRun {
            changes: "x = 1".into(),
            seed,
            jsd_exact: jsd,
            negative_elbo: None,
        };
        let pools = pool_over_seeds(&[run(0, 0.12), run(1, 0.10), run(0, 0.30), run(0, 0.31)]);
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].jsd_exact, vec![(0, 0.12), (1, 0.10)]);
        assert!((pools[0].pooled.mean - 0.11).abs() < 1e-12 && pools[0].worst == 0.12);
        assert_eq!(pools[0].reruns, vec![0]);
    }
}
