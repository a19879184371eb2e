//! The Section 4 experiment as one library call ([`experiment::run`]) on the quick config:
//! repeatable, resumable after an interruption with the uninterrupted numbers, and never run over
//! an existing folder on other terms.

mod common;

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Device;
use ddssm_train::experiment::{self, ExperimentConfig, Results, RunOptions};

use common::snapshot;

fn quick(seed: u64, steps: usize) -> ExperimentConfig {
    let mut cfg = ExperimentConfig::paper().quick();
    cfg.seed = seed;
    for run in [&mut cfg.ddssm, &mut cfg.dkf] {
        run.train.seed = seed;
        run.train.steps = steps;
    }
    cfg
}

fn options(out: &Path, resume: bool, force: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        resume,
        force,
        progress: false,
        quick: true,
        device: Device::Cpu,
        git_commit: "test".into(),
        ddssm_only: false,
        ddssm_init: None,
    }
}

/// The same seed gives the same numbers in a fresh folder, and a run interrupted after 5 of its
/// 10 training steps (5 steps, then resumed with 10) ends with the uninterrupted run's numbers.
#[test]
fn quick_runs_repeat_exactly_and_survive_an_interruption() -> Result<()> {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-experiment-quick-{}", std::process::id()));
    let run = |dir: &str, steps: usize| -> Result<Results> {
        Ok(experiment::run(
            &quick(5, steps),
            &options(&out.join(dir), true, false),
        )?)
    };
    let a = run("a", 10)?;
    // The report is written beside results.json, rendered from the same results.
    assert_eq!(
        std::fs::read_to_string(out.join("a/report.md"))?,
        a.markdown()
    );
    let b = run("b", 10)?;
    run("c", 5)?;
    let c = run("c", 10)?;
    assert_eq!(c.training["ddssm"].start_step, 5);
    assert_eq!(a.models["ddssm"].per_sequence_jsd_exact.len(), 16);
    for other in [&b, &c] {
        for name in ["ddssm", "dkf", "locf"] {
            let (x, y) = (&a.models[name], &other.models[name]);
            assert_eq!(x.per_sequence_jsd_exact, y.per_sequence_jsd_exact, "{name}");
            assert_eq!(x.crps.mean, y.crps.mean, "{name}");
            assert_eq!(
                x.negative_elbo.as_ref().map(|e| e.mean),
                y.negative_elbo.as_ref().map(|e| e.mean),
                "{name}"
            );
        }
    }
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

/// A finished run is never silently replaced or continued on other terms: a fresh run into it
/// needs `force`; `resume` refuses other data (naming the key), fewer steps than the checkpoints
/// hold and another model config — each before any file is written; a forced run clears a stale
/// temporary file.
#[test]
fn a_finished_run_is_replaced_or_resumed_only_on_its_own_terms() -> Result<()> {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-experiment-guard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    experiment::run(&quick(0, 10), &options(&out, false, false))?;
    let stale = out.join(".dkf.safetensors.tmp4294967295");
    std::fs::write(&stale, b"half a checkpoint")?;
    let before = snapshot(&out)?;
    let mut other_data = quick(0, 10);
    other_data.data.sim.step = 3.0;
    let mut other_model = quick(0, 10);
    other_model.dkf.model.h_seq = 8;
    for (what, cfg, resume, needle) in [
        ("a fresh run", quick(0, 10), false, "--force"),
        ("other data", other_data, true, "`data.sim.step`"),
        ("fewer steps", quick(0, 5), true, "at step 10"),
        ("another model", other_model, true, "`h_seq`"),
    ] {
        let err = experiment::run(&cfg, &options(&out, resume, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(snapshot(&out)?, before, "{what}: files changed");
    }
    experiment::run(&quick(0, 10), &options(&out, false, true))?;
    assert!(!stale.exists());
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

/// A warm start from a finished run's DDSSM is flagged in its results and in the ablation
/// tables' label; one from a file that cannot start the DDSSM is refused before anything is
/// written.
#[test]
fn warm_starts_are_flagged_and_bad_ones_refused_before_anything_is_written() -> Result<()> {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-experiment-init-{}", std::process::id()));
    let ddssm_only = |dir: &str, init: Option<PathBuf>| RunOptions {
        ddssm_only: true,
        ddssm_init: init,
        ..options(&out.join(dir), false, false)
    };
    experiment::run(&quick(5, 2), &ddssm_only("source", None))?;
    let source = out.join("source/ddssm.safetensors");
    let warm = experiment::run(&quick(5, 2), &ddssm_only("warm", Some(source.clone())))?;
    assert_eq!(warm.ddssm_init, Some(source.display().to_string()));
    assert!(warm.warnings.iter().any(|w| w.contains("warm start")));
    let row = experiment::FinishedRun::read(&out.join("warm"))?;
    assert!(
        row.changes.ends_with("; warm start from source"),
        "{}",
        row.changes
    );
    // Results written before the field existed record the warm start only in their warnings.
    let mut older: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("warm/results.json"))?)?;
    older
        .as_object_mut()
        .expect("results are an object")
        .remove("ddssm_init");
    std::fs::create_dir_all(out.join("older"))?;
    std::fs::write(out.join("older/results.json"), older.to_string())?;
    let row = experiment::FinishedRun::read(&out.join("older"))?;
    assert!(
        row.changes.ends_with("; warm start from source"),
        "{}",
        row.changes
    );
    let cold = experiment::FinishedRun::read(&out.join("source"))?;
    assert!(!cold.changes.contains("warm start"), "{}", cold.changes);

    // A resume reports the start its checkpoint records, whatever its command line says: the
    // warm-started run extended without `--init-ddssm` is still flagged, the seed-started run
    // extended with it is not.
    let resumed = |dir: &str, init: Option<PathBuf>| RunOptions {
        resume: true,
        ..ddssm_only(dir, init)
    };
    let warm = experiment::run(&quick(5, 3), &resumed("warm", None))?;
    assert_eq!(warm.training["ddssm"].start_step, 2, "not a resume");
    assert_eq!(warm.ddssm_init, Some(source.display().to_string()));
    let cold = experiment::run(&quick(5, 3), &resumed("source", Some(source.clone())))?;
    assert_eq!(cold.training["ddssm"].start_step, 2, "not a resume");
    assert_eq!(cold.ddssm_init, None);
    assert!(!cold.warnings.iter().any(|w| w.contains("warm start")));

    let missing = out.join("no-such.safetensors");
    let err = experiment::run(&quick(5, 2), &ddssm_only("refused", Some(missing)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--init-ddssm") && err.contains("no-such"),
        "{err}"
    );
    let written = match std::fs::read_dir(out.join("refused")) {
        Ok(dir) => dir.count(),
        Err(_) => 0,
    };
    assert_eq!(written, 0, "files left in a refused run's folder");
    Ok(())
}
