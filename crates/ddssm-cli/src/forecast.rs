//! `ddssm forecast`: sample paths after the last observation of every series, summarised as the
//! mean and quantiles per series, variable and step, in the data's own units.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_data::read_csv;
use ddssm_eval::forecasting::sorted_rows;
use ddssm_eval::sorted_quantile;
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::dataset::forecast_batch;
use ddssm_train::series::draws_by_row;
use ddssm_train::series::Sampler;

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
    /// The diffusion sampler (None: [`ddssm_train::series::FORECAST_SAMPLER`] for a DDSSM).
    pub sampler: Option<Sampler>,
    /// The device.
    pub device: Device,
    /// The CSV to write.
    pub out: PathBuf,
    /// Also draw a fan chart per series and target (`out` with `.png` and `.svg`).
    pub plot: bool,
    /// Also write the raw sample paths here (safetensors).
    pub samples_out: Option<PathBuf>,
}

/// Forecasts and writes the CSV.
pub fn forecast(args: &ForecastArgs) -> Result<()> {
    anyhow::ensure!(args.samples >= 2, "--samples {}: at least 2", args.samples);
    let (model, columns, spec) =
        crate::run::load_for_sampling(&args.run, &args.device, args.sampler)?;
    let horizon = args.horizon.unwrap_or(spec.horizon);
    anyhow::ensure!(horizon >= 1, "--horizon 0: at least 1 step");
    let panel = read_csv(&args.data, &columns)
        .with_context(|| format!("the run was fitted on columns {columns:?}"))?;
    let (batch, times) = forecast_batch(&panel, spec.context, horizon, &args.device)?;
    let mut noise = SeededNoise::new(args.seed).fork("forecast");
    let paths = model.forecast(&batch, horizon, args.samples, &mut noise)?;
    let (n, d) = (args.samples, columns.targets.len());
    let draws = draws_by_row(&paths.samples)?;
    // Each series, step and variable's draws, sorted once for the CSV and the plot; row
    // `(s·H + h)·D + k`.
    let sorted = sorted_rows(&draws, n);
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
                let sorted = &sorted[(s * horizon + h) * d + k];
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
                        .map(|&q| sorted_quantile(sorted, q).to_string()),
                );
                writer.write_record(&row)?;
            }
        }
    }
    if let Some(path) = &args.samples_out {
        write_samples(path, &paths.samples, &panel, &columns.targets, &times)?;
    }
    if args.plot {
        plot(args, &panel, spec.context.max(3 * horizon), &times, &sorted)?;
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

/// Writes the sample paths `[n, S, H, D]` (data units) as the tensor `samples` of a safetensors
/// file whose metadata names the axes: `ddssm.series`, `ddssm.variables` and `ddssm.times` (per
/// series, JSON).
fn write_samples(
    path: &std::path::Path,
    samples: &candle_core::Tensor,
    panel: &ddssm_data::Panel,
    variables: &[String],
    times: &[Vec<String>],
) -> Result<()> {
    let ids: Vec<&str> = panel.series.iter().map(|s| s.id.as_str()).collect();
    let meta = std::collections::HashMap::from([
        (
            "ddssm.layout".to_string(),
            "samples: [sample, series, step, variable], the data's units".to_string(),
        ),
        ("ddssm.series".into(), serde_json::to_string(&ids)?),
        ("ddssm.variables".into(), serde_json::to_string(variables)?),
        ("ddssm.times".into(), serde_json::to_string(times)?),
    ]);
    let tensor = samples.to_dtype(candle_core::DType::F32)?.contiguous()?;
    let bytes = ddssm_model::checkpoint::seal(&[("samples".to_string(), tensor)], meta)?;
    ddssm_model::checkpoint::write_atomic(path, &bytes)
        .with_context(|| format!("--samples-out {}", path.display()))?;
    tracing::info!("wrote {} (the sample paths)", path.display());
    Ok(())
}

/// A fan chart per series and target beside the CSV: the last `history` observed steps, the
/// median and the 50 % and 90 % bands of the forecast (`sorted`: the draws of row
/// `(s·H + h)·D + k`, sorted).
fn plot(
    args: &ForecastArgs,
    panel: &ddssm_data::Panel,
    history: usize,
    times: &[Vec<String>],
    sorted: &[Vec<f64>],
) -> Result<()> {
    use ddssm_eval::plot::{fan_chart, fan_quantiles, Fan, FanPanel};
    let d = panel.target_dim();
    let horizon = times.first().map_or(0, Vec::len);
    let mut panels = Vec::new();
    for (s, series) in panel.series.iter().enumerate() {
        let end = series.observed_len(d);
        let first = end.saturating_sub(history);
        let mut x_labels: std::collections::BTreeMap<i64, String> = (first..end)
            .map(|t| (t as i64, series.times[t].to_string()))
            .collect();
        x_labels.extend(
            times[s]
                .iter()
                .enumerate()
                .map(|(h, time)| ((end + h) as i64, time.clone())),
        );
        for (k, variable) in panel.columns.targets.iter().enumerate() {
            // The fan leaves from the last observation, so it joins the history line.
            let anchor = (end > 0 && series.observed[(end - 1) * d + k])
                .then(|| ((end - 1) as f64, [series.targets[(end - 1) * d + k]; 5]));
            let steps = anchor
                .into_iter()
                .chain((0..horizon).map(|h| {
                    let q = fan_quantiles(&sorted[(s * horizon + h) * d + k]);
                    ((end + h) as f64, q)
                }))
                .collect();
            panels.push(FanPanel {
                title: if series.id.is_empty() {
                    variable.clone()
                } else {
                    format!("{} · {variable}", series.id)
                },
                observed: (first..end)
                    .filter(|&t| series.observed[t * d + k])
                    .map(|t| (t as f64, series.targets[t * d + k]))
                    .collect(),
                fans: vec![Fan { steps }],
                x_labels: x_labels.clone(),
                y_desc: variable.clone(),
            });
        }
    }
    let dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = args
        .out
        .file_stem()
        .and_then(|s| s.to_str())
        .context("--out has no file name for the plot")?;
    let files = fan_chart(&panels, d, (640, 340), &dir, stem)?;
    tracing::info!("wrote {} in {}", files.join(" and "), dir.display());
    Ok(())
}
