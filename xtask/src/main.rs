//! `cargo xtask <command>`: the project's experiments and tools.
//!
//! - `bimodal-experiment`: the paper's Section 4 end to end (data, DKF and DDSSM training, LOCF,
//!   metrics, figures, report);
//! - `tune`: the paper's hyperparameter search (App. F.1.1);
//! - `bench`: benchmarks against the PyTorch peer.
//!
//! Each command validates its options (device, output folder) before any work starts.

mod bench;
mod bimodal;
mod figures;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

/// ddssm's experiments and tools.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// Experiment config (TOML, see configs/bimodal.toml); the paper's settings by default.
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
        /// A one-minute smoke version of the whole pipeline.
        #[arg(long)]
        quick: bool,
        /// Continue an interrupted run from its last checkpoints.
        #[arg(long)]
        resume: bool,
        /// Print the experiment config (after --quick, --seed, --steps) as TOML and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Hyperparameter search with TPE (App. F.1.1).
    Tune {
        /// Which model to tune.
        #[arg(long, value_enum, default_value = "ddssm")]
        model: ModelKind,
        /// Number of trials (the paper: 50).
        #[arg(long, default_value_t = 50)]
        trials: usize,
        /// Training steps per trial (the paper: 1500).
        #[arg(long, default_value_t = 1500)]
        steps: usize,
        /// A small, fast study.
        #[arg(long)]
        quick: bool,
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
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

/// The pieces a command needs that this version of ddssm does not have yet.
fn missing_pieces(command: &Command) -> &'static str {
    match command {
        Command::BimodalExperiment { .. } => "nothing",
        Command::Tune { .. } => "the TPE search (issue 7)",
        Command::Bench { .. } => "nothing",
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = match &cli.command {
        Command::BimodalExperiment { device, .. }
        | Command::Tune { device, .. }
        | Command::Bench { device, .. } => device,
    };
    let parsed =
        ddssm_tensor_ops::parse_device(device).with_context(|| format!("--device {device}"))?;
    if let Command::BimodalExperiment {
        out,
        config,
        seed,
        steps,
        quick,
        resume,
        print_config,
        ..
    } = &cli.command
    {
        if *print_config {
            let cfg = bimodal::ExperimentConfig::paper();
            let cfg = if *quick { cfg.quick() } else { cfg };
            print!("{}", toml::to_string(&cfg)?);
            return Ok(());
        }
        return bimodal::run(&bimodal::Args {
            out: out.clone(),
            config: config.clone(),
            seed: *seed,
            steps: *steps,
            device: parsed,
            quick: *quick,
            resume: *resume,
            progress: std::io::stderr().is_terminal(),
        });
    }
    if let Command::Bench {
        peer,
        python,
        runs,
        sampler_examples,
        sampler_samples,
        skip_scaling,
        quick,
        out,
        ..
    } = &cli.command
    {
        return bench::run(&bench::Args {
            runs: *runs,
            sampler_examples: *sampler_examples,
            sampler_samples: *sampler_samples,
            skip_scaling: *skip_scaling,
            quick: *quick,
            peer: *peer,
            python: python.clone(),
            out: out.clone(),
            device: parsed,
        });
    }
    bail!(
        "this version of ddssm cannot run this command yet: it needs {}. \
         See README.md, section \"What works today\".",
        missing_pieces(&cli.command)
    )
}

fn main() -> ExitCode {
    ddssm_tensor_ops::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
