//! Windows of `context + horizon` steps and the rolling-origin split into training, validation
//! and test windows, with the target scaling fitted on the training part only.

use serde::{Deserialize, Serialize};

use crate::{Error, Panel, Result, SeriesName};

/// How series are cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Steps the model sees before each forecast origin, `L`.
    pub context: usize,
    /// Steps forecast after each origin, `H`.
    pub horizon: usize,
    /// Forecast origins per series in the test set (the last ones).
    pub test_windows: usize,
    /// Forecast origins per series in the validation set (just before the test ones).
    pub validation_windows: usize,
}

/// One window: steps `start … start + context + horizon − 1` of series `series`; the forecast
/// origin is after step `start + context − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Index into [`Panel::series`].
    pub series: usize,
    /// The first step (0-based).
    pub start: usize,
}

/// Per-target standardisation `(x − mean)/std`, fitted on the observed training entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Mean of each target.
    pub mean: Vec<f64>,
    /// Standard deviation of each target (> 0).
    pub std: Vec<f64>,
}

/// The rolling-origin split of a panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    /// How the windows were cut.
    pub spec: WindowSpec,
    /// Every window whose horizon ends before the first validation origin of its series
    /// (stride 1).
    pub train: Vec<Window>,
    /// `validation_windows` per series, horizons not overlapping, before the test ones.
    pub validation: Vec<Window>,
    /// `test_windows` per series: the last forecast origins, horizons not overlapping, the last
    /// one ending at the series' last observed step.
    pub test: Vec<Window>,
    /// The target scaling, fitted on the training part of every series (the steps before its
    /// first validation origin).
    pub scaling: Scaling,
}

fn invalid(field: &'static str, value: usize, allowed: &str) -> Error {
    Error::InvalidConfig {
        field,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// Cuts every series of `panel` by `spec` (module docs). Only the steps up to each series' last
/// observed target count (later rows are future covariates).
///
/// # Errors
/// `context`, `horizon` or `test_windows` of 0; a series too short for its test and validation
/// windows plus one training window (the message gives the length needed); a covariate missing
/// inside a window (naming column and line); a target with fewer than two observed training
/// entries, or no spread, over all series.
pub fn rolling_origin(panel: &Panel, spec: &WindowSpec) -> Result<Splits> {
    let WindowSpec {
        context: l,
        horizon: h,
        test_windows,
        validation_windows,
    } = *spec;
    if l == 0 {
        return Err(invalid("context", l, "at least 1 step"));
    }
    if h == 0 {
        return Err(invalid("horizon", h, "at least 1 step"));
    }
    if test_windows == 0 {
        return Err(invalid("test_windows", test_windows, "at least 1"));
    }
    let (d, v) = (panel.target_dim(), panel.covariate_dim());
    let held_out = test_windows + validation_windows;
    let needed = l + h * (held_out + 1);
    let mut splits = Splits {
        spec: *spec,
        train: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
        scaling: Scaling {
            mean: vec![0.0; d],
            std: vec![0.0; d],
        },
    };
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); d];
    for (k, s) in panel.series.iter().enumerate() {
        let t_len = s.observed_len(d);
        if t_len < needed {
            return Err(Error::Series {
                path: panel.path.clone(),
                series: SeriesName(&s.id).to_string(),
                message: format!(
                    "{t_len} observed steps; context {l} + horizon {h} × ({test_windows} test + \
                     {validation_windows} validation + 1 training window) = {needed} are needed"
                ),
            });
        }
        let origin = |back: usize| t_len - back * h;
        for back in (1..=test_windows).rev() {
            splits.test.push(Window {
                series: k,
                start: origin(back) - l,
            });
        }
        for back in (test_windows + 1..=held_out).rev() {
            splits.validation.push(Window {
                series: k,
                start: origin(back) - l,
            });
        }
        let train_end = origin(held_out);
        for start in 0..=train_end - l - h {
            splits.train.push(Window { series: k, start });
        }
        for t in 0..train_end {
            for (j, column) in values.iter_mut().enumerate() {
                if s.observed[t * d + j] {
                    column.push(s.targets[t * d + j]);
                }
            }
        }
        // Covariates must be complete wherever a window reads them: every step up to the last
        // observed one (the training windows start at step 0).
        for t in 0..t_len {
            for j in 0..v {
                if !s.covariates_present[t * v + j] {
                    return Err(Error::Cell {
                        path: panel.path.clone(),
                        line: s.lines[t],
                        column: panel.columns.covariates[j].clone(),
                        message: format!(
                            "covariate missing at time {} of {}, inside a window",
                            s.times[t],
                            SeriesName(&s.id)
                        ),
                    });
                }
            }
        }
    }
    for (j, column_values) in values.iter().enumerate() {
        let column = &panel.columns.targets[j];
        let n = column_values.len();
        if n < 2 {
            return Err(Error::Series {
                path: panel.path.clone(),
                series: "the training part of every series".into(),
                message: format!("target `{column}` has {n} observed values; at least 2 needed"),
            });
        }
        let mean = column_values.iter().sum::<f64>() / n as f64;
        let var = column_values
            .iter()
            .map(|x| (x - mean).powi(2))
            .sum::<f64>()
            / (n as f64 - 1.0);
        if var.sqrt() <= 1e-12 * mean.abs().max(1.0) {
            return Err(Error::Series {
                path: panel.path.clone(),
                series: "the training part of every series".into(),
                message: format!("target `{column}` is constant ({mean}); it cannot be scaled"),
            });
        }
        splits.scaling.mean[j] = mean;
        splits.scaling.std[j] = var.sqrt();
    }
    Ok(splits)
}

/// One observed step of a series: `(step, time, targets)`, `None` where a target is missing.
pub type ObservedStep = (usize, String, Vec<Option<f64>>);

impl Panel {
    /// Each series' observed steps from the first start among its `windows` (its first step
    /// where it has none) to its last observed step: the history a forecast plot shows behind
    /// those windows.
    pub fn observed_from(&self, windows: &[Window]) -> Vec<Vec<ObservedStep>> {
        let d = self.target_dim();
        self.series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let first = windows
                    .iter()
                    .filter(|w| w.series == i)
                    .map(|w| w.start)
                    .min()
                    .unwrap_or(0);
                (first..s.observed_len(d))
                    .map(|t| (t, s.times[t].to_string(), s.targets_at(t, d)))
                    .collect()
            })
            .collect()
    }
}
