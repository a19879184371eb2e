//! A user's own series end to end as library calls: the paper's model and training configs sized
//! to a [`Panel`] ([`series_run`]), training on its rolling-origin training windows with the
//! negative ELBO of the validation windows as the validation score ([`fit_series`]), and scoring
//! the held-out test windows beside the point baselines ([`evaluate_test_windows`]). The `ddssm`
//! command and `cargo xtask real-data` are thin callers of these.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use ddssm_data::{rolling_origin, Panel, Splits, Window, WindowSpec};
use ddssm_eval::forecasting::{baselines, draws_in_rows, score_windows, Evaluation, Horizon};
use ddssm_model::{Batch, ElboOptions, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::dataset::{standardization, window_batch};
use crate::{fit, Error, Metrics, ModelRun, Result, TrainConfig, TrainOptions, TrainReport};

/// Which transition a series model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// A conditional diffusion model (the DDSSM).
    Ddssm,
    /// A Gaussian transition (the deep Kalman filter).
    Dkf,
}

impl Transition {
    /// The lower-case name (`ddssm`, `dkf`).
    pub fn name(self) -> &'static str {
        match self {
            Transition::Ddssm => "ddssm",
            Transition::Dkf => "dkf",
        }
    }
}

/// Sequences per chunk when scoring many windows (bounds the memory of one ELBO or forecast).
pub const CHUNK: usize = 64;

/// The paper's model and training configs (Table 3) for a panel with `d` targets, `v` covariates
/// and `p` statics: `steps` training steps with the λ warm-up scaled by `steps / 3000` (the
/// paper's length), validation and checkpoints every tenth of the run, and the batch no larger
/// than the `windows` training windows.
pub fn series_run(
    transition: Transition,
    steps: usize,
    seed: u64,
    (d, v, p): (usize, usize, usize),
    windows: usize,
) -> ModelRun {
    let (mut model, mut train) = match transition {
        Transition::Ddssm => (ModelConfig::paper_ddssm(), TrainConfig::paper_ddssm()),
        Transition::Dkf => (ModelConfig::paper_dkf(), TrainConfig::paper_dkf()),
    };
    model.obs_dim = d;
    model.covariate_dim = v;
    model.static_dim = p;
    let paper_steps = train.steps;
    train.lambda.lambda_warmup_steps =
        (train.lambda.lambda_warmup_steps * steps).div_ceil(paper_steps);
    train.steps = steps;
    train.seed = seed;
    train.batch_size = train.batch_size.min(windows.max(1));
    train.validate_every = (steps / 10).max(1);
    train.checkpoint_every = (steps / 10).max(1);
    ModelRun { model, train }
}

/// The negative ELBO per sequence of `batch` (nats of the data's own units, Jacobian included),
/// averaged over its sequences, computed [`CHUNK`] sequences at a time.
pub fn mean_negative_elbo(model: &Model, batch: &Batch, noise: &mut SeededNoise) -> Result<f64> {
    let n = batch.batch();
    let mut total = 0.0;
    for start in (0..n).step_by(CHUNK) {
        let chunk = batch.rows(start, CHUNK.min(n - start))?;
        let terms = model.elbo(&chunk, &ElboOptions::default(), noise)?;
        total += terms
            .negative_elbo()?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(total / n.max(1) as f64)
}

/// A model trained on a panel, with the split it was trained on.
#[derive(Debug)]
pub struct FittedSeries {
    /// The trained model (it takes and returns the data's own units).
    pub model: Model,
    /// The training report.
    pub report: TrainReport,
    /// The rolling-origin split: training, validation and test windows, the scaling.
    pub splits: Splits,
}

/// Cuts `panel` by `spec`, trains `run` on the training windows (the model standardises by the
/// training part's scaling) with the validation windows' mean negative ELBO as the validation
/// score, and returns the model with its split. `run`'s sizes must match the panel's.
pub fn fit_series(
    panel: &Panel,
    spec: &WindowSpec,
    run: &ModelRun,
    options: &TrainOptions,
    device: &Device,
) -> Result<FittedSeries> {
    let splits = rolling_origin(panel, spec).map_err(|e| Error::State(e.to_string()))?;
    let sizes = (
        panel.target_dim(),
        panel.covariate_dim(),
        panel.static_dim(),
    );
    let m = &run.model;
    if (m.obs_dim, m.covariate_dim, m.static_dim) != sizes {
        return Err(Error::State(format!(
            "the model has (targets, covariates, statics) = {:?}, the data {sizes:?}",
            (m.obs_dim, m.covariate_dim, m.static_dim)
        )));
    }
    let len = spec.context + spec.horizon;
    let data = window_batch(panel, &splits.train, len, device)?;
    let validation = window_batch(panel, &splits.validation, len, device)?;
    let root = SeededNoise::new(run.train.seed);
    let mut validate = |model: &Model, step: usize| -> Result<Metrics> {
        let mut noise = root.fork(&format!("validation/{step}"));
        let nelbo = mean_negative_elbo(model, &validation, &mut noise)?;
        Ok(Metrics::from([("negative_elbo".to_string(), nelbo)]))
    };
    let (model, report) = fit(
        run,
        run.train.seed,
        Some(standardization(&splits.scaling)),
        &data,
        options,
        &mut validate,
    )?;
    Ok(FittedSeries {
        model,
        report,
        splits,
    })
}

/// Forecast sample paths `[N, H, D]` per draw for each of `windows` (their context as history,
/// their covariates over context and horizon), [`CHUNK`] windows at a time: the draws laid out
/// `[W, H, D, n]` as [`draws_in_rows`] reads them.
pub fn window_forecast_draws(
    model: &Model,
    panel: &Panel,
    windows: &[Window],
    (context, horizon): (usize, usize),
    samples: usize,
    noise: &mut SeededNoise,
) -> Result<Vec<f64>> {
    let device = model.device().clone();
    let mut draws = Vec::with_capacity(windows.len() * horizon * panel.target_dim() * samples);
    for chunk in windows.chunks(CHUNK) {
        let mut batch = window_batch(panel, chunk, context, &device)?;
        if panel.covariate_dim() > 0 {
            batch.covariates = window_batch(panel, chunk, context + horizon, &device)?.covariates;
        }
        let paths = model.forecast(&batch, horizon, samples, noise)?;
        draws.extend(draws_by_row(&paths.samples)?);
    }
    Ok(draws)
}

/// Forecast samples `[n, B, H, D]` as `[B, H, D, n]` values: the `n` draws of each sequence, step
/// and variable in a row (the row of `(b, h, k)` starts at `((b·H + h)·D + k)·n`).
pub fn draws_by_row(samples: &Tensor) -> Result<Vec<f64>> {
    Ok(samples
        .to_dtype(DType::F64)?
        .permute((1, 2, 3, 0))?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// Scores `model` on the test windows of `splits` (`samples` paths each, drawn from `noise`) and
/// the point baselines on the same windows ([`baselines`]; `season` sets the seasonal-naive
/// baseline and the MASE scale): `"model"` and the baselines' names to their evaluations.
pub fn evaluate_test_windows(
    model: &Model,
    panel: &Panel,
    splits: &Splits,
    samples: usize,
    season: usize,
    noise: &mut SeededNoise,
) -> Result<BTreeMap<String, Evaluation>> {
    let spec = &splits.spec;
    let at = Horizon {
        context: spec.context,
        horizon: spec.horizon,
        season,
    };
    let draws = window_forecast_draws(
        model,
        panel,
        &splits.test,
        (spec.context, spec.horizon),
        samples,
        noise,
    )?;
    let draw = draws_in_rows(&draws, spec.horizon, panel.target_dim(), samples);
    let mut results = baselines(panel, &splits.test, at);
    results.insert(
        "model".into(),
        score_windows(panel, &splits.test, at, &draw),
    );
    Ok(results)
}
