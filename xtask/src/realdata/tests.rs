//! The benchmark end to end on a tiny config: every forecaster scored, the report and fan charts
//! written, `--resume` skipping finished fits, the statsmodels handshake (through a stand-in
//! interpreter that forecasts the last value, so its row must equal the last-value baseline's),
//! and bad configs refused before any work.

use super::*;
use ddssm_train::series::Transition;

const TINY: &str = r#"
steps = 2
seeds = [0, 1]
samples = 8
batch_size = 16

[[dataset]]
name = "macro"
file = "DATA"
columns = { time = "quarter", targets = ["infl", "unemp"] }
context = 8
horizon = 2
test_windows = 2
season = 4
statsmodels = { model = "varmax", order = 1 }
seeds = { dkf = [1] }
"#;

/// A fresh scratch folder, removed when the returned guard is dropped.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn args(dir: &Path, config: &str, python: Option<PathBuf>) -> Args {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/us-macro-quarterly.csv");
    let path = dir.join("real-data.toml");
    std::fs::write(&path, config.replace("DATA", data.to_str().unwrap())).unwrap();
    Args {
        config: path,
        steps: None,
        out: dir.join("out"),
        python,
        resume: false,
        force: false,
        report_only: false,
        device: Device::Cpu,
    }
}

/// A stand-in for a Python with statsmodels: forecasts every step as the window's last value.
fn last_value_interpreter(dir: &Path) -> PathBuf {
    let path = dir.join("fake-python");
    std::fs::write(
        &path,
        "#!/usr/bin/env python3\n\
         import json, sys\n\
         r = json.load(open(sys.argv[2]))\n\
         n, h = r['samples'], r['horizon']\n\
         def path(w):\n\
         \x20   last = w['history'][-1]\n\
         \x20   return [[[v] * n for v in last] for _ in range(h)]\n\
         draws = [[path(w) for w in r['windows']] for _ in r['seeds']]\n\
         json.dump({'statsmodels_version': 'stand-in', 'fit_seconds': 0.0, 'draws': draws},\n\
         \x20         open(sys.argv[3], 'w'))\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_tiny_benchmark_scores_every_forecaster_reports_and_resumes() -> Result<()> {
    let scratch = scratch();
    let dir = scratch.path();
    let python = last_value_interpreter(dir);
    let mut a = args(dir, TINY, Some(python));
    run(&a)?;
    for file in [
        "results.json",
        "real-data.md",
        "macro-fans.png",
        "macro-fans.svg",
    ] {
        assert!(a.out.join(file).exists(), "{file}");
    }
    let text = std::fs::read_to_string(a.out.join("results.json"))?;
    let (_, results): (RealDataConfig, Vec<DatasetResults>) = serde_json::from_str(&text)?;
    let fits = &results[0].fits;
    assert_eq!(
        fits.keys().collect::<Vec<_>>(),
        [
            "ddssm",
            "dkf",
            "last_value",
            "seasonal_naive_4",
            "statsmodels"
        ]
    );
    assert_eq!(fits["ddssm"].len(), 2);
    // The data set's own seeds for the DKF: one fit, seed 1, whose fans are drawn.
    assert_eq!(fits["dkf"].keys().collect::<Vec<_>>(), [&1]);
    assert!(fits["dkf"][&1].fans.is_some() && fits["ddssm"][&1].fans.is_none());
    // The stand-in forecasts the last value: its scores are the baseline's, to rounding.
    let (sm, last) = (
        &fits["statsmodels"][&0].evaluation.overall,
        &fits["last_value"][&0].evaluation.overall,
    );
    assert!((sm.crps - last.crps).abs() < 1e-9 && (sm.mae - last.mae).abs() < 1e-9);
    let report = std::fs::read_to_string(a.out.join("real-data.md"))?;
    assert!(
        report.contains("| ddssm |") && report.contains(" ± "),
        "{report}"
    );
    // Each model's −ELBO read against the marginal Gaussian of the validation windows.
    assert!(report.contains("−ELBO gain") && results[0].marginal.is_some());
    // A second run is refused without --resume or --force; --resume redoes no fit.
    assert!(run(&a).unwrap_err().to_string().contains("--force"));
    let before = std::fs::read(a.out.join("fits.json"))?;
    a.resume = true;
    run(&a)?;
    assert_eq!(std::fs::read(a.out.join("fits.json"))?, before);
    assert_eq!(std::fs::read_to_string(a.out.join("results.json"))?, text);
    // --resume on another config is refused.
    a.steps = Some(3);
    assert!(run(&a).unwrap_err().to_string().contains("another config"));
    Ok(())
}

#[test]
fn bad_configs_are_refused_before_any_work() {
    let scratch = scratch();
    let dir = scratch.path();
    for (from, to, needle) in [
        ("steps = 2", "steps = 0", "steps = 0"),
        ("seeds = [0, 1]", "seeds = []", "seeds is empty"),
        ("samples = 8", "samples = 1", "samples = 1"),
        ("batch_size = 16", "batch_size = 0", "batch_size = 0"),
        ("season = 4", "season = 0", "season = 0"),
        ("context = 8", "context = 500", "dataset[0] (macro)"),
        ("\"unemp\"", "\"jobs\"", "`jobs`"),
        ("steps = 2", "step = 2", "step"),
        ("dkf = [1]", "lstm = [1]", "seeds.lstm"),
        ("dkf = [1]", "dkf = []", "seeds.dkf"),
    ] {
        let a = args(dir, &TINY.replace(from, to), None);
        let err = match run(&a) {
            Ok(()) => panic!("{to}: accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(!a.out.exists(), "{needle}: the results folder was created");
    }
}

#[test]
fn the_config_batch_size_replaces_table_3s() -> Result<()> {
    let scratch = scratch();
    let dir = scratch.path();
    let a = args(dir, TINY, None);
    let (mut cfg, data) = prepare(&a)?;
    let (panel, splits) = &data[0];
    let windows = splits.train.len();
    let run = |cfg: &RealDataConfig, t| cfg.model_run(t, 0, panel, windows).train.batch_size;
    assert_eq!(run(&cfg, Transition::Ddssm), 16);
    assert_eq!(run(&cfg, Transition::Dkf), 16);
    cfg.batch_size = None;
    assert_eq!(run(&cfg, Transition::Ddssm), 128.min(windows));
    assert_eq!(run(&cfg, Transition::Dkf), 512.min(windows));
    Ok(())
}
