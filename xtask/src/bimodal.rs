//! `cargo xtask bimodal-experiment`: the paper's Section 4 end to end — the command line around
//! the library's [`ddssm_train::experiment::run`] (data, both models trained with validation and
//! checkpoints that `--resume` continues, test evaluation, LOCF, exact references, `results.json`):
//! the config from `--config`, `--quick`, `--seed` and `--steps`, then the figures
//! ([`ddssm_train::figures`]) and the report printed.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use ddssm_train::experiment::{self, ExperimentConfig, RunOptions};

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Results folder.
    pub out: PathBuf,
    /// Experiment config file (TOML); the paper's settings when absent.
    pub config: Option<PathBuf>,
    /// Overrides the seed.
    pub seed: Option<u64>,
    /// Overrides both models' training steps.
    pub steps: Option<usize>,
    /// Device.
    pub device: Device,
    /// The smoke version.
    pub quick: bool,
    /// Continue from checkpoints.
    pub resume: bool,
    /// Write into a folder that holds another run's files (replacing them).
    pub force: bool,
    /// Show progress bars.
    pub progress: bool,
    /// Train and score the DDSSM only (no DKF).
    pub ddssm_only: bool,
    /// Warm-start the DDSSM from this checkpoint ([`RunOptions::ddssm_init`]).
    pub init_ddssm: Option<PathBuf>,
}

/// The experiment config `args` ask for: the file (or the paper's settings), then `--quick`,
/// `--seed` and `--steps`, validated. `--print-config` prints exactly this.
pub fn resolve_config(args: &Args) -> Result<ExperimentConfig> {
    Ok(ExperimentConfig::load(args.config.as_deref())?
        .with_overrides(args.quick, args.seed, args.steps)?)
}

/// Runs the experiment (the library's [`ddssm_train::experiment::run`], which also writes
/// `report.md`), then draws the figures and prints the report.
pub fn run(args: &Args) -> Result<()> {
    let cfg = resolve_config(args)?;
    let results = experiment::run(
        &cfg,
        &RunOptions {
            out: args.out.clone(),
            resume: args.resume,
            force: args.force,
            progress: args.progress,
            quick: args.quick,
            device: args.device.clone(),
            git_commit: crate::BUILD_COMMIT.to_string(),
            ddssm_only: args.ddssm_only,
            ddssm_init: args.init_ddssm.clone(),
        },
    )?;
    let figures = ddssm_train::figures::write_all(&results, &args.out)?;
    tracing::info!("figures: {}", figures.join(", "));
    println!("{}", results.markdown());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddssm_model::Model;
    use ddssm_train::experiment::Results;

    fn tiny() -> ExperimentConfig {
        let mut cfg = ExperimentConfig::paper().quick();
        cfg.data.sim.t = 6;
        cfg.data.train = 16;
        cfg.data.validation = 4;
        cfg.data.test = 4;
        for run in [&mut cfg.ddssm, &mut cfg.dkf] {
            run.train.steps = 3;
            run.train.batch_size = 8;
            run.train.validate_every = 2;
            run.train.checkpoint_every = 2;
            run.model.transition = match run.model.transition {
                ddssm_model::TransitionConfig::Diffusion(mut d) => {
                    // A short chain keeps the sampler cheap in a test.
                    d.schedule.num_steps = 32;
                    ddssm_model::TransitionConfig::Diffusion(d)
                }
                other => other,
            };
        }
        cfg.evaluation.samples = 8;
        cfg.evaluation.test_sequences = 4;
        cfg.evaluation.validation_sequences = 2;
        cfg.evaluation.validation_samples = 4;
        cfg
    }

    #[test]
    fn the_whole_pipeline_runs_writes_its_results_and_resumes() -> Result<()> {
        let scratch = tempfile::tempdir()?;
        let out = scratch.path().to_path_buf();
        let config = out.join("tiny.toml");
        std::fs::create_dir_all(&out)?;
        std::fs::write(&config, toml::to_string(&tiny())?)?;
        let args = Args {
            out: out.join("run"),
            config: Some(config),
            seed: Some(3),
            steps: None,
            device: Device::Cpu,
            quick: false,
            resume: true,
            force: false,
            progress: false,
            ddssm_only: false,
            init_ddssm: None,
        };
        run(&args)?;
        let first: Results =
            serde_json::from_str(&std::fs::read_to_string(args.out.join("results.json"))?)?;
        for name in ["ddssm", "dkf", "locf"] {
            let m = &first.models[name];
            assert!(m.jsd_exact.mean.is_finite() && m.jsd_exact.n == 4, "{name}");
            assert!(m.crps.mean.is_finite());
        }
        assert!(first.models["ddssm"].negative_elbo.is_some());
        assert_eq!(first.training["ddssm"].history.len(), 3);
        assert!(args.out.join("report.md").exists());
        for fig in ["fig1a", "fig1b", "fig2"] {
            for ext in ["png", "svg"] {
                let path = args.out.join(format!("{fig}.{ext}"));
                assert!(std::fs::metadata(&path)?.len() > 1000, "{}", path.display());
            }
        }
        assert_eq!(first.examples.len(), 2);
        // `cargo xtask figures` draws them again from results.json alone.
        std::fs::remove_file(args.out.join("fig1a.png"))?;
        crate::figures::redraw(&args.out)?;
        assert!(std::fs::metadata(args.out.join("fig1a.png"))?.len() > 1000);
        // The sampler comparison runs on the finished folder.
        crate::tradeoff::run(&crate::tradeoff::Args {
            run: args.out.clone(),
            // The default: 64 sequences, or all the run holds (4 here).
            sequences: None,
            samples: 4,
            device: Device::Cpu,
        })?;
        let tradeoff: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            args.out.join("sampler-tradeoff.json"),
        )?)?;
        let rows = tradeoff["samplers"].as_array().map_or(0, Vec::len);
        assert!(rows >= 5, "{rows} samplers compared");
        // So does the diagnosis: widths for both models (a schedule for the DDSSM only) and the
        // likelihood split, with IWAE-k for k = 1 and 4 (16 does not divide 4 draws).
        crate::diagnose::run(&crate::diagnose::Args {
            run: args.out.clone(),
            sequences: 4,
            draws: 8,
            iwae_sequences: 2,
            iwae_draws: 4,
            device: Device::Cpu,
        })?;
        let diagnosis: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(args.out.join("diagnosis.json"))?)?;
        for name in ["ddssm", "dkf"] {
            let d = &diagnosis["models"][name];
            for field in [
                "predictive",
                "exact_predictive",
                "encoder",
                "transition",
                "emission",
            ] {
                assert!(
                    d[field].as_f64().is_some_and(f64::is_finite),
                    "{name}.{field}"
                );
            }
            let ks = diagnosis["likelihood"][name]["negative_iwae"]
                .as_array()
                .map(|v| v.iter().map(|p| p[0].as_u64()).collect::<Vec<_>>());
            assert_eq!(ks, Some(vec![Some(1), Some(4)]), "{name}");
        }
        // T = 6 is too short for the encoder's lookahead probe (steps 9–24 and three ahead):
        // left out, not measured on steps the sequences do not have (the library's tests
        // measure it at T = 32).
        assert_eq!(diagnosis["lookahead"], serde_json::json!({}), "{diagnosis}");
        let md = std::fs::read_to_string(args.out.join("diagnosis.md"))?;
        assert!(
            md.lines()
                .filter(|l| l.contains("|---"))
                .all(|l| l.starts_with('|')),
            "a markdown table row is indented:\n{md}"
        );
        assert!(
            md.contains("| centring (exact 1) | encoder centring (exact 1) |"),
            "{md}"
        );
        assert!(
            diagnosis["models"]["ddssm"]["encoder_centring"]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{diagnosis}"
        );
        assert!(diagnosis["models"]["ddssm"]["schedule"].is_object());
        assert!(diagnosis["models"]["dkf"]["schedule"].is_null());
        assert_eq!(first.examples[0].models.len(), 2);
        let total: f64 = first.exact_mean_histogram.iter().sum();
        assert!(
            (total - 1.0).abs() < 1e-6,
            "exact histogram sums to {total}"
        );
        assert!(Model::load(&args.out.join("dkf.safetensors"), &Device::Cpu).is_ok());

        // Resuming a finished run trains nothing, keeps the training's report (carried from
        // the history beside each checkpoint) and reproduces the evaluation.
        run(&args)?;
        let second: Results =
            serde_json::from_str(&std::fs::read_to_string(args.out.join("results.json"))?)?;
        assert_eq!(second.training["ddssm"].start_step, 3);
        for name in ["ddssm", "dkf"] {
            let (a, b) = (&first.training[name], &second.training[name]);
            assert_eq!(b.history, a.history, "{name}");
            assert_eq!(b.validations, a.validations, "{name}");
        }
        for name in ["ddssm", "dkf"] {
            assert_eq!(
                first.models[name].per_sequence_jsd_exact,
                second.models[name].per_sequence_jsd_exact
            );
        }

        // --ddssm-only: the same DDSSM (its draws do not depend on the DKF's), no DKF anywhere,
        // and the report and figures still drawn.
        let alone = Args {
            out: out.join("alone"),
            resume: false,
            force: true,
            ddssm_only: true,
            ..args.clone()
        };
        run(&alone)?;
        let third: Results =
            serde_json::from_str(&std::fs::read_to_string(alone.out.join("results.json"))?)?;
        assert!(!third.models.contains_key("dkf") && !third.training.contains_key("dkf"));
        assert!(!alone.out.join("dkf.safetensors").exists());
        assert_eq!(
            first.models["ddssm"].per_sequence_jsd_exact,
            third.models["ddssm"].per_sequence_jsd_exact
        );
        assert!(alone.out.join("fig2.png").exists());
        Ok(())
    }
}
