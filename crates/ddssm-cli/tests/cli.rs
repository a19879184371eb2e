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
    let dir = std::env::temp_dir().join(format!("ddssm-cli-tests-{}", std::process::id()));
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
    // A second fit into the same folder needs --resume or --force.
    refused(&ddssm(&fit), "--resume");
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
    ]));
    let r = rows(&out);
    assert_eq!(r.len(), 4 * 3);
    assert_eq!(&r[0][1..3], &["realgdp".to_string(), "+1".to_string()]);
    monotone(&r);
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
        for key in ["crps", "mae", "rmse", "mase", "coverage_90"] {
            assert!(
                o[key].as_f64().is_some_and(f64::is_finite),
                "{name} {key}: {o}"
            );
        }
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
    let out = tmp("stores-forecast.csv");
    ok(&ddssm(&[
        "forecast",
        "--run",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--samples",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]));
    let r = rows(&out);
    assert_eq!(r.len(), 2 * 4);
    // The forecast steps carry the file's future times.
    assert_eq!(&r[0][..3], &["a".to_string(), "sales".into(), "36".into()]);
    assert_eq!(&r[7][..3], &["b".to_string(), "sales".into(), "39".into()]);
    monotone(&r);
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
        &ddssm(&[
            "forecast",
            "--run",
            run.to_str().unwrap(),
            "--data",
            past.to_str().unwrap(),
            "--out",
            bad_out.to_str().unwrap(),
        ]),
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
    let missing = tmp("no-such.csv");
    refused(
        &fit(missing.to_str().unwrap(), "co2", "8", &[]),
        "no-such.csv",
    );
    assert!(!run.exists(), "a refused fit created its folder");
    let empty = tmp("empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp("x.csv");
    let forecast = |extra: &[&str]| {
        let mut args = vec![
            "forecast",
            "--run",
            empty.to_str().unwrap(),
            "--data",
            &co2,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ddssm(&args)
    };
    refused(&forecast(&[]), "no model here");
    refused(&forecast(&["--quantiles", "1.5"]), "--quantiles");
    refused(&ddssm(&["info", empty.to_str().unwrap()]), "no model here");
    assert!(!out.exists());
}
