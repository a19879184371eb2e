//! The Section 4 experiment run end to end as one library call ([`run`]): the output folder's
//! checks, data, both models trained through [`crate::fit`], the test evaluation with the LOCF
//! baseline and the exact references, and Fig. 2's examples, into a [`Results`] that
//! `results.json` holds, with its report (`report.md`, [`Results::markdown`]). Figures are drawn
//! from it by the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use ddssm_eval::{
    locf_samples, model_predictive_samples_with_progress, negative_elbo_per_sequence,
    score_one_step, MeanSem, ModelScores, Series,
};
use ddssm_model::{Batch, Model};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use super::{validation_scores, DataConfig, ExperimentConfig, Splits};
use crate::{fit, Error, Metrics, ModelRun, Result, TrainOptions};

/// Where and how [`run`] works.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The results folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoints (same seed and data; steps may grow).
    pub resume: bool,
    /// Replace a run already in `out`.
    pub force: bool,
    /// Progress bars (on a terminal) instead of log lines.
    pub progress: bool,
    /// A smoke run: its results are marked as meaningless.
    pub quick: bool,
    /// The device.
    pub device: Device,
    /// The code's version, recorded in the results.
    pub git_commit: String,
    /// Train and score the DDSSM (and LOCF) only: for seeds and ablations of the DDSSM, where
    /// the DKF, which no DDSSM setting touches, needs only its one run at the paper's settings.
    pub ddssm_only: bool,
    /// Start the DDSSM from the parameters of this checkpoint instead of the seed's initialisation
    /// ([`TrainOptions::init`]; a warm start, flagged in the results' warnings): e.g. to refit one
    /// part of a trained model with the others frozen (learning rate 0).
    pub ddssm_init: Option<PathBuf>,
}

impl RunOptions {
    /// The model runs of `cfg` this run trains, by name: `ddssm`, then `dkf` unless
    /// [`RunOptions::ddssm_only`].
    pub fn runs<'a>(&self, cfg: &'a ExperimentConfig) -> Vec<(&'static str, &'a ModelRun)> {
        let mut runs = vec![("ddssm", &cfg.ddssm)];
        if !self.ddssm_only {
            runs.push(("dkf", &cfg.dkf));
        }
        runs
    }
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
    pub training: BTreeMap<String, crate::TrainReport>,
    /// What makes numbers of this run doubtful (diverged samples, a λ warm-up cut short, a
    /// `--quick` run), also at the top of the report.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The checkpoint the DDSSM was warm-started from ([`RunOptions::ddssm_init`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddssm_init: Option<String>,
    /// Wall time of the whole command, seconds.
    pub wall_seconds: f64,
    /// Threads candle used (CANDLE_NUM_THREADS / RAYON_NUM_THREADS / all cores).
    pub threads: String,
    /// The git commit of the code.
    pub git_commit: String,
}

/// How the warning of a warm-started DDSSM begins ([`RunOptions::ddssm_init`]); results written
/// before `Results::ddssm_init` existed (commit a0980de) record the warm start only here.
pub(crate) const WARM_START: &str = "ddssm: a warm start from the parameters of";

/// Files a run writes into its folder (what `--force` may replace).
const RUN_FILES: [&str; 7] = [
    "config.toml",
    "results.json",
    "report.md",
    "ddssm.safetensors",
    "dkf.safetensors",
    "ddssm.history.json",
    "dkf.history.json",
];

/// Everything checked about the output folder `options.out` before a file is written: a fresh run goes only
/// into an empty (or new) folder unless `--force`; `--resume` continues only a run on the same
/// seed and data, from checkpoints written for the same models and training (only `steps` may
/// change, and `lr_decay` as [`crate::resumable_step`] allows) and not past the steps asked for.
/// Returns the checkpoint step per model.
pub fn check_output_folder(
    options: &RunOptions,
    cfg: &ExperimentConfig,
) -> Result<BTreeMap<String, usize>> {
    let out = &options.out;
    let occupied: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| out.join(f).exists())
        .collect();
    let mut steps = BTreeMap::new();
    if !options.resume {
        if !occupied.is_empty() && !options.force {
            return Err(Error::State(format!(
                "{} already holds a run ({}): continue it with --resume, replace it with \
                 --force, or choose another --out",
                out.display(),
                occupied.join(", ")
            )));
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
        let theirs: ExperimentConfig = std::fs::read_to_string(&saved)
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| {
                Error::State(format!(
                    "--resume: {}: not an experiment config ({e})",
                    saved.display()
                ))
            })?;
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
            return Err(Error::State(format!(
                "--resume: {} was run on other data ({diff}); a resumed model would train on \
                 data it was not standardised for. Use another --out, or the folder's own \
                 settings",
                out.display()
            )));
        }
    }
    for (name, run) in options.runs(cfg) {
        let path = out.join(format!("{name}.safetensors"));
        if let Some(step) = crate::resumable_step(&path, &run.model, &run.train)
            .map_err(|e| Error::State(format!("--resume: {name}: {e}")))?
        {
            steps.insert(name.to_string(), step);
        }
    }
    Ok(steps)
}

/// The λ warm-up of `run` does not end within its training: `λ` stops short of `lambda_end`.
pub fn warmup_warning(name: &str, run: &ModelRun) -> Option<String> {
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
pub struct Progress {
    bar: indicatif::ProgressBar,
    label: String,
    unit: &'static str,
    done: std::sync::atomic::AtomicUsize,
    total: usize,
}

impl Progress {
    /// A bar on a terminal (`terminal`), else log lines; `unit` names the items.
    pub fn new(label: &str, total: usize, unit: &'static str, terminal: bool) -> Self {
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
    pub fn add(&self, k: usize) {
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

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs the experiment `cfg` (validated first) into `options.out`: the folder checks, the data,
/// both models trained with validation and checkpoints (each through [`crate::fit`]), the test
/// evaluation with the LOCF baseline and the exact references, Fig. 2's examples; writes
/// `config.toml`, `results.json` and `report.md` and returns the results. Progress goes to the log (or bars
/// on a terminal).
pub fn run(cfg: &ExperimentConfig, options: &RunOptions) -> Result<Results> {
    let began = Instant::now();
    cfg.validate()?;
    check_output_folder(options, cfg)?;
    let io = |path: &Path, e: std::io::Error| Error::State(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(&options.out).map_err(|e| io(&options.out, e))?;
    for stale in ddssm_model::checkpoint::remove_stale_temp_files(&options.out)? {
        tracing::info!("removed {}, left by an interrupted save", stale.display());
    }
    // The quick run's caveat first: it outweighs every other.
    let mut warnings: Vec<String> = Vec::new();
    if options.quick {
        warnings.push(
            "--quick: a smoke test of the pipeline (tiny data, 10 training steps, few samples); \
             its numbers say nothing about the models"
                .into(),
        );
    }
    warnings.extend(
        options
            .runs(cfg)
            .into_iter()
            .filter_map(|(name, run)| warmup_warning(name, run)),
    );
    let dev = &options.device;

    // 1. Data.
    let root = SeededNoise::new(cfg.seed);
    let Splits {
        train: train_data,
        standardization,
        validation: val_sub,
        test: test_x,
    } = Splits::new(cfg, dev)?;
    let ddssm_init = super::provenance::ddssm_start(options, &cfg.ddssm.model, &standardization)?;
    if let Some(init) = &ddssm_init {
        warnings.push(format!(
            "{WARM_START} {} (not seed {}'s initialisation); its \
             training history and time are the warm start's alone",
            init.display(),
            cfg.seed
        ));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let config_text = toml::to_string(cfg).map_err(|e| Error::State(e.to_string()))?;
    ddssm_model::checkpoint::write_atomic(
        &options.out.join("config.toml"),
        config_text.as_bytes(),
    )?;
    let sim = cfg.data.sim;
    let t = sim.t;
    let val_n = val_sub.n;
    let val_raw = val_sub.to_tensor(DType::F32, dev)?;

    // 2. Training.
    let mut trained = Vec::new();
    let mut training = BTreeMap::new();
    for (name, run) in options.runs(cfg) {
        let eval = cfg.evaluation;
        let mut validate = |model: &Model, step: usize| -> Result<Metrics> {
            let mut noise = root.fork(&format!("{name}/validation/{step}"));
            let mut m = Metrics::new();
            if val_n > 0 {
                let s = validation_scores(cfg, model, &val_sub, &mut noise)?;
                m.insert("jsd_exact".into(), s.jsd_exact.mean);
                m.insert("jsd_paper".into(), s.jsd_paper.mean);
                let elbo =
                    negative_elbo_per_sequence(model, &val_raw, eval.elbo_samples, &mut noise)?;
                m.insert("negative_elbo".into(), MeanSem::of(&elbo).mean);
            }
            Ok(m)
        };
        let train_options = TrainOptions {
            checkpoint: Some(options.out.join(format!("{name}.safetensors"))),
            resume: options.resume,
            progress: options.progress,
            label: name.to_string(),
            init: ddssm_init.clone().filter(|_| name == "ddssm"),
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
            &train_options,
            &mut validate,
        )?;
        tracing::info!("{name}: {} parameters", model.parameter_count());
        training.insert(name.to_string(), report);
        trained.push((name, model));
    }

    // 3. Test evaluation.
    let e = cfg.evaluation;
    let n_test = e.test_sequences;
    let test_sub = test_x.first(n_test);
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
            options.progress,
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
        ddssm_init: ddssm_init.as_ref().map(|p| p.display().to_string()),
        wall_seconds: began.elapsed().as_secs_f64(),
        threads: ddssm_tensor_ops::ThreadSettings::current().to_string(),
        git_commit: options.git_commit.clone(),
    };
    let json = serde_json::to_string_pretty(&results).map_err(|e| Error::State(e.to_string()))?;
    ddssm_model::checkpoint::write_atomic(&options.out.join("results.json"), json.as_bytes())?;
    ddssm_model::checkpoint::write_atomic(
        &options.out.join("report.md"),
        results.markdown().as_bytes(),
    )?;
    Ok(results)
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

#[cfg(test)]
mod tests {
    use super::*;

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
