//! `ddssm fit` and `ddssm info`: the run folder and what its model file carries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use ddssm_data::{read_csv, rolling_origin, Columns, WindowSpec};
use ddssm_model::{checkpoint, Model};
use ddssm_train::series::{
    check_sizes, fit_series, panel_sizes, series_run, use_sampler, FittedSeries, Sampler,
    Transition,
};
use ddssm_train::TrainOptions;

use crate::ModelKind;

/// Metadata keys the run's model file adds: what `forecast` needs besides the model.
pub mod keys {
    /// The file's column roles ([`ddssm_data::Columns`] as JSON).
    pub const COLUMNS: &str = "ddssm.columns";
    /// The windowing ([`ddssm_data::WindowSpec`] as JSON).
    pub const WINDOWS: &str = "ddssm.windows";
}

/// The model file of a run folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// The training checkpoint of a run folder (what `--resume` continues).
const TRAIN_FILE: &str = "train.safetensors";

/// `ddssm fit`'s options.
#[derive(Debug, Clone)]
pub struct FitArgs {
    /// The CSV file.
    pub data: PathBuf,
    /// Its column roles.
    pub columns: Columns,
    /// The windowing.
    pub spec: WindowSpec,
    /// The transition.
    pub model: ModelKind,
    /// Training steps.
    pub steps: usize,
    /// The seed.
    pub seed: u64,
    /// A run config file (`[model]`, `[train]`) written over the run the options above give.
    pub config: Option<PathBuf>,
    /// Print the run config as TOML instead of training.
    pub print_config: bool,
    /// The device.
    pub device: Device,
    /// The run folder; `None` only with `print_config`, which writes nothing.
    pub out: Option<PathBuf>,
    /// Continue an interrupted fit.
    pub resume: bool,
    /// Replace a run in `out`.
    pub force: bool,
    /// Start from this file's parameters (a warm start, [`TrainOptions::init`]).
    pub init: Option<PathBuf>,
}

/// Trains a model on `args.data` and writes the run folder.
pub fn fit(args: &FitArgs) -> Result<()> {
    let panel = read_csv(&args.data, &args.columns)?;
    let splits = rolling_origin(&panel, &args.spec)?;
    let transition = match args.model {
        ModelKind::Ddssm => Transition::Ddssm,
        ModelKind::Dkf => Transition::Dkf,
    };
    let run = series_run(
        transition,
        args.steps,
        args.seed,
        panel_sizes(&panel),
        splits.train.len(),
    );
    let run = match &args.config {
        Some(path) => {
            let given = run.model.transition.kind();
            let run = ddssm_train::read_toml_over(
                path,
                "run config",
                &run,
                "the run that --model, --steps and --seed give",
            )?;
            let kind = run.model.transition.kind();
            if kind != given {
                bail!(
                    "--config {}: model.transition.kind = {kind:?}, but the transition comes \
                     from --model ({:?} for --model {}): leave the kind out of the file, or \
                     choose the other --model",
                    path.display(),
                    given,
                    transition.name()
                );
            }
            check_sizes(&run, &panel).with_context(|| {
                format!(
                    "--config {}: leave the sizes out of the file, they come from --target, \
                     --covariates and --static",
                    path.display()
                )
            })?;
            run
        }
        None => run,
    };
    run.validate("").with_context(|| match &args.config {
        Some(path) => format!("--config {}", path.display()),
        None => "the run --model, --steps and --seed give".into(),
    })?;
    if args.print_config {
        print!("{}", toml::to_string(&run)?);
        return Ok(());
    }
    let out = args
        .out
        .as_deref()
        .context("--out is needed to train (only --print-config goes without one)")?;
    let train_path = out.join(TRAIN_FILE);
    let occupied = [MODEL_FILE, TRAIN_FILE]
        .iter()
        .any(|f| out.join(f).exists());
    if occupied && !args.resume && !args.force {
        bail!(
            "{} already holds a run: continue it with --resume, replace it with --force, or \
             choose another --out",
            out.display()
        );
    }
    if args.resume {
        ddssm_train::resumable_step(&train_path, &run.model, &run.train)
            .with_context(|| format!("--resume in {}", out.display()))?;
    }
    if let Some(init) = &args.init {
        // The model config and the data's standardisation (the training part's scaling, as
        // `fit_series` gives it to the model), before anything is written.
        let ours = ddssm_train::dataset::standardization(&splits.scaling);
        ddssm_train::check_init(init, &run.model, Some(&ours)).context("--init")?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    checkpoint::remove_stale_temp_files(out)?;
    tracing::info!(
        "{}: {} series; {} training, {} validation and {} test windows of {} + {} steps",
        args.data.display(),
        panel.series.len(),
        splits.train.len(),
        splits.validation.len(),
        splits.test.len(),
        args.spec.context,
        args.spec.horizon
    );
    let options = TrainOptions {
        checkpoint: Some(train_path),
        resume: args.resume,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        label: "fit".into(),
        init: args.init.clone(),
    };
    let FittedSeries {
        model,
        report,
        splits,
        marginal,
        validation_nelbo,
    } = fit_series(&panel, &args.spec, &run, &options, &args.device)?;
    let mut extra = BTreeMap::new();
    extra.insert(keys::COLUMNS.into(), serde_json::to_string(&args.columns)?);
    extra.insert(keys::WINDOWS.into(), serde_json::to_string(&args.spec)?);
    model.save(&out.join(MODEL_FILE), &extra)?;
    let summary = serde_json::json!({
        "data": args.data,
        "columns": args.columns,
        "windows": args.spec,
        "train_windows": splits.train.len(),
        "validation_windows": splits.validation.len(),
        "test_windows": splits.test.len(),
        "config": run,
        "init": ddssm_train::warm_start_of(&out.join(TRAIN_FILE))?,
        "validation_negative_elbo": validation_nelbo,
        "marginal_gaussian": marginal,
        "collapse_warning": validation_nelbo.and_then(|v| marginal.collapse_warning(v)),
        "report": report,
    });
    checkpoint::write_atomic(
        &out.join("training.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    tracing::info!(
        "wrote {} (the model, its column roles and windowing) and training.json",
        out.join(MODEL_FILE).display()
    );
    Ok(())
}

/// A run's model with the column roles and windowing it was fitted with.
/// [`load`], then the sampler its forecasts use: `sampler`, else
/// [`ddssm_train::series::FORECAST_SAMPLER`] for a DDSSM (a DKF refuses a sampler).
pub fn load_for_sampling(
    path: &Path,
    device: &Device,
    sampler: Option<Sampler>,
) -> Result<(Model, Columns, WindowSpec)> {
    let (mut model, columns, spec) = load(path, device)?;
    use_sampler(&mut model, sampler).context("--sampler")?;
    Ok((model, columns, spec))
}

pub fn load(path: &Path, device: &Device) -> Result<(Model, Columns, WindowSpec)> {
    let file = if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    };
    if !file.exists() {
        bail!(
            "{}: no model here (a run folder holds {MODEL_FILE}, written when `ddssm fit` ends)",
            file.display()
        );
    }
    let meta = checkpoint::read_metadata(&file)?;
    let field = |key: &str| -> Result<&String> {
        meta.get(key).with_context(|| {
            format!(
                "{}: no `{key}`: not written by `ddssm fit` (a model without column roles)",
                file.display()
            )
        })
    };
    let columns: Columns = serde_json::from_str(field(keys::COLUMNS)?)
        .with_context(|| format!("{}: `{}`", file.display(), keys::COLUMNS))?;
    let spec: WindowSpec = serde_json::from_str(field(keys::WINDOWS)?)
        .with_context(|| format!("{}: `{}`", file.display(), keys::WINDOWS))?;
    let model = Model::load(&file, device)?;
    Ok((model, columns, spec))
}

/// `ddssm info`: prints what a model file or run folder holds.
pub fn info(path: &Path) -> Result<()> {
    let (model, columns, spec) = load(path, &Device::Cpu)?;
    let c = model.config();
    println!("transition:   {}", c.transition.kind());
    println!(
        "sizes:        M = {}, D = {}, j = {}, {} covariates, {} statics, {} parameters",
        c.latent_dim,
        c.obs_dim,
        c.order,
        c.covariate_dim,
        c.static_dim,
        model.parameter_count()
    );
    println!("time:         {}", columns.time);
    println!("targets:      {}", columns.targets.join(", "));
    let list = |names: &[String]| match names {
        [] => "(none)".to_string(),
        _ => names.join(", "),
    };
    println!("covariates:   {}", list(&columns.covariates));
    println!("statics:      {}", list(&columns.statics));
    println!(
        "id:           {}",
        columns.id.as_deref().unwrap_or("(one series)")
    );
    println!(
        "windows:      context {}, horizon {}, {} test and {} validation origins per series",
        spec.context, spec.horizon, spec.test_windows, spec.validation_windows
    );
    if let Some(s) = model.standardization() {
        println!("scaling:      mean {:?}, std {:?}", s.mean, s.std);
    }
    Ok(())
}
