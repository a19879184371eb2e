//! `cargo xtask tune`: the paper's hyperparameter search (App. F.1.1) with TPE.
//!
//! - The search space is a TOML file (`configs/tune/space.toml`: Table 3's ranges, identical for
//!   both models, `s_k` for the diffusion model only). Every name and range is checked, and the
//!   extreme values applied to the model's config and validated, before any work starts.
//! - Each trial trains the model from the experiment's base config with the proposed values for
//!   `--steps` steps on the bimodal training split, then scores it on the validation sequences by
//!   the one-step `jsd_exact` (default) or the CRPS (`--metric crps-sum`; with one observed
//!   dimension CRPS-sum is the CRPS). Lower is better.
//! - The study is a file, `study.jsonl`: a header line, then one JSON line per finished trial
//!   (number, parameters, score, status, wall time, error). A run with an existing study continues
//!   where it stopped (the header must match); proposals are functions of the seed and the
//!   finished trials, so an interrupted and resumed study proposes what an uninterrupted one
//!   would.
//! - A trial whose loss or gradient becomes non-finite is recorded as `failed` and the study goes
//!   on; TPE leaves failed trials out of its estimators, as Optuna does.
//! - Output: the best configuration as a ready-to-use experiment config (`--write-config`,
//!   default `configs/tuned/<model>.toml`: the paper's experiment with this model's training
//!   replaced), `report.md` with the trial table, the comparison with Table 3, and rank
//!   correlations of each parameter with the score, and `history.{png,svg}` (score per trial and
//!   running best).

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Device;
use ddssm_train::tpe::Space;
use ddssm_train::ModelRun;
use serde_json::Value;

use ddssm_train::study::{
    best_trial, paper_run, rank_correlations, run_tpe_study, value, StudyOptions, Trial,
};

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// The study (its folder also receives report.md, history.png/svg and best.toml).
    pub study: StudyOptions,
    /// Where the best configuration goes (None: only `<out>/best.toml`).
    pub write_config: Option<PathBuf>,
    /// Device.
    pub device: Device,
}

/// Runs (or continues) the study from its base config ([`StudyOptions::base_config`]) with
/// [`run_tpe_study`], then writes the tuned config, the figure and the report.
pub fn run(args: &Args) -> Result<()> {
    let outcome = run_tpe_study(&args.study, args.study.base_config()?, &args.device)?;
    finish(args, &outcome.base, &outcome.space, &outcome.trials)
}

/// The value of a parameter in the base (paper) config, for the comparison table.
fn base_value(run: &ModelRun, name: &str) -> String {
    match value(run, name) {
        Ok(Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => "–".into(),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.4e}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn finish(args: &Args, base: &ModelRun, space: &Space, trials: &[Trial]) -> Result<()> {
    let Some(best) = best_trial(trials) else {
        bail!(
            "tune: every trial failed; see {}",
            args.study.out.join("study.jsonl").display()
        );
    };
    // The ready-to-use config, at the paper's 3000 steps.
    args.study
        .write_tuned_config(base, best, trials.len(), args.write_config.as_deref())?;
    let figures = ddssm_train::figures::study_history(trials, &args.study.out)?;

    let mut s = String::new();
    s.push_str(&format!(
        "# TPE study: {} ({} trials, {} steps each, metric {}, seed {}{})\n\n",
        args.study.model,
        trials.len(),
        args.study.steps,
        args.study.metric.name(),
        args.study.seed,
        if args.study.quick { ", quick" } else { "" }
    ));
    let failed = trials.iter().filter(|t| t.score.is_none()).count();
    s.push_str(&format!(
        "Best: trial {} with score {:.5}. Failed trials: {failed}. Wall time of the trials: {:.0} s.\n\n",
        best.number,
        best.score.unwrap_or(f64::NAN),
        trials.iter().map(|t| t.seconds).sum::<f64>()
    ));
    s.push_str("| parameter | best trial | paper (Table 3) | rank correlation with the score |\n|---|---|---|---|\n");
    let paper = paper_run(&args.study.model);
    for (name, rho) in rank_correlations(space, trials) {
        let rho = rho.map_or("–".into(), |r| format!("{r:+.2}"));
        s.push_str(&format!(
            "| {name} | {} | {} | {rho} |\n",
            show(&best.params[&name]),
            base_value(&paper, &name)
        ));
    }
    s.push_str(
        "\nRank correlation: Spearman's ρ between the parameter (categorical: its index) and the \
         score over completed trials — a cheap screen of what matters, not fANOVA importance.\n\n",
    );
    s.push_str("| trial | score | status | seconds |\n|---|---|---|---|\n");
    for t in trials {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} |\n",
            t.number,
            t.score.map_or("–".into(), |v| format!("{v:.5}")),
            t.status,
            t.seconds
        ));
    }
    s.push_str(&format!(
        "\n![score per trial and running best]({})\n",
        figures[0]
    ));
    ddssm_model::checkpoint::write_atomic(&args.study.out.join("report.md"), s.as_bytes())?;
    println!("{s}");
    Ok(())
}

#[cfg(test)]
mod tests;
