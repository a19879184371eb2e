//! The `ddssm` command end to end through its binary: fit → info → forecast on a shipped data set
//! and on a long-format file with gaps, covariates known into the future and statics; and its
//! bad inputs, each an error naming what to fix, with exit code 1 and nothing half-written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ddssm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddssm"))
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
        .display()
        .to_string()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

/// `ddssm forecast --run RUN --data DATA --out OUT` and `extra`.
fn forecast(run: &Path, data: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "forecast",
        "--run",
        run.to_str().unwrap(),
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ddssm(&args)
}

/// Rows of a forecast CSV: (series, variable, time, mean, quantiles…).
fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn monotone(rows: &[Vec<String>]) {
    for r in rows {
        let q: Vec<f64> = r[4..].iter().map(|v| v.parse().unwrap()).collect();
        assert!(
            q.windows(2).all(|w| w[0] <= w[1]),
            "quantiles not monotone: {r:?}"
        );
        assert!(q.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn fit_info_and_forecast_a_shipped_multivariate_series() {
    let run = tmp("macro");
    let data = shipped("us-macro-quarterly.csv");
    let fit = [
        "fit",
        "--data",
        &data,
        "--time",
        "quarter",
        "--target",
        "realgdp,realcons,realinv",
        "--context",
        "8",
        "--horizon",
        "4",
        "--test-windows",
        "2",
        "--model",
        "dkf",
        "--steps",
        "3",
        "--out",
        run.to_str().unwrap(),
    ];
    ok(&ddssm(&fit));
    let info = ok(&ddssm(&["info", run.to_str().unwrap()]));
    assert!(
        info.contains("realgdp, realcons, realinv") && info.contains("gaussian"),
        "{info}"
    );
    assert!(info.contains("M = 1, D = 3"), "{info}");
    // No covariate or static column: said, not left blank.
    assert!(info.contains("covariates:   (none)"), "{info}");
    assert!(info.contains("statics:      (none)"), "{info}");
    // A run config file changes only what it sets: two latent dimensions and clipping here.
    let config = tmp("macro-config.toml");
    std::fs::write(
        &config,
        "[model]\nlatent_dim = 2\n\n[train]\nmax_grad_norm = 5.0\n",
    )
    .unwrap();
    let configured = tmp("macro-configured");
    let mut with_config = fit.to_vec();
    let configured_out = configured.to_str().unwrap();
    *with_config.last_mut().unwrap() = configured_out;
    with_config.extend(["--config", config.to_str().unwrap()]);
    // --print-config shows the run as it would train, and trains nothing; it needs no --out.
    let out_at = with_config.iter().position(|a| *a == "--out").unwrap();
    let mut print = with_config.clone();
    print.drain(out_at..out_at + 2);
    print.push("--print-config");
    let printed = ok(&ddssm(&print));
    assert!(
        printed.contains("latent_dim = 2") && printed.contains("max_grad_norm = 5.0"),
        "{printed}"
    );
    assert!(printed.contains("[train.learning_rates]"), "{printed}");
    assert!(!configured.exists(), "--print-config wrote a run");
    // Training still needs --out: clap refuses the command line (exit 2) and names it.
    print.pop();
    let no_out = ddssm(&print);
    let err = String::from_utf8_lossy(&no_out.stderr);
    assert_eq!(no_out.status.code(), Some(2), "{err}");
    assert!(err.contains("--out"), "{err}");
    ok(&ddssm(&with_config));
    let info = ok(&ddssm(&["info", configured_out]));
    assert!(info.contains("M = 2, D = 3"), "{info}");
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(configured.join("training.json")).unwrap())
            .unwrap();
    let run_config = &training["config"];
    assert_eq!(run_config["train"]["max_grad_norm"], 5.0);
    assert_eq!(run_config["train"]["steps"], 3, "--steps is kept");
    assert_eq!(
        run_config["model"]["h_seq"], 16,
        "the paper's value is kept"
    );
    // A second fit into the same folder needs --resume or --force.
    refused(&ddssm(&fit), "--resume");
    // A warm start from the configured run: recorded in training.json. From the first run (one
    // latent dimension) it is refused before anything is written.
    let warm = tmp("macro-warm");
    let configured_model = configured.join("model.safetensors");
    let mut warm_fit = with_config.clone();
    *warm_fit.iter_mut().find(|a| **a == configured_out).unwrap() = warm.to_str().unwrap();
    warm_fit.extend(["--init", configured_model.to_str().unwrap()]);
    ok(&ddssm(&warm_fit));
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(warm.join("training.json")).unwrap())
            .unwrap();
    assert_eq!(training["init"], configured_model.to_str().unwrap());
    let refused_out = tmp("macro-warm-refused");
    let mut bad_init = with_config.clone();
    *bad_init.iter_mut().find(|a| **a == configured_out).unwrap() = refused_out.to_str().unwrap();
    let first_model = run.join("model.safetensors");
    bad_init.extend(["--init", first_model.to_str().unwrap()]);
    refused(&ddssm(&bad_init), "--init");
    assert!(
        !refused_out.exists(),
        "a refused warm start wrote its folder"
    );
    // The same model config on data standardised otherwise (one more test window, so a shorter
    // training part): refused too, also before anything is written.
    let mut other_data = warm_fit.clone();
    *other_data
        .iter_mut()
        .find(|a| **a == warm.to_str().unwrap())
        .unwrap() = refused_out.to_str().unwrap();
    let windows = other_data
        .iter()
        .position(|a| *a == "--test-windows")
        .unwrap();
    other_data[windows + 1] = "3";
    refused(&ddssm(&other_data), "standardised for other data");
    assert!(
        !refused_out.exists(),
        "a warm start refused for its standardisation wrote its folder"
    );
    // A DKF has no diffusion sampler to choose.
    let never = tmp("macro-never.csv");
    refused(
        &forecast(&run, &data, &never, &["--sampler", "ancestral"]),
        "Gaussian",
    );
    assert!(!never.exists());
    let out = tmp("macro-forecast.csv");
    ok(&ddssm(&[
        "forecast",
        "--run",
        run.to_str().unwrap(),
        "--data",
        &data,
        "--samples",
        "50",
        "--quantiles",
        "0.1,0.5,0.9",
        "--out",
        out.to_str().unwrap(),
        "--plot",
        "--samples-out",
        tmp("macro-samples.safetensors").to_str().unwrap(),
    ]));
    let r = rows(&out);
    assert_eq!(r.len(), 4 * 3);
    assert_eq!(&r[0][1..3], &["realgdp".to_string(), "+1".to_string()]);
    monotone(&r);
    // The fan charts beside the CSV, and the raw paths whose mean is the CSV's.
    for ext in ["png", "svg"] {
        assert!(out.with_extension(ext).exists(), "no .{ext} fan chart");
    }
    let svg = std::fs::read_to_string(out.with_extension("svg")).unwrap();
    assert!(svg.contains("realinv") && svg.contains("90 % band"));
    let samples_path = tmp("macro-samples.safetensors");
    let tensors = candle_core::safetensors::load(&samples_path, &candle_core::Device::Cpu).unwrap();
    let samples = &tensors["samples"];
    assert_eq!(samples.dims(), [50, 1, 4, 3]);
    let meta = ddssm_model::checkpoint::read_metadata(&samples_path).unwrap();
    assert_eq!(
        meta["ddssm.variables"],
        r#"["realgdp","realcons","realinv"]"#
    );
    let first: Vec<f32> = samples
        .narrow(2, 0, 1)
        .unwrap()
        .narrow(3, 0, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mean = first.iter().map(|&v| v as f64).sum::<f64>() / 50.0;
    let csv_mean: f64 = r[0][3].parse().unwrap();
    assert!(
        (mean - csv_mean).abs() <= 1e-6 * csv_mean.abs(),
        "{mean} vs {csv_mean}"
    );
    // The test windows fit held out, scored beside the baselines.
    let eval = tmp("macro-eval");
    let report = ok(&ddssm(&[
        "evaluate",
        "--run",
        run.to_str().unwrap(),
        "--data",
        &data,
        "--samples",
        "20",
        "--season",
        "4",
        "--out",
        eval.to_str().unwrap(),
    ]));
    assert!(
        report.contains("| model |") && report.contains("seasonal_naive_4"),
        "{report}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("results.json")).unwrap()).unwrap();
    for name in ["model", "last_value", "seasonal_naive_4"] {
        let o = &results["results"][name]["overall"];
        assert_eq!(o["n"], 2 * 4 * 3, "{name}");
        for key in ["crps", "crps_sum", "mae", "rmse", "mase"] {
            assert!(
                o[key].as_f64().is_some_and(f64::is_finite),
                "{name} {key}: {o}"
            );
        }
        // Intervals only for a forecaster with draws; a point baseline covers nothing.
        assert_eq!(o["coverage_90"].is_null(), name != "model", "{name}: {o}");
        assert_eq!(
            results["results"][name]["per_step"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
    assert!(results["results"]["model"]["overall"]["energy"]
        .as_f64()
        .is_some());
}

#[test]
fn long_format_with_gaps_future_covariates_and_statics() {
    let mut text = String::from("store,week,sales,price,size\n");
    for (store, size) in [("a", 1.0), ("b", 2.0)] {
        for t in 0..40 {
            let sales = if t >= 36 {
                String::new() // the future: covariates only
            } else if t % 7 == 3 {
                "NA".into()
            } else {
                format!("{}", 10.0 * size + (t as f64 * 0.7).sin() * 3.0)
            };
            text.push_str(&format!(
                "{store},{t},{sales},{},{size}\n",
                1.0 + (t % 4) as f64
            ));
        }
    }
    let data = tmp("stores.csv");
    std::fs::write(&data, text).unwrap();
    let run = tmp("stores");
    ok(&ddssm(&[
        "fit",
        "--data",
        data.to_str().unwrap(),
        "--time",
        "week",
        "--target",
        "sales",
        "--covariates",
        "price",
        "--static",
        "size",
        "--id",
        "store",
        "--context",
        "6",
        "--horizon",
        "4",
        "--steps",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]));
    // 20 paths per series into `name`, with extra options; the CSV's rows.
    let forecast_rows = |name: &str, extra: &[&str]| {
        let out = tmp(name);
        let mut args = vec!["--samples", "20"];
        args.extend_from_slice(extra);
        ok(&forecast(&run, data.to_str().unwrap(), &out, &args));
        rows(&out)
    };
    let r = forecast_rows("stores-forecast.csv", &[]);
    assert_eq!(r.len(), 2 * 4);
    // The forecast steps carry the file's future times.
    assert_eq!(&r[0][..3], &["a".to_string(), "sales".into(), "36".into()]);
    assert_eq!(&r[7][..3], &["b".to_string(), "sales".into(), "39".into()]);
    monotone(&r);
    // The paper's ancestral chain instead of the few-step default: same seed, other draws.
    let a = forecast_rows("stores-forecast-ancestral.csv", &["--sampler", "ancestral"]);
    assert_eq!(a.len(), r.len());
    monotone(&a);
    assert_ne!(
        a[0][3], r[0][3],
        "--sampler ancestral drew the default's paths"
    );
    // Without the future covariate rows the forecast is refused, naming the series.
    let past = tmp("stores-past.csv");
    let kept: Vec<&str> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .filter(|l| !l.split(',').nth(2).is_some_and(str::is_empty) || l.starts_with("store"))
        .map(|l| Box::leak(l.to_string().into_boxed_str()) as &str)
        .collect();
    std::fs::write(&past, kept.join("\n") + "\n").unwrap();
    let bad_out = tmp("never.csv");
    refused(
        &forecast(&run, past.to_str().unwrap(), &bad_out, &[]),
        "series `a`",
    );
    assert!(!bad_out.exists(), "a refused forecast wrote its output");
}

#[test]
fn bad_inputs_are_named_and_leave_nothing_behind() {
    let co2 = shipped("co2-weekly.csv");
    let run = tmp("never-run");
    let out_dir = run.to_str().unwrap().to_string();
    let fit = |data: &str, target: &str, context: &str, extra: &[&str]| {
        let mut args = vec![
            "fit",
            "--data",
            data,
            "--time",
            "date",
            "--target",
            target,
            "--context",
            context,
            "--horizon",
            "4",
            "--steps",
            "1",
            "--out",
            &out_dir,
        ];
        args.extend_from_slice(extra);
        ddssm(&args)
    };
    refused(&fit(&co2, "co3", "8", &[]), "no target column `co3`");
    refused(&fit(&co2, "co2", "8", &["--covariates", "date"]), "`date`");
    refused(&fit(&co2, "co2", "5000", &[]), "are needed");
    refused(&fit(&co2, "co2", "8", &["--device", "tpu"]), "tpu");
    // A run config file: a key that does not exist (named with its line), a value out of range
    // (named by its path) and sizes that the data give.
    let config = |name: &str, text: &str| {
        let path = tmp(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let unknown = config("unknown.toml", "[train]\nsteps = 2\nlearning_rate = 0.1\n");
    refused(
        &fit(&co2, "co2", "8", &["--config", &unknown]),
        "`train.learning_rate`: line 3, column 1",
    );
    let zero = config("zero.toml", "[model]\nlatent_dim = 0\n");
    refused(
        &fit(&co2, "co2", "8", &["--config", &zero]),
        "model.latent_dim",
    );
    let sizes = config("sizes.toml", "[model]\nobs_dim = 2\n");
    refused(
        &fit(&co2, "co2", "8", &["--config", &sizes]),
        "they come from --target",
    );
    // The transition's kind comes from --model (the default ddssm here); a file naming another
    // kind is refused, not trained as a DKF under --model ddssm.
    let kind = config("kind.toml", "[model.transition]\nkind = \"gaussian\"\n");
    refused(
        &fit(&co2, "co2", "8", &["--config", &kind]),
        "model.transition.kind = \"gaussian\", but the transition comes from --model",
    );
    let missing_config = tmp("no-such.toml");
    refused(
        &fit(
            &co2,
            "co2",
            "8",
            &["--config", missing_config.to_str().unwrap()],
        ),
        "no-such.toml",
    );
    let missing = tmp("no-such.csv");
    refused(
        &fit(missing.to_str().unwrap(), "co2", "8", &[]),
        "no-such.csv",
    );
    assert!(!run.exists(), "a refused fit created its folder");
    let empty = tmp("empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp("x.csv");
    let forecast = |extra: &[&str]| forecast(&empty, &co2, &out, extra);
    refused(&forecast(&[]), "no model here");
    refused(&forecast(&["--quantiles", "1.5"]), "--quantiles");
    refused(&forecast(&["--sampler", "heun-5"]), "dpm-solver++2m-N");
    refused(&ddssm(&["info", empty.to_str().unwrap()]), "no model here");
    assert!(!out.exists());
}

/// A clean single-series file: `t`, target `y`, covariate `c`, 40 rows.
fn clean_rows() -> Vec<String> {
    (0..40)
        .map(|t| format!("{t},{},{}", (t as f64 * 0.3).sin(), t % 4))
        .collect()
}

fn write_file(name: &str, rows: &[String]) -> String {
    let path = tmp(name);
    std::fs::write(&path, format!("t,y,c\n{}\n", rows.join("\n"))).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn bad_files_through_the_command_name_file_line_and_column() {
    let run = tmp("bad-file-run");
    let out_dir = run.to_str().unwrap().to_string();
    let fit = |data: &str| {
        ddssm(&[
            "fit",
            "--data",
            data,
            "--time",
            "t",
            "--target",
            "y",
            "--covariates",
            "c",
            "--context",
            "6",
            "--horizon",
            "2",
            "--model",
            "dkf",
            "--steps",
            "1",
            "--out",
            &out_dir,
        ])
    };
    // (file, line 2 + index of the broken row, the broken row, what the message must name)
    let cases: [(&str, usize, &str, &[&str]); 6] = [
        ("ragged.csv", 7, "5,0.1,1,9", &["line 7", "4 fields"]),
        ("text.csv", 9, "7,abc,3", &["line 9", "`y`", "\"abc\""]),
        ("duplicate.csv", 6, "3,0.5,0", &["line 6", "`t`", "repeats"]),
        ("unsorted.csv", 6, "1,0.5,0", &["line 6", "goes back"]),
        ("covariate.csv", 12, "10,0.2,", &["line 12", "`c`"]),
        ("short.csv", 0, "", &["are needed"]),
    ];
    for (name, line, row, needles) in cases {
        let mut rows = clean_rows();
        if name == "short.csv" {
            rows.truncate(8);
        } else {
            rows[line - 2] = row.to_string();
        }
        let file = write_file(name, &rows);
        let o = fit(&file);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for needle in needles {
            refused(&o, needle);
        }
        if name != "short.csv" {
            refused(&o, name);
        }
        assert!(!run.exists(), "{name}: a refused fit created its folder");
    }
    // An entirely missing target.
    let rows: Vec<String> = (0..40).map(|t| format!("{t},NA,{}", t % 4)).collect();
    refused(&fit(&write_file("all-missing.csv", &rows)), "`y`");

    // Forecasting with a fitted run: other columns, covariates missing in the horizon.
    let good = write_file("good.csv", &clean_rows());
    ok(&fit(&good));
    let out = tmp("bad-forecast.csv");
    let forecast = |data: &str| {
        ddssm(&[
            "forecast",
            "--run",
            &out_dir,
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let other = tmp("other-columns.csv");
    std::fs::write(&other, "t,z,c\n0,1,0\n1,2,1\n").unwrap();
    refused(&forecast(other.to_str().unwrap()), "no target column `y`");
    // The last observation is the file's last row: no covariates for the 2 steps to forecast.
    let no_future = forecast(&good);
    refused(&no_future, &format!("{good}: the model has covariates"));
    refused(
        &no_future,
        "the series has 0 rows after its last observation",
    );
    assert!(!out.exists(), "a refused forecast wrote its CSV");
}
