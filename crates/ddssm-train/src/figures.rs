//! The figures of the bimodal experiment, drawn from [`Results`] alone (PNG and SVG):
//!
//! - `fig1a`: the test-set average of the centred one-step predictive `x̂_T − φ·x_{T−1}` of the
//!   DDSSM, the DKF and LOCF against the exact predictive (the paper's Fig. 1a);
//! - `fig1b`: one-step `jsd_exact` mean ± SEM per model, with the estimator's noise floor
//!   (Fig. 1b);
//! - `fig2`: for the two test sequences nearest the DDSSM's median JSD, the data, each model's
//!   reconstruction (dashed) and forecast paths of the last steps (light) with their mean (solid)
//!   after a marker where the forecast starts, one panel per model (Fig. 2).
//!
//! `cargo xtask bimodal-experiment` writes them beside its report, `cargo xtask figures` redraws
//! them from a run's `results.json`, and `cargo xtask tune` draws a study's history with
//! [`study_history`].
//!
//! Text is set in DejaVu Sans, bundled with `ddssm_eval::plot`, so the figures look the same on
//! every machine and need no system fonts.

use std::path::Path;

use ddssm_eval::plot::{figure_error, register_bundled_font, write_atomically, FONT};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::experiment::Results;
use crate::study::Trial;
use crate::Result;

/// (key in `Results::models`, label, colour).
const MODELS: [(&str, &str, RGBColor); 3] = [
    ("ddssm", "DDSSM", RGBColor(0, 114, 178)),
    ("dkf", "DKF", RGBColor(213, 94, 0)),
    ("locf", "LOCF", RGBColor(0, 158, 115)),
];

fn err<E: std::fmt::Debug>(e: E) -> crate::Error {
    figure_error(e).into()
}

/// Writes `fig1a`, `fig1b` and `fig2` as `.png` and `.svg` into `dir`; returns the file names.
pub fn write_all(r: &Results, dir: &Path) -> Result<Vec<String>> {
    register_bundled_font()?;
    let mut written = Vec::new();
    let figures: [(&str, (u32, u32)); 3] = [
        ("fig1a", (900, 560)),
        ("fig1b", (700, 500)),
        ("fig2", (1200, 820)),
    ];
    for (name, size) in figures {
        for ext in ["png", "svg"] {
            let file = format!("{name}.{ext}");
            write_atomically(dir, &file, |tmp| {
                if ext == "png" {
                    draw(name, r, BitMapBackend::new(tmp, size).into_drawing_area())
                } else {
                    draw(name, r, SVGBackend::new(tmp, size).into_drawing_area())
                }
            })?;
            written.push(file);
        }
    }
    Ok(written)
}

fn draw<DB: DrawingBackend>(name: &str, r: &Results, area: DrawingArea<DB, Shift>) -> Result<()> {
    area.fill(&WHITE).map_err(err)?;
    match name {
        "fig1a" => fig1a(r, &area)?,
        "fig1b" => fig1b(r, &area)?,
        _ => fig2(r, &area)?,
    }
    area.present().map_err(err)
}

/// Labels a tick of an axis of whole numbers (time steps, trials): the integer, or nothing
/// between integers.
fn integer_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

fn fig1a<DB: DrawingBackend>(r: &Results, area: &DrawingArea<DB, Shift>) -> Result<()> {
    let h = &r.config.evaluation.histogram;
    let truth = r
        .config
        .evaluation
        .histogram
        .densities(&r.exact_mean_histogram);
    let peak = truth.iter().map(|p| p.1).fold(0.0, f64::max);
    let y_max = 1.6 * peak.max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Centred one-step predictive of x_T − φ·x_(T−1), test-set average",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(h.lo..h.hi, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("centred value")
        .y_desc("density")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let clip = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        v.into_iter().map(|(x, y)| (x, y.min(y_max))).collect()
    };
    chart
        .draw_series(LineSeries::new(clip(truth), BLACK.stroke_width(2)))
        .map_err(err)?
        .label("exact")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (key, label, colour) in MODELS {
        if let Some(m) = r.models.get(key) {
            let curve = r.config.evaluation.histogram.densities(&m.mean_histogram);
            // A point mass (LOCF) spikes far above the truth: say where a curve is cut.
            let cut = curve.iter().any(|p| p.1 > y_max);
            chart
                .draw_series(LineSeries::new(clip(curve), colour.stroke_width(2)))
                .map_err(err)?
                .label(format!(
                    "{label} (JSD {:.3}){}",
                    m.jsd_exact.mean,
                    if cut {
                        format!("; cut at density {y_max:.2}")
                    } else {
                        String::new()
                    }
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn fig1b<DB: DrawingBackend>(r: &Results, area: &DrawingArea<DB, Shift>) -> Result<()> {
    let bars: Vec<(&str, RGBColor, f64, f64)> = MODELS
        .iter()
        .filter_map(|(key, label, colour)| {
            r.models
                .get(*key)
                .map(|m| (*label, *colour, m.jsd_exact.mean, m.jsd_exact.sem))
        })
        .collect();
    let floor = r.models.get("ddssm").map(|m| m.floor_exact.mean);
    let top = bars
        .iter()
        .map(|b| b.2 + b.3)
        .fold(std::f64::consts::LN_2, f64::max)
        * 1.3;
    let n = bars.len() as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "One-step JSD to the exact predictive (mean ± SEM)",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)
        .map_err(err)?;
    let labels: Vec<&str> = bars.iter().map(|b| b.0).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("JSD (nats)")
        .label_style((FONT, 14))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).unwrap_or(&"").to_string(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    let colours: Vec<RGBColor> = bars.iter().map(|b| b.1).collect();
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .margin(30)
                .style_func(|v, _| match v {
                    SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => {
                        colours[*i as usize].mix(0.85).filled()
                    }
                    SegmentValue::Last => BLACK.filled(),
                })
                .data(bars.iter().enumerate().map(|(i, b)| (i as i32, b.2))),
        )
        .map_err(err)?;
    for (i, (_, _, mean, sem)) in bars.iter().enumerate() {
        let i = i as i32;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), mean - sem),
                    (SegmentValue::CenterOf(i), mean + sem),
                ],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
    }
    if let Some(f) = floor {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(SegmentValue::Exact(0), f), (SegmentValue::Last, f)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?
            .label(format!("noise floor ({f:.4})"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        // Upper left, above the first (lowest) bar, with headroom over the tallest.
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

fn fig2<DB: DrawingBackend>(r: &Results, area: &DrawingArea<DB, Shift>) -> Result<()> {
    let models: Vec<(&str, &str, RGBColor)> = MODELS
        .iter()
        .copied()
        .filter(|(key, _, _)| *key != "locf" && r.models.contains_key(*key))
        .collect();
    let rows = r.examples.len().max(1);
    let panels = area.split_evenly((rows, models.len()));
    for (row, example) in r.examples.iter().enumerate() {
        let t = example.data.len();
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        let mut extend = |v: f64| {
            lo = lo.min(v);
            hi = hi.max(v);
        };
        example.data.iter().copied().for_each(&mut extend);
        for panel in example.models.values() {
            panel.reconstruction.iter().copied().for_each(&mut extend);
            panel
                .forecast_paths
                .iter()
                .flatten()
                .copied()
                .for_each(&mut extend);
        }
        let pad = 0.05 * (hi - lo).max(1e-9);
        for (col, (key, label, colour)) in models.iter().enumerate() {
            let Some(panel) = example.models.get(*key) else {
                continue;
            };
            let mut chart = ChartBuilder::on(&panels[row * models.len() + col])
                .caption(
                    if *key == "ddssm" {
                        format!(
                            "{label}: test sequence {} (its jsd_exact {:.3})",
                            example.index, example.ddssm_jsd_exact
                        )
                    } else {
                        format!("{label}: test sequence {}", example.index)
                    },
                    (FONT, 16),
                )
                .margin(10)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.5..(t as f64 + 0.5), (lo - pad)..(hi + pad))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("t")
                .y_desc("x")
                .x_label_formatter(&integer_label)
                .label_style((FONT, 12))
                .draw()
                .map_err(err)?;
            let steps = |v: &[f64], first: usize| -> Vec<(f64, f64)> {
                v.iter()
                    .enumerate()
                    .map(|(i, y)| ((first + i) as f64, *y))
                    .collect()
            };
            let t0 = example.forecast_from;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(t0 as f64 + 0.5, lo - pad), (t0 as f64 + 0.5, hi + pad)],
                    BLACK.mix(0.5),
                )))
                .map_err(err)?
                .label(format!("forecast starts (after t = {t0})"))
                .legend(|(x, y)| PathElement::new(vec![(x + 10, y - 6), (x + 10, y + 6)], BLACK));
            for (i, path) in panel.forecast_paths.iter().enumerate() {
                let mut p = vec![(t0 as f64, example.data[t0 - 1])];
                p.extend(steps(path, t0 + 1));
                let drawn = chart
                    .draw_series(LineSeries::new(p, colour.mix(0.18)))
                    .map_err(err)?;
                if i == 0 {
                    drawn.label("forecast paths").legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.mix(0.3))
                    });
                }
            }
            let mut mean = vec![(t0 as f64, example.data[t0 - 1])];
            mean.extend(steps(&panel.forecast_mean, t0 + 1));
            chart
                .draw_series(LineSeries::new(mean, colour.stroke_width(2)))
                .map_err(err)?
                .label("forecast mean")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(DashedLineSeries::new(
                    steps(&panel.reconstruction, 1),
                    6,
                    4,
                    colour.stroke_width(2),
                ))
                .map_err(err)?
                .label("reconstruction")
                .legend(|(x, y)| {
                    // Dashed, as drawn.
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], colour.stroke_width(2))
                        + PathElement::new(vec![(12, 0), (19, 0)], colour.stroke_width(2))
                });
            chart
                .draw_series(
                    steps(&example.data, 1)
                        .into_iter()
                        .map(|p| Circle::new(p, 3, BLACK.filled())),
                )
                .map_err(err)?
                .label("data")
                .legend(|(x, y)| Circle::new((x + 10, y), 3, BLACK.filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Writes `history.png` and `history.svg` (score per trial, failed trials marked at the top, and
/// the running best) into `dir`; returns the file names.
pub fn study_history(trials: &[Trial], dir: &Path) -> Result<Vec<String>> {
    register_bundled_font()?;
    let mut written = Vec::new();
    for ext in ["png", "svg"] {
        let file = format!("history.{ext}");
        let size = (900, 520);
        write_atomically(dir, &file, |tmp| {
            if ext == "png" {
                history(trials, BitMapBackend::new(tmp, size).into_drawing_area())
            } else {
                history(trials, SVGBackend::new(tmp, size).into_drawing_area())
            }
        })?;
        written.push(file);
    }
    Ok(written)
}

fn history<DB: DrawingBackend>(trials: &[Trial], area: DrawingArea<DB, Shift>) -> Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let scores: Vec<f64> = trials.iter().filter_map(|t| t.score).collect();
    let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = 0.08 * (hi - lo).max(1e-6);
    let top = hi + pad;
    let mut chart = ChartBuilder::on(&area)
        .caption("TPE study: score per trial and running best", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..(trials.len() as f64 - 0.5).max(0.5), (lo - pad)..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("trial")
        .x_label_formatter(&integer_label)
        .y_desc("score (lower is better)")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let (blue, red) = (MODELS[0].2, MODELS[1].2);
    chart
        .draw_series(trials.iter().filter_map(|t| {
            t.score
                .map(|s| Circle::new((t.number as f64, s), 4, blue.filled()))
        }))
        .map_err(err)?
        .label("trial")
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, blue.filled()));
    chart
        .draw_series(
            trials
                .iter()
                .filter(|t| t.score.is_none())
                .map(|t| Cross::new((t.number as f64, top - 0.5 * pad), 5, red.stroke_width(2))),
        )
        .map_err(err)?
        .label("failed")
        .legend(move |(x, y)| Cross::new((x + 10, y), 5, red.stroke_width(2)));
    let mut best = f64::INFINITY;
    let running: Vec<(f64, f64)> = trials
        .iter()
        .filter_map(|t| {
            best = best.min(t.score.unwrap_or(f64::INFINITY));
            best.is_finite().then_some((t.number as f64, best))
        })
        .collect();
    chart
        .draw_series(LineSeries::new(running, BLACK.stroke_width(2)))
        .map_err(err)?
        .label("running best")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}
