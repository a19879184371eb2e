//! Tests of `cargo xtask tune`'s own half: the report, the figures and the tuned config a study
//! leaves, and the refusal when no trial completed. The study itself (resumption, repeatable
//! proposals, failed trials, damaged files, the shipped spaces) is tested with the library, in
//! `crates/ddssm-train/tests/study.rs`.

use super::*;
use ddssm_train::experiment::ExperimentConfig;
use ddssm_train::study::Metric;
use std::path::Path;

/// A quick study ([`StudyOptions::base_config`]) of `trials` 2-step trials of `model` over the
/// search space `space` (TOML text).
fn args(dir: &Path, model: &str, trials: usize, space: &str) -> Result<Args> {
    let path = dir.join("space.toml");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, space)?;
    Ok(Args {
        study: StudyOptions {
            model: model.into(),
            trials,
            steps: 2,
            metric: Metric::Jsd,
            seed: 1,
            quick: true,
            space: path,
            out: dir.join("study"),
        },
        write_config: Some(dir.join("tuned/ddssm.toml")),
        device: Device::Cpu,
    })
}

/// A finished study leaves the report (a row per parameter with the best trial's value and the
/// paper's, a row per trial), both figures, `best.toml` and the same text at `--write-config`.
#[test]
fn a_study_leaves_its_report_figures_and_config() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let space = "[params.enc_lr]\nkind = \"float\"\nlow = 1e-4\nhigh = 1e-2\nlog = true\n\n\
                 [params.lambda_schedule]\nkind = \"categorical\"\nchoices = [\"linear\", \"cosine\"]\n\n\
                 [diffusion_params.s_k]\nkind = \"int\"\nlow = 1\nhigh = 3\n";
    run(&args(dir, "ddssm", 3, space)?)?;
    let out = dir.join("study");
    for f in ["report.md", "history.png", "history.svg", "best.toml"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let best = std::fs::read_to_string(out.join("best.toml"))?;
    assert_eq!(std::fs::read_to_string(dir.join("tuned/ddssm.toml"))?, best);
    let report = std::fs::read_to_string(out.join("report.md"))?;
    assert!(report.starts_with("# TPE study: ddssm (3 trials, 2 steps each"));
    // The paper's column: Table 3's values, read from the fields the proposals write.
    assert!(report.contains("| lambda_schedule | "), "{report}");
    assert!(report.contains(" | cosine | "), "{report}");
    assert!(report.contains(" | 5 | "), "{report}");
    assert_eq!(report.matches("| complete |").count(), 3, "{report}");
    assert_eq!(base_value(&ExperimentConfig::paper().dkf, "s_k"), "–");
    assert_eq!(show(&Value::from(0.00941)), "9.4100e-3");
    Ok(())
}

/// A study whose every trial diverged has no best trial: the command fails naming the study file
/// and writes no config.
#[test]
fn a_study_without_a_completed_trial_is_an_error() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    // λ_end = 1e300 makes the objective overflow: every trial stops with a non-finite gradient.
    let space = "[params.lambda_end]\nkind = \"categorical\"\nchoices = [1e300]\n";
    let err = run(&args(dir, "dkf", 2, space)?).unwrap_err().to_string();
    assert!(
        err.contains("every trial failed") && err.contains("study.jsonl"),
        "{err}"
    );
    assert!(!dir.join("tuned/ddssm.toml").exists());
    assert!(!dir.join("study/best.toml").exists());
    Ok(())
}
