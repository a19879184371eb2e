//! `cargo xtask bimodal-experiment`: the paper's Section 4 end to end.
//!
//! 1. Data: train / validation / test splits of the bimodal random walk from fixed seeds, and the
//!    per-dimension standardisation fitted on the training split.
//! 2. Both models (DDSSM, DKF) trained with Table 3's settings, each with progress, periodic
//!    validation (one-step JSD against the exact predictive, negative ELBO) and atomic checkpoints
//!    that `--resume` continues from.
//! 3. Test evaluation: one-step predictive samples per test sequence, scored by `jsd_paper`,
//!    `jsd_exact` (with their noise floors) and the CRPS; the negative ELBO per test sequence in
//!    original units against the exact negative log-likelihood; the LOCF baseline.
//! 4. Figure data: the exact centred predictive averaged over the test set, and for the two test
//!    sequences nearest the DDSSM's median `jsd_exact` each model's reconstruction and forecast
//!    paths.
//! 5. `results.json` (every number, the config, timings, thread count, git commit),
//!    `report.md` and the figures ([`crate::figures`]) in the output folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_eval::{
    locf_samples, model_predictive_samples_with_progress, negative_elbo_per_sequence,
    score_one_step, MeanSem, ModelScores, Series,
};
use ddssm_model::{Batch, Model};
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::experiment::{validation_scores, DataConfig, ExperimentConfig, Splits};
use ddssm_train::{fit, Metrics, ModelRun, TrainOptions};
use serde::{Deserialize, Serialize};

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Results folder.
    pub out: PathBuf,
    /// Experiment config file (TOML); the paper's settings when absent.
    pub config: Option<PathBuf>,
    /// Overrides the seed.
    pub seed: Option<u64>,
    /// Overrides both models' training steps.
    pub steps: Option<usize>,
    /// Device.
    pub device: Device,
    /// The smoke version.
    pub quick: bool,
    /// Continue from checkpoints.
    pub resume: bool,
    /// Write into a folder that holds another run's files (replacing them).
    pub force: bool,
    /// Show progress bars.
    pub progress: bool,
}

/// One model's view of one example sequence (Fig. 2), in original units.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExamplePanel {
    /// The reconstruction `E[μ_θ(z_{t−j+1:t})]` over the encoder's draws, `t = 1 … T`.
    pub reconstruction: Vec<f64>,
    /// Forecast paths of `x_{t₀+1:T}` from the encoder's `z_{1:t₀}` (one per row).
    pub forecast_paths: Vec<Vec<f64>>,
    /// Their mean.
    pub forecast_mean: Vec<f64>,
}

/// A test sequence shown in Fig. 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExampleSequence {
    /// Its index in the test set.
    pub index: usize,
    /// The DDSSM's `jsd_exact` on it.
    pub ddssm_jsd_exact: f64,
    /// The observations `x_{1:T}`.
    pub data: Vec<f64>,
    /// The last observed step `t₀` of the forecasts (1-based; they cover `t₀+1 … T`).
    pub forecast_from: usize,
    /// Per model (`ddssm`, `dkf`).
    pub models: BTreeMap<String, ExamplePanel>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The config that ran.
    pub config: ExperimentConfig,
    /// The exact negative log-likelihood per test sequence (Gaussian-sum filter), nats.
    pub exact_negative_log_likelihood: MeanSem,
    /// Largest pruned mass of the exact filter over the scored test sequences.
    pub exact_filter_pruned_mass: f64,
    /// DDSSM, DKF, LOCF.
    pub models: BTreeMap<String, ModelScores>,
    /// The exact centred one-step predictive averaged over the test set, as probabilities of the
    /// JSD histogram's bins (Fig. 1a's truth).
    pub exact_mean_histogram: Vec<f64>,
    /// Fig. 2's sequences.
    pub examples: Vec<ExampleSequence>,
    /// Training histories and validations.
    pub training: BTreeMap<String, ddssm_train::TrainReport>,
    /// What makes numbers of this run doubtful (diverged samples, a λ warm-up cut short, a
    /// `--quick` run), also at the top of the report.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Wall time of the whole command, seconds.
    pub wall_seconds: f64,
    /// Threads candle used (CANDLE_NUM_THREADS / RAYON_NUM_THREADS / all cores).
    pub threads: String,
    /// The git commit of the code.
    pub git_commit: String,
}

/// The short hash of the checked-out commit (`unknown` outside a git checkout).
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    ddssm_model::checkpoint::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The experiment config `args` ask for: the file (or the paper's settings), then `--quick`,
/// `--seed` and `--steps`, validated. `--print-config` prints exactly this.
pub fn resolve_config(args: &Args) -> Result<ExperimentConfig> {
    let mut cfg = match &args.config {
        Some(path) => crate::read_toml::<ExperimentConfig>(path, "experiment config")?,
        None => ExperimentConfig::paper(),
    };
    if args.quick {
        cfg = cfg.quick();
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(steps) = args.steps {
        cfg.ddssm.train.steps = steps;
        cfg.dkf.train.steps = steps;
    }
    for run in [&mut cfg.ddssm, &mut cfg.dkf] {
        run.train.seed = cfg.seed;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Files a run writes into its folder (what `--force` may replace).
const RUN_FILES: [&str; 4] = [
    "config.toml",
    "results.json",
    "ddssm.safetensors",
    "dkf.safetensors",
];

/// Everything checked about the output folder before a file is written: a fresh run goes only
/// into an empty (or new) folder unless `--force`; `--resume` continues only a run on the same
/// seed and data, from checkpoints written for the same models and training (only `steps` may
/// change) and not past the steps asked for. Returns the checkpoint step per model.
fn check_output_folder(args: &Args, cfg: &ExperimentConfig) -> Result<BTreeMap<String, usize>> {
    let out = &args.out;
    let occupied: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| out.join(f).exists())
        .collect();
    let mut steps = BTreeMap::new();
    if !args.resume {
        if !occupied.is_empty() && !args.force {
            bail!(
                "{} already holds a run ({}): continue it with --resume, replace it with \
                 --force, or choose another --out",
                out.display(),
                occupied.join(", ")
            );
        }
        return Ok(steps);
    }
    if occupied.is_empty() {
        tracing::info!(
            "--resume: {} holds no run yet; starting fresh",
            out.display()
        );
        return Ok(steps);
    }
    let saved = out.join("config.toml");
    if saved.exists() {
        let theirs: ExperimentConfig = crate::read_toml(&saved, "experiment config")?;
        /// What fixes the data (and so the standardisation) of a run.
        #[derive(Serialize)]
        struct DataKey {
            seed: u64,
            data: DataConfig,
        }
        let key = |c: &ExperimentConfig| DataKey {
            seed: c.seed,
            data: c.data,
        };
        if let Some(diff) = ddssm_model::config_difference(&key(cfg), &key(&theirs)) {
            bail!(
                "--resume: {} was run on other data ({diff}); a resumed model would train on \
                 data it was not standardised for. Use another --out, or the folder's own \
                 settings",
                out.display()
            );
        }
    }
    for (name, run) in [("ddssm", &cfg.ddssm), ("dkf", &cfg.dkf)] {
        let path = out.join(format!("{name}.safetensors"));
        if let Some(step) = ddssm_train::resumable_step(&path, &run.model, &run.train)
            .with_context(|| format!("--resume: {name}"))?
        {
            steps.insert(name.to_string(), step);
        }
    }
    Ok(steps)
}

/// The λ warm-up of `run` does not end within its training: `λ` stops short of `lambda_end`.
fn warmup_warning(name: &str, run: &ModelRun) -> Option<String> {
    let l = &run.train.lambda;
    let steps = run.train.steps;
    (l.lambda_warmup_steps > steps).then(|| {
        format!(
            "{name}: the λ warm-up ({} steps) is longer than the training ({steps} steps): λ \
             ends at {:.3}, not lambda_end = {:.3}. Shorten {name}.train.lambda.\
             lambda_warmup_steps in a config file to anneal fully.",
            l.lambda_warmup_steps,
            l.at(steps.saturating_sub(1)),
            l.lambda_end
        )
    })
}

/// Progress of a long loop: a bar on a terminal, otherwise a log line at every tenth.
struct Progress {
    bar: indicatif::ProgressBar,
    label: String,
    unit: &'static str,
    done: std::sync::atomic::AtomicUsize,
    total: usize,
}

impl Progress {
    fn new(label: &str, total: usize, unit: &'static str, terminal: bool) -> Self {
        let bar = if terminal {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_prefix(label.to_string());
            bar
        } else {
            tracing::info!("{label}: {total} {unit}");
            indicatif::ProgressBar::hidden()
        };
        Self {
            bar,
            label: label.to_string(),
            unit,
            done: Default::default(),
            total,
        }
    }

    /// `k` more items done (callable from worker threads).
    fn add(&self, k: usize) {
        let before = self.done.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
        self.bar.inc(k as u64);
        let tenth = |n: usize| n * 10 / self.total.max(1);
        if self.bar.is_hidden() && tenth(before + k) > tenth(before) {
            tracing::info!(
                "{}: {}/{} {}",
                self.label,
                before + k,
                self.total,
                self.unit
            );
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs the experiment.
pub fn run(args: &Args) -> Result<()> {
    let began = Instant::now();
    let cfg = resolve_config(args)?;
    check_output_folder(args, &cfg)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the output folder {}", args.out.display()))?;
    for stale in ddssm_model::checkpoint::remove_stale_temp_files(&args.out)? {
        tracing::info!("removed {}, left by an interrupted save", stale.display());
    }
    // The quick run's caveat first: it outweighs every other.
    let mut warnings: Vec<String> = Vec::new();
    if args.quick {
        warnings.push(
            "--quick: a smoke test of the pipeline (tiny data, 10 training steps, few samples); \
             its numbers say nothing about the models"
                .into(),
        );
    }
    warnings.extend(
        [("ddssm", &cfg.ddssm), ("dkf", &cfg.dkf)]
            .into_iter()
            .filter_map(|(name, run)| warmup_warning(name, run)),
    );
    for w in &warnings {
        tracing::warn!("{w}");
    }
    write_text(
        &args.out.join("config.toml"),
        &toml::to_string(&cfg).context("config to TOML")?,
    )?;
    let dev = &args.device;

    // 1. Data.
    let root = SeededNoise::new(cfg.seed);
    let Splits {
        train: train_data,
        standardization,
        validation: val_sub,
        test: test_x,
    } = Splits::new(&cfg, dev)?;
    let sim = cfg.data.sim;
    let t = sim.t;
    let val_n = val_sub.n;
    let val_raw = val_sub.to_tensor(DType::F32, dev)?;

    // 2. Training.
    let mut trained = Vec::new();
    let mut training = BTreeMap::new();
    for (name, run) in [("ddssm", &cfg.ddssm), ("dkf", &cfg.dkf)] {
        let eval = cfg.evaluation;
        let mut validate = |model: &Model, step: usize| -> ddssm_train::Result<Metrics> {
            let mut noise = root.fork(&format!("{name}/validation/{step}"));
            let mut inner = || -> Result<Metrics> {
                let mut m = Metrics::new();
                if val_n > 0 {
                    let s = validation_scores(&cfg, model, &val_sub, &mut noise)?;
                    m.insert("jsd_exact".into(), s.jsd_exact.mean);
                    m.insert("jsd_paper".into(), s.jsd_paper.mean);
                    let elbo =
                        negative_elbo_per_sequence(model, &val_raw, eval.elbo_samples, &mut noise)?;
                    m.insert("negative_elbo".into(), MeanSem::of(&elbo).mean);
                }
                Ok(m)
            };
            inner().map_err(|e| ddssm_train::Error::State(format!("validation: {e:#}")))
        };
        let options = TrainOptions {
            checkpoint: Some(args.out.join(format!("{name}.safetensors"))),
            resume: args.resume,
            progress: args.progress,
            label: name.to_string(),
        };
        tracing::info!(
            "{name}: {} steps at batch {}",
            run.train.steps,
            run.train.batch_size
        );
        let (model, report) = fit(
            run,
            cfg.seed,
            Some(standardization.clone()),
            &train_data,
            &options,
            &mut validate,
        )
        .with_context(|| format!("training {name}"))?;
        tracing::info!("{name}: {} parameters", model.parameter_count());
        training.insert(name.to_string(), report);
        trained.push((name, model));
    }

    // 3. Test evaluation.
    let e = cfg.evaluation;
    let n_test = e.test_sequences;
    let test_sub = Series {
        n: n_test,
        t,
        d: 1,
        values: test_x.values[..n_test * t].to_vec(),
    };
    let test_raw = test_sub.to_tensor(DType::F32, dev)?;
    let prefix = test_raw.narrow(1, 0, t - 1)?;
    let mut models = BTreeMap::new();
    for (name, model) in &trained {
        let started = Instant::now();
        let mut noise = root.fork(&format!("{name}/test"));
        let progress = Progress::new(
            &format!("{name}: one-step samples"),
            n_test,
            "test sequences",
            args.progress,
        );
        let draws = model_predictive_samples_with_progress(
            model,
            &prefix,
            e.samples,
            e.max_chains,
            &mut noise,
            &|k| progress.add(k),
        )?;
        progress.finish();
        let mut scored = score_one_step(&sim, &e.histogram, &test_sub, &draws, &mut noise)?;
        let elbo = negative_elbo_per_sequence(model, &test_raw, e.elbo_samples, &mut noise)?;
        scored.negative_elbo = Some(MeanSem::of(&elbo));
        scored.train_seconds = training[*name].seconds;
        tracing::info!(
            "{name}: jsd_exact {} (floor {}), jsd_paper {}, crps {}, −ELBO {} ({:.0} s to evaluate)",
            scored.jsd_exact,
            scored.floor_exact,
            scored.jsd_paper,
            scored.crps,
            MeanSem::of(&elbo),
            started.elapsed().as_secs_f64()
        );
        models.insert(name.to_string(), scored);
    }
    // LOCF: a point mass at x_{T−1}.
    let locf = locf_samples(&test_sub, e.samples);
    let mut locf_noise = root.fork("locf/test");
    let locf_scores = score_one_step(&sim, &e.histogram, &test_sub, &locf, &mut locf_noise)?;
    models.insert("locf".into(), locf_scores);
    for (name, m) in &models {
        if let Some(w) = m.out_of_range_warning(name, &e.histogram) {
            tracing::warn!("{w}");
            warnings.push(w);
        }
    }

    let mut nll = Vec::with_capacity(n_test);
    let mut pruned: f64 = 0.0;
    let mut exact_mean_histogram = vec![0.0; e.histogram.bins];
    for i in 0..n_test {
        let row = &test_sub.values[i * t..(i + 1) * t];
        let f = sim.exact_predictive(row, 0.0)?;
        nll.push(-f.log_likelihood);
        pruned = pruned.max(f.pruned_mass);
        let centred = sim.exact_predictive(&row[..t - 1], sim.phi * row[t - 2])?;
        for (m, p) in exact_mean_histogram
            .iter_mut()
            .zip(e.histogram.reference(&centred.mixture))
        {
            *m += p / n_test as f64;
        }
    }
    let examples = examples(&trained, &models["ddssm"], &test_sub, &root)?;
    let results = Results {
        config: cfg.clone(),
        exact_negative_log_likelihood: MeanSem::of(&nll),
        exact_filter_pruned_mass: pruned,
        models,
        exact_mean_histogram,
        examples,
        training,
        warnings,
        wall_seconds: began.elapsed().as_secs_f64(),
        threads: ddssm_tensor_ops::ThreadSettings::current().to_string(),
        git_commit: git_commit(),
    };
    write_text(
        &args.out.join("results.json"),
        &serde_json::to_string_pretty(&results).context("results to JSON")?,
    )?;
    let figures = crate::figures::write_all(&results, &args.out)?;
    tracing::info!("figures: {}", figures.join(", "));
    write_text(&args.out.join("report.md"), &report(&results))?;
    println!("{}", report(&results));
    Ok(())
}

/// Paths drawn per model and example for Fig. 2, and encoder draws averaged for the
/// reconstruction.
const EXAMPLE_PATHS: usize = 32;
/// Fig. 2 forecasts the last steps from `t₀ = T − FORECAST_HORIZON` (the paper: `x_25:32` from
/// `z_24`).
const FORECAST_HORIZON: usize = 8;

/// Fig. 2's data: the two test sequences whose DDSSM `jsd_exact` is nearest its median, with each
/// trained model's reconstruction and forecasts.
fn examples(
    trained: &[(&str, Model)],
    ddssm: &ModelScores,
    test: &Series,
    root: &SeededNoise,
) -> Result<Vec<ExampleSequence>> {
    let jsd = &ddssm.per_sequence_jsd_exact;
    let mut sorted = jsd.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let mut order: Vec<usize> = (0..jsd.len()).collect();
    order.sort_by(|&a, &b| (jsd[a] - median).abs().total_cmp(&(jsd[b] - median).abs()));
    let t = test.t;
    let t0 = t.saturating_sub(FORECAST_HORIZON).max(1);
    let horizon = t - t0;
    let mut out = Vec::new();
    for &index in order.iter().take(2) {
        let data = test.values[index * t..(index + 1) * t].to_vec();
        let raw = Tensor::from_vec(
            data.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (1, t, 1),
            &Device::Cpu,
        )?;
        let mut models = BTreeMap::new();
        for (name, model) in trained {
            let x = raw.to_device(model.device())?;
            let mut noise = root.fork(&format!("{name}/example/{index}"));
            let rec = model.reconstruct(&Batch::new(x.clone()), EXAMPLE_PATHS, &mut noise)?;
            let reconstruction = rec
                .mean
                .squeeze(1)? // [n, T, 1]
                .mean(0)?
                .flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            let history = Batch::new(x.narrow(1, 0, t0)?);
            let fc = model.forecast(&history, horizon, EXAMPLE_PATHS, &mut noise)?;
            let paths = fc
                .samples
                .squeeze(1)? // [n, horizon, 1]
                .squeeze(2)?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
            let forecast_mean = (0..horizon)
                .map(|k| paths.iter().map(|p| p[k]).sum::<f64>() / paths.len() as f64)
                .collect();
            models.insert(
                name.to_string(),
                ExamplePanel {
                    reconstruction,
                    forecast_paths: paths,
                    forecast_mean,
                },
            );
        }
        out.push(ExampleSequence {
            index,
            ddssm_jsd_exact: jsd[index],
            data,
            forecast_from: t0,
            models,
        });
    }
    Ok(out)
}

fn report(r: &Results) -> String {
    let mut s = String::new();
    s.push_str("# Bimodal random walk (Sec. 4): DDSSM vs DKF vs LOCF\n\n");
    if !r.warnings.is_empty() {
        s.push_str("**Warnings** — read these before any number below:\n\n");
        for w in &r.warnings {
            s.push_str(&format!("- {w}\n"));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "{} test sequences × {} one-step samples; seed {}; commit {}; threads {}; wall {:.0} s.\n\n",
        r.config.evaluation.test_sequences,
        r.config.evaluation.samples,
        r.config.seed,
        r.git_commit,
        r.threads,
        r.wall_seconds
    ));
    s.push_str(
        "| model | jsd_exact ↓ | jsd_paper ↓ | CRPS ↓ | −ELBO ↓ (nats/seq) | between modes | \
         outside histogram | train s |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for name in ["ddssm", "dkf", "locf"] {
        if let Some(m) = r.models.get(name) {
            s.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {:.1} % | {:.2} % | {:.0} |\n",
                m.jsd_exact,
                m.jsd_paper,
                m.crps,
                m.negative_elbo.map_or("–".into(), |e| e.to_string()),
                100.0 * m.between_modes,
                100.0 * m.out_of_range,
                m.train_seconds
            ));
        }
    }
    let h = &r.config.evaluation.histogram;
    s.push_str(&format!(
        "\nLower is better for every score (↓); each is mean ± standard error over the test \
         sequences. `jsd_exact`: Jensen–Shannon divergence (nats, at most ln 2) between the \
         histogram of the centred samples x̂_T − φ·x_(T−1) and the exact predictive, {} bins on \
         [{}, {}] plus two open tail bins. `jsd_paper`: the same against the paper's \
         two-Gaussian reference with the paper's convention (samples outside [{}, {}] dropped; \
         see \"outside histogram\"). \"between modes\": share of centred samples with \
         |x̂_T − φ·x_(T−1)| < c/2 = {}, where the exact predictive has almost no mass: a model \
         that smears the two modes into one bump puts many samples there.\n",
        h.bins,
        h.lo,
        h.hi,
        h.lo,
        h.hi,
        r.config.data.sim.step / 2.0
    ));
    if let Some(m) = r.models.get("ddssm") {
        s.push_str(&format!(
            "\nNoise floors at this sample count: jsd_exact {}, jsd_paper {}. Exact −log p(x) \
             per test sequence (Gaussian-sum filter, pruned mass ≤ {:.1e}): {}.\n",
            m.floor_exact,
            m.floor_paper,
            r.exact_filter_pruned_mass,
            r.exact_negative_log_likelihood
        ));
    }
    s.push_str(
        "\n![Fig. 1a: centred one-step predictive](fig1a.png)\n\n\
         ![Fig. 1b: one-step JSD](fig1b.png)\n\n\
         ![Fig. 2: data, reconstructions and forecasts](fig2.png)\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ExperimentConfig {
        let mut cfg = ExperimentConfig::paper().quick();
        cfg.data.sim.t = 6;
        cfg.data.train = 16;
        cfg.data.validation = 4;
        cfg.data.test = 4;
        for run in [&mut cfg.ddssm, &mut cfg.dkf] {
            run.train.steps = 3;
            run.train.batch_size = 8;
            run.train.validate_every = 2;
            run.train.checkpoint_every = 2;
            run.model.transition = match run.model.transition {
                ddssm_model::TransitionConfig::Diffusion(mut d) => {
                    // A short chain keeps the sampler cheap in a test.
                    d.schedule.num_steps = 32;
                    ddssm_model::TransitionConfig::Diffusion(d)
                }
                other => other,
            };
        }
        cfg.evaluation.samples = 8;
        cfg.evaluation.test_sequences = 4;
        cfg.evaluation.validation_sequences = 2;
        cfg.evaluation.validation_samples = 4;
        cfg
    }

    #[test]
    fn the_whole_pipeline_runs_writes_its_results_and_resumes() -> Result<()> {
        let out = std::env::temp_dir().join(format!("ddssm-xtask-{}", std::process::id()));
        let config = out.join("tiny.toml");
        std::fs::create_dir_all(&out)?;
        std::fs::write(&config, toml::to_string(&tiny())?)?;
        let args = Args {
            out: out.join("run"),
            config: Some(config),
            seed: Some(3),
            steps: None,
            device: Device::Cpu,
            quick: false,
            resume: true,
            force: false,
            progress: false,
        };
        run(&args)?;
        let first: Results =
            serde_json::from_str(&std::fs::read_to_string(args.out.join("results.json"))?)?;
        for name in ["ddssm", "dkf", "locf"] {
            let m = &first.models[name];
            assert!(m.jsd_exact.mean.is_finite() && m.jsd_exact.n == 4, "{name}");
            assert!(m.crps.mean.is_finite());
        }
        assert!(first.models["ddssm"].negative_elbo.is_some());
        assert_eq!(first.training["ddssm"].history.len(), 3);
        assert!(args.out.join("report.md").exists());
        for fig in ["fig1a", "fig1b", "fig2"] {
            for ext in ["png", "svg"] {
                let path = args.out.join(format!("{fig}.{ext}"));
                assert!(std::fs::metadata(&path)?.len() > 1000, "{}", path.display());
            }
        }
        assert_eq!(first.examples.len(), 2);
        // The sampler comparison runs on the finished folder.
        crate::tradeoff::run(&crate::tradeoff::Args {
            run: args.out.clone(),
            // The default: 64 sequences, or all the run holds (4 here).
            sequences: None,
            samples: 4,
            device: Device::Cpu,
        })?;
        let tradeoff: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            args.out.join("sampler-tradeoff.json"),
        )?)?;
        let rows = tradeoff["samplers"].as_array().map_or(0, Vec::len);
        assert!(rows >= 5, "{rows} samplers compared");
        assert_eq!(first.examples[0].models.len(), 2);
        let total: f64 = first.exact_mean_histogram.iter().sum();
        assert!(
            (total - 1.0).abs() < 1e-6,
            "exact histogram sums to {total}"
        );
        assert!(Model::load(&args.out.join("dkf.safetensors"), &Device::Cpu).is_ok());

        // Resuming a finished run trains nothing and reproduces the evaluation.
        run(&args)?;
        let second: Results =
            serde_json::from_str(&std::fs::read_to_string(args.out.join("results.json"))?)?;
        assert_eq!(second.training["ddssm"].start_step, 3);
        assert!(second.training["ddssm"].history.is_empty());
        for name in ["ddssm", "dkf"] {
            assert_eq!(
                first.models[name].per_sequence_jsd_exact,
                second.models[name].per_sequence_jsd_exact
            );
        }
        Ok(())
    }

    /// `--quick` (the one-minute smoke run of the whole pipeline): the same seed gives the same
    /// numbers in a fresh folder, and a run interrupted after 5 of its 10 training steps
    /// (`--steps 5`, then `--resume`) ends with the uninterrupted run's numbers.
    #[test]
    fn quick_runs_repeat_exactly_and_survive_an_interruption() -> Result<()> {
        let out = std::env::temp_dir().join(format!("ddssm-xtask-quick-{}", std::process::id()));
        let args = |dir: &str, steps: Option<usize>| Args {
            out: out.join(dir),
            config: None,
            seed: Some(5),
            steps,
            device: Device::Cpu,
            quick: true,
            resume: true,
            force: false,
            progress: false,
        };
        let read = |dir: &str| -> Result<Results> {
            Ok(serde_json::from_str(&std::fs::read_to_string(
                out.join(dir).join("results.json"),
            )?)?)
        };
        run(&args("a", None))?;
        run(&args("b", None))?;
        run(&args("c", Some(5)))?;
        run(&args("c", None))?;
        let (a, b, c) = (read("a")?, read("b")?, read("c")?);
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

    /// A finished run is never silently replaced or continued on other terms: a fresh run into
    /// it needs `--force`; `--resume` refuses other data (naming the key), fewer steps than the
    /// checkpoints hold and another model config — each before any file is written.
    #[test]
    fn a_finished_run_is_replaced_or_resumed_only_on_its_own_terms() -> Result<()> {
        let out = std::env::temp_dir().join(format!("ddssm-xtask-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        let write = |name: &str, cfg: &ExperimentConfig| -> Result<PathBuf> {
            let path = out.join(name);
            std::fs::write(&path, toml::to_string(cfg)?)?;
            Ok(path)
        };
        let args = |config: PathBuf, resume: bool, force: bool| Args {
            out: out.join("run"),
            config: Some(config),
            seed: None,
            steps: None,
            device: Device::Cpu,
            quick: false,
            resume,
            force,
            progress: false,
        };
        let base = write("base.toml", &tiny())?;
        run(&args(base.clone(), false, false))?;
        // A killed save's temporary file: removed by the next run that is allowed to start.
        let stale = out.join("run/.dkf.safetensors.tmp4294967295");
        std::fs::write(&stale, b"half a checkpoint")?;
        let before = crate::snapshot(&out.join("run"))?;
        let mut other_data = tiny();
        other_data.data.sim.step = 3.0;
        let mut fewer_steps = tiny();
        fewer_steps.ddssm.train.steps = 2;
        let mut other_model = tiny();
        other_model.dkf.model.h_seq = 8;
        for (what, config, resume, needle) in [
            ("a fresh run", base.clone(), false, "--force"),
            (
                "other data",
                write("data.toml", &other_data)?,
                true,
                "`data.sim.step`",
            ),
            (
                "fewer steps",
                write("steps.toml", &fewer_steps)?,
                true,
                "at step 3",
            ),
            (
                "another model",
                write("model.toml", &other_model)?,
                true,
                "`h_seq`",
            ),
        ] {
            let err = format!("{:#}", run(&args(config, resume, false)).unwrap_err());
            assert!(err.contains(needle), "{what}: {err}");
            assert_eq!(
                crate::snapshot(&out.join("run"))?,
                before,
                "{what}: files changed"
            );
        }
        run(&args(base, false, true))?;
        assert!(!stale.exists());
        std::fs::remove_dir_all(&out)?;
        Ok(())
    }

    /// A diverged model — every one-step sample far outside the histogram — scores worse than
    /// any model with its mass in place, and is flagged; the paper's convention alone would
    /// read ln 2 / 2 ≈ 0.35 (better than the DKF's 0.51).
    #[test]
    fn a_diverged_model_scores_worst_and_is_flagged() -> Result<()> {
        let cfg = tiny();
        let (_, test) = cfg
            .data
            .sim
            .simulate(4, &mut SeededNoise::new(1))
            .map_err(anyhow::Error::new)?;
        let diverged = vec![vec![1e6; 64]; 4];
        let scored = score_one_step(
            &cfg.data.sim,
            &cfg.evaluation.histogram,
            &test,
            &diverged,
            &mut SeededNoise::new(2),
        )?;
        assert_eq!(scored.out_of_range, 1.0);
        assert!(scored.jsd_exact.mean > 0.69, "{}", scored.jsd_exact);
        assert!((scored.jsd_paper.mean - std::f64::consts::LN_2 / 2.0).abs() < 1e-3);
        let w = scored
            .out_of_range_warning("dkf", &cfg.evaluation.histogram)
            .unwrap();
        assert!(w.contains("100.0 %") && w.contains("jsd_paper"), "{w}");
        // Samples in place are not flagged.
        let t = test.t;
        let in_place: Vec<Vec<f64>> = (0..4)
            .map(|i| vec![cfg.data.sim.phi * test.values[i * t + t - 2] + 4.0; 64])
            .collect();
        let fine = score_one_step(
            &cfg.data.sim,
            &cfg.evaluation.histogram,
            &test,
            &in_place,
            &mut SeededNoise::new(2),
        )?;
        assert_eq!(fine.out_of_range, 0.0);
        assert!(fine
            .out_of_range_warning("dkf", &cfg.evaluation.histogram)
            .is_none());
        Ok(())
    }

    /// `--steps` below the λ warm-up is said, with the λ the run ends at.
    #[test]
    fn a_warm_up_longer_than_the_training_is_warned_about() {
        let mut run = ExperimentConfig::paper().ddssm;
        assert!(warmup_warning("ddssm", &run).is_none());
        run.train.steps = 3;
        run.train.lambda.lambda_warmup_steps = 5;
        let w = warmup_warning("ddssm", &run).unwrap();
        let end = run.train.lambda.at(2);
        assert!(w.contains(&format!("{end:.3}")), "{w}");
        assert!(w.contains("ddssm.train.lambda.lambda_warmup_steps"), "{w}");
    }
}
