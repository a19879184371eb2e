//! `cargo xtask diagnose`: the command line around [`ddssm_train::experiment::diagnose`] on a
//! finished `bimodal-experiment` folder (`config.toml` and its checkpoints): regenerates the test
//! split from the config's seed, diagnoses each trained model (widths of the one-step predictive's
//! parts, the likelihood split), prints the tables and writes `diagnosis.{json,md}` into the
//! folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_eval::diagnosis::WidthDiagnosis;
use ddssm_model::Model;
use ddssm_train::experiment::{
    diagnose, DiagnosisOptions, ExperimentConfig, LikelihoodSplit, Splits,
};
use serde_json::json;

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// The experiment folder.
    pub run: PathBuf,
    /// Test sequences used (at most what the run holds).
    pub sequences: usize,
    /// Draws of each part per sequence.
    pub draws: usize,
    /// Test sequences of the likelihood split (0: none).
    pub iwae_sequences: usize,
    /// Importance weights per sequence (IWAE-k for k = 1, 16 and this).
    pub iwae_draws: usize,
    /// Device.
    pub device: Device,
}

/// The likelihood table of `rows` in markdown.
fn likelihood_table(rows: &[(String, LikelihoodSplit)]) -> String {
    let mut s = String::from(
        "| model | −ELBO | −IWAE-k | exact −log p(x) | slack (−ELBO − −IWAE) | \
         misfit (−IWAE − exact) |\n|---|---|---|---|---|---|\n",
    );
    for (name, l) in rows {
        let iwae: Vec<String> = l
            .negative_iwae
            .iter()
            .map(|(k, v)| format!("k = {k}: {:.2} ± {:.2}", v.mean, v.sem))
            .collect();
        s.push_str(&format!(
            "| {name} | {:.2} ± {:.2} | {} | {:.2} ± {:.2} | {:.2} ± {:.2} | {:.2} ± {:.2} |
",
            l.negative_elbo.mean,
            l.negative_elbo.sem,
            iwae.join("; "),
            l.exact.mean,
            l.exact.sem,
            l.slack.mean,
            l.slack.sem,
            l.misfit.mean,
            l.misfit.sem,
        ));
    }
    s
}

/// The table of `rows` (model name, diagnosis) in markdown.
pub fn table(rows: &[(String, WidthDiagnosis)]) -> String {
    let mut s = String::from(
        "| model | predictive (exact) | encoder (exact) | transition (exact 0) | emission (exact) | \
         encoder, latent | transition, latent | mode gap, latent | latent scale |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, d) in rows {
        s.push_str(&format!(
            "| {name} | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.3} | {:.3} ({:.3}) | {:.4} | {:.4} | \
             {:.3} | {:.3} |\n",
            d.predictive,
            d.exact_predictive,
            d.encoder,
            d.exact_encoder,
            d.transition,
            d.emission,
            d.exact_emission,
            d.encoder_latent,
            d.transition_latent,
            d.mode_separation_latent,
            d.latent_scale,
        ));
    }
    if let Some((_, d)) = rows.iter().find(|(_, d)| d.schedule.is_some()) {
        let f = d.schedule.expect("found above");
        s.push_str(&format!(
            "\nDiffusion schedule (latent units): K = {}, σ_1 = {:.4}, σ_K = {:.1}, ᾱ_K = {:.1e}; \
             √β_1 = {:.4} (the bound's last kernel), last sampler noise √β_2 = {:.4} (β) or \
             √β̃_2 = {:.4} (β̃); ELBO weight K·w̃_k from {:.3e} (k = 1) to {:.3e} (k = K). The \
             transition's latent mode width is {:.2} σ_1; the latent's scale is {:.2} (EDM's \
             preconditioning assumes σ_data = {}).\n",
            f.levels,
            f.sigma_1,
            f.sigma_k,
            f.alpha_bar_k,
            f.sqrt_beta_1,
            f.sqrt_beta_2,
            f.sqrt_beta_tilde_2,
            f.weight_1,
            f.weight_k,
            d.transition_latent / f.sigma_1,
            d.latent_scale,
            f.sigma_data,
        ));
    }
    s
}

/// Runs the diagnosis of every model the folder holds; prints the table and writes
/// `diagnosis.{json,md}` into the folder.
pub fn run(args: &Args) -> Result<()> {
    let config_path = args.run.join("config.toml");
    let cfg: ExperimentConfig = crate::read_toml(&config_path, "experiment config")?;
    anyhow::ensure!(
        args.sequences >= 1 && args.sequences <= cfg.data.test,
        "--sequences {}: expected 1 ..= {} (the run's data.test)",
        args.sequences,
        cfg.data.test
    );
    anyhow::ensure!(args.draws >= 4, "--draws: expected at least 4");
    let data = Splits::new(&cfg, &args.device)?;
    let mut loaded = Vec::new();
    for name in ["ddssm", "dkf"] {
        let checkpoint = args.run.join(format!("{name}.safetensors"));
        if checkpoint.exists() {
            let model = Model::load(&checkpoint, &args.device)
                .with_context(|| format!("loading {}", checkpoint.display()))?;
            loaded.push((name, model));
        }
    }
    anyhow::ensure!(
        !loaded.is_empty(),
        "{} holds no ddssm.safetensors or dkf.safetensors",
        args.run.display()
    );
    let models: Vec<(&str, &Model)> = loaded.iter().map(|(n, m)| (*n, m)).collect();
    let found = diagnose(
        &cfg,
        &data,
        &models,
        &DiagnosisOptions {
            sequences: args.sequences,
            draws: args.draws,
            iwae_sequences: args.iwae_sequences,
            iwae_draws: args.iwae_draws,
        },
    )
    .with_context(|| args.run.display().to_string())?;
    let rows: Vec<(String, WidthDiagnosis)> =
        found.models.iter().map(|(n, d)| (n.clone(), *d)).collect();
    let likelihood: Vec<(String, LikelihoodSplit)> = found
        .likelihood
        .iter()
        .map(|(n, l)| (n.clone(), l.clone()))
        .collect();
    let header = format!(
        "Width of the one-step predictive and its sources, data units unless \"latent\" \
         ({}: {} test sequences × {} draws of each part; within-mode standard deviations, split \
         at φ·x_(T−1), root-mean-square over sequences)\n\n",
        args.run.display(),
        args.sequences,
        args.draws
    );
    let mut text = format!("{header}{}", table(&rows));
    if !likelihood.is_empty() {
        text.push_str(&format!(
            "\nNegative log-likelihood bounds on the first {} test sequences, nats per sequence \
             ({} importance weights per sequence; IWAE-k is the mean over disjoint groups of k; \
             slack and misfit are paired per sequence):\n\n{}",
            args.iwae_sequences.min(cfg.data.test),
            args.iwae_draws,
            likelihood_table(&likelihood)
        ));
    }
    let mut out = serde_json::to_value(&found)?;
    out["run"] = json!(args.run);
    let (json_path, md_path) = (
        args.run.join("diagnosis.json"),
        args.run.join("diagnosis.md"),
    );
    ddssm_model::checkpoint::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&out)?.as_bytes(),
    )?;
    ddssm_model::checkpoint::write_atomic(&md_path, text.as_bytes())?;
    println!("{text}");
    tracing::info!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}
