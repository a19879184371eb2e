//! `ddssm`: fit, forecast and inspect diffusion-driven state space models (or the DKF) on your own
//! CSV series. Every step is a library call (`ddssm-data` reads and windows the file,
//! `ddssm_train::fit` trains, the model forecasts in the data's own units); this binary holds the
//! command line, the run folder and the output files.
//!
//! - `ddssm fit`: reads the file, cuts rolling-origin windows, trains on the training windows
//!   (validating the negative ELBO on the validation windows, checkpointing, `--resume`), and
//!   writes the run folder: `model.safetensors` (the trained model, with the file's column roles
//!   and the windowing inside, so the folder alone serves `forecast`), `train.safetensors` (the
//!   training checkpoint) with `train.history.json` beside it (the training report so far, which
//!   `--resume` carries on), `training.json`.
//! - `ddssm forecast`: `--horizon` steps after the last observation of every series, quantiles
//!   and mean per series, variable and step, as CSV; `--plot` fan charts (PNG, SVG),
//!   `--samples-out` the raw paths (safetensors).
//! - `ddssm evaluate`: the model on the test windows `fit` held out, beside the last-value and
//!   seasonal-naive baselines: fair CRPS, energy score, MAE/RMSE of the median, MASE, coverage
//!   of the 50 % and 90 % intervals, per horizon step and overall (results.json, report.md).
//! - `ddssm info`: what a model file or run folder holds.

mod evaluate;
mod forecast;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ddssm_train::series::Sampler;

/// Fit, forecast and inspect diffusion-driven state space models on your own CSV series.
#[derive(Debug, Parser)]
#[command(name = "ddssm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which transition the model has.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelKind {
    /// A conditional diffusion model (the DDSSM).
    Ddssm,
    /// A Gaussian transition (the deep Kalman filter).
    Dkf,
}

/// The device named by `--device`.
fn device_option(name: &str) -> Result<candle_core::Device> {
    ddssm_tensor_ops::parse_device(name).with_context(|| format!("--device {name}"))
}

/// Comma-separated column names.
fn columns(list: &str) -> Vec<String> {
    list.split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model on a CSV file's series and write a run folder.
    Fit {
        /// The CSV file (a header row, one row per series and time).
        #[arg(long)]
        data: PathBuf,
        /// The time column (numbers, or text that sorts in time order such as ISO dates).
        #[arg(long)]
        time: String,
        /// Target columns, comma-separated (empty, NA or NaN cells are missing values).
        #[arg(long)]
        target: String,
        /// Covariate columns known over history and horizon, comma-separated.
        #[arg(long, default_value = "")]
        covariates: String,
        /// Static columns (one value per series), comma-separated.
        #[arg(long = "static", default_value = "")]
        statics: String,
        /// The series id column, for many series in one file (long format).
        #[arg(long)]
        id: Option<String>,
        /// Steps of context before each forecast origin.
        #[arg(long)]
        context: usize,
        /// Steps forecast after each origin.
        #[arg(long)]
        horizon: usize,
        /// Forecast origins per series held out for testing (the last ones); as many before them
        /// validate.
        #[arg(long, default_value_t = 1)]
        test_windows: usize,
        /// The transition.
        #[arg(long, value_enum, default_value = "ddssm")]
        model: ModelKind,
        /// Training steps (the paper's runs: 3000); the λ warm-up is scaled with them.
        #[arg(long, default_value_t = 3000)]
        steps: usize,
        /// The seed of initialisation, batches and every draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A TOML file of model and training settings (`[model]`, `[train]`: the fields of
        /// configs/models/*.toml and of an experiment config's `[ddssm.train]`) written over the
        /// run the options above give, key by key: it holds only what it changes (e.g.
        /// `[model]` `latent_dim = 4`, `[train]` `max_grad_norm = 5.0`). It may name a `base`.
        /// The transition's kind comes from --model; the data's sizes from the columns.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the run's config (the paper's, sized to the data, after --steps, --seed and
        /// --config), validated, as TOML and exit without training: every field a --config
        /// file can set.
        #[arg(long)]
        print_config: bool,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
        /// The run folder (not needed with --print-config).
        #[arg(long, required_unless_present = "print_config")]
        out: Option<PathBuf>,
        /// Continue an interrupted fit in `out`.
        #[arg(long)]
        resume: bool,
        /// Replace a run already in `out`.
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Start from the parameters of this file (another run's model.safetensors or
        /// train.safetensors, of the same model config and fitted on the same data) instead of
        /// the seed's initialisation, with the whole training schedule from step 0: a warm start,
        /// e.g. to refit one part of a fitted model with the others frozen (a learning rate of 0
        /// in --config's `[train.learning_rates]`) or to train on under another schedule.
        #[arg(long, conflicts_with = "resume")]
        init: Option<PathBuf>,
    },
    /// Forecast every series of a file after its last observation with a fitted run.
    Forecast {
        /// The run folder written by `ddssm fit`.
        #[arg(long)]
        run: PathBuf,
        /// The CSV file, with the columns the run was fitted on (rows after the last observation
        /// give the covariates of the forecast steps).
        #[arg(long)]
        data: PathBuf,
        /// Steps to forecast (default: the run's horizon).
        #[arg(long)]
        horizon: Option<usize>,
        /// Sample paths per series.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Quantile levels, comma-separated, each in (0, 1).
        #[arg(long, default_value = "0.05,0.5,0.95")]
        quantiles: String,
        /// The seed of the sample paths.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The diffusion sampler of a DDSSM: ancestral (the paper's chain, K calls),
        /// ancestral-beta-tilde, ddim-N, edm-heun-N or dpm-solver++2m-N (N levels visited).
        /// Default: dpm-solver++2m-20, measured equal to ancestral on the bimodal DDSSMs
        /// (docs/performance.md). Not for a DKF.
        #[arg(long)]
        sampler: Option<String>,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
        /// The forecast CSV to write.
        #[arg(long)]
        out: PathBuf,
        /// Also draw a fan chart per series and target: the CSV's name with .png and .svg
        /// (history, median, 50 % and 90 % bands).
        #[arg(long)]
        plot: bool,
        /// Also write the raw sample paths to this safetensors file (tensor `samples`,
        /// [sample, series, step, variable]; the axes' labels in its metadata).
        #[arg(long)]
        samples_out: Option<PathBuf>,
    },
    /// Score a fitted run on the test windows of its file, beside the baselines.
    Evaluate {
        /// The run folder written by `ddssm fit`.
        #[arg(long)]
        run: PathBuf,
        /// The CSV file the run was fitted on.
        #[arg(long)]
        data: PathBuf,
        /// Sample paths per test window.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// The season of the seasonal-naive baseline and the MASE scale (1: the naive forecast).
        #[arg(long, default_value_t = 1)]
        season: usize,
        /// The seed of the sample paths.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The diffusion sampler of a DDSSM: ancestral (the paper's chain, K calls),
        /// ancestral-beta-tilde, ddim-N, edm-heun-N or dpm-solver++2m-N (N levels visited).
        /// Default: dpm-solver++2m-20, measured equal to ancestral on the bimodal DDSSMs
        /// (docs/performance.md). Not for a DKF.
        #[arg(long)]
        sampler: Option<String>,
        /// Device: "cpu", "cuda:N" or "metal".
        #[arg(long, default_value = "cpu")]
        device: String,
        /// The results folder (results.json, report.md).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show what a model file or run folder holds.
    Info {
        /// A `model.safetensors` or a run folder.
        path: PathBuf,
    },
}

/// `--sampler`: a sampler's name as `Sampler` displays it (an error is exit code 1, as every
/// other bad input).
fn sampler_option(name: Option<&str>) -> Result<Option<Sampler>> {
    name.map(|n| n.parse::<Sampler>().context("--sampler"))
        .transpose()
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fit {
            data,
            time,
            target,
            covariates,
            statics,
            id,
            context,
            horizon,
            test_windows,
            model,
            steps,
            seed,
            config,
            print_config,
            device,
            out,
            resume,
            force,
            init,
        } => run::fit(&run::FitArgs {
            data,
            columns: ddssm_data::Columns {
                time,
                targets: columns(&target),
                covariates: columns(&covariates),
                statics: columns(&statics),
                id,
            },
            spec: ddssm_data::WindowSpec {
                context,
                horizon,
                test_windows,
                validation_windows: test_windows,
            },
            model,
            steps,
            seed,
            config,
            print_config,
            device: device_option(&device)?,
            out,
            resume,
            force,
            init,
        }),
        Command::Forecast {
            run,
            data,
            horizon,
            samples,
            quantiles,
            seed,
            sampler,
            device,
            out,
            plot,
            samples_out,
        } => {
            let levels = quantiles
                .split(',')
                .map(|q| {
                    q.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|q| *q > 0.0 && *q < 1.0)
                        .with_context(|| format!("--quantiles: {q:?} is not a level in (0, 1)"))
                })
                .collect::<Result<Vec<f64>>>()?;
            forecast::forecast(&forecast::ForecastArgs {
                run,
                data,
                horizon,
                samples,
                quantiles: levels,
                seed,
                sampler: sampler_option(sampler.as_deref())?,
                device: device_option(&device)?,
                out,
                plot,
                samples_out,
            })
        }
        Command::Evaluate {
            run,
            data,
            samples,
            season,
            seed,
            sampler,
            device,
            out,
        } => evaluate::evaluate(&evaluate::EvaluateArgs {
            run,
            data,
            samples,
            season,
            seed,
            sampler: sampler_option(sampler.as_deref())?,
            device: device_option(&device)?,
            out,
        }),
        Command::Info { path } => run::info(&path),
    }
}

fn main() -> ExitCode {
    // Allocator, threads and logging, before any candle op (docs/performance.md).
    if let Err(err) = ddssm_train::start_process() {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    match execute(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
