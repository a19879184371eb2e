//! The benchmark's report (`real-data.md`: per data set a table of every score, mean ± SE over
//! seeds) and fan charts (`NAME-fans.png` / `.svg`), drawn from its results alone.

use std::collections::BTreeMap;
use std::path::Path;

use ddssm_eval::forecasting::{Fans, Scores};
use ddssm_eval::plot::{fan_chart, Fan, FanPanel};
use ddssm_eval::MeanSem;

use super::{DatasetResults, Fit, RealDataConfig};
use crate::series::COLLAPSE_NATS_PER_ENTRY;
use crate::Result;

/// Mean ± SE over seeds of one score.
fn over_seeds(
    fits: &BTreeMap<u64, Fit>,
    score: impl Fn(&Scores) -> Option<f64>,
) -> Option<MeanSem> {
    let values: Vec<f64> = fits
        .values()
        .filter_map(|f| score(&f.evaluation.overall))
        .collect();
    (!values.is_empty()).then(|| MeanSem::of(&values))
}

/// Writes `real-data.md` and the fan charts into `out`.
pub fn write_report(cfg: &RealDataConfig, all: &[DatasetResults], out: &Path) -> Result<()> {
    for r in all {
        fan_charts(r, out)?;
    }
    let path = out.join("real-data.md");
    ddssm_model::checkpoint::write_atomic(&path, report(cfg, all).as_bytes())?;
    tracing::info!("wrote {}", path.display());
    Ok(())
}

type Column = (&'static str, fn(&Scores) -> Option<f64>);

const COLUMNS: [Column; 8] = [
    ("CRPS", |s| Some(s.crps)),
    ("CRPS-sum", |s| s.crps_sum),
    ("energy", |s| s.energy),
    ("MAE", |s| Some(s.mae)),
    ("RMSE", |s| Some(s.rmse)),
    ("MASE", |s| s.mase),
    ("cov. 50 %", |s| s.coverage_50),
    ("cov. 90 %", |s| s.coverage_90),
];

/// The Markdown report.
pub fn report(cfg: &RealDataConfig, all: &[DatasetResults]) -> String {
    let mut md = format!(
        "# Real data: ddssm against the baselines and statsmodels\n\n\
         `cargo xtask real-data` ({} training steps per fit, seeds {:?}, {} sample paths per \
         test window). Every forecaster is scored on the same rolling-origin test windows by \
         `ddssm_eval::forecasting`. Models: mean ± standard error over seeds; baselines are \
         deterministic. Lower is better except coverage, which should match its level.\n\n",
        cfg.steps, cfg.seeds, cfg.samples
    );
    for r in all {
        let c = &r.config;
        md.push_str(&format!(
            "## {} (`{}`)\n\nTargets {}; context {}, horizon {}; {} training, {} validation and \
             {} test windows; season {}. statsmodels: `{}`, refitted on all history before each \
             test origin.\n\n| forecaster |",
            c.name,
            c.file.display(),
            c.columns.targets.join(", "),
            c.context,
            c.horizon,
            r.windows[0],
            r.windows[1],
            r.windows[2],
            c.season,
            c.statsmodels
        ));
        let used: Vec<&Column> = COLUMNS
            .iter()
            .filter(|(_, f)| {
                r.fits
                    .values()
                    .flat_map(|s| s.values())
                    .any(|fit| f(&fit.evaluation.overall).is_some())
            })
            .collect();
        for (name, _) in &used {
            md.push_str(&format!(" {name} |"));
        }
        md.push_str(" fit (s) | −ELBO gain |\n|---|");
        md.push_str(&"---|".repeat(used.len() + 2));
        md.push('\n');
        for (name, fits) in &r.fits {
            md.push_str(&format!("| {name} |"));
            for (_, f) in &used {
                md.push_str(&match over_seeds(fits, f) {
                    Some(m) if fits.len() > 1 => format!(" {:.4} ± {:.4} |", m.mean, m.sem),
                    Some(m) => format!(" {:.4} |", m.mean),
                    None => " – |".into(),
                });
            }
            let secs = MeanSem::of(&fits.values().map(|f| f.fit_seconds).collect::<Vec<_>>());
            let gains: Vec<f64> = fits
                .values()
                .filter_map(|f| Some(r.marginal?.gain_per_entry(f.validation_nelbo?)))
                .collect();
            let gain = match gains.len() {
                0 => "–".to_string(),
                1 => format!("{:.3}", gains[0]),
                _ => {
                    let m = MeanSem::of(&gains);
                    format!("{:.3} ± {:.3}", m.mean, m.sem)
                }
            };
            md.push_str(&format!(" {:.0} | {gain} |\n", secs.mean));
        }
        md.push_str(&collapsed(r));
        md.push_str(&format!(
            "\n![{0} fan charts]({0}-fans.png)\n\nFan charts: each test window's median, 50 % \
             and 90 % bands (first seed), over the observations.\n\n",
            c.name
        ));
    }
    md
}

/// `NAME-fans.png` / `.svg`: one row per series and target, one column per probabilistic
/// forecaster (first seed), every test window's fan over the observations.
fn fan_charts(r: &DatasetResults, out: &Path) -> Result<()> {
    let forecasters: Vec<(&String, &Fans)> = r
        .fits
        .iter()
        .filter_map(|(name, fits)| Some((name, fits.values().next()?.fans.as_ref()?)))
        .collect();
    let targets = &r.config.columns.targets;
    let mut panels = Vec::new();
    for (series, observed) in r.observed.iter().enumerate() {
        let x_labels = observed
            .iter()
            .map(|(t, time, _)| (*t as i64, time.clone()))
            .collect::<BTreeMap<_, _>>();
        for (k, target) in targets.iter().enumerate() {
            let observed_at = |t: usize| {
                observed
                    .iter()
                    .find(|(s, _, _)| *s == t)
                    .and_then(|(_, _, v)| v[k])
            };
            for (name, fans) in &forecasters {
                let observed = observed
                    .iter()
                    .filter_map(|(t, _, v)| Some((*t as f64, v[k]?)))
                    .collect();
                let fans = r
                    .test
                    .iter()
                    .zip(fans.iter())
                    .filter(|((s, _), _)| *s == series)
                    .map(|((_, origin), steps)| {
                        // Each fan leaves from the observation before its origin.
                        let anchor =
                            observed_at(*origin - 1).map(|y| ((origin - 1) as f64, [y; 5]));
                        Fan {
                            steps: anchor
                                .into_iter()
                                .chain(
                                    steps
                                        .iter()
                                        .enumerate()
                                        .map(|(h, q)| ((origin + h) as f64, q[k])),
                                )
                                .collect(),
                        }
                    })
                    .collect();
                panels.push(FanPanel {
                    title: format!("{}: {name}, {target}", r.config.name),
                    observed,
                    fans,
                    x_labels: x_labels.clone(),
                    y_desc: target.clone(),
                });
            }
        }
    }
    fan_chart(
        &panels,
        forecasters.len(),
        (520, 300),
        out,
        &format!("{}-fans", r.config.name),
    )?;
    Ok(())
}

/// The fits whose validation −ELBO is within [`COLLAPSE_NATS_PER_ENTRY`] per entry of the
/// marginal Gaussian's, as a paragraph (empty when none).
fn collapsed(r: &DatasetResults) -> String {
    let Some(marginal) = r.marginal else {
        return String::new();
    };
    let mut text = format!(
        "\n\"−ELBO gain\": how many nats per observed entry each model's validation −ELBO is \
         below a per-target Gaussian without dynamics ({:.2} nats per validation window).",
        marginal.nll_per_window
    );
    let flagged: Vec<String> = r
        .fits
        .iter()
        .flat_map(|(name, fits)| fits.iter().map(move |(seed, f)| (name, seed, f)))
        .filter_map(|(name, seed, f)| {
            let gain = marginal.gain_per_entry(f.validation_nelbo?);
            (gain < COLLAPSE_NATS_PER_ENTRY).then(|| format!("{name} seed {seed} ({gain:.3})"))
        })
        .collect();
    if !flagged.is_empty() {
        text.push_str(&format!(
            " **Collapsed fits** (gain below {COLLAPSE_NATS_PER_ENTRY}: they learned almost no \
             dynamics and forecast close to the unconditional distribution): {}.",
            flagged.join(", ")
        ));
    }
    text + "\n"
}
