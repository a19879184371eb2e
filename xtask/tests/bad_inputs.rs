//! Bad input to `cargo xtask bimodal-experiment`, table-driven, through the real binary: every
//! validated config field out of range or of the wrong type, and bad options. Each must exit
//! non-zero with a message naming the field by its full key path (or the option), and leave the
//! results folder exactly as it was — no `config.toml` rewritten, nothing added.
//!
//! Run with `--nocapture` to print the table `input → exit code → message`.

use std::path::{Path, PathBuf};
use std::process::Command;

use toml::{Table, Value};

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env("RUST_LOG", "warn");
    c
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The `--quick` experiment config as the binary prints it.
fn base() -> Table {
    let out = xtask()
        .args(["bimodal-experiment", "--quick", "--print-config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

/// `table` with the dotted `path` set to `value` (parsed as a TOML value).
fn with(table: &Table, path: &str, value: &str) -> Table {
    let mut t = table.clone();
    let keys: Vec<&str> = path.split('.').collect();
    let mut cursor = &mut t;
    for k in &keys[..keys.len() - 1] {
        cursor = cursor
            .entry(k.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("{path}: {k} is not a table"));
    }
    let v: Value = format!("v = {value}").parse::<Table>().unwrap()["v"].clone();
    cursor.insert(keys[keys.len() - 1].to_string(), v);
    t
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `args` against a results folder holding an earlier run's `config.toml`; checks the exit
/// code, that the message contains `needle`, and that the folder is untouched. Returns the row
/// of the closing note's table.
fn refused(label: &str, args: &[&str], needle: &str, out: &Path) -> String {
    let before = snapshot(out);
    let o = xtask().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let message = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or("")
        .to_string();
    assert!(!o.status.success(), "{label}: exited 0\n{stderr}");
    assert_eq!(o.status.code(), Some(1), "{label}: {stderr}");
    assert!(!stderr.contains("panicked"), "{label}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{label}: the message does not name {needle:?}:\n{stderr}"
    );
    assert_eq!(snapshot(out), before, "{label}: the results folder changed");
    format!("| `{label}` | {} | {} |", o.status.code().unwrap(), message)
}

#[test]
fn every_bad_config_field_is_named_and_nothing_is_written() {
    let base = base();
    let out = tmp("results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.toml"), "# an earlier run's config\n").unwrap();
    let cases: &[(&str, &str, &str)] = &[
        // Wrong types.
        ("seed", "-1", "at `seed`"),
        ("data.train", "\"many\"", "at `data.train`"),
        ("ddssm.train.steps", "1.5", "at `ddssm.train.steps`"),
        (
            "evaluation.histogram.bins",
            "\"300\"",
            "at `evaluation.histogram.bins`",
        ),
        ("ddssm.model.transition.kind", "\"flow\"", "flow"),
        ("ddssm.model.foo", "1", "at `ddssm.model.foo`"),
        // The simulator.
        ("data.sim.t", "1", "data.sim.t"),
        ("data.sim.phi", "nan", "data.sim.phi"),
        ("data.sim.step", "inf", "data.sim.step"),
        ("data.sim.obs_noise_std", "0.0", "data.sim.obs_noise_std"),
        ("data.sim.z0_std", "-1.0", "data.sim.z0_std"),
        ("data.train", "0", "data.train"),
        ("data.validation", "0", "data.validation"),
        ("data.test", "0", "data.test"),
        // Training.
        ("ddssm.train.steps", "0", "ddssm.train.steps"),
        ("ddssm.train.batch_size", "0", "ddssm.train.batch_size"),
        ("dkf.train.batch_size", "100000", "dkf.train.batch_size"),
        ("ddssm.train.samples", "0", "ddssm.train.samples"),
        (
            "ddssm.train.learning_rates.encoder",
            "-1.0",
            "ddssm.train.learning_rates.encoder",
        ),
        (
            "dkf.train.learning_rates.zinit",
            "-0.001",
            "dkf.train.learning_rates.zinit",
        ),
        (
            "ddssm.train.alternation",
            "{ start = 0, encoder_steps = 0, model_steps = 5 }",
            "ddssm.train.alternation.encoder_steps",
        ),
        (
            "ddssm.train.alternation",
            "{ start = 100000, encoder_steps = 5, model_steps = 5 }",
            "ddssm.train.alternation.start",
        ),
        (
            "ddssm.train.optimizer.beta1",
            "1.0",
            "ddssm.train.optimizer.beta1",
        ),
        (
            "dkf.train.optimizer.beta2",
            "-0.1",
            "dkf.train.optimizer.beta2",
        ),
        (
            "ddssm.train.optimizer.eps",
            "0.0",
            "ddssm.train.optimizer.eps",
        ),
        (
            "ddssm.train.optimizer.weight_decay",
            "-1.0",
            "ddssm.train.optimizer.weight_decay",
        ),
        (
            "ddssm.train.lambda.lambda_end",
            "-1.0",
            "ddssm.train.lambda.lambda_end",
        ),
        (
            "dkf.train.lambda.lambda_start",
            "nan",
            "dkf.train.lambda.lambda_start",
        ),
        // The models.
        ("ddssm.model.latent_dim", "0", "ddssm.model.latent_dim"),
        ("dkf.model.order", "0", "dkf.model.order"),
        ("ddssm.model.h_seq", "0", "ddssm.model.h_seq"),
        ("ddssm.model.obs_dim", "2", "ddssm.model.obs_dim"),
        ("dkf.model.covariate_dim", "1", "dkf.model.covariate_dim"),
        (
            "ddssm.model.encoder.summary.hidden",
            "0",
            "ddssm.model.encoder.summary.hidden",
        ),
        (
            "ddssm.model.encoder.summary.time_embedding_dim",
            "3",
            "ddssm.model.encoder.summary.time_embedding_dim",
        ),
        (
            "ddssm.model.encoder.context.layers",
            "0",
            "ddssm.model.encoder.context.layers",
        ),
        (
            "dkf.model.decoder.context.channels",
            "0",
            "dkf.model.decoder.context.channels",
        ),
        (
            "ddssm.model.encoder.context.time_mixer.kernel",
            "0",
            "ddssm.model.encoder.context.time_mixer.kernel",
        ),
        (
            "dkf.model.transition.context.feature_mixer.kernel",
            "0",
            "dkf.model.transition.context.feature_mixer.kernel",
        ),
        (
            "ddssm.model.decoder.head.logvar_bounds.min",
            "9.0",
            "ddssm.model.decoder.head.logvar_bounds",
        ),
        (
            "dkf.model.transition.head.hidden",
            "0",
            "dkf.model.transition.head.hidden",
        ),
        (
            "ddssm.model.vhp.head.layers",
            "0",
            "ddssm.model.vhp.head.layers",
        ),
        (
            "ddssm.model.vhp.side.mask_dim",
            "0",
            "ddssm.model.vhp.side.mask_dim",
        ),
        (
            "ddssm.model.transition.schedule.num_steps",
            "0",
            "ddssm.model.transition.schedule.num_steps",
        ),
        (
            "ddssm.model.transition.schedule.betas.beta_start",
            "2.0",
            "ddssm.model.transition.schedule.betas.beta_start",
        ),
        (
            "ddssm.model.transition.loss.s_k",
            "0",
            "ddssm.model.transition.loss.s_k",
        ),
        (
            "ddssm.model.transition.denoiser.diffusion_embedding_dim",
            "63",
            "ddssm.model.transition.denoiser.diffusion_embedding_dim",
        ),
        (
            "ddssm.model.transition.denoiser.noise_embedding_scale",
            "-1.0",
            "ddssm.model.transition.denoiser.noise_embedding_scale",
        ),
        (
            "ddssm.model.transition.denoiser.stack.layers",
            "0",
            "ddssm.model.transition.denoiser.stack.layers",
        ),
        (
            "ddssm.model.transition.sampler",
            "{ kind = \"ddim\", steps = 0 }",
            "ddssm.model.transition.sampler.steps",
        ),
        // The evaluation.
        ("evaluation.samples", "1", "evaluation.samples"),
        (
            "evaluation.validation_samples",
            "1",
            "evaluation.validation_samples",
        ),
        ("evaluation.elbo_samples", "0", "evaluation.elbo_samples"),
        ("evaluation.max_chains", "0", "evaluation.max_chains"),
        (
            "evaluation.test_sequences",
            "0",
            "evaluation.test_sequences",
        ),
        (
            "evaluation.test_sequences",
            "5000",
            "evaluation.test_sequences",
        ),
        (
            "evaluation.validation_sequences",
            "5000",
            "evaluation.validation_sequences",
        ),
        ("evaluation.histogram.lo", "10.0", "evaluation.histogram.hi"),
        (
            "evaluation.histogram.hi",
            "-20.0",
            "evaluation.histogram.hi",
        ),
        (
            "evaluation.histogram.bins",
            "0",
            "evaluation.histogram.bins",
        ),
        (
            "evaluation.histogram.clip",
            "-1.0",
            "evaluation.histogram.clip",
        ),
    ];
    let mut rows = vec![
        "| input | exit | message |".to_string(),
        "|---|---|---|".to_string(),
    ];
    for (i, (path, value, needle)) in cases.iter().enumerate() {
        let file = tmp(&format!("bad{i}.toml"));
        std::fs::write(&file, toml::to_string(&with(&base, path, value)).unwrap()).unwrap();
        let args = [
            "bimodal-experiment",
            "--config",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--resume",
        ];
        rows.push(refused(&format!("{path} = {value}"), &args, needle, &out));
        // Also checked without --resume, and by --print-config.
        let printed = xtask()
            .args(["bimodal-experiment", "--print-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(printed.status.code(), Some(1), "--print-config {path}");
    }
    let out_s = out.to_str().unwrap();
    for (label, args, needle) in [
        (
            "--device tpu",
            vec![
                "bimodal-experiment",
                "--quick",
                "--device",
                "tpu",
                "--out",
                out_s,
            ],
            "tpu",
        ),
        (
            "--device cuda:0 (not compiled in)",
            vec![
                "bimodal-experiment",
                "--quick",
                "--device",
                "cuda:0",
                "--out",
                out_s,
            ],
            "cuda",
        ),
        (
            "--steps 0",
            vec![
                "bimodal-experiment",
                "--quick",
                "--steps",
                "0",
                "--out",
                out_s,
            ],
            "ddssm.train.steps",
        ),
        (
            "--config missing.toml",
            vec![
                "bimodal-experiment",
                "--config",
                "/nonexistent/missing.toml",
                "--out",
                out_s,
            ],
            "missing.toml",
        ),
        (
            "a folder holding a run, without --resume",
            vec!["bimodal-experiment", "--quick", "--out", out_s],
            "--force",
        ),
        (
            "--resume --force",
            vec![
                "bimodal-experiment",
                "--quick",
                "--resume",
                "--force",
                "--out",
                out_s,
            ],
            "--force",
        ),
        (
            "sampler-tradeoff on a folder without a run",
            vec!["sampler-tradeoff", "--run", out_s],
            "config.toml",
        ),
    ] {
        let code_ok = |row: String| {
            // clap's own usage errors exit with 2.
            row.replace("| 2 |", "| 2 (usage) |")
        };
        if label == "--resume --force" {
            let o = xtask().args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(2), "{label}");
            assert!(String::from_utf8_lossy(&o.stderr).contains(needle));
            rows.push(code_ok(format!(
                "| `{label}` | 2 | {} |",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            )));
            continue;
        }
        rows.push(refused(label, &args, needle, &out));
    }
    println!("{}", rows.join("\n"));
    assert!(rows.len() >= 2 + 60, "{} rows", rows.len());
}

/// `--print-config` applies `--config`, `--seed` and `--steps` (it used to print the paper's
/// config whatever was asked), and `--help` names every command.
#[test]
fn print_config_applies_every_option_and_help_names_every_command() {
    let file = tmp("seeded.toml");
    std::fs::write(
        &file,
        toml::to_string(&with(&base(), "data.test", "48")).unwrap(),
    )
    .unwrap();
    let out = xtask()
        .args([
            "bimodal-experiment",
            "--print-config",
            "--seed",
            "7",
            "--steps",
            "3",
        ])
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(printed["seed"].as_integer(), Some(7));
    assert_eq!(printed["data"]["test"].as_integer(), Some(48));
    for model in ["ddssm", "dkf"] {
        assert_eq!(printed[model]["train"]["steps"].as_integer(), Some(3));
        assert_eq!(printed[model]["train"]["seed"].as_integer(), Some(7));
    }
    let help = xtask().arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for command in ["bimodal-experiment", "tune", "sampler-tradeoff", "bench"] {
        assert!(help.contains(command), "{command}: {help}");
    }
}

/// A `--quick --resume` run into a new folder through the binary, its log going to a pipe: it
/// says it starts fresh, shows the evaluation's progress, logs plain text (no colour codes), one
/// record per line; the report says up front that the numbers mean nothing, that lower is better
/// and what "between modes" is; Fig. 2's panels are titled per model and its legend has the
/// forecast paths and the forecast start. Then `sampler-tradeoff` with its defaults on that
/// folder, saying what it writes.
#[test]
fn a_quick_run_logs_plain_text_and_its_report_and_figures_explain_themselves() {
    let out = tmp("quick-run");
    let o = xtask()
        .env("RUST_LOG", "info")
        .args([
            "bimodal-experiment",
            "--quick",
            "--resume",
            "--steps",
            "3",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    // `--resume` on a new folder says that it starts fresh; the evaluation shows progress.
    assert!(log.contains("starting fresh"), "{log}");
    assert!(
        log.contains("ddssm: one-step samples: 16/16 test sequences"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes in a redirected log");
    for line in log.lines() {
        // Every record starts with its timestamp: nothing glued onto another line.
        assert!(line.starts_with("20"), "not one record per line: {line:?}");
    }
    assert!(log.contains("λ warm-up"), "{log}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let head: String = report.lines().take(6).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("--quick") && head.contains("mean nothing") || head.contains("say nothing"),
        "{head}"
    );
    assert!(report.contains("Lower is better") && report.contains("\"between modes\""));
    let fig2 = std::fs::read_to_string(out.join("fig2.svg")).unwrap();
    assert!(fig2.contains("forecast paths") && fig2.contains("forecast starts"));
    assert!(fig2.contains("DKF: test sequence") && !fig2.contains("DKF: test sequence 0 (DDSSM"));
    // sampler-tradeoff with its defaults works on a --quick folder and says what it writes.
    let o = xtask()
        .env("RUST_LOG", "info")
        .args(["sampler-tradeoff", "--samples", "4", "--run"])
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("wrote") && log.contains("sampler-tradeoff.json"),
        "{log}"
    );
    assert!(out.join("sampler-tradeoff.md").exists());
    // Its options are checked against the run, naming the option.
    for (args, field) in [
        (["--samples", "1"], "invalid samples = 1"),
        (["--sequences", "0"], "invalid sequences = 0"),
    ] {
        let o = xtask()
            .arg("sampler-tradeoff")
            .args(args)
            .arg("--run")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(field), "{err}");
    }
}
