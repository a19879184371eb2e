//! `ddssm evaluate`: the run's model on the test windows of a file (the last forecast origins of
//! every series, as `fit` held them out), beside the last-value and seasonal-naive baselines, each
//! scored per horizon step and overall by the fair CRPS, the energy score (several targets), the
//! MAE and RMSE of the median, the MASE and the coverage of the 50 % and 90 % central intervals.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_data::{read_csv, rolling_origin, Panel, Window};
use ddssm_eval::{covered, crps_fair, energy_score, mase_scale, sorted_quantile};
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::dataset::window_batch;
use serde::Serialize;

/// `ddssm evaluate`'s options.
#[derive(Debug, Clone)]
pub struct EvaluateArgs {
    /// The run folder.
    pub run: PathBuf,
    /// The CSV file the run was fitted on.
    pub data: PathBuf,
    /// Sample paths per window.
    pub samples: usize,
    /// The season of the seasonal-naive baseline and the MASE scale (1: the naive forecast).
    pub season: usize,
    /// The seed of the paths.
    pub seed: u64,
    /// The device.
    pub device: Device,
    /// The results folder (results.json, report.md).
    pub out: PathBuf,
}

/// Running means of every score at one horizon step (or over all of them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scores {
    /// Fair CRPS per observed entry.
    pub crps: f64,
    /// Energy score per step with every target observed (several targets only).
    pub energy: Option<f64>,
    /// Mean absolute error of the median.
    pub mae: f64,
    /// Root mean squared error of the median.
    pub rmse: f64,
    /// Mean absolute scaled error of the median (`None` without a usable scale).
    pub mase: Option<f64>,
    /// Share of observations inside the central 50 % interval.
    pub coverage_50: f64,
    /// Share inside the central 90 % interval.
    pub coverage_90: f64,
    /// Observed entries scored.
    pub n: usize,
}

#[derive(Default)]
struct Sums {
    crps: f64,
    energy: (f64, usize),
    abs: f64,
    sq: f64,
    scaled: (f64, usize),
    in50: usize,
    in90: usize,
    n: usize,
}

impl Sums {
    fn scores(&self) -> Scores {
        let n = self.n.max(1) as f64;
        Scores {
            crps: self.crps / n,
            energy: (self.energy.1 > 0).then(|| self.energy.0 / self.energy.1 as f64),
            mae: self.abs / n,
            rmse: (self.sq / n).sqrt(),
            mase: (self.scaled.1 > 0).then(|| self.scaled.0 / self.scaled.1 as f64),
            coverage_50: self.in50 as f64 / n,
            coverage_90: self.in90 as f64 / n,
            n: self.n,
        }
    }
}

/// One forecaster's scores.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Over every step.
    pub overall: Scores,
    /// Per horizon step (1 … H).
    pub per_step: Vec<Scores>,
}

/// Scores draws `draw(w, h, k)` (samples of target `k` at step `h` of test window `w`).
fn evaluate_draws(
    panel: &Panel,
    windows: &[Window],
    context: usize,
    horizon: usize,
    season: usize,
    draw: &dyn Fn(usize, usize, usize) -> Vec<f64>,
) -> Evaluation {
    let d = panel.target_dim();
    let mut overall = Sums::default();
    let mut steps: Vec<Sums> = (0..horizon).map(|_| Sums::default()).collect();
    for (w, win) in windows.iter().enumerate() {
        let s = &panel.series[win.series];
        let origin = win.start + context;
        let history: Vec<Vec<Option<f64>>> = (0..d)
            .map(|k| {
                (0..origin)
                    .map(|t| s.observed[t * d + k].then(|| s.targets[t * d + k]))
                    .collect()
            })
            .collect();
        for (h, step) in steps.iter_mut().enumerate() {
            let t = origin + h;
            let mut vectors: Vec<Vec<f64>> = Vec::new();
            let mut y_all = Vec::with_capacity(d);
            for (k, history_k) in history.iter().enumerate() {
                let samples = draw(w, h, k);
                if vectors.is_empty() {
                    vectors = vec![Vec::with_capacity(d); samples.len()];
                }
                for (v, x) in vectors.iter_mut().zip(&samples) {
                    v.push(*x);
                }
                if !s.observed[t * d + k] {
                    continue;
                }
                let y = s.targets[t * d + k];
                y_all.push(y);
                let mut sorted = samples.clone();
                sorted.sort_by(f64::total_cmp);
                let err = sorted_quantile(&sorted, 0.5) - y;
                let scale = mase_scale(history_k, season);
                for sums in [&mut overall, &mut *step] {
                    sums.crps += crps_fair(&samples, y);
                    sums.abs += err.abs();
                    sums.sq += err * err;
                    if let Some(scale) = scale {
                        sums.scaled.0 += err.abs() / scale;
                        sums.scaled.1 += 1;
                    }
                    sums.in50 += usize::from(covered(&samples, y, 0.5));
                    sums.in90 += usize::from(covered(&samples, y, 0.9));
                    sums.n += 1;
                }
            }
            if d > 1 && y_all.len() == d && vectors.len() > 1 {
                let e = energy_score(&vectors, &y_all);
                for sums in [&mut overall, &mut *step] {
                    sums.energy.0 += e;
                    sums.energy.1 += 1;
                }
            }
        }
    }
    Evaluation {
        overall: overall.scores(),
        per_step: steps.iter().map(Sums::scores).collect(),
    }
}

/// The last observed value of target `k` before the origin of `win` (a point forecast).
fn last_value(panel: &Panel, win: &Window, context: usize, k: usize) -> Option<f64> {
    let s = &panel.series[win.series];
    let d = panel.target_dim();
    (win.start..win.start + context)
        .rev()
        .find(|&t| s.observed[t * d + k])
        .map(|t| s.targets[t * d + k])
}

/// Runs the evaluation and writes results.json and report.md into `args.out`.
pub fn evaluate(args: &EvaluateArgs) -> Result<()> {
    anyhow::ensure!(args.samples >= 2, "--samples {}: at least 2", args.samples);
    anyhow::ensure!(args.season >= 1, "--season 0: at least 1");
    let (model, columns, spec) = crate::run::load(&args.run, &args.device)?;
    let panel = read_csv(&args.data, &columns)
        .with_context(|| format!("the run was fitted on columns {columns:?}"))?;
    let splits = rolling_origin(&panel, &spec)?;
    let (l, h, d) = (spec.context, spec.horizon, panel.target_dim());
    let mut batch = window_batch(&panel, &splits.test, l, &args.device)?;
    if panel.covariate_dim() > 0 {
        batch.covariates = window_batch(&panel, &splits.test, l + h, &args.device)?.covariates;
    }
    let mut noise = SeededNoise::new(args.seed).fork("evaluate");
    let paths = model.forecast(&batch, h, args.samples, &mut noise)?;
    let draws = crate::forecast::draws_by_row(&paths.samples)?;
    let n = args.samples;
    let model_draw = |w: usize, step: usize, k: usize| {
        let at = ((w * h + step) * d + k) * n;
        draws[at..at + n].to_vec()
    };
    let test = &splits.test;
    let mut results = BTreeMap::new();
    results.insert(
        "model".to_string(),
        evaluate_draws(&panel, test, l, h, args.season, &model_draw),
    );
    let last =
        |w: usize, _: usize, k: usize| vec![last_value(&panel, &test[w], l, k).unwrap_or(0.0)];
    results.insert(
        "last_value".to_string(),
        evaluate_draws(&panel, test, l, h, args.season, &last),
    );
    if args.season <= l {
        let seasonal = |w: usize, step: usize, k: usize| {
            let s = &panel.series[test[w].series];
            // The value one season before the step, from the context (repeating the last season).
            let t = test[w].start + l - args.season + step % args.season;
            vec![if s.observed[t * d + k] {
                s.targets[t * d + k]
            } else {
                last_value(&panel, &test[w], l, k).unwrap_or(0.0)
            }]
        };
        results.insert(
            format!("seasonal_naive_{}", args.season),
            evaluate_draws(&panel, test, l, h, args.season, &seasonal),
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = serde_json::json!({
        "data": args.data,
        "run": args.run,
        "windows": spec,
        "test_windows": test.len(),
        "samples": n,
        "season": args.season,
        "seed": args.seed,
        "results": results,
    });
    ddssm_model::checkpoint::write_atomic(
        &args.out.join("results.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let mut report = format!(
        "# ddssm evaluate: {}\n\n{} test windows ({} per series, the last forecast origins), \
         context {l}, horizon {h}, {n} sample paths each. Lower is better for CRPS, energy \
         score, MAE, RMSE and MASE; a coverage should match its level. Baselines are point \
         forecasts (their CRPS is their absolute error).\n\n\
         | forecaster | CRPS | energy | MAE | RMSE | MASE | cov. 50 % | cov. 90 % |\n\
         |---|---|---|---|---|---|---|---|\n",
        args.data.display(),
        test.len(),
        spec.test_windows
    );
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    for (name, e) in &results {
        let o = &e.overall;
        report.push_str(&format!(
            "| {name} | {:.4} | {} | {:.4} | {:.4} | {} | {:.2} | {:.2} |\n",
            o.crps,
            opt(o.energy),
            o.mae,
            o.rmse,
            opt(o.mase),
            o.coverage_50,
            o.coverage_90
        ));
    }
    ddssm_model::checkpoint::write_atomic(&args.out.join("report.md"), report.as_bytes())?;
    println!("{report}");
    Ok(())
}
