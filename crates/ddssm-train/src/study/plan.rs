//! A whole study from its options ([`StudyOptions`]): the base config, every check before work
//! starts, the study file's header, the data, and the trials ([`run_tpe_study`]). What is left
//! to a command line is parsing and the report.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ddssm_model::checkpoint::write_atomic;

use super::{check_space, load_space, run_study, tuned_experiment, Header, Metric, Trial};
use crate::experiment::{invalid, ExperimentConfig, Splits};
use crate::tpe::Space;
use crate::{Error, ModelRun, Result};

/// What a TPE study of one of the paper's models runs.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// `ddssm` or `dkf`.
    pub model: String,
    /// Trials in the study (more than its file holds: it continues).
    pub trials: usize,
    /// Training steps per trial.
    pub steps: usize,
    /// The score.
    pub metric: Metric,
    /// Seed of data, initialisation, training and proposals.
    pub seed: u64,
    /// Small data, few samples: a quick study.
    pub quick: bool,
    /// The search space (a TOML file, [`load_space`]).
    pub space: PathBuf,
    /// The study folder; the trials go to `study.jsonl` in it.
    pub out: PathBuf,
}

/// A finished (or continued) study: the model's base run, the space searched, every trial.
#[derive(Debug, Clone)]
pub struct StudyOutcome {
    /// The model's run in the base config, which each trial changes by its parameters.
    pub base: ModelRun,
    /// The search space.
    pub space: Space,
    /// Every trial of the study file, in order.
    pub trials: Vec<Trial>,
}

impl StudyOptions {
    /// The `best` of a study's `trials` trials as a ready-to-use experiment config
    /// ([`tuned_experiment`] of `base`), TOML headed by where it came from (the study's model,
    /// steps, metric and seed, the trial and its score): written to `best.toml` in the study
    /// folder and, when given, to `also` (its folder created). Returns the text.
    pub fn write_tuned_config(
        &self,
        base: &ModelRun,
        best: &Trial,
        trials: usize,
        also: Option<&Path>,
    ) -> Result<String> {
        let tuned = tuned_experiment(base, &self.model, best)?;
        let body = toml::to_string(&tuned).map_err(|e| Error::State(e.to_string()))?;
        let text = format!(
            "# The best of a {trials}-trial TPE study of the {} ({} steps per trial, metric {}, \
             seed {}),\n# trial {} with score {:.5}; written by `cargo xtask tune`. Run it with\n\
             # `cargo xtask bimodal-experiment --config <this file>`.\n\n{body}",
            self.model,
            self.steps,
            self.metric.name(),
            self.seed,
            best.number,
            best.score.unwrap_or(f64::NAN),
        );
        write_atomic(&self.out.join("best.toml"), text.as_bytes())?;
        if let Some(path) = also {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::State(format!("{}: {e}", dir.display())))?;
            }
            write_atomic(path, text.as_bytes())?;
        }
        Ok(text)
    }

    /// The experiment config a study starts from: the paper's, with `quick`, the seed and the
    /// steps per trial ([`ExperimentConfig::with_overrides`]), no validation or checkpoints.
    pub fn base_config(&self) -> Result<ExperimentConfig> {
        let mut cfg = ExperimentConfig::paper().with_overrides(
            self.quick,
            Some(self.seed),
            Some(self.steps),
        )?;
        if self.quick {
            // Room for the search space's largest batch (512); short series keep trials cheap.
            cfg.data.train = 512;
            cfg.data.sim.t = 16;
        }
        for run in [&mut cfg.ddssm, &mut cfg.dkf] {
            run.train.validate_every = 0;
            run.train.checkpoint_every = 0;
        }
        Ok(cfg)
    }
}

/// Runs (or continues) the study `options` describe from the base config `cfg` (its `seed`, and
/// each run's `steps`, must already be the study's; [`StudyOptions::base_config`]) on `device`.
/// The model name, the counts, the space and the space's extreme values on `cfg` are checked
/// before anything is written.
pub fn run_tpe_study(
    options: &StudyOptions,
    cfg: ExperimentConfig,
    device: &Device,
) -> Result<StudyOutcome> {
    let model = options.model.as_str();
    if model != "ddssm" && model != "dkf" {
        return Err(invalid("model", model, "ddssm or dkf"));
    }
    if options.trials == 0 {
        return Err(invalid("trials", 0, "an integer ≥ 1"));
    }
    if options.steps == 0 {
        return Err(invalid("steps", 0, "an integer ≥ 1"));
    }
    let space = load_space(&options.space, model)?;
    cfg.validate()?;
    check_space(&space, &cfg, model)?;
    let base = if model == "ddssm" {
        cfg.ddssm.clone()
    } else {
        cfg.dkf.clone()
    };
    let header = Header {
        model: model.into(),
        metric: options.metric,
        steps: options.steps,
        seed: options.seed,
        quick: options.quick,
        space: space.clone(),
        base: base.clone(),
    };
    std::fs::create_dir_all(&options.out)
        .map_err(|e| Error::State(format!("creating {}: {e}", options.out.display())))?;
    let data = Splits::new(&cfg, device)?;
    let trials = run_study(
        &options.out.join("study.jsonl"),
        &header,
        &cfg,
        &data,
        options.trials,
    )?;
    Ok(StudyOutcome {
        base,
        space,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wrong model name or a zero count is refused naming its field, before the study folder
    /// exists.
    #[test]
    fn bad_options_are_named_before_anything_is_written() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("study");
        let options = StudyOptions {
            model: "ddssm".into(),
            trials: 1,
            steps: 1,
            metric: Metric::Jsd,
            seed: 0,
            quick: true,
            space: PathBuf::from("no-such-space.toml"),
            out: out.clone(),
        };
        let cfg = options.base_config().unwrap();
        for (bad, field) in [
            (
                StudyOptions {
                    model: "gru".into(),
                    ..options.clone()
                },
                "invalid model = gru",
            ),
            (
                StudyOptions {
                    trials: 0,
                    ..options.clone()
                },
                "invalid trials",
            ),
            (
                StudyOptions {
                    steps: 0,
                    ..options.clone()
                },
                "invalid steps",
            ),
            (options.clone(), "no-such-space.toml"),
        ] {
            let err = run_tpe_study(&bad, cfg.clone(), &Device::Cpu)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
        assert!(!out.exists());
    }
}
