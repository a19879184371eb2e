//! `cargo xtask <command>`: the project's experiments and tools.
//!
//! - `bimodal-experiment`: the paper's Section 4 end to end (data, DKF and DDSSM training, LOCF,
//!   metrics, figures, report);
//! - `tune`: the paper's hyperparameter search (App. F.1.1);
//! - `sampler-tradeoff`: accuracy against cost of the diffusion samplers on a trained DDSSM;
//! - `real-data`: DDSSM, DKF, baselines and statsmodels on the real series in `data/`;
//! - `bench`: benchmarks against the PyTorch peer.
//!
//! Each command validates its options (device, output folder) before any work starts.

mod bench;
mod bimodal;
#[cfg(test)]
mod commit; // build.rs runs it; compiled here for its tests
mod compare;
mod diagnose;
mod figures;
mod realdata;
mod tradeoff;
mod tune;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

/// The commit this binary was built from (src/commit.rs's `describe` of the checkout at build
/// time, run by `build.rs`): what every `results.json` and benchmark file records as `git_commit`.
pub const BUILD_COMMIT: &str = env!("DDSSM_BUILD_COMMIT");

/// ddssm's experiments and tools.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DDSSM_BUILD_COMMIT"), ")"),
    about
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The score of a tuning trial.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum MetricKind {
    /// One-step JSD to the exact predictive (the paper's).
    Jsd,
    /// CRPS of the sum over observed dimensions.
    CrpsSum,
}

/// Which model a command works on.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelKind {
    /// The diffusion-driven state space model.
    Ddssm,
    /// The deep Kalman filter baseline (Gaussian transitions).
    Dkf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The paper's Section 4: bimodal random walk, DKF vs DDSSM vs LOCF, metrics, figures, report.
    BimodalExperiment {
        /// Results folder (config copies, checkpoints, results.json, report.md, figures).
        #[arg(long, default_value = "results/bimodal")]
        out: PathBuf,
        /// Experiment config (TOML, see configs/bimodal.toml; `base = "FILE"` builds on another
        /// config, as configs/ablations/ do); the paper's settings by default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The one seed that drives data, initialisation and every noise draw (overrides the
        /// config's).
        #[arg(long)]
        seed: Option<u64>,
        /// Training steps per model (the paper: 3000).
        #[arg(long)]
        steps: Option<usize>,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
        /// A smoke test of the whole pipeline in seconds (tiny data, 10 steps): checks that
        /// everything runs, its numbers mean nothing.
        #[arg(long)]
        quick: bool,
        /// Continue an interrupted run from its last checkpoints (same seed and data; only the
        /// steps may grow).
        #[arg(long)]
        resume: bool,
        /// Replace the run already in --out (without it a folder holding a run is refused).
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Print the experiment config (the --config file or the paper's, after --quick, --seed
        /// and --steps), validated, as TOML and exit.
        #[arg(long)]
        print_config: bool,
        /// Train and score the DDSSM alone (with LOCF and the exact references): for seeds and
        /// ablations of the DDSSM; the DKF needs only its one run at the paper's settings.
        #[arg(long)]
        ddssm_only: bool,
        /// Start the DDSSM from the parameters of this checkpoint (same model config, same data)
        /// instead of the seed's initialisation: a warm start with a fresh optimiser, flagged in
        /// the results; with a config that sets some learning rates to 0 it refits one part of a
        /// trained model.
        #[arg(long, value_name = "CHECKPOINT")]
        init_ddssm: Option<PathBuf>,
    },
    /// Hyperparameter search with TPE (App. F.1.1).
    Tune {
        /// Which model to tune.
        #[arg(long, value_enum, default_value = "ddssm")]
        model: ModelKind,
        /// Number of trials (the paper: 50; --quick: 3). A study that already holds trials
        /// continues up to this number.
        #[arg(long)]
        trials: Option<usize>,
        /// Training steps per trial (the paper: 1500; --quick: 3).
        #[arg(long)]
        steps: Option<usize>,
        /// The score of a trial on the validation sequences.
        #[arg(long, value_enum, default_value = "jsd")]
        metric: MetricKind,
        /// Seed of data, initialisation, training and proposals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The search space (TOML).
        #[arg(long, default_value = "configs/tune/space.toml")]
        space: PathBuf,
        /// Study folder (study.jsonl, report.md, history.png/svg, best.toml); default
        /// results/tune-MODEL.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the best configuration goes as a ready-to-use experiment config; default
        /// configs/tuned/MODEL.toml (with --quick: only OUT/best.toml).
        #[arg(long)]
        write_config: Option<PathBuf>,
        /// A small, fast study: short series, few samples, 3 trials of 3 steps by default.
        #[arg(long)]
        quick: bool,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Accuracy against cost of the diffusion samplers on a trained DDSSM (a finished
    /// bimodal-experiment folder); writes sampler-tradeoff.{json,md} into that folder.
    SamplerTradeoff {
        /// The experiment folder (config.toml, ddssm.safetensors).
        #[arg(long, default_value = "results/bimodal")]
        run: PathBuf,
        /// Validation sequences scored (default: 64, or all the run holds if fewer).
        #[arg(long)]
        sequences: Option<usize>,
        /// One-step draws per sequence.
        #[arg(long, default_value_t = 256)]
        samples: usize,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// The ablation and seed tables of finished bimodal-experiment folders (results.json, and
    /// diagnosis.json where `diagnose` ran): per run, then pooled over seeds, paired with the
    /// paper's configuration on shared seeds.
    Compare {
        /// The experiment folders.
        runs: Vec<PathBuf>,
        /// Also write the tables to this markdown file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draws the figures (fig1a, fig1b, fig2 as .png and .svg) of a finished bimodal-experiment
    /// folder again from its results.json, e.g. for a run kept under docs/results without them.
    Figures {
        /// The experiment folder (its results.json); the figures are written beside it.
        #[arg(long)]
        run: PathBuf,
    },
    /// Where a trained model's one-step predictive gets its width (encoder, transition, emission;
    /// the diffusion schedule's smallest levels) beside the exact values, on a finished
    /// bimodal-experiment folder; writes diagnosis.{json,md} into that folder.
    Diagnose {
        /// The experiment folder (config.toml and its checkpoints).
        #[arg(long, default_value = "results/bimodal")]
        run: PathBuf,
        /// Test sequences used.
        #[arg(long, default_value_t = 256)]
        sequences: usize,
        /// Draws of each part per sequence.
        #[arg(long, default_value_t = 256)]
        draws: usize,
        /// Test sequences of the likelihood split (−ELBO, IWAE, exact); 0 skips it.
        #[arg(long, default_value_t = 64)]
        iwae_sequences: usize,
        /// Importance weights per sequence (IWAE-k for k = 1, 16 and this).
        #[arg(long, default_value_t = 256)]
        iwae_draws: usize,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Benchmarks: training steps and the one-step predictive sampler, optionally against the
    /// PyTorch peer.
    Bench {
        /// Also run the PyTorch peer (../shared/peer/torch_ref) and print ratios.
        #[arg(long)]
        peer: bool,
        /// The peer's Python interpreter (one with torch, numpy and scipy).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// Alternate ddssm and the peer this many times (ours, peer, ours, …) and report each
        /// figure's paired ratio as median, min and max over the pairs (implies --peer; skips
        /// the scaling series).
        #[arg(long, default_value_t = 0)]
        pairs: usize,
        /// Timed repetitions per figure (medians are reported; at least 5 for figures of record).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Sequences for the sampler figure.
        #[arg(long, default_value_t = 128)]
        sampler_examples: usize,
        /// One-step draws per sequence for the sampler figure.
        #[arg(long, default_value_t = 64)]
        sampler_samples: usize,
        /// Skip the T and batch scaling series.
        #[arg(long)]
        skip_scaling: bool,
        /// Tiny sizes: checks the harness, measures nothing of record.
        #[arg(long)]
        quick: bool,
        /// Also write the JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run one block only (ddssm_train, dkf_train, ddssm_sampler, scaling), e.g. to read
        /// its peak memory as the process's (process_peak_rss_mib).
        #[arg(long)]
        only: Option<String>,
        /// Sequences per forward/backward pass for both training figures instead of the paper
        /// configs' 64 (0 = the whole batch in one pass): which micro-batch suits the cache.
        #[arg(long)]
        micro_batch: Option<usize>,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// DDSSM, DKF, baselines and a statsmodels state space model on the real series in data/
    /// (rolling origin, several seeds): results.json, real-data.md, fan charts.
    RealData {
        /// The benchmark's config (TOML).
        #[arg(long, default_value = "configs/real-data.toml")]
        config: PathBuf,
        /// Training steps per fit (overrides the config; a quick check).
        #[arg(long)]
        steps: Option<usize>,
        /// The results folder.
        #[arg(long, default_value = "docs/results/real-data")]
        out: PathBuf,
        /// The Python interpreter with statsmodels (`pip install statsmodels`).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// Skip the statsmodels reference.
        #[arg(long)]
        no_statsmodels: bool,
        /// Skip the fits already recorded in the results folder.
        #[arg(long)]
        resume: bool,
        /// Replace results in the folder.
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Only redraw real-data.md and the fan charts from the folder's results.json.
        #[arg(long)]
        report_only: bool,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

impl Command {
    /// The `--device` of a command that runs a model; `None` for one that only reads results.
    fn device(&self) -> Option<&str> {
        match self {
            Command::BimodalExperiment { device, .. }
            | Command::Tune { device, .. }
            | Command::SamplerTradeoff { device, .. }
            | Command::Diagnose { device, .. }
            | Command::Bench { device, .. }
            | Command::RealData { device, .. } => Some(device),
            Command::Compare { .. } | Command::Figures { .. } => None,
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = match cli.command.device() {
        Some(device) => {
            ddssm_tensor_ops::parse_device(device).with_context(|| format!("--device {device}"))?
        }
        None => candle_core::Device::Cpu,
    };
    match cli.command {
        Command::BimodalExperiment {
            out,
            config,
            seed,
            steps,
            quick,
            resume,
            force,
            print_config,
            ddssm_only,
            init_ddssm,
            ..
        } => {
            let args = bimodal::Args {
                out,
                config,
                seed,
                steps,
                device,
                quick,
                resume,
                force,
                progress: std::io::stderr().is_terminal(),
                ddssm_only,
                init_ddssm,
            };
            if print_config {
                print!("{}", toml::to_string(&bimodal::resolve_config(&args)?)?);
                return Ok(());
            }
            bimodal::run(&args)
        }
        Command::Bench {
            peer,
            python,
            pairs,
            runs,
            sampler_examples,
            sampler_samples,
            skip_scaling,
            quick,
            out,
            only,
            micro_batch,
            ..
        } => bench::run(&bench::Args {
            runs,
            sampler_examples,
            sampler_samples,
            skip_scaling,
            quick,
            peer: peer || pairs > 0,
            pairs,
            python,
            out,
            only,
            micro_batch,
            device,
        }),
        Command::Tune {
            model,
            trials,
            steps,
            metric,
            seed,
            space,
            out,
            write_config,
            quick,
            ..
        } => {
            let model = match model {
                ModelKind::Ddssm => "ddssm",
                ModelKind::Dkf => "dkf",
            };
            tune::run(&tune::Args {
                study: ddssm_train::study::StudyOptions {
                    model: model.to_string(),
                    trials: trials.unwrap_or(if quick { 3 } else { 50 }),
                    steps: steps.unwrap_or(if quick { 3 } else { 1500 }),
                    metric: match metric {
                        MetricKind::Jsd => ddssm_train::study::Metric::Jsd,
                        MetricKind::CrpsSum => ddssm_train::study::Metric::CrpsSum,
                    },
                    seed,
                    quick,
                    space,
                    out: out.unwrap_or_else(|| PathBuf::from(format!("results/tune-{model}"))),
                },
                write_config: write_config.or_else(|| {
                    (!quick).then(|| PathBuf::from(format!("configs/tuned/{model}.toml")))
                }),
                device,
            })
        }
        Command::SamplerTradeoff {
            run,
            sequences,
            samples,
            ..
        } => tradeoff::run(&tradeoff::Args {
            run,
            sequences,
            samples,
            device,
        }),
        Command::Compare { runs, out } => compare::run(&runs, out.as_ref()),
        Command::Figures { run } => figures::redraw(&run),
        Command::Diagnose {
            run,
            sequences,
            draws,
            iwae_sequences,
            iwae_draws,
            ..
        } => diagnose::run(&diagnose::Args {
            run,
            sequences,
            draws,
            iwae_sequences,
            iwae_draws,
            device,
        }),
        Command::RealData {
            config,
            steps,
            out,
            python,
            no_statsmodels,
            resume,
            force,
            report_only,
            ..
        } => realdata::run(&realdata::Args {
            config,
            steps,
            out,
            python: (!no_statsmodels).then_some(python),
            resume,
            force,
            report_only,
            device,
        }),
    }
}

fn main() -> ExitCode {
    // Allocator, threads and logging, before any candle op (docs/performance.md).
    if let Err(err) = ddssm_train::start_process() {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
