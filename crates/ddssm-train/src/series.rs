//! A user's own series end to end as library calls: the paper's model and training configs sized
//! to a [`Panel`] ([`series_run`]), training on its rolling-origin training windows with the
//! negative ELBO of the validation windows as the validation score ([`fit_series`]), and scoring
//! the held-out test windows beside the point baselines ([`evaluate_test_windows`]; fit and score
//! in one call: [`fit_and_score`]; another forecaster's draws: [`score_draws`]). The `ddssm`
//! command and `cargo xtask real-data` are thin callers of these.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use ddssm_data::{rolling_origin, Panel, Splits, Window, WindowSpec};
use ddssm_eval::forecasting::{baselines, draws_in_rows, score_windows, Evaluation, Horizon};
use ddssm_model::{Batch, ElboOptions, Model, ModelConfig, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

pub use crate::dataset::panel_sizes;
use crate::dataset::{standardization, window_batch};
use crate::{fit, Error, Metrics, ModelRun, Result, TrainConfig, TrainOptions, TrainReport};
/// The diffusion samplers a forecast can use ([`use_sampler`]).
pub use ddssm_diffusion::Sampler;

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

/// The sampler a user's DDSSM forecasts with unless told otherwise: DPM-Solver++(2M) on 20 of the
/// K = 128 noise levels (6.4× fewer network calls than the ancestral chain of Eq. 27). On trained
/// bimodal DDSSMs, the sharpest predictive we have, its one-step `jsd_exact` matched the ancestral
/// sampler's, paired on the same noise (docs/performance.md, "Few-step sampler as the default").
/// Training and the ELBO do not depend on it; `ddssm forecast --sampler ancestral` restores the
/// paper's chain.
pub const FORECAST_SAMPLER: Sampler = Sampler::DpmSolver2M { steps: 20 };

/// Sets the sampler a model's forecasts use: `choice`, else [`FORECAST_SAMPLER`] for a diffusion
/// transition. A Gaussian transition has no sampler: `None` leaves it alone, `Some` is an error.
pub fn use_sampler(model: &mut Model, choice: Option<Sampler>) -> Result<()> {
    let diffusion = matches!(model.config().transition, TransitionConfig::Diffusion(_));
    match (diffusion, choice) {
        (true, choice) => Ok(model.set_sampler(choice.unwrap_or(FORECAST_SAMPLER))?),
        (false, None) => Ok(()),
        (false, Some(s)) => Err(Error::InvalidConfig {
            field: "sampler".into(),
            value: s.to_string(),
            allowed: "no sampler: this model's transition is Gaussian (a DKF), which is sampled \
                      in closed form"
                .into(),
        }),
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

/// The per-target marginal Gaussian (the training part's mean and standard deviation, no dynamics)
/// scored on a set of windows: what a model whose latent path carries nothing (a collapsed
/// posterior) achieves, so that a model's negative ELBO can be read against it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarginalBaseline {
    /// Its negative log-likelihood per window (nats, data units), averaged over the windows.
    pub nll_per_window: f64,
    /// Observed target entries per window, averaged over the windows.
    pub entries_per_window: f64,
}

/// Below this many nats per observed entry of improvement over the [`MarginalBaseline`], a
/// model's negative ELBO says it has learned (almost) no dynamics: the validation scores of the
/// real-data benchmark show such fits forecasting the unconditional distribution
/// (docs/results/real-data.md).
pub const COLLAPSE_NATS_PER_ENTRY: f64 = 0.1;

impl MarginalBaseline {
    /// Scores the Gaussian `N(scaling.mean_k, scaling.std_k²)` on the observed targets of steps
    /// `start … start + len − 1` of each window.
    pub fn of(
        panel: &Panel,
        windows: &[Window],
        len: usize,
        scaling: &ddssm_data::Scaling,
    ) -> Self {
        let d = panel.target_dim();
        let (mut nll, mut entries) = (0.0, 0usize);
        for w in windows {
            let s = &panel.series[w.series];
            for t in w.start..(w.start + len).min(s.len()) {
                for k in 0..d {
                    if s.observed[t * d + k] {
                        let z = (s.targets[t * d + k] - scaling.mean[k]) / scaling.std[k];
                        nll += 0.5 * (2.0 * std::f64::consts::PI).ln()
                            + scaling.std[k].ln()
                            + 0.5 * z * z;
                        entries += 1;
                    }
                }
            }
        }
        let n = windows.len().max(1) as f64;
        MarginalBaseline {
            nll_per_window: nll / n,
            entries_per_window: entries as f64 / n,
        }
    }

    /// How many nats per observed entry a model's negative ELBO per window is below this
    /// baseline's negative log-likelihood (a bound, so the true gain is at least this).
    pub fn gain_per_entry(&self, negative_elbo_per_window: f64) -> f64 {
        (self.nll_per_window - negative_elbo_per_window) / self.entries_per_window.max(1.0)
    }

    /// A warning when `negative_elbo_per_window` improves on the baseline by less than
    /// [`COLLAPSE_NATS_PER_ENTRY`].
    pub fn collapse_warning(&self, negative_elbo_per_window: f64) -> Option<String> {
        let gain = self.gain_per_entry(negative_elbo_per_window);
        (gain < COLLAPSE_NATS_PER_ENTRY).then(|| {
            format!(
                "the validation −ELBO ({negative_elbo_per_window:.2} nats per window) is only \
                 {gain:.3} nats per observed entry below a per-target Gaussian without dynamics \
                 ({:.2}): the model has learned (almost) nothing about how the series move and \
                 will forecast close to their unconditional distribution; train longer \
                 (--steps) or try another seed",
                self.nll_per_window
            )
        })
    }
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
    /// The marginal Gaussian on the validation windows, to read the validation −ELBO against.
    pub marginal: MarginalBaseline,
    /// The last validation's negative ELBO per window.
    pub validation_nelbo: Option<f64>,
}

/// Checks that `run`'s model takes `panel`'s series: its `obs_dim`, `covariate_dim` and
/// `static_dim` are the panel's numbers of targets, covariates and statics.
pub fn check_sizes(run: &ModelRun, panel: &Panel) -> Result<()> {
    let sizes = panel_sizes(panel);
    let m = &run.model;
    let model = (m.obs_dim, m.covariate_dim, m.static_dim);
    if model == sizes {
        Ok(())
    } else {
        Err(Error::State(format!(
            "model.obs_dim, covariate_dim and static_dim are {model:?}, but the data have \
             {sizes:?} targets, covariates and statics"
        )))
    }
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
    check_sizes(run, panel)?;
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
    let marginal = MarginalBaseline::of(panel, &splits.validation, len, &splits.scaling);
    let validation_nelbo = report
        .validations
        .last()
        .and_then(|(_, m)| m.get("negative_elbo").copied());
    if let Some(warning) = validation_nelbo.and_then(|v| marginal.collapse_warning(v)) {
        tracing::warn!("{}: {warning}", options.label);
    }
    Ok(FittedSeries {
        model,
        report,
        splits,
        marginal,
        validation_nelbo,
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

/// Forecasts `windows` with `model` (`samples` paths each, drawn from `noise`;
/// [`window_forecast_draws`]) and scores the draws at `at` ([`score_windows`]): the evaluation,
/// and the draws laid out `[W, H, D, n]` for whoever also wants them (fan charts).
pub fn forecast_and_score(
    model: &Model,
    panel: &Panel,
    windows: &[Window],
    at: Horizon,
    samples: usize,
    noise: &mut SeededNoise,
) -> Result<(Evaluation, Vec<f64>)> {
    let draws = window_forecast_draws(
        model,
        panel,
        windows,
        (at.context, at.horizon),
        samples,
        noise,
    )?;
    Ok((score_draws(panel, windows, at, &draws, samples)?, draws))
}

/// Scores forecast draws of `windows` laid out `[W, H, D, n]` (`samples` = `n` per row, as
/// [`window_forecast_draws`] gives them, or any other forecaster's) at `at` ([`score_windows`]).
/// Fails, naming both counts, when `draws` does not hold exactly that many.
pub fn score_draws(
    panel: &Panel,
    windows: &[Window],
    at: Horizon,
    draws: &[f64],
    samples: usize,
) -> Result<Evaluation> {
    let expected = windows.len() * at.horizon * panel.target_dim() * samples;
    if draws.len() != expected {
        return Err(Error::State(format!(
            "{} forecast draws for {} windows × {} steps × {} targets × {samples} samples: \
             expected {expected}",
            draws.len(),
            windows.len(),
            at.horizon,
            panel.target_dim()
        )));
    }
    let rows = draws_in_rows(draws, at.horizon, panel.target_dim(), samples);
    Ok(score_windows(panel, windows, at, &rows))
}

/// Where the test windows of `spec` start forecasting and how far they reach, with `season` as
/// the seasonal-naive baseline's and the MASE scale's season.
pub fn horizon(spec: &WindowSpec, season: usize) -> Horizon {
    Horizon {
        context: spec.context,
        horizon: spec.horizon,
        season,
    }
}

/// A model fitted on a panel ([`fit_series`]) with its test windows forecast and scored
/// ([`forecast_and_score`]).
#[derive(Debug)]
pub struct ScoredFit {
    /// The fit.
    pub fitted: FittedSeries,
    /// Seconds the training took.
    pub fit_seconds: f64,
    /// The scores on the test windows.
    pub evaluation: Evaluation,
    /// The test draws laid out `[W, H, D, n]`.
    pub draws: Vec<f64>,
}

/// Fits `run` on `panel` cut by `spec` ([`fit_series`], timed), then forecasts its test windows,
/// `samples` paths each drawn from `noise`, and scores them with `season` as the MASE season.
pub fn fit_and_score(
    panel: &Panel,
    spec: &WindowSpec,
    run: &ModelRun,
    options: &TrainOptions,
    (season, samples): (usize, usize),
    noise: &mut SeededNoise,
    device: &Device,
) -> Result<ScoredFit> {
    let start = std::time::Instant::now();
    let fitted = fit_series(panel, spec, run, options, device)?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let at = horizon(spec, season);
    let (evaluation, draws) = forecast_and_score(
        &fitted.model,
        panel,
        &fitted.splits.test,
        at,
        samples,
        noise,
    )?;
    Ok(ScoredFit {
        fitted,
        fit_seconds,
        evaluation,
        draws,
    })
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
    let at = horizon(&splits.spec, season);
    let (evaluation, _) = forecast_and_score(model, panel, &splits.test, at, samples, noise)?;
    let mut results = baselines(panel, &splits.test, at);
    results.insert("model".into(), evaluation);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddssm_data::{read_csv, Columns, Scaling};

    #[test]
    fn forecasts_default_to_the_few_step_sampler_and_a_dkf_refuses_one() {
        let mut ddssm =
            Model::new(&ModelConfig::paper_ddssm(), 0, DType::F32, &Device::Cpu).unwrap();
        let sampler = |m: &Model| match &m.config().transition {
            TransitionConfig::Diffusion(d) => Some(d.sampler),
            TransitionConfig::Gaussian(_) => None,
        };
        // The paper's config records the ancestral chain; a forecast switches to the default.
        assert_eq!(sampler(&ddssm), Some(Sampler::default()));
        use_sampler(&mut ddssm, None).unwrap();
        assert_eq!(sampler(&ddssm), Some(FORECAST_SAMPLER));
        use_sampler(&mut ddssm, Some(Sampler::Ddim { steps: 7 })).unwrap();
        assert_eq!(sampler(&ddssm), Some(Sampler::Ddim { steps: 7 }));

        let mut dkf = Model::new(&ModelConfig::paper_dkf(), 0, DType::F32, &Device::Cpu).unwrap();
        use_sampler(&mut dkf, None).unwrap();
        let err = use_sampler(&mut dkf, Some(FORECAST_SAMPLER))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sampler") && err.contains("Gaussian"), "{err}");
    }

    /// The panel of `csv` (targets `a` and `b` over time `t`), read from a file in a scratch
    /// folder (removed once read).
    fn two_target_panel(csv: &str) -> Panel {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("panel.csv");
        std::fs::write(&path, csv).unwrap();
        read_csv(&path, &Columns::new("t", &["a", "b"])).unwrap()
    }

    #[test]
    fn the_marginal_baseline_is_the_gaussian_nll_of_the_observed_entries() {
        let panel = two_target_panel("t,a,b\n0,1,\n1,3,4\n2,5,6\n");
        let scaling = Scaling {
            mean: vec![3.0, 5.0],
            std: vec![2.0, 1.0],
        };
        let windows = [
            Window {
                series: 0,
                start: 0,
            },
            Window {
                series: 0,
                start: 1,
            },
        ];
        let m = MarginalBaseline::of(&panel, &windows, 2, &scaling);
        // Window 0: a = 1, 3 and b = 4 (b missing at t = 0); window 1: a = 3, 5 and b = 4, 6.
        let nll = |y: f64, mean: f64, std: f64| {
            0.5 * (2.0 * std::f64::consts::PI).ln() + std.ln() + 0.5 * ((y - mean) / std).powi(2)
        };
        let w0 = nll(1.0, 3.0, 2.0) + nll(3.0, 3.0, 2.0) + nll(4.0, 5.0, 1.0);
        let w1 = nll(3.0, 3.0, 2.0) + nll(5.0, 3.0, 2.0) + nll(4.0, 5.0, 1.0) + nll(6.0, 5.0, 1.0);
        assert!((m.nll_per_window - (w0 + w1) / 2.0).abs() < 1e-12);
        assert_eq!(m.entries_per_window, 3.5);
        // A bound no better than the marginal is flagged; one nat per entry better is not.
        assert!(m.collapse_warning(m.nll_per_window).is_some());
        assert!(m.collapse_warning(m.nll_per_window - 3.5).is_none());
        assert!((m.gain_per_entry(m.nll_per_window - 3.5) - 1.0).abs() < 1e-12);
    }

    /// Draws of another forecaster are scored only when they hold every window's paths; a short
    /// slice is an error naming both counts.
    #[test]
    fn score_draws_refuses_a_wrong_number_of_draws() {
        let panel = two_target_panel("t,a,b\n0,1,2\n1,3,4\n2,5,6\n");
        let windows = [Window {
            series: 0,
            start: 0,
        }];
        let at = Horizon {
            context: 1,
            horizon: 1,
            season: 1,
        };
        // One window × one step × two targets × two samples.
        let draws = [3.0, 3.5, 4.0, 4.5];
        assert!(score_draws(&panel, &windows, at, &draws, 2).is_ok());
        let err = score_draws(&panel, &windows, at, &draws[..3], 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 forecast draws") && err.contains("expected 4"),
            "{err}"
        );
    }
}
