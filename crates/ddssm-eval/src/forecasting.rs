//! Scoring probabilistic forecasts of a [`ddssm_data::Panel`]'s windows, as forecasting libraries
//! report them: every forecaster gives sample paths (a point forecast is one path), and each is
//! scored per horizon step and overall by the fair CRPS, the normalised CRPS-sum and the energy
//! score (several targets), the MAE and RMSE of the median, the MASE and the coverage of the 50 %
//! and 90 % central intervals. The last-value and seasonal-naive baselines are here too, so a
//! model and its baselines are always scored by the same code.

use std::collections::BTreeMap;

use ddssm_data::{Panel, Window};
use serde::{Deserialize, Serialize};

use crate::{covered, crps_fair, energy_score, mase_scale, sorted_quantile};

/// Every score at one horizon step (or over all of them). Lower is better except the coverages,
/// which should match their levels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Fair CRPS per observed entry, in the data's units.
    pub crps: f64,
    /// Normalised CRPS-sum (several targets only): the fair CRPS of the sum over targets, summed
    /// over the steps with every target observed and divided by the summed `|Σ_k y_k|` of those
    /// steps (the convention of Salinas et al. 2019 and GluonTS; unitless).
    pub crps_sum: Option<f64>,
    /// Energy score per step with every target observed (several targets only).
    pub energy: Option<f64>,
    /// Mean absolute error of the median.
    pub mae: f64,
    /// Root mean squared error of the median.
    pub rmse: f64,
    /// Mean absolute scaled error of the median (`None` without a usable scale).
    pub mase: Option<f64>,
    /// Share of observations inside the central 50 % interval (`None` for a point forecast).
    pub coverage_50: Option<f64>,
    /// Share inside the central 90 % interval (`None` for a point forecast).
    pub coverage_90: Option<f64>,
    /// Observed entries scored.
    pub n: usize,
}

/// Running sums behind [`Scores`].
#[derive(Default)]
struct Sums {
    crps: f64,
    crps_sum: (f64, f64, usize),
    energy: (f64, usize),
    abs: f64,
    sq: f64,
    scaled: (f64, usize),
    in50: usize,
    in90: usize,
    /// Entries scored with fewer than two draws (no interval).
    points: usize,
    n: usize,
}

impl Sums {
    fn scores(&self) -> Scores {
        let n = self.n.max(1) as f64;
        let (crps_sum, abs_sum, steps) = self.crps_sum;
        Scores {
            crps: self.crps / n,
            crps_sum: (steps > 0 && abs_sum > 0.0).then(|| crps_sum / abs_sum),
            energy: (self.energy.1 > 0).then(|| self.energy.0 / self.energy.1 as f64),
            mae: self.abs / n,
            rmse: (self.sq / n).sqrt(),
            mase: (self.scaled.1 > 0).then(|| self.scaled.0 / self.scaled.1 as f64),
            coverage_50: (self.points == 0).then(|| self.in50 as f64 / n),
            coverage_90: (self.points == 0).then(|| self.in90 as f64 / n),
            n: self.n,
        }
    }
}

/// One forecaster's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Over every step.
    pub overall: Scores,
    /// Per horizon step (1 … H).
    pub per_step: Vec<Scores>,
}

/// Where the windows' forecasts start and how far they reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// Steps of context before each origin, `L`.
    pub context: usize,
    /// Steps forecast, `H`.
    pub horizon: usize,
    /// The season of the MASE scale (1: the naive forecast's errors).
    pub season: usize,
}

/// Scores the draws `draw(w, h, k)` (the samples of target `k` at step `h` of window `w`, the
/// same number for every `k` of one `(w, h)`, paired across `k` as joint draws) against the
/// panel's observations. Missing observations are skipped; the energy score and the CRPS-sum use
/// the steps with every target observed.
pub fn score_windows(
    panel: &Panel,
    windows: &[Window],
    at: Horizon,
    draw: &dyn Fn(usize, usize, usize) -> Vec<f64>,
) -> Evaluation {
    let d = panel.target_dim();
    let mut overall = Sums::default();
    let mut steps: Vec<Sums> = (0..at.horizon).map(|_| Sums::default()).collect();
    for (w, win) in windows.iter().enumerate() {
        let s = &panel.series[win.series];
        let origin = win.start + at.context;
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
                let scale = mase_scale(history_k, at.season);
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
                    sums.points += usize::from(samples.len() < 2);
                    sums.n += 1;
                }
            }
            if d > 1 && y_all.len() == d {
                let totals: Vec<f64> = vectors.iter().map(|v| v.iter().sum()).collect();
                let y_total: f64 = y_all.iter().sum();
                let c = crps_fair(&totals, y_total);
                let e = (vectors.len() > 1).then(|| energy_score(&vectors, &y_all));
                for sums in [&mut overall, &mut *step] {
                    sums.crps_sum.0 += c;
                    sums.crps_sum.1 += y_total.abs();
                    sums.crps_sum.2 += 1;
                    if let Some(e) = e {
                        sums.energy.0 += e;
                        sums.energy.1 += 1;
                    }
                }
            }
        }
    }
    Evaluation {
        overall: overall.scores(),
        per_step: steps.iter().map(Sums::scores).collect(),
    }
}

/// The last observed value of target `k` in the context of `win` (0 when the context has none).
pub fn last_value(panel: &Panel, win: &Window, context: usize, k: usize) -> f64 {
    let s = &panel.series[win.series];
    let d = panel.target_dim();
    (win.start..win.start + context)
        .rev()
        .find(|&t| s.observed[t * d + k])
        .map_or(0.0, |t| s.targets[t * d + k])
}

/// The seasonal-naive forecast of target `k` at step `h` of `win`: the value one season before,
/// repeating the context's last season (the last value where that entry is missing).
/// `season ≤ context` is the caller's to check.
pub fn seasonal_naive(
    panel: &Panel,
    win: &Window,
    context: usize,
    season: usize,
    h: usize,
    k: usize,
) -> f64 {
    let s = &panel.series[win.series];
    let d = panel.target_dim();
    let t = win.start + context - season + h % season;
    if s.observed[t * d + k] {
        s.targets[t * d + k]
    } else {
        last_value(panel, win, context, k)
    }
}

/// The point baselines scored like a model: `last_value`, and `seasonal_naive_S` when the season
/// `S = at.season` fits in the context.
pub fn baselines(panel: &Panel, windows: &[Window], at: Horizon) -> BTreeMap<String, Evaluation> {
    let mut out = BTreeMap::new();
    let last = |w: usize, _: usize, k: usize| vec![last_value(panel, &windows[w], at.context, k)];
    out.insert(
        "last_value".into(),
        score_windows(panel, windows, at, &last),
    );
    if at.season <= at.context {
        let seasonal = |w: usize, h: usize, k: usize| {
            vec![seasonal_naive(
                panel,
                &windows[w],
                at.context,
                at.season,
                h,
                k,
            )]
        };
        out.insert(
            format!("seasonal_naive_{}", at.season),
            score_windows(panel, windows, at, &seasonal),
        );
    }
    out
}

/// Forecast draws laid out `[W, H, D, n]` (the `n` joint draws of window `w`, step `h` and target
/// `k` start at `((w·H + h)·D + k)·n`) as a draw function for [`score_windows`].
pub fn draws_in_rows(
    draws: &[f64],
    horizon: usize,
    d: usize,
    n: usize,
) -> impl Fn(usize, usize, usize) -> Vec<f64> + '_ {
    move |w, h, k| {
        let at = ((w * horizon + h) * d + k) * n;
        draws[at..at + n].to_vec()
    }
}

/// Each row's `n` draws of a `[rows, n]` layout (as [`draws_in_rows`] reads it: row
/// `(w·H + h)·D + k`), sorted ascending, ready for [`crate::sorted_quantile`].
pub fn sorted_rows(draws: &[f64], n: usize) -> Vec<Vec<f64>> {
    draws
        .chunks_exact(n.max(1))
        .map(|row| {
            let mut row = row.to_vec();
            row.sort_by(f64::total_cmp);
            row
        })
        .collect()
}

/// Quantiles at [`crate::plot::FAN_LEVELS`] per window, step and target: `fans[w][h][k]`.
pub type Fans = Vec<Vec<Vec<[f64; 5]>>>;

/// The fan quantiles of forecast draws laid out `[W, H, D, n]` as [`draws_in_rows`] reads them.
pub fn quantile_fans(draws: &[f64], horizon: usize, d: usize, n: usize) -> Fans {
    let rows: Vec<[f64; 5]> = sorted_rows(draws, n)
        .iter()
        .map(|row| crate::plot::fan_quantiles(row))
        .collect();
    rows.chunks_exact((horizon * d).max(1))
        .map(|window| window.chunks_exact(d.max(1)).map(<[_]>::to_vec).collect())
        .collect()
}

/// The overall scores of several forecasters as a Markdown table (one row each, `–` where a score
/// does not apply).
pub fn scores_table(results: &BTreeMap<String, Evaluation>) -> String {
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    let mut table = String::from(
        "| forecaster | CRPS | CRPS-sum | energy | MAE | RMSE | MASE | cov. 50 % | cov. 90 % |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, e) in results {
        let o = &e.overall;
        table.push_str(&format!(
            "| {name} | {:.4} | {} | {} | {:.4} | {:.4} | {} | {} | {} |\n",
            o.crps,
            opt(o.crps_sum),
            opt(o.energy),
            o.mae,
            o.rmse,
            opt(o.mase),
            opt(o.coverage_50),
            opt(o.coverage_90)
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddssm_data::{read_csv, Columns};

    /// Two windows, three steps, two targets, 21 draws each: row `r`'s draws are `r + 0, …, r + 20`
    /// in reverse order, so its sorted quantiles are `r + 20·q` exactly (linear interpolation).
    #[test]
    fn quantile_fans_follow_the_row_layout() {
        let (windows, horizon, d, n) = (2, 3, 2, 21);
        let draws: Vec<f64> = (0..windows * horizon * d)
            .flat_map(|row| (0..n).rev().map(move |i| (100 * row + i) as f64))
            .collect();
        let sorted = sorted_rows(&draws, n);
        assert_eq!(sorted.len(), windows * horizon * d);
        assert!(sorted.iter().all(|r| r.windows(2).all(|p| p[0] <= p[1])));
        let fans = quantile_fans(&draws, horizon, d, n);
        assert_eq!((fans.len(), fans[0].len(), fans[0][0].len()), (2, 3, 2));
        for (w, steps) in fans.iter().enumerate() {
            for (h, targets) in steps.iter().enumerate() {
                for (k, q) in targets.iter().enumerate() {
                    let row = (w * horizon + h) * d + k;
                    for (got, level) in q.iter().zip(crate::plot::FAN_LEVELS) {
                        let want = (100 * row) as f64 + 20.0 * level;
                        assert!((got - want).abs() < 1e-9, "{w} {h} {k}: {got} vs {want}");
                    }
                }
            }
        }
    }

    /// Two targets over 8 steps, `b` missing at step 6; context 4, horizon 3, one window.
    fn panel(test: &str) -> Panel {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join(format!("{test}.csv"));
        std::fs::write(
            &path,
            "t,a,b\n0,1,10\n1,2,20\n2,3,30\n3,4,40\n4,5,50\n5,6,60\n6,7,\n7,8,80\n",
        )
        .unwrap();
        read_csv(&path, &Columns::new("t", &["a", "b"])).unwrap()
    }

    const AT: Horizon = Horizon {
        context: 4,
        horizon: 3,
        season: 2,
    };
    const WINDOW: Window = Window {
        series: 0,
        start: 1,
    };

    #[test]
    fn a_point_forecast_scores_its_absolute_errors_and_skips_missing_entries() {
        let p = panel("a_point_forecast_scores_its_absolute_errors_and_skips_missing_entries");
        // Forecast 0 everywhere: errors are the observations, 6,60 | 7,– | 8,80.
        let e = score_windows(&p, &[WINDOW], AT, &|_, _, _| vec![0.0]);
        assert_eq!(e.overall.n, 5);
        assert!((e.overall.mae - (6.0 + 60.0 + 7.0 + 8.0 + 80.0) / 5.0).abs() < 1e-12);
        assert_eq!(e.per_step[1].n, 1);
        // CRPS-sum over the two fully observed steps: (66 + 88) / (66 + 88) with a zero forecast.
        assert!((e.overall.crps_sum.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(e.per_step[1].crps_sum, None);
        // A point forecast has no spread: its CRPS is its absolute error.
        assert!((e.overall.crps - e.overall.mae).abs() < 1e-12);
        // … and no interval to cover anything.
        assert_eq!(e.overall.coverage_90, None);
    }

    #[test]
    fn crps_sum_scores_the_sum_not_the_parts() {
        let p = panel("crps_sum_scores_the_sum_not_the_parts");
        // Errors of opposite sign in the two targets cancel in the sum: a perfect CRPS-sum
        // although each target is off by 5.
        let e = score_windows(&p, &[WINDOW], AT, &|w, h, k| {
            let t = WINDOW.start + AT.context + h;
            let _ = w;
            let y = [(t + 1) as f64, 10.0 * (t + 1) as f64][k];
            vec![if k == 0 { y + 5.0 } else { y - 5.0 }]
        });
        assert!((e.per_step[0].crps_sum.unwrap()).abs() < 1e-12);
        assert!((e.per_step[0].crps - 5.0).abs() < 1e-12);
    }

    #[test]
    fn the_baselines_forecast_the_last_value_and_the_last_season() {
        let p = panel("the_baselines_forecast_the_last_value_and_the_last_season");
        // Context: steps 1..=4 (a = 2,3,4,5). Last value 5; season 2 repeats 4, 5, 4.
        assert_eq!(last_value(&p, &WINDOW, 4, 0), 5.0);
        let naive: Vec<f64> = (0..3)
            .map(|h| seasonal_naive(&p, &WINDOW, 4, 2, h, 0))
            .collect();
        assert_eq!(naive, [4.0, 5.0, 4.0]);
        let b = baselines(&p, &[WINDOW], AT);
        assert_eq!(
            b.keys().collect::<Vec<_>>(),
            ["last_value", "seasonal_naive_2"]
        );
        // last value on a: errors 1, 2, 3; on b: 10, –, 30.
        let mae = (1.0 + 2.0 + 3.0 + 10.0 + 30.0) / 5.0;
        assert!((b["last_value"].overall.mae - mae).abs() < 1e-12);
        let table = scores_table(&b);
        assert!(table.contains("| last_value |") && table.contains("CRPS-sum"));
        // A season longer than the context has no seasonal-naive row.
        let long = Horizon { season: 5, ..AT };
        assert_eq!(baselines(&p, &[WINDOW], long).len(), 1);
    }
}
