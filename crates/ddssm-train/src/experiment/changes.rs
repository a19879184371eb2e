//! Ablation labels: what an experiment config changes against the paper's.

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
        let cfg = self;
        let paper = ExperimentConfig::paper();
        let mut out = Vec::new();
        differences(
            "ddssm",
            &to_json(&cfg.ddssm)?,
            &to_json(&paper.ddssm)?,
            &mut out,
        );
        out.retain(|d| !d.starts_with("ddssm.train.seed "));
        let mut rest = Vec::new();
        differences(
            "data",
            &to_json(&cfg.data)?,
            &to_json(&paper.data)?,
            &mut rest,
        );
        differences(
            "evaluation",
            &to_json(&cfg.evaluation)?,
            &to_json(&paper.evaluation)?,
            &mut rest,
        );
        out.extend(rest);
        Ok(if out.is_empty() {
            "paper".into()
        } else {
            out.join(", ")
        })
    }
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
}
