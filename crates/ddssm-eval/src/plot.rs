//! Figures as PNG and SVG (feature `plot`, on by default): fan charts of probabilistic forecasts
//! ([`fan_chart`]: the observations, each forecast's median and its 50 % and 90 % central bands),
//! and the pieces every figure of the project shares: the bundled font ([`register_bundled_font`],
//! DejaVu Sans in `assets/`, licence beside it, so figures look the same on every machine and need
//! no system fonts) and [`write_atomically`], which leaves no half-written image behind.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

/// The font family every figure uses (registered by [`register_bundled_font`]).
pub const FONT: &str = "sans-serif";

/// A drawing error as this crate's [`Error`].
pub fn figure_error<E: std::fmt::Debug>(e: E) -> Error {
    Error::Figure(format!("drawing: {e:?}"))
}

/// Registers the bundled DejaVu Sans as [`FONT`] (normal and bold). Call before drawing text.
pub fn register_bundled_font() -> Result<()> {
    static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font(FONT, style, FONT_BYTES)
            .map_err(|_| Error::Figure("the bundled font is invalid".into()))?;
    }
    Ok(())
}

/// Draws into a temporary file next to `dir/file` with `draw`, then renames it: no half-written
/// figure is left behind (the temporary keeps the extension, which picks the image encoder).
pub fn write_atomically<E: std::fmt::Display>(
    dir: &Path,
    file: &str,
    draw: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> Result<()> {
    let path = dir.join(file);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("tmp");
    let tmp = dir.join(format!(".{file}.tmp.{ext}"));
    let drawn = draw(&tmp)
        .map_err(|e| Error::Figure(format!("figure {file}: {e}")))
        .and_then(|()| {
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::Figure(format!("writing {}: {e}", path.display())))
        });
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn
}

/// The quantile levels of a [`Fan`] step: 5, 25, 50, 75 and 95 %.
pub const FAN_LEVELS: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

/// The [`FAN_LEVELS`] quantiles of sorted draws (one [`Fan`] step).
pub fn fan_quantiles(sorted: &[f64]) -> [f64; 5] {
    FAN_LEVELS.map(|q| crate::sorted_quantile(sorted, q))
}

/// One forecast of a [`FanPanel`]: per step its x position and quantiles 5, 25, 50, 75, 95 %.
#[derive(Debug, Clone, PartialEq)]
pub struct Fan {
    /// `(x, [q05, q25, q50, q75, q95])` per forecast step.
    pub steps: Vec<(f64, [f64; 5])>,
}

/// One panel of a fan chart.
#[derive(Debug, Clone, PartialEq)]
pub struct FanPanel {
    /// The caption.
    pub title: String,
    /// Observed `(x, y)` points; a gap in `x` larger than 1 breaks the line.
    pub observed: Vec<(f64, f64)>,
    /// The forecasts.
    pub fans: Vec<Fan>,
    /// Text for integer x positions (time labels); positions without one print as numbers.
    pub x_labels: BTreeMap<i64, String>,
    /// The y axis' description.
    pub y_desc: String,
}

const OBSERVED: RGBColor = RGBColor(40, 40, 40);
const FORECAST: RGBColor = RGBColor(0, 114, 178);

/// Writes `stem.png` and `stem.svg` into `dir`: `panels` in a grid of `columns` columns, each
/// panel `panel_size` pixels. Returns the file names.
pub fn fan_chart(
    panels: &[FanPanel],
    columns: usize,
    panel_size: (u32, u32),
    dir: &Path,
    stem: &str,
) -> Result<Vec<String>> {
    register_bundled_font()?;
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let size = (panel_size.0 * columns as u32, panel_size.1 * rows as u32);
    let mut written = Vec::new();
    for ext in ["png", "svg"] {
        let file = format!("{stem}.{ext}");
        write_atomically(dir, &file, |tmp| -> Result<()> {
            if ext == "png" {
                draw_fans(
                    panels,
                    (rows, columns),
                    BitMapBackend::new(tmp, size).into_drawing_area(),
                )
            } else {
                draw_fans(
                    panels,
                    (rows, columns),
                    SVGBackend::new(tmp, size).into_drawing_area(),
                )
            }
        })?;
        written.push(file);
    }
    Ok(written)
}

fn draw_fans<DB: DrawingBackend>(
    panels: &[FanPanel],
    grid: (usize, usize),
    area: DrawingArea<DB, Shift>,
) -> Result<()> {
    area.fill(&WHITE).map_err(figure_error)?;
    for (panel, cell) in panels.iter().zip(area.split_evenly(grid)) {
        draw_panel(panel, &cell)?;
    }
    area.present().map_err(figure_error)
}

fn draw_panel<DB: DrawingBackend>(p: &FanPanel, area: &DrawingArea<DB, Shift>) -> Result<()> {
    let xs = p
        .observed
        .iter()
        .map(|(x, _)| *x)
        .chain(p.fans.iter().flat_map(|f| f.steps.iter().map(|(x, _)| *x)));
    let ys = p.observed.iter().map(|(_, y)| *y).chain(
        p.fans
            .iter()
            .flat_map(|f| f.steps.iter().flat_map(|(_, q)| [q[0], q[4]])),
    );
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (y_lo, y_hi) = ys
        .filter(|y| y.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Ok(());
    }
    let pad = 0.05 * (y_hi - y_lo).max(1e-9);
    let label = |x: &f64| {
        p.x_labels
            .get(&(x.round() as i64))
            .cloned()
            .unwrap_or_else(|| format!("{x}"))
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 16))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d((x_lo - 0.5)..(x_hi + 0.5), (y_lo - pad)..(y_hi + pad))
        .map_err(figure_error)?;
    chart
        .configure_mesh()
        .y_desc(&p.y_desc)
        .x_labels(5)
        .x_label_formatter(&label)
        .label_style((FONT, 12))
        .draw()
        .map_err(figure_error)?;
    for (i, fan) in p.fans.iter().enumerate() {
        for (lo, hi, alpha, name) in [(0, 4, 0.2, "90 % band"), (1, 3, 0.4, "50 % band")] {
            let mut polygon: Vec<(f64, f64)> = fan.steps.iter().map(|(x, q)| (*x, q[hi])).collect();
            polygon.extend(fan.steps.iter().rev().map(|(x, q)| (*x, q[lo])));
            let drawn = chart
                .draw_series(std::iter::once(Polygon::new(
                    polygon,
                    FORECAST.mix(alpha).filled(),
                )))
                .map_err(figure_error)?;
            if i == 0 {
                drawn.label(name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], FORECAST.mix(alpha).filled())
                });
            }
        }
        let median = fan.steps.iter().map(|(x, q)| (*x, q[2]));
        let drawn = chart
            .draw_series(LineSeries::new(median, FORECAST.stroke_width(2)))
            .map_err(figure_error)?;
        if i == 0 {
            drawn.label("median").legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], FORECAST.stroke_width(2))
            });
        }
    }
    // The observations, a line broken at gaps.
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for &(x, y) in &p.observed {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|(px, _)| x - px <= 1.0 + 1e-9) => run.push((x, y)),
            _ => runs.push(vec![(x, y)]),
        }
    }
    for (i, run) in runs.into_iter().enumerate() {
        let drawn = chart
            .draw_series(LineSeries::new(run, OBSERVED.stroke_width(1)))
            .map_err(figure_error)?;
        if i == 0 {
            drawn
                .label("observed")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], OBSERVED));
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(figure_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_chart_is_written_whole_as_png_and_svg() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let panel = FanPanel {
            title: "a series".into(),
            observed: vec![(0.0, 1.0), (1.0, 2.0), (3.0, 2.5), (4.0, 3.0)],
            fans: vec![Fan {
                steps: vec![
                    (5.0, [2.0, 2.5, 3.0, 3.5, 4.0]),
                    (6.0, [1.5, 2.5, 3.2, 3.9, 5.0]),
                ],
            }],
            x_labels: BTreeMap::from([(0, "2001-01".to_string())]),
            y_desc: "y".into(),
        };
        let files = fan_chart(&[panel.clone(), panel], 2, (400, 300), dir, "fans").unwrap();
        assert_eq!(files, ["fans.png", "fans.svg"]);
        let svg = std::fs::read_to_string(dir.join("fans.svg")).unwrap();
        assert!(svg.contains("2001-01") && svg.contains("median") && svg.contains("50 % band"));
        assert!(std::fs::metadata(dir.join("fans.png")).unwrap().len() > 1000);
        // Nothing but the two figures is left (no temporaries).
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
