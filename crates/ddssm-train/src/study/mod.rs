//! The hyperparameter search's library half (App. F.1.1): the names a search space may use and
//! the config fields they set, the check that a space's extreme values give valid runs, the study
//! file (`study.jsonl`: a header line, then one JSON line per finished trial) read back exactly or
//! refused with the line that is wrong, and one trial — train a proposal with [`crate::fit`] and
//! score it on the validation sequences — and the study loop that proposes with TPE, runs and
//! records trials until a count ([`run_study`]), and a whole study from its options
//! ([`run_tpe_study`]). `cargo xtask tune` adds the command line and the report.

mod plan;

pub use plan::{run_tpe_study, StudyOptions, StudyOutcome};

use std::io::Write;
use std::path::Path;

use ddssm_model::{Model, TransitionConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::experiment::{validation_scores, ExperimentConfig, Splits};
use crate::tpe::{Distribution, Params, Space, Tpe};
use crate::{fit, Error, LambdaShape, Metrics, ModelRun, Result, TrainOptions};

fn state(message: String) -> Error {
    Error::State(message)
}

/// A search-space file (e.g. `configs/tune/space.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceFile {
    /// Parameters searched for every model.
    pub params: Space,
    /// Parameters searched for the diffusion model only.
    #[serde(default)]
    pub diffusion_params: Space,
}

/// Reads and checks a search-space file for `model` (`ddssm` or `dkf`): the parameters that
/// apply to it; an error names the file and the model.
pub fn load_space(path: &Path, model: &str) -> Result<Space> {
    let file: SpaceFile = crate::read_toml(path, "search space")?;
    let mut space = file.params;
    if model == "ddssm" {
        space.extend(file.diffusion_params);
    }
    validate_space(&space)
        .map_err(|e| state(format!("{} (--model {model}): {e}", path.display())))?;
    Ok(space)
}

/// The paper's run (Table 3) of `model` (`ddssm`, else the DKF).
pub fn paper_run(model: &str) -> ModelRun {
    let paper = ExperimentConfig::paper();
    if model == "ddssm" {
        paper.ddssm
    } else {
        paper.dkf
    }
}

/// The finished trial with the lowest score (None when every trial failed).
pub fn best_trial(trials: &[Trial]) -> Option<&Trial> {
    trials.iter().filter(|t| t.score.is_some()).min_by(|a, b| {
        a.score
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.score.unwrap_or(f64::INFINITY))
    })
}

/// The ready-to-use experiment config of a study's `best` trial: the paper's experiment with
/// `model`'s training replaced by `base` with the trial's parameters, keeping the paper's steps,
/// validation and checkpoint intervals and seed; validated.
pub fn tuned_experiment(base: &ModelRun, model: &str, best: &Trial) -> Result<ExperimentConfig> {
    let mut tuned = ExperimentConfig::paper();
    let seed = tuned.seed;
    let run = if model == "ddssm" {
        &mut tuned.ddssm
    } else {
        &mut tuned.dkf
    };
    let kept = run.train;
    *run = apply(base, &best.params)?;
    run.train.steps = kept.steps;
    run.train.validate_every = kept.validate_every;
    run.train.checkpoint_every = kept.checkpoint_every;
    run.train.seed = seed;
    tuned.validate()?;
    Ok(tuned)
}

/// Checks that every name of `space` is one of [`KNOWN`] with a valid distribution, and that the
/// space searches something.
pub fn validate_space(space: &Space) -> Result<()> {
    if space.is_empty() {
        return Err(state(format!(
            "no parameter to search: every trial would be the same run (to score one \
             configuration, give a parameter a single categorical choice); allowed names: {}",
            KNOWN.join(", ")
        )));
    }
    for (name, d) in space {
        if !KNOWN.contains(&name.as_str()) {
            return Err(state(format!(
                "unknown parameter `{name}`; allowed: {}",
                KNOWN.join(", ")
            )));
        }
        d.validate(name)
            .map_err(|e| state(format!("parameter `{name}`: {e}")))?;
    }
    Ok(())
}

/// Names a search space may use (see [`apply`] for what each sets).
pub const KNOWN: [&str; 11] = [
    "lambda_schedule",
    "lambda_warmup_steps",
    "lambda_start",
    "lambda_end",
    "enc_lr",
    "dec_lr",
    "trans_lr",
    "zinit_lr",
    "S",
    "batch_size",
    "s_k",
];

/// Which metric scores a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Mean one-step `jsd_exact` over the validation sequences.
    Jsd,
    /// Mean one-step CRPS (of the sum over dimensions; one dimension here).
    CrpsSum,
}

impl Metric {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Jsd => "jsd",
            Metric::CrpsSum => "crps-sum",
        }
    }
}

/// The study's identity: a study file continues only under the same header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `ddssm` or `dkf`.
    pub model: String,
    /// The score.
    pub metric: Metric,
    /// Training steps per trial.
    pub steps: usize,
    /// Seed of data, initialisation, training and proposals.
    pub seed: u64,
    /// Whether the study runs on the quick data.
    pub quick: bool,
    /// The search space.
    pub space: Space,
    /// The run every proposal modifies.
    pub base: ModelRun,
}

/// One finished trial, as a line of `study.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// 0-based trial number.
    pub number: usize,
    /// The proposal.
    pub params: Params,
    /// The score (None when failed).
    pub score: Option<f64>,
    /// `complete` or `failed`.
    pub status: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn number(name: &str, v: &Value) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| state(format!("{name} = {v}: expected a number")))
}

fn count(name: &str, v: &Value) -> Result<usize> {
    let x = number(name, v)?;
    if x < 0.0 || x.fract() != 0.0 {
        return Err(state(format!(
            "{name} = {v}: expected a non-negative integer"
        )));
    }
    Ok(x as usize)
}

/// A searchable field of a run, borrowed for reading or writing.
enum Slot<'a> {
    Shape(&'a mut LambdaShape),
    Count(&'a mut usize),
    Number(&'a mut f64),
}

/// The field a search-space name stands for: the one place names map to fields.
fn slot<'a>(run: &'a mut ModelRun, name: &str) -> Result<Slot<'a>> {
    let t = &mut run.train;
    Ok(match name {
        "lambda_schedule" => Slot::Shape(&mut t.lambda.lambda_schedule),
        "lambda_warmup_steps" => Slot::Count(&mut t.lambda.lambda_warmup_steps),
        "lambda_start" => Slot::Number(&mut t.lambda.lambda_start),
        "lambda_end" => Slot::Number(&mut t.lambda.lambda_end),
        "enc_lr" => Slot::Number(&mut t.learning_rates.encoder),
        "dec_lr" => Slot::Number(&mut t.learning_rates.decoder),
        "trans_lr" => Slot::Number(&mut t.learning_rates.transition),
        "zinit_lr" => Slot::Number(&mut t.learning_rates.zinit),
        "S" => Slot::Count(&mut t.samples),
        "batch_size" => Slot::Count(&mut t.batch_size),
        "s_k" => match &mut run.model.transition {
            TransitionConfig::Diffusion(d) => Slot::Count(&mut d.loss.s_k),
            TransitionConfig::Gaussian(_) => {
                return Err(state("s_k: the DKF has no diffusion loss".into()))
            }
        },
        other => return Err(state(format!("unknown parameter `{other}`"))),
    })
}

/// The value `run` has for a search-space name, as [`apply`] takes it.
pub fn value(run: &ModelRun, name: &str) -> Result<Value> {
    let mut run = run.clone();
    Ok(match slot(&mut run, name)? {
        Slot::Shape(shape) => serde_json::to_value(*shape).map_err(|e| state(e.to_string()))?,
        Slot::Count(field) => Value::from(*field),
        Slot::Number(field) => Value::from(*field),
    })
}

/// `run` with the values of `params`.
pub fn apply(run: &ModelRun, params: &Params) -> Result<ModelRun> {
    let mut run = run.clone();
    for (name, v) in params {
        match slot(&mut run, name)? {
            Slot::Shape(shape) => {
                *shape = match v.as_str() {
                    Some("linear") => LambdaShape::Linear,
                    Some("cosine") => LambdaShape::Cosine,
                    _ => {
                        return Err(state(format!(
                            "{name} = {v}: expected \"linear\" or \"cosine\""
                        )))
                    }
                }
            }
            Slot::Count(field) => *field = count(name, v)?,
            Slot::Number(field) => *field = number(name, v)?,
        }
    }
    Ok(run)
}

/// Applies every extreme value of `space` (bounds, every choice) to the base config and validates
/// the result, so a space that would produce an invalid run fails before any training.
pub fn check_space(space: &Space, cfg: &ExperimentConfig, model: &str) -> Result<()> {
    for (name, d) in space {
        let values: Vec<Value> = match d {
            Distribution::Float { low, high, .. } => vec![Value::from(*low), Value::from(*high)],
            Distribution::Int { low, high, .. } => vec![Value::from(*low), Value::from(*high)],
            Distribution::Categorical { choices } => choices.clone(),
        };
        for v in values {
            let params: Params = [(name.clone(), v.clone())].into_iter().collect();
            let mut c = cfg.clone();
            let run = if model == "ddssm" {
                &mut c.ddssm
            } else {
                &mut c.dkf
            };
            let context = |e: Error| state(format!("search space: {name} = {v}: {e}"));
            *run = apply(run, &params).map_err(context)?;
            c.validate().map_err(context)?;
        }
    }
    Ok(())
}

/// A cheap screen of what matters in a study: for each parameter of `space`, Spearman's rank
/// correlation between its value (a categorical one: its choice's index) and the score over the
/// completed trials; `None` where it is undefined (fewer than two completed trials, or a constant
/// parameter). Not an fANOVA importance.
pub fn rank_correlations(space: &Space, trials: &[Trial]) -> Vec<(String, Option<f64>)> {
    let done: Vec<&Trial> = trials.iter().filter(|t| t.score.is_some()).collect();
    let scores: Vec<f64> = done.iter().filter_map(|t| t.score).collect();
    space
        .iter()
        .map(|(name, d)| {
            let xs: Vec<f64> = done
                .iter()
                .map(|t| match (d, &t.params[name]) {
                    (Distribution::Categorical { choices }, v) => {
                        choices.iter().position(|c| c == v).unwrap_or(0) as f64
                    }
                    (_, v) => v.as_f64().unwrap_or(f64::NAN),
                })
                .collect();
            (name.clone(), ddssm_eval::spearman(&xs, &scores))
        })
        .collect()
}

/// The trials of the study file `path` (none if it does not exist), which must belong to the
/// study `header` describes. A damaged file — a line cut short by an interrupted write, a line
/// that is not a trial, trials out of order, another study's header — is an error naming the
/// file and the line; nothing is changed.
pub fn read_study(path: &Path, header: &Header) -> Result<Vec<Trial>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| state(format!("reading {}: {e}", path.display())))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let theirs: Header = serde_json::from_str(first).map_err(|e| {
        state(format!(
            "{}: line 1 is not a study header ({e})",
            path.display()
        ))
    })?;
    if &theirs != header {
        return Err(state(format!(
            "{} belongs to another study (model, metric, steps, seed, quick, space or base \
             config differ); use another --out or remove it",
            path.display()
        )));
    }
    let mut trials = Vec::new();
    let count = text.lines().count();
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        let trial: Trial = serde_json::from_str(line).map_err(|e| {
            state(if number == count && !text.ends_with('\n') {
                format!(
                    "{}: line {number} is incomplete (the study stopped while writing it); \
                     delete that line to run the trial again",
                    path.display()
                )
            } else {
                format!("{}: line {number} is not a trial ({e})", path.display())
            })
        })?;
        if trial.number != trials.len() {
            return Err(state(format!(
                "{}: line {} holds trial {}, expected {}",
                path.display(),
                i + 2,
                trial.number,
                trials.len()
            )));
        }
        trials.push(trial);
    }
    Ok(trials)
}

/// Appends `trial` as one line of the study file `path` and syncs it to disk.
pub fn append_trial(path: &Path, trial: &Trial) -> Result<()> {
    let io = |e: std::io::Error| state(format!("writing {}: {e}", path.display()));
    let line = serde_json::to_string(trial).map_err(|e| state(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    writeln!(f, "{line}").map_err(io)?;
    f.sync_data().map_err(io)
}

/// Trains and scores one proposal. `Ok(Err(reason))` is a failed trial (non-finite training or
/// score); `Err` is a fault of the tool (I/O, invalid config) that stops the study.
pub fn run_trial(
    cfg: &ExperimentConfig,
    run: &ModelRun,
    data: &Splits,
    metric: Metric,
    label: &str,
) -> Result<std::result::Result<f64, String>> {
    let options = TrainOptions {
        label: label.to_string(),
        ..TrainOptions::default()
    };
    let mut no_validation = |_: &Model, _: usize| Ok(Metrics::new());
    let model = match fit(
        run,
        cfg.seed,
        Some(data.standardization.clone()),
        &data.train,
        &options,
        &mut no_validation,
    ) {
        Ok((model, _)) => model,
        Err(e @ Error::NonFinite { .. }) => return Ok(Err(e.to_string())),
        Err(e) => return Err(e),
    };
    let mut noise =
        ddssm_tensor_ops::SeededNoise::new(cfg.seed).fork(&format!("tune/{label}/score"));
    let scores = match validation_scores(cfg, &model, &data.validation, &mut noise) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("scoring: {e}"))),
    };
    let score = match metric {
        Metric::Jsd => scores.jsd_exact.mean,
        Metric::CrpsSum => scores.crps.mean,
    };
    Ok(if score.is_finite() {
        Ok(score)
    } else {
        Err(format!("non-finite score {score}"))
    })
}

/// Runs the study in the file `path` until it holds `trials` trials and returns them all: a new
/// file starts with `header`, an existing one continues after its trials (its header must be
/// `header`). Trial `n` is proposed by TPE from the finished trials with noise from the fork
/// `tune/trial{n}` of `header.seed`, so a resumed study proposes what an uninterrupted one
/// would; each trial is appended as it finishes, a failed one included.
pub fn run_study(
    path: &Path,
    header: &Header,
    cfg: &ExperimentConfig,
    data: &Splits,
    trials: usize,
) -> Result<Vec<Trial>> {
    let mut done = read_study(path, header)?;
    if done.is_empty() {
        let line = serde_json::to_string(header).map_err(|e| state(e.to_string()))?;
        ddssm_model::checkpoint::write_atomic(path, format!("{line}\n").as_bytes())?;
    } else {
        tracing::info!(
            "tune: continuing {} after {} trials",
            path.display(),
            done.len()
        );
    }
    let tpe = Tpe::default();
    let root = ddssm_tensor_ops::SeededNoise::new(header.seed).fork("tune");
    while done.len() < trials {
        let number = done.len();
        let history: Vec<(Params, f64)> = done
            .iter()
            .map(|t| (t.params.clone(), t.score.unwrap_or(f64::NAN)))
            .collect();
        let params = tpe.propose(
            &header.space,
            &history,
            &mut root.fork(&format!("trial{number}")),
        );
        let run = apply(&header.base, &params)?;
        let began = std::time::Instant::now();
        let label = format!("{}-trial{number}", header.model);
        let outcome = run_trial(cfg, &run, data, header.metric, &label)?;
        let trial = Trial {
            number,
            params,
            score: outcome.as_ref().ok().copied(),
            status: if outcome.is_ok() {
                "complete"
            } else {
                "failed"
            }
            .to_string(),
            seconds: began.elapsed().as_secs_f64(),
            error: outcome.err(),
        };
        let best = done
            .iter()
            .chain(std::iter::once(&trial))
            .filter_map(|t| t.score)
            .fold(f64::INFINITY, f64::min);
        tracing::info!(
            "tune: trial {}/{trials}: {} ({:.0} s), best so far {best:.4}",
            number + 1,
            trial.score.map_or_else(
                || format!("failed: {}", trial.error.as_deref().unwrap_or("")),
                |s| format!("score {s:.4}")
            ),
            trial.seconds
        );
        append_trial(path, &trial)?;
        done.push(trial);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The screen pairs each parameter with the completed trials' scores (a failed trial is left
    /// out), reads categorical values as their choice's index, and has nothing to say for a
    /// constant parameter.
    #[test]
    fn rank_correlations_follow_the_completed_trials() {
        let mut space = Space::new();
        space.insert(
            "kind".into(),
            Distribution::Categorical {
                choices: vec![Value::from("a"), Value::from("b"), Value::from("c")],
            },
        );
        space.insert(
            "rate".into(),
            Distribution::Categorical {
                choices: vec![Value::from(1.0)],
            },
        );
        let trial = |number: usize, kind: &str, score: Option<f64>| Trial {
            number,
            params: [
                ("kind".to_string(), Value::from(kind)),
                ("rate".to_string(), Value::from(1.0)),
            ]
            .into_iter()
            .collect(),
            score,
            status: if score.is_some() {
                "complete"
            } else {
                "failed"
            }
            .into(),
            seconds: 1.0,
            error: None,
        };
        let trials = [
            trial(0, "a", Some(0.1)),
            trial(1, "c", None),
            trial(2, "b", Some(0.2)),
            trial(3, "c", Some(0.3)),
        ];
        let rho = rank_correlations(&space, &trials);
        assert_eq!(rho[0].0, "kind");
        assert!((rho[0].1.unwrap() - 1.0).abs() < 1e-12, "{rho:?}");
        assert_eq!(rho[1], ("rate".to_string(), None));
    }

    /// Every known name sets a field that `value` reads back; names outside the list, values of
    /// the wrong kind and `s_k` on a DKF are errors.
    #[test]
    fn names_map_to_fields_and_back() -> Result<()> {
        let base = ExperimentConfig::paper().ddssm;
        for name in KNOWN {
            let v = value(&base, name)?;
            let changed = match &v {
                Value::String(_) => Value::from("linear"),
                Value::Number(n) if n.is_u64() => Value::from(n.as_u64().unwrap() + 1),
                other => Value::from(other.as_f64().unwrap() * 2.0),
            };
            let params: Params = [(name.to_string(), changed.clone())].into_iter().collect();
            let run = apply(&base, &params)?;
            assert_eq!(value(&run, name)?, changed, "{name}");
        }
        let bad: Params = [("enc_lr".to_string(), Value::from("fast"))]
            .into_iter()
            .collect();
        assert!(apply(&base, &bad).is_err());
        let unknown: Params = [("lr".to_string(), Value::from(1.0))].into_iter().collect();
        assert!(apply(&base, &unknown).is_err());
        let s_k: Params = [("s_k".to_string(), Value::from(3))].into_iter().collect();
        let dkf = ExperimentConfig::paper().dkf;
        assert!(apply(&dkf, &s_k).unwrap_err().to_string().contains("DKF"));
        assert!(validate_space(&Space::new())
            .unwrap_err()
            .to_string()
            .contains("no parameter"));
        Ok(())
    }
}
