//! The hyperparameter study as a library ([`run_tpe_study`]): quick studies that resume and
//! repeat their proposals, failed trials, damaged study files, bad search spaces, the shipped
//! spaces and tuned configs. `cargo xtask tune`'s own tests cover only its report.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_model::TransitionConfig;
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::experiment::ExperimentConfig;
use ddssm_train::study::{
    apply, best_trial, check_space, load_space, run_tpe_study, value, Metric, StudyOptions,
    StudyOutcome, Trial, KNOWN,
};
use ddssm_train::tpe::{Distribution, Params};
use serde_json::Value;

use common::snapshot;

/// The repository's `configs/` folder.
fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// A study-sized experiment: 6-step series, 16 training and 4 validation sequences, `steps`
/// training steps at batch 4, a 32-level diffusion schedule.
fn tiny(seed: u64, steps: usize) -> ExperimentConfig {
    let mut cfg = ExperimentConfig::paper().quick();
    cfg.seed = seed;
    cfg.data.sim.t = 6;
    cfg.data.train = 16;
    cfg.data.validation = 4;
    cfg.evaluation.validation_sequences = 2;
    cfg.evaluation.validation_samples = 4;
    for run in [&mut cfg.ddssm, &mut cfg.dkf] {
        run.train.seed = seed;
        run.train.steps = steps;
        run.train.batch_size = 4;
        run.train.validate_every = 0;
        run.train.checkpoint_every = 0;
        if let TransitionConfig::Diffusion(d) = &mut run.model.transition {
            d.schedule.num_steps = 32;
        }
    }
    cfg
}

const SMALL_SPACE: &str = r#"
[params.enc_lr]
kind = "float"
low = 1e-4
high = 1e-2
log = true

[params.lambda_schedule]
kind = "categorical"
choices = ["linear", "cosine"]

[params.batch_size]
kind = "categorical"
choices = [4, 8]

[diffusion_params.s_k]
kind = "int"
low = 1
high = 3
"#;

/// A DDSSM study of `trials` 2-step trials over [`SMALL_SPACE`] (written to `dir/space.toml`),
/// its folder `dir/study`.
fn options(dir: &Path, trials: usize) -> Result<StudyOptions> {
    let space = dir.join("space.toml");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&space, SMALL_SPACE)?;
    Ok(StudyOptions {
        model: "ddssm".into(),
        trials,
        steps: 2,
        metric: Metric::Jsd,
        seed: 1,
        quick: true,
        space,
        out: dir.join("study"),
    })
}

fn study(options: &StudyOptions, cfg: ExperimentConfig) -> Result<StudyOutcome> {
    Ok(run_tpe_study(options, cfg, &Device::Cpu)?)
}

fn read_trials(dir: &Path) -> Result<Vec<Trial>> {
    let text = std::fs::read_to_string(dir.join("study/study.jsonl"))?;
    Ok(text
        .lines()
        .skip(1)
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?)
}

/// A study of 2 trials continued to 3 leaves its first two lines alone; the same seed in a
/// fresh folder proposes and scores the same; the best trial becomes a valid experiment config
/// at the paper's 3000 steps; another study's file is refused, not appended to.
#[test]
fn a_quick_study_resumes_repeats_and_gives_a_usable_config() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().to_path_buf();
    study(&options(&dir, 2)?, tiny(1, 2))?;
    let first = read_trials(&dir)?;
    assert_eq!(first.len(), 2);
    let outcome = study(&options(&dir, 3)?, tiny(1, 2))?;
    let resumed = read_trials(&dir)?;
    assert_eq!(resumed.len(), 3);
    assert_eq!(&resumed[..2], &first[..]);
    assert_eq!(outcome.trials, resumed);
    for t in &resumed {
        assert_eq!(t.status, "complete", "{t:?}");
        let s = t.score.expect("a score");
        assert!((0.0..=std::f64::consts::LN_2 + 1e-9).contains(&s), "{s}");
        assert!(t.params.contains_key("s_k") && t.params.contains_key("enc_lr"));
    }
    // Same seed, fresh folder: the same proposals and scores.
    let other = dir.join("again");
    let mut again_options = options(&other, 3)?;
    again_options.space = dir.join("space.toml");
    study(&again_options, tiny(1, 2))?;
    let again = read_trials(&other)?;
    for (x, y) in again.iter().zip(&resumed) {
        assert_eq!(x.params, y.params);
        assert_eq!(x.score, y.score);
    }
    // The written config is a valid experiment config holding the best trial's values.
    let best = best_trial(&resumed).expect("a completed trial");
    let lowest = resumed
        .iter()
        .min_by(|a, b| a.score.unwrap().total_cmp(&b.score.unwrap()))
        .unwrap();
    assert_eq!(best, lowest);
    let also = dir.join("tuned/ddssm.toml");
    let text = options(&dir, 3)?.write_tuned_config(&outcome.base, best, 3, Some(&also))?;
    assert_eq!(std::fs::read_to_string(&also)?, text);
    assert_eq!(std::fs::read_to_string(dir.join("study/best.toml"))?, text);
    let tuned: ExperimentConfig = toml::from_str(&text)?;
    tuned.validate()?;
    assert_eq!(
        tuned.ddssm.train.learning_rates.encoder,
        best.params["enc_lr"].as_f64().unwrap()
    );
    assert_eq!(tuned.ddssm.train.steps, 3000);
    // Another study's file is refused, not appended to.
    let mut wrong = options(&dir, 4)?;
    wrong.metric = Metric::CrpsSum;
    let e = study(&wrong, tiny(1, 2)).unwrap_err().to_string();
    assert!(e.contains("another study"), "{e}");
    assert_eq!(read_trials(&dir)?.len(), 3);
    Ok(())
}

/// A damaged study file — its last line cut at seeded random places, a garbage line, a
/// header of another study, an empty file — stops the study with an error naming the file
/// and line before any work, and the study folder is left exactly as it was.
#[test]
fn a_damaged_study_file_is_refused_and_left_alone() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().to_path_buf();
    study(&options(&dir, 2)?, tiny(1, 2))?;
    let file = dir.join("study/study.jsonl");
    let good = std::fs::read_to_string(&file)?;
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines.len(), 3);
    let last_start = good.len() - lines[2].len() - 1;
    let mut cases: Vec<(String, String, &str)> = Vec::new();
    let cuts =
        SeededNoise::new(11).uniform_ints(12, last_start as u32 + 1, good.len() as u32 - 3)?;
    for cut in cuts {
        cases.push((
            format!("cut at byte {cut}"),
            good[..cut as usize].to_string(),
            "line 3 is incomplete",
        ));
    }
    cases.push((
        "garbage line".into(),
        format!("{}\n{}\nnot json at all\n", lines[0], lines[1]),
        "line 3 is not a trial",
    ));
    cases.push((
        "trial out of order".into(),
        format!("{}\n{}\n", lines[0], lines[2]),
        "expected 0",
    ));
    let mut other: Value = serde_json::from_str(lines[0])?;
    other["seed"] = Value::from(99);
    cases.push((
        "another study's header".into(),
        format!("{other}\n{}\n{}\n", lines[1], lines[2]),
        "another study",
    ));
    cases.push(("empty file".into(), String::new(), "line 1"));
    for (what, text, needle) in cases {
        std::fs::write(&file, &text)?;
        let before = snapshot(&dir.join("study"))?;
        let outcome = std::panic::catch_unwind(|| study(&options(&dir, 3)?, tiny(1, 2)));
        let err = outcome
            .unwrap_or_else(|_| panic!("{what}: panicked"))
            .expect_err(&what);
        let msg = format!("{err:#}");
        assert!(
            msg.contains(needle) && msg.contains("study.jsonl"),
            "{what}: {msg}"
        );
        assert_eq!(
            snapshot(&dir.join("study"))?,
            before,
            "{what}: files changed"
        );
    }
    Ok(())
}

/// λ_end = 1e300 makes the objective overflow: such a trial stops with a non-finite gradient,
/// is recorded as failed with its error, and the study goes on to its count.
#[test]
fn a_diverging_trial_is_recorded_as_failed_and_the_study_goes_on() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().to_path_buf();
    let mut o = options(&dir, 6)?;
    std::fs::write(
        &o.space,
        "[params.lambda_end]\nkind = \"categorical\"\nchoices = [0.5, 1e300]\n",
    )?;
    o.model = "dkf".into();
    study(&o, tiny(2, 2))?;
    let trials = read_trials(&dir)?;
    assert_eq!(trials.len(), 6);
    let failed: Vec<&Trial> = trials.iter().filter(|t| t.status == "failed").collect();
    assert!(!failed.is_empty() && failed.len() < 6, "{trials:?}");
    for t in &failed {
        assert_eq!(t.params["lambda_end"], Value::from(1e300));
        assert!(t.score.is_none());
        assert!(
            t.error.as_deref().unwrap_or("").contains("not finite"),
            "{t:?}"
        );
    }
    Ok(())
}

/// `configs/tune/space.toml` is Table 3's space (one more parameter, `s_k`, for the DDSSM) and
/// its extreme values give valid runs of both models; the 300-step space differs only in the
/// warm-up's range; the one-point space is the paper's DDSSM run with the warm-up scaled.
#[test]
fn the_shipped_space_is_table_3s_and_valid_for_both_models() -> Result<()> {
    let path = configs().join("tune/space.toml");
    let ddssm = load_space(&path, "ddssm")?;
    let dkf = load_space(&path, "dkf")?;
    assert_eq!(ddssm.len(), dkf.len() + 1);
    assert!(ddssm.contains_key("s_k") && !dkf.contains_key("s_k"));
    assert_eq!(
        dkf["enc_lr"],
        Distribution::Float {
            low: 5e-5,
            high: 1e-2,
            log: true
        }
    );
    let cfg = ExperimentConfig::paper();
    check_space(&ddssm, &cfg, "ddssm")?;
    check_space(&dkf, &cfg, "dkf")?;
    // The names read the paper's values from the fields the proposals write.
    assert_eq!(value(&cfg.ddssm, "lambda_schedule")?, Value::from("cosine"));
    assert_eq!(value(&cfg.ddssm, "lambda_warmup_steps")?, Value::from(889));
    assert_eq!(value(&cfg.ddssm, "trans_lr")?, Value::from(0.00941));
    assert_eq!(value(&cfg.ddssm, "s_k")?, Value::from(5));
    assert!(value(&cfg.dkf, "s_k").is_err());

    // The short-trial space: Table 3's, with the warm-up scaled by 300/1500.
    let mut short = load_space(&configs().join("tune/space-300-steps.toml"), "ddssm")?;
    assert_eq!(
        short.insert(
            "lambda_warmup_steps".into(),
            ddssm["lambda_warmup_steps"].clone()
        ),
        Some(Distribution::Int {
            low: 40,
            high: 240,
            log: false
        })
    );
    assert_eq!(short, ddssm);

    // The one-point space of Table 3's DDSSM values: the paper's run, warm-up scaled.
    let point = load_space(&configs().join("tune/table3-ddssm-300-steps.toml"), "ddssm")?;
    assert_eq!(point.len(), ddssm.len());
    let params: Params = point
        .iter()
        .map(|(name, d)| match d {
            Distribution::Categorical { choices } if choices.len() == 1 => {
                (name.clone(), choices[0].clone())
            }
            other => panic!("{name}: {other:?} is not one value"),
        })
        .collect();
    let mut want = cfg.ddssm.clone();
    want.train.lambda.lambda_warmup_steps = 178;
    assert_eq!(apply(&cfg.ddssm, &params)?, want);
    Ok(())
}

/// Every config in `configs/tuned/` is valid, holds a tuned value, and differs from the paper's
/// experiment only in searched fields: with every searched field put back to the paper's value
/// it is the paper's experiment.
#[test]
fn shipped_tuned_configs_change_only_searched_parameters() -> Result<()> {
    let dir = configs().join("tuned");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    assert!(!files.is_empty(), "no tuned config in {}", dir.display());
    let paper = ExperimentConfig::paper();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let tuned: ExperimentConfig =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        tuned.validate()?;
        let mut back = tuned.clone();
        for (run, reference) in [(&mut back.ddssm, &paper.ddssm), (&mut back.dkf, &paper.dkf)] {
            let papers: Params = KNOWN
                .iter()
                .filter_map(|&name| Some((name.to_string(), value(reference, name).ok()?)))
                .collect();
            *run = apply(run, &papers)?;
        }
        assert_eq!(back, paper, "{}", path.display());
        assert!(tuned != paper, "{}: holds no tuned value", path.display());
    }
    Ok(())
}

/// An unknown name, an impossible range, an unknown kind and an empty space are refused naming
/// what is wrong; a batch larger than the training split fails the check before any work.
#[test]
fn bad_spaces_are_named() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join("space.toml");
    for (text, needle) in [
        (
            "[params.learning_rate]\nkind = \"float\"\nlow = 1.0\nhigh = 2.0\n",
            "unknown parameter `learning_rate`",
        ),
        (
            "[params.enc_lr]\nkind = \"float\"\nlow = 0.0\nhigh = 1.0\nlog = true\n",
            "low > 0",
        ),
        (
            "[params.enc_lr]\nkind = \"gaussian\"\n",
            "not a valid search space",
        ),
        ("[params]\n", "no parameter to search"),
    ] {
        std::fs::write(&path, text)?;
        let e = format!("{:#}", load_space(&path, "ddssm").unwrap_err());
        assert!(e.contains(needle), "{e}");
    }
    std::fs::write(
        &path,
        "[params.batch_size]\nkind = \"categorical\"\nchoices = [4, 4096]\n",
    )?;
    let space = load_space(&path, "ddssm")?;
    let e = format!(
        "{:#}",
        check_space(&space, &tiny(0, 1), "ddssm").unwrap_err()
    );
    assert!(e.contains("batch_size = 4096"), "{e}");
    Ok(())
}

/// A resumed study rebuilds TPE's history from the file, and checks the header (with the
/// space's values) for equality: both need JSON floats read back exactly. These values are
/// proposals and one-point choices from the 300-step study.
#[test]
fn trials_read_back_bit_for_bit() -> Result<()> {
    for x in [
        0.00044431891778993956,
        0.008989677911415632,
        0.3279559011813212,
        0.009558721887611614,
        0.0001967646733863921,
        1e-300,
        5e-5,
    ] {
        let trial = Trial {
            number: 0,
            params: [("enc_lr".to_string(), Value::from(x))]
                .into_iter()
                .collect(),
            score: Some(x),
            status: "complete".into(),
            seconds: x,
            error: None,
        };
        let back: Trial = serde_json::from_str(&serde_json::to_string(&trial)?)?;
        assert_eq!(back, trial, "{x:e}");
        assert_eq!(back.params["enc_lr"].as_f64(), Some(x));
    }
    Ok(())
}
