//! `ddssm forecast`: sample paths after the last observation of every series, summarised as the
//! mean and quantiles per series, variable and step, in the data's own units.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use ddssm_data::read_csv;
use ddssm_eval::sorted_quantile;
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::dataset::forecast_batch;

/// `ddssm forecast`'s options.
#[derive(Debug, Clone)]
pub struct ForecastArgs {
    /// The run folder.
    pub run: PathBuf,
    /// The CSV file.
    pub data: PathBuf,
    /// Steps to forecast (None: the run's horizon).
    pub horizon: Option<usize>,
    /// Sample paths per series.
    pub samples: usize,
    /// Quantile levels in (0, 1).
    pub quantiles: Vec<f64>,
    /// The seed of the paths.
    pub seed: u64,
    /// The device.
    pub device: Device,
    /// The CSV to write.
    pub out: PathBuf,
}

/// Forecast samples `[n, B, H, D]` as `[B, H, D, n]` values: the `n` draws of each sequence,
/// step and variable in a row (the row of `(b, h, k)` starts at `((b·H + h)·D + k)·n`).
pub fn draws_by_row(samples: &candle_core::Tensor) -> Result<Vec<f64>> {
    Ok(samples
        .to_dtype(DType::F64)?
        .permute((1, 2, 3, 0))?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// Forecasts and writes the CSV.
pub fn forecast(args: &ForecastArgs) -> Result<()> {
    anyhow::ensure!(args.samples >= 2, "--samples {}: at least 2", args.samples);
    let (model, columns, spec) = crate::run::load(&args.run, &args.device)?;
    let horizon = args.horizon.unwrap_or(spec.horizon);
    anyhow::ensure!(horizon >= 1, "--horizon 0: at least 1 step");
    let panel = read_csv(&args.data, &columns)
        .with_context(|| format!("the run was fitted on columns {columns:?}"))?;
    let (batch, times) = forecast_batch(&panel, spec.context, horizon, &args.device)?;
    let mut noise = SeededNoise::new(args.seed).fork("forecast");
    let paths = model.forecast(&batch, horizon, args.samples, &mut noise)?;
    let draws = draws_by_row(&paths.samples)?;
    let (n, d) = (args.samples, columns.targets.len());
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "series".to_string(),
        "variable".into(),
        "time".into(),
        "mean".into(),
    ];
    header.extend(args.quantiles.iter().map(|q| format!("q{q}")));
    writer.write_record(&header)?;
    for (s, series) in panel.series.iter().enumerate() {
        for (h, time) in times[s].iter().enumerate() {
            for (k, variable) in columns.targets.iter().enumerate() {
                let at = ((s * horizon + h) * d + k) * n;
                let mut sorted = draws[at..at + n].to_vec();
                sorted.sort_by(f64::total_cmp);
                let mean = sorted.iter().sum::<f64>() / n as f64;
                let mut row = vec![
                    series.id.clone(),
                    variable.clone(),
                    time.clone(),
                    mean.to_string(),
                ];
                row.extend(
                    args.quantiles
                        .iter()
                        .map(|&q| sorted_quantile(&sorted, q).to_string()),
                );
                writer.write_record(&row)?;
            }
        }
    }
    let bytes = writer.into_inner().context("formatting the forecast CSV")?;
    // Written whole or not at all.
    ddssm_model::checkpoint::write_atomic(&args.out, &bytes)
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!(
        "wrote {}: {} series × {horizon} steps × {} variables, {} paths each",
        args.out.display(),
        panel.series.len(),
        columns.targets.len(),
        args.samples
    );
    Ok(())
}
