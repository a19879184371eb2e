//! The paper's Section 4 experiment as a library: its configuration (data, the DDSSM and DKF
//! runs, the evaluation; the paper's values by default, validated field by field with full key
//! paths), its data splits simulated from the seed with the standardisation fitted on the training
//! split, and the one-step validation score used during training and by the hyperparameter search.
//! `cargo xtask bimodal-experiment` and `cargo xtask tune` are thin callers.

use candle_core::{DType, Device};
use ddssm_eval::{
    model_predictive_samples, score_one_step, BimodalRandomWalk, JsdHistogram, ModelScores, Series,
};
use ddssm_model::{Batch, Model, ModelConfig, Standardization};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{Error, ModelRun, Result, TrainConfig};

mod changes;
mod diagnosis;
mod diagnosis_report;
mod finished;
mod folder;
mod provenance;
mod results_report;
mod run;
mod tradeoff;

pub use changes::{pool_over_seeds, AblationRun, SeedPool};
pub use diagnosis::{
    diagnose, likelihood_split, Diagnosis, DiagnosisOptions, LikelihoodSplit, LOOKAHEAD_AHEAD,
    LOOKAHEAD_STEPS,
};
pub use finished::{comparison_tables, FinishedRun};
pub use folder::RunFolder;
pub use run::{
    check_output_folder, run, warmup_warning, ExamplePanel, ExampleSequence, Progress, Results,
    RunOptions,
};
pub use tradeoff::{sampler_tradeoff, sampler_tradeoff_of_run, SamplerRow, TRADEOFF_SEQUENCES};

/// A config error at `field` (a dotted path).
pub(crate) fn invalid(field: &str, value: impl std::fmt::Display, allowed: &str) -> Error {
    Error::InvalidConfig {
        field: field.to_string(),
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

/// An evaluation-crate config error with its field placed under `prefix`.
fn eval_field(prefix: &str, e: ddssm_eval::Error) -> Error {
    match e {
        ddssm_eval::Error::InvalidConfig {
            field,
            value,
            allowed,
        } => invalid(&format!("{prefix}.{field}"), value, &allowed),
        other => other.into(),
    }
}

/// The data splits (Sec. 4, App. F.1.1: 1024 sequences each).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The simulator.
    pub sim: BimodalRandomWalk,
    /// Training sequences.
    pub train: usize,
    /// Validation sequences.
    pub validation: usize,
    /// Test sequences.
    pub test: usize,
}

/// How models are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Predictive samples per test sequence (the paper: 1024).
    pub samples: usize,
    /// Test sequences scored (the paper: all 1024).
    pub test_sequences: usize,
    /// Validation sequences scored during training.
    pub validation_sequences: usize,
    /// Predictive samples per validation sequence.
    pub validation_samples: usize,
    /// Encoder chains per sampling call (memory bound).
    pub max_chains: usize,
    /// Trajectories `S` per sequence for the reported negative ELBO.
    pub elbo_samples: usize,
    /// The JSD histogram.
    pub histogram: JsdHistogram,
}

/// The whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Drives data, initialisation and every draw.
    pub seed: u64,
    /// The data.
    pub data: DataConfig,
    /// The DDSSM run.
    pub ddssm: ModelRun,
    /// The DKF run.
    pub dkf: ModelRun,
    /// The evaluation.
    pub evaluation: EvalConfig,
}

impl ExperimentConfig {
    /// The paper's settings (Sec. 4, App. F, Tables 1–4).
    pub fn paper() -> Self {
        Self {
            seed: 0,
            data: DataConfig {
                sim: BimodalRandomWalk::default(),
                train: 1024,
                validation: 1024,
                test: 1024,
            },
            ddssm: ModelRun {
                model: ModelConfig::paper_ddssm(),
                train: TrainConfig::paper_ddssm(),
            },
            dkf: ModelRun {
                model: ModelConfig::paper_dkf(),
                train: TrainConfig::paper_dkf(),
            },
            evaluation: EvalConfig {
                samples: 1024,
                test_sequences: 1024,
                validation_sequences: 64,
                validation_samples: 256,
                max_chains: 1_024,
                elbo_samples: 4,
                histogram: JsdHistogram::default(),
            },
        }
    }

    /// A smoke version of the whole pipeline: small splits, a few steps (a learning-rate decay,
    /// an alternation and the encoder's mask start at the same fraction of them), few samples.
    pub fn quick(mut self) -> Self {
        self.data.train = 128;
        self.data.validation = 32;
        self.data.test = 32;
        for run in [&mut self.ddssm, &mut self.dkf] {
            let steps = run.train.steps;
            run.train.lr_decay = run.train.lr_decay.rescaled(steps, 10);
            run.train.alternation = run.train.alternation.map(|a| a.rescaled(steps, 10));
            run.train.encoder_mask_start =
                crate::lr_decay::rescale_step(run.train.encoder_mask_start, steps, 10);
            run.train.steps = 10;
            run.train.batch_size = run.train.batch_size.min(32);
            run.train.validate_every = 5;
            run.train.checkpoint_every = 5;
            run.train.lambda.lambda_warmup_steps = 5;
        }
        self.evaluation.samples = 64;
        self.evaluation.test_sequences = 16;
        self.evaluation.validation_sequences = 4;
        self.evaluation.validation_samples = 32;
        self.evaluation.elbo_samples = 2;
        self
    }

    /// The experiment config in the TOML file `path` (errors name the file, line and field), or
    /// the paper's settings ([`ExperimentConfig::paper`]) without one.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self> {
        match path {
            Some(path) => crate::read_toml(path, "experiment config"),
            None => Ok(Self::paper()),
        }
    }

    /// The command line's overrides on top of a config file (or the paper's settings): `quick`
    /// ([`ExperimentConfig::quick`]), then the seed (of the data and of both trainings) and both
    /// models' training steps; validated.
    pub fn with_overrides(
        mut self,
        quick: bool,
        seed: Option<u64>,
        steps: Option<usize>,
    ) -> Result<Self> {
        if quick {
            self = self.quick();
        }
        if let Some(seed) = seed {
            self.seed = seed;
        }
        if let Some(steps) = steps {
            self.ddssm.train.steps = steps;
            self.dkf.train.steps = steps;
        }
        for run in [&mut self.ddssm, &mut self.dkf] {
            run.train.seed = self.seed;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every field before any work starts (nothing is written before this passes); an
    /// error names the field by its full dotted path as in the TOML file
    /// (`ddssm.model.transition.schedule.num_steps`) with the allowed values.
    pub fn validate(&self) -> Result<()> {
        self.data
            .sim
            .validate()
            .map_err(|e| eval_field("data.sim", e))?;
        for (field, n) in [
            ("data.train", self.data.train),
            ("data.validation", self.data.validation),
            ("data.test", self.data.test),
        ] {
            if n == 0 {
                return Err(invalid(field, 0, "an integer ≥ 1"));
            }
        }
        if self.data.sim.t < 2 {
            return Err(invalid(
                "data.sim.t",
                self.data.sim.t,
                "an integer ≥ 2 (a one-step predictive needs a history)",
            ));
        }
        for (name, run) in [("ddssm", &self.ddssm), ("dkf", &self.dkf)] {
            run.validate(name)?;
            if run.train.batch_size > self.data.train {
                return Err(invalid(
                    &format!("{name}.train.batch_size"),
                    run.train.batch_size,
                    &format!("at most data.train = {}", self.data.train),
                ));
            }
            for (field, value) in [
                ("obs_dim", run.model.obs_dim),
                ("covariate_dim", run.model.covariate_dim),
                ("static_dim", run.model.static_dim),
            ] {
                let want = usize::from(field == "obs_dim");
                if value != want {
                    return Err(invalid(
                        &format!("{name}.model.{field}"),
                        value,
                        &format!(
                            "{want}: the bimodal walk has one observed dimension and no covariates"
                        ),
                    ));
                }
            }
            // Anything the field checks above missed fails here, before a file is written.
            Model::new(&run.model, 0, DType::F32, &Device::Cpu)?;
        }
        let e = &self.evaluation;
        for (field, value, least, most) in [
            ("test_sequences", e.test_sequences, 1, Some(self.data.test)),
            (
                "validation_sequences",
                e.validation_sequences,
                0,
                Some(self.data.validation),
            ),
            ("samples", e.samples, 2, None),
            ("validation_samples", e.validation_samples, 2, None),
            ("elbo_samples", e.elbo_samples, 1, None),
            ("max_chains", e.max_chains, 1, None),
        ] {
            if value < least || most.is_some_and(|m| value > m) {
                let range = match most {
                    Some(m) => format!("an integer in {least}..={m} (at most the data split)"),
                    None => format!("an integer ≥ {least}"),
                };
                return Err(invalid(&format!("evaluation.{field}"), value, &range));
            }
        }
        e.histogram
            .validate()
            .map_err(|err| eval_field("evaluation.histogram", err))?;
        Ok(())
    }
}

/// The experiment's data: the three splits from the config's seed, and the standardisation fitted
/// on the training split.
#[derive(Debug, Clone)]
pub struct Splits {
    /// The training split, original units, `[N, T, 1]` (the model standardises it).
    pub train: Batch,
    /// The map between original units and model space.
    pub standardization: Standardization,
    /// The first `evaluation.validation_sequences` validation sequences, original units.
    pub validation: Series,
    /// The whole test split, original units.
    pub test: Series,
}

impl Splits {
    /// Simulates the splits of `cfg` (each from its own fork of the seed) on `device`.
    pub fn new(cfg: &ExperimentConfig, device: &Device) -> Result<Self> {
        let root = SeededNoise::new(cfg.seed);
        let sim = cfg.data.sim;
        let (_, train_x) = sim.simulate(cfg.data.train, &mut root.fork("data/train"))?;
        let (_, val_x) = sim.simulate(cfg.data.validation, &mut root.fork("data/validation"))?;
        let (_, test) = sim.simulate(cfg.data.test, &mut root.fork("data/test"))?;
        let train_raw = train_x.to_tensor(DType::F32, device)?;
        let standardization = Standardization::fit(&train_raw, None)?;
        tracing::info!(
            "data: {} / {} / {} sequences of T = {}; standardisation mean {:.3}, std {:.3}",
            cfg.data.train,
            cfg.data.validation,
            cfg.data.test,
            sim.t,
            standardization.mean[0],
            standardization.std[0]
        );
        let n = cfg.evaluation.validation_sequences;
        let validation = val_x.first(n);
        Ok(Self {
            train: Batch::new(train_raw),
            standardization,
            validation,
            test,
        })
    }
}

/// One-step scores of `model` on the validation sequences `val` (original units):
/// `evaluation.validation_samples` draws per sequence.
pub fn validation_scores(
    cfg: &ExperimentConfig,
    model: &Model,
    val: &Series,
    noise: &mut SeededNoise,
) -> Result<ModelScores> {
    let raw = val.to_tensor(DType::F32, model.device())?;
    let prefix = raw.narrow(1, 0, val.t - 1)?;
    let e = &cfg.evaluation;
    let draws =
        model_predictive_samples(model, &prefix, e.validation_samples, e.max_chains, noise)?;
    Ok(score_one_step(
        &cfg.data.sim,
        &e.histogram,
        val,
        &draws,
        noise,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `load` reads a written config back exactly, gives the paper's without a file, and names
    /// a missing file.
    #[test]
    fn a_config_loads_from_its_file_or_is_the_papers() {
        assert_eq!(
            ExperimentConfig::load(None).unwrap(),
            ExperimentConfig::paper()
        );
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let path = dir.join("c.toml");
        let cfg = ExperimentConfig::paper().quick();
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(ExperimentConfig::load(Some(&path)).unwrap(), cfg);
        let missing = dir.join("missing.toml");
        let err = ExperimentConfig::load(Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }

    #[test]
    fn bad_configs_are_named_before_any_work() {
        let mut cfg = ExperimentConfig::paper().quick();
        cfg.evaluation.test_sequences = 99;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("evaluation.test_sequences"), "{err}");
        let mut cfg = ExperimentConfig::paper().quick();
        cfg.dkf.train.batch_size = 1000;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("dkf.train.batch_size"), "{err}");
        let mut cfg = ExperimentConfig::paper();
        cfg.ddssm.model.h_seq = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("ddssm.model.h_seq"), "{err}");
        let mut cfg = ExperimentConfig::paper();
        cfg.evaluation.histogram.bins = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("evaluation.histogram.bins"), "{err}");
    }

    #[test]
    fn the_shipped_config_is_the_papers() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bimodal.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: ExperimentConfig = toml::from_str(&text).unwrap();
        assert_eq!(parsed, ExperimentConfig::paper());
        assert!(parsed.validate().is_ok());
    }

    /// Every ablation config of issue 17 (configs/ablations/) and the sharp config
    /// (configs/bimodal-sharp.toml) change the DDSSM run only: data,
    /// evaluation, seed and the DKF are the paper's, so their numbers compare with the paper
    /// config's on the same seeds; their `--quick` versions are valid.
    #[test]
    fn the_ablation_configs_change_the_ddssm_only() {
        let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut paths: Vec<_> = std::fs::read_dir(configs.join("ablations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.push(configs.join("bimodal-sharp.toml"));
        let mut seen = 0;
        for path in paths {
            let parsed = ExperimentConfig::load(Some(&path)).unwrap();
            assert!(parsed.validate().is_ok(), "{}", path.display());
            // `--quick` smoke-runs every config, including those that decay the rates late.
            let quick = parsed.clone().with_overrides(true, None, None);
            assert!(quick.is_ok(), "{}: {:?}", path.display(), quick.err());
            let paper = ExperimentConfig::paper();
            assert_ne!(parsed.ddssm, paper.ddssm, "{}", path.display());
            assert_eq!(
                (parsed.seed, parsed.data, &parsed.dkf, parsed.evaluation),
                (paper.seed, paper.data, &paper.dkf, paper.evaluation),
                "{}",
                path.display()
            );
            seen += 1;
        }
        assert!(seen >= 3, "{seen} configs");
    }

    /// The splits come from forks of the seed: the same seed gives the same data, another seed
    /// other data; the standardisation is the training split's.
    #[test]
    fn splits_are_functions_of_the_seed() -> Result<()> {
        let mut cfg = ExperimentConfig::paper().quick();
        let a = Splits::new(&cfg, &Device::Cpu)?;
        let b = Splits::new(&cfg, &Device::Cpu)?;
        assert_eq!(a.test.values, b.test.values);
        assert_eq!(a.validation.n, cfg.evaluation.validation_sequences);
        let fitted = Standardization::fit(&a.train.x, None)?;
        assert_eq!(fitted, a.standardization);
        cfg.seed = 1;
        assert_ne!(Splits::new(&cfg, &Device::Cpu)?.test.values, a.test.values);
        Ok(())
    }
}
