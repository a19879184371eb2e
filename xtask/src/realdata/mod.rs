//! `cargo xtask real-data`: the DDSSM, the DKF, the point baselines and a classical statsmodels
//! state space model on the real series in `data/`, scored on the same rolling-origin test windows
//! by the same code (`ddssm_train::series`, `ddssm_eval::forecasting`), over several seeds: the
//! results (`results.json`), a report with mean ± SE over seeds, and fan charts of every test
//! window (`ddssm_train::benchmark::write_report`). Fits are recorded as they finish (`fits.json`), so `--resume` skips the finished ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use candle_core::Device;
use ddssm_data::{Panel, Splits};
use ddssm_eval::forecasting::quantile_fans;
use ddssm_model::checkpoint::write_atomic;
use ddssm_train::benchmark::{write_report, DatasetConfig, DatasetResults, Fit, RealDataConfig};
use ddssm_train::series::score_draws;
use serde::Deserialize;

/// The options of `cargo xtask real-data`.
#[derive(Debug, Clone)]
pub struct Args {
    /// The config file.
    pub config: PathBuf,
    /// Overrides the config's steps (a quick check).
    pub steps: Option<usize>,
    /// The results folder.
    pub out: PathBuf,
    /// The Python interpreter with statsmodels (None: skip the statsmodels reference).
    pub python: Option<PathBuf>,
    /// Skip the fits recorded in `out/fits.json`.
    pub resume: bool,
    /// Replace results in `out`.
    pub force: bool,
    /// Only redraw the report and figures from `out/results.json`.
    pub report_only: bool,
    /// The device.
    pub device: Device,
}

const FITS: &str = "fits.json";

/// Reads the config and every data set, and checks the windows, before any work.
fn prepare(args: &Args) -> Result<(RealDataConfig, Vec<(Panel, Splits)>)> {
    let mut cfg: RealDataConfig = ddssm_train::read_toml(&args.config, "real-data config")?;
    if let Some(steps) = args.steps {
        cfg.steps = steps;
    }
    let at = || args.config.display().to_string();
    cfg.validate().with_context(at)?;
    let data = cfg.read_datasets().with_context(at)?;
    Ok((cfg, data))
}

/// Runs the benchmark (module docs).
pub fn run(args: &Args) -> Result<()> {
    if args.report_only {
        let text = std::fs::read_to_string(args.out.join("results.json")).with_context(|| {
            format!("--report-only: reading {}/results.json", args.out.display())
        })?;
        let (cfg, results): (RealDataConfig, Vec<DatasetResults>) = serde_json::from_str(&text)?;
        return Ok(write_report(&cfg, &results, &args.out)?);
    }
    let (cfg, data) = prepare(args)?;
    let fits_path = args.out.join(FITS);
    let mut done: BTreeMap<String, Fit> = BTreeMap::new();
    if args.resume && fits_path.exists() {
        let (old, fits): (RealDataConfig, BTreeMap<String, Fit>) =
            serde_json::from_str(&std::fs::read_to_string(&fits_path)?)?;
        ensure!(
            cfg.same_but_seeds(&old),
            "--resume: {} was written for another config",
            fits_path.display()
        );
        done = fits;
        tracing::info!("resuming: {} fits already done", done.len());
    } else if !args.resume && !args.force && args.out.join("results.json").exists() {
        bail!(
            "{} already holds results: replace them with --force, continue with --resume, or \
             choose another --out",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)?;
    let mut all = Vec::new();
    // Records the fits finished so far (`--resume` reads them back).
    let save = |done: &BTreeMap<String, Fit>| -> Result<()> {
        Ok(write_atomic(
            &fits_path,
            serde_json::to_string(&(&cfg, done))?.as_bytes(),
        )?)
    };
    for (ds, (panel, splits)) in cfg.dataset.iter().zip(&data) {
        let mut fits = cfg.fit_models(ds, (panel, splits), &mut done, &args.device, |done| {
            save(done).map_err(|e| ddssm_train::Error::State(e.to_string()))
        })?;
        if let Some(python) = &args.python {
            let key = |seed: u64| format!("{}/statsmodels/{seed}", ds.name);
            let recorded: Option<BTreeMap<u64, Fit>> = cfg
                .seeds
                .iter()
                .map(|&s| Some((s, done.get(&key(s))?.clone())))
                .collect();
            let by_seed = match recorded {
                Some(by_seed) => by_seed,
                None => {
                    let by_seed = statsmodels(python, &cfg, ds, panel, splits, &args.out)?;
                    for (&s, fit) in &by_seed {
                        done.insert(key(s), fit.clone());
                    }
                    save(&done)?;
                    by_seed
                }
            };
            fits.insert("statsmodels".into(), by_seed);
        }
        all.push(DatasetResults::new(ds, panel, splits, fits));
    }
    write_atomic(
        &args.out.join("results.json"),
        serde_json::to_string_pretty(&(&cfg, &all))?.as_bytes(),
    )?;
    Ok(write_report(&cfg, &all, &args.out)?)
}

/// The statsmodels reference on the test windows: one fit per window on the series' history
/// before its origin, `samples` paths per seed, scored like the models.
fn statsmodels(
    python: &Path,
    cfg: &RealDataConfig,
    ds: &DatasetConfig,
    panel: &Panel,
    splits: &Splits,
    out: &Path,
) -> Result<BTreeMap<u64, Fit>> {
    let d = panel.target_dim();
    let windows: Vec<serde_json::Value> = splits
        .test
        .iter()
        .map(|w| {
            let s = &panel.series[w.series];
            let history: Vec<Vec<Option<f64>>> = (0..w.start + ds.context)
                .map(|t| s.targets_at(t, d))
                .collect();
            serde_json::json!({ "history": history })
        })
        .collect();
    let request = serde_json::json!({
        "statsmodels": ds.statsmodels, "horizon": ds.horizon, "samples": cfg.samples,
        "seeds": cfg.seeds, "windows": windows,
    });
    let (req, resp) = (
        out.join(format!(".{}-statsmodels-in.json", ds.name)),
        out.join(format!(".{}-statsmodels-out.json", ds.name)),
    );
    write_atomic(&req, serde_json::to_string(&request)?.as_bytes())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/statsmodels_ref.py");
    tracing::info!(
        "{}: statsmodels {} on {} test windows",
        ds.name,
        ds.statsmodels,
        windows.len()
    );
    let status = std::process::Command::new(python)
        .arg(&script)
        .arg(&req)
        .arg(&resp)
        .status()
        .with_context(|| format!("running {} (--python)", python.display()))?;
    ensure!(
        status.success(),
        "{} {} failed ({status}); it needs `pip install statsmodels` (tested with 0.15.0); \
         --no-statsmodels skips the reference",
        python.display(),
        script.display()
    );
    #[derive(Deserialize)]
    struct Response {
        statsmodels_version: String,
        fit_seconds: f64,
        draws: Vec<Vec<Vec<Vec<Vec<f64>>>>>,
    }
    let r: Response = serde_json::from_str(&std::fs::read_to_string(&resp)?)?;
    let _ = std::fs::remove_file(&req);
    let _ = std::fs::remove_file(&resp);
    tracing::info!(
        "statsmodels {} fitted in {:.0} s",
        r.statsmodels_version,
        r.fit_seconds
    );
    let at = ds.at();
    let mut by_seed = BTreeMap::new();
    for (i, &seed) in cfg.seeds.iter().enumerate() {
        let flat: Vec<f64> = r.draws[i]
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .copied()
            .collect();
        let evaluation = score_draws(panel, &splits.test, at, &flat, cfg.samples)
            .context("the statsmodels reference's draws")?;
        let fans = (i == 0).then(|| quantile_fans(&flat, ds.horizon, d, cfg.samples));
        by_seed.insert(
            seed,
            Fit {
                evaluation,
                fit_seconds: r.fit_seconds,
                validation_nelbo: None,
                fans,
            },
        );
    }
    Ok(by_seed)
}

#[cfg(test)]
mod tests;
