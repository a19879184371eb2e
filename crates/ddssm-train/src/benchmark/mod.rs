//! A forecasting benchmark over real series (`cargo xtask real-data`, `configs/real-data.toml`):
//! its settings — data sets, column roles, windows, seeds —, one model's fit and scores on a data
//! set ([`RealDataConfig::fit`]) and what it records per data set (each forecaster's fits over
//! seeds, scored on the rolling-origin test windows by [`crate::series`]), and its report
//! ([`write_report`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use ddssm_data::{Columns, ObservedStep, Panel, Splits, WindowSpec};
use ddssm_eval::forecasting::{baselines, quantile_fans, Evaluation, Fans, Horizon};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::series::{
    fit_and_score, horizon, panel_sizes, series_run, MarginalBaseline, Transition,
};
use crate::{Error, ModelRun, Result, TrainOptions};

mod report;

pub use report::{report, write_report};

/// The benchmark's settings (`configs/real-data.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealDataConfig {
    /// Training steps of every fit.
    pub steps: usize,
    /// One fit per model and seed.
    pub seeds: Vec<u64>,
    /// Sample paths per test window.
    pub samples: usize,
    /// Sequences per training batch (None: the paper's, Table 3, capped at the training windows).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// The data sets.
    pub dataset: Vec<DatasetConfig>,
}

impl RealDataConfig {
    /// Checks every setting before any work: at least one step, seed and data set, at least two
    /// samples, a batch size of at least one when set, and per data set a season of at least one
    /// and seed lists only for `ddssm` and `dkf`, none empty. The error names the setting (and
    /// the data set, as `dataset[i] (NAME)`).
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(Error::State(what)) };
        check(self.steps >= 1, "steps = 0: at least 1".into())?;
        check(!self.seeds.is_empty(), "seeds is empty".into())?;
        check(
            self.samples >= 2,
            format!("samples = {}: at least 2", self.samples),
        )?;
        check(
            self.batch_size != Some(0),
            "batch_size = 0: at least 1".into(),
        )?;
        check(!self.dataset.is_empty(), "no [[dataset]]".into())?;
        for (i, ds) in self.dataset.iter().enumerate() {
            let at = format!("dataset[{i}] ({})", ds.name);
            check(ds.season >= 1, format!("{at}: season = 0: at least 1"))?;
            for (model, seeds) in &ds.seeds {
                check(
                    ["ddssm", "dkf"].contains(&model.as_str()) && !seeds.is_empty(),
                    format!("{at}: seeds.{model}: a non-empty list for `ddssm` or `dkf`"),
                )?;
            }
        }
        Ok(())
    }

    /// Reads every data set's file and cuts its rolling-origin windows, in the config's order;
    /// the error names the data set as `dataset[i] (NAME)`.
    pub fn read_datasets(&self) -> Result<Vec<(Panel, Splits)>> {
        self.dataset
            .iter()
            .enumerate()
            .map(|(i, ds)| {
                let at = |e: &dyn std::fmt::Display| {
                    Error::State(format!("dataset[{i}] ({}): {e}", ds.name))
                };
                let panel = ddssm_data::read_csv(&ds.file, &ds.columns).map_err(|e| at(&e))?;
                let splits = ddssm_data::rolling_origin(&panel, &ds.spec()).map_err(|e| at(&e))?;
                Ok((panel, splits))
            })
            .collect()
    }

    /// The paper's configs for `transition` sized to `panel` ([`series_run`]), with this config's
    /// `batch_size` when it sets one (capped at the `windows` training windows).
    pub fn model_run(
        &self,
        transition: Transition,
        seed: u64,
        panel: &Panel,
        windows: usize,
    ) -> ModelRun {
        let run = series_run(transition, self.steps, seed, panel_sizes(panel), windows);
        match self.batch_size {
            Some(b) => run.with_batch_size(b, windows),
            None => run,
        }
    }

    /// Fits one model on one data set `ds` (its panel and windows) and seed and scores its test
    /// windows ([`fit_and_score`], the draws from the seed's `real-data/test` fork); with `first`
    /// the draws also give the fan charts' quantiles.
    pub fn fit(
        &self,
        ds: &DatasetConfig,
        (panel, splits): (&Panel, &Splits),
        (transition, seed): (Transition, u64),
        first: bool,
        device: &Device,
    ) -> Result<Fit> {
        let key = format!("{}/{}/{seed}", ds.name, transition.name());
        let (d, n) = (panel.target_dim(), self.samples);
        let run = self.model_run(transition, seed, panel, splits.train.len());
        run.validate(&key)?;
        let options = TrainOptions {
            checkpoint: None,
            resume: false,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            label: key.clone(),
            init: None,
        };
        // One set of test draws serves the scores and, for the first seed, the fans.
        let mut noise = SeededNoise::new(seed).fork("real-data/test");
        let scored = fit_and_score(
            panel,
            &ds.spec(),
            &run,
            &options,
            (ds.season, n),
            &mut noise,
            device,
        )?;
        let fans = first.then(|| quantile_fans(&scored.draws, ds.horizon, d, n));
        tracing::info!(
            "{key}: CRPS {:.4} in {:.0} s",
            scored.evaluation.overall.crps,
            scored.fit_seconds
        );
        Ok(Fit {
            evaluation: scored.evaluation,
            fit_seconds: scored.fit_seconds,
            validation_nelbo: scored.fitted.validation_nelbo,
            fans,
        })
    }
}

/// One data set of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// A short name (results keys, figure names).
    pub name: String,
    /// The CSV file, relative to the repository root.
    pub file: PathBuf,
    /// Its column roles.
    pub columns: Columns,
    /// The windowing (validation windows: as many as test windows).
    pub context: usize,
    /// Steps forecast.
    pub horizon: usize,
    /// Test origins per series.
    pub test_windows: usize,
    /// The season of the seasonal-naive baseline and of the MASE scale.
    pub season: usize,
    /// The statsmodels model, passed to `xtask/python/statsmodels_ref.py` as it is.
    pub statsmodels: serde_json::Value,
    /// Seeds per model for this data set where they differ from the global list (a model too
    /// slow for several fits here), e.g. `seeds = { dkf = [0] }`.
    #[serde(default)]
    pub seeds: BTreeMap<String, Vec<u64>>,
}

impl DatasetConfig {
    /// Where the test windows' forecasts start, how far they reach, and the MASE season.
    pub fn at(&self) -> Horizon {
        horizon(&self.spec(), self.season)
    }

    /// The rolling-origin windowing (as many validation windows as test windows).
    pub fn spec(&self) -> WindowSpec {
        WindowSpec {
            context: self.context,
            horizon: self.horizon,
            test_windows: self.test_windows,
            validation_windows: self.test_windows,
        }
    }
}

/// Fits recorded so far, keyed `data set/model/seed` ([`RealDataConfig::fit_models`]).
pub type RecordedFits = BTreeMap<String, Fit>;

impl RealDataConfig {
    /// Whether fits recorded under `other` hold under `self`: every setting agrees except which
    /// seeds run (a fit is keyed by its seed, so seeds may be added or dropped).
    pub fn same_but_seeds(&self, other: &Self) -> bool {
        let settings = |c: &Self| {
            let mut c = c.clone();
            c.seeds.clear();
            c.dataset.iter_mut().for_each(|d| d.seeds.clear());
            c
        };
        settings(self) == settings(other)
    }

    /// Every model fit of data set `ds`: the point baselines (as seed 0), then the DDSSM and the
    /// DKF on each of their seeds, by model name and seed. A fit already in `done` is reused;
    /// each new one is added to `done`, and `record` is called with it then, so a caller can keep
    /// finished fits across an interruption.
    pub fn fit_models(
        &self,
        ds: &DatasetConfig,
        (panel, splits): (&Panel, &Splits),
        done: &mut RecordedFits,
        device: &Device,
        mut record: impl FnMut(&RecordedFits) -> Result<()>,
    ) -> Result<BTreeMap<String, BTreeMap<u64, Fit>>> {
        let at = ds.at();
        let mut fits: BTreeMap<String, BTreeMap<u64, Fit>> = BTreeMap::new();
        for (name, evaluation) in baselines(panel, &splits.test, at) {
            let fit = Fit {
                evaluation,
                fit_seconds: 0.0,
                validation_nelbo: None,
                fans: None,
            };
            fits.entry(name).or_default().insert(0, fit);
        }
        for transition in [Transition::Ddssm, Transition::Dkf] {
            let seeds = ds.seeds.get(transition.name()).unwrap_or(&self.seeds);
            for &seed in seeds {
                let key = format!("{}/{}/{seed}", ds.name, transition.name());
                let fit = match done.get(&key) {
                    Some(fit) => fit.clone(),
                    None => {
                        let first = seed == seeds[0];
                        let fit =
                            self.fit(ds, (panel, splits), (transition, seed), first, device)?;
                        done.insert(key, fit.clone());
                        record(done)?;
                        fit
                    }
                };
                fits.entry(transition.name().into())
                    .or_default()
                    .insert(seed, fit);
            }
        }
        Ok(fits)
    }
}

/// One forecaster's fit on one data set and seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fit {
    /// Scores on the test windows.
    pub evaluation: Evaluation,
    /// Seconds of training (or of the statsmodels fits).
    pub fit_seconds: f64,
    /// The last validation's mean negative ELBO (nats per window, data units), for the models.
    pub validation_nelbo: Option<f64>,
    /// Quantiles 5, 25, 50, 75, 95 % per test window, step and target (the first seed only).
    pub fans: Option<Fans>,
}

/// Everything a report needs about one data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetResults {
    /// The config entry.
    pub config: DatasetConfig,
    /// Training, validation and test windows.
    pub windows: [usize; 3],
    /// The panel's targets over the plotted span, per series: `(step, time, values)`.
    pub observed: Vec<Vec<ObservedStep>>,
    /// Test windows as `(series, first forecast step)`.
    pub test: Vec<(usize, usize)>,
    /// Forecaster → seed → fit (baselines: one entry, seed 0).
    pub fits: BTreeMap<String, BTreeMap<u64, Fit>>,
    /// The per-target marginal Gaussian on the validation windows (the models' validation −ELBO
    /// is read against it).
    #[serde(default)]
    pub marginal: Option<MarginalBaseline>,
}

impl DatasetResults {
    /// The data set's results with the observations over the plotted span (one context before the
    /// first test origin to the series' last step).
    pub fn new(
        ds: &DatasetConfig,
        panel: &Panel,
        splits: &Splits,
        fits: BTreeMap<String, BTreeMap<u64, Fit>>,
    ) -> Self {
        Self {
            config: ds.clone(),
            windows: [
                splits.train.len(),
                splits.validation.len(),
                splits.test.len(),
            ],
            observed: panel.observed_from(&splits.test),
            test: splits
                .test
                .iter()
                .map(|w| (w.series, w.start + ds.context))
                .collect(),
            fits,
            marginal: Some(MarginalBaseline::of(
                panel,
                &splits.validation,
                ds.context + ds.horizon,
                &splits.scaling,
            )),
        }
    }
}
