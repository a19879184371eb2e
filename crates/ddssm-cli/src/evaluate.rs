//! `ddssm evaluate`: the run's model on the test windows of a file (the last forecast origins of
//! every series, as `fit` held them out), beside the last-value and seasonal-naive baselines, each
//! scored per horizon step and overall by the fair CRPS, the energy score (several targets), the
//! MAE and RMSE of the median, the MASE and the coverage of the 50 % and 90 % central intervals.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_data::{read_csv, rolling_origin};
use ddssm_eval::forecasting::scores_table;
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::series::evaluate_test_windows;
use ddssm_train::series::Sampler;

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
    /// The diffusion sampler (None: [`ddssm_train::series::FORECAST_SAMPLER`] for a DDSSM).
    pub sampler: Option<Sampler>,
    /// The device.
    pub device: Device,
    /// The results folder (results.json, report.md).
    pub out: PathBuf,
}

/// Runs the evaluation and writes results.json and report.md into `args.out`.
pub fn evaluate(args: &EvaluateArgs) -> Result<()> {
    anyhow::ensure!(args.samples >= 2, "--samples {}: at least 2", args.samples);
    anyhow::ensure!(args.season >= 1, "--season 0: at least 1");
    let (model, columns, spec) =
        crate::run::load_for_sampling(&args.run, &args.device, args.sampler)?;
    let panel = read_csv(&args.data, &columns)
        .with_context(|| format!("the run was fitted on columns {columns:?}"))?;
    let splits = rolling_origin(&panel, &spec)?;
    let (l, h) = (spec.context, spec.horizon);
    let mut noise = SeededNoise::new(args.seed).fork("evaluate");
    let results = evaluate_test_windows(
        &model,
        &panel,
        &splits,
        args.samples,
        args.season,
        &mut noise,
    )?;
    let (test, n) = (&splits.test, args.samples);
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
         context {l}, horizon {h}, {n} sample paths each. Lower is better for CRPS, CRPS-sum \
         (several targets: the CRPS of their sum over Σ|Σ y|), energy score, MAE, RMSE and MASE; a coverage should match its level. Baselines are point \
         forecasts (their CRPS is their absolute error).\n\n",
        args.data.display(),
        test.len(),
        spec.test_windows
    );
    report.push_str(&scores_table(&results));
    ddssm_model::checkpoint::write_atomic(&args.out.join("report.md"), report.as_bytes())?;
    println!("{report}");
    Ok(())
}
