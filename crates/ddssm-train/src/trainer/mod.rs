//! The training loop (Algorithm 1, App. I.4): seeded batches, the λ-weighted ELBO, one backward
//! pass, one AdamW step per parameter group, periodic validation and atomic checkpoints with the
//! optimizer state, and an exact resume.
//!
//! Determinism: the batch of step `s` and every draw inside its ELBO are functions of
//! `(seed, s)` alone (a permutation per epoch, a noise stream per step), so a run resumed from a
//! checkpoint at step `s` continues with exactly the numbers the uninterrupted run would have
//! produced.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId};
use ddssm_model::{Batch, ElboSummary, Model};
use ddssm_tensor_ops::SeededNoise;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::{AdamW, Error, Objective, ParamGroup, Result, TrainConfig};

mod clip;
mod start;
pub use clip::{
    clip_scale, gradient_norm, gradient_norms, group_clip_scales, GroupBounds, GroupNorms,
};
pub use start::{check_init, history_path, keys, resumable_step, warm_start_of};
use start::{restore, restore_history, save, save_history};

/// The sequences of batch row `i` for step `step`: a fresh seeded permutation of the `n`
/// training sequences every epoch (`⌊n / batch⌋` steps; the remainder is dropped).
pub fn batch_indices(seed: u64, step: usize, n: usize, batch: usize) -> Vec<u32> {
    let per_epoch = (n / batch).max(1);
    let (epoch, pos) = (step / per_epoch, step % per_epoch);
    let perm = SeededNoise::new(seed)
        .fork(&format!("epoch{epoch}"))
        .permutation(n);
    perm[pos * batch..(pos * batch + batch).min(n)]
        .iter()
        .map(|&i| i as u32)
        .collect()
}

/// The noise stream of the ELBO at `step`.
pub fn step_noise(seed: u64, step: usize) -> SeededNoise {
    SeededNoise::new(seed).fork(&format!("step{step}"))
}

/// Rows `idx` of every tensor of `data` (which may be non-contiguous views).
pub fn select(data: &Batch, idx: &[u32]) -> Result<Batch> {
    let idx = Tensor::from_vec(idx.to_vec(), idx.len(), data.x.device())?;
    let pick = |t: &Tensor| t.contiguous()?.index_select(&idx, 0);
    Ok(Batch {
        x: pick(&data.x)?,
        mask: data.mask.as_ref().map(pick).transpose()?,
        covariates: data.covariates.as_ref().map(pick).transpose()?,
        statics: data.statics.as_ref().map(pick).transpose()?,
    })
}

/// Validation metrics by name.
pub type Metrics = BTreeMap<String, f64>;

/// The validation callback of [`train`]: `(model, steps done) → metrics`.
pub type Validator<'a> = dyn FnMut(&Model, usize) -> Result<Metrics> + 'a;

/// What one step logged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step (0-based).
    pub step: usize,
    /// λ at this step.
    pub lambda: f64,
    /// The objective `mean(D + λR)` that was minimised.
    pub objective: f64,
    /// The ELBO terms (batch means; nats per sequence).
    pub terms: ElboSummary,
    /// Under the importance-weighted objective only: the batch mean of each sequence's effective
    /// sample size of its `S` normalised weights at this λ (between 1 and `S`; how many
    /// trajectories the objective effectively trained on). Not written when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_sample_size: Option<f64>,
    /// The L2 norm of the step's whole gradient before any clipping (`train.max_grad_norm`);
    /// absent in histories written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_norm: Option<f64>,
    /// The same per parameter group; absent in histories written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_gradient_norms: Option<GroupNorms>,
}

/// The outcome of [`accumulated_gradients`]: the summed gradient and the batch means of what the
/// step logs.
pub struct Accumulated {
    /// The gradient of the objective, summed over the micro-batches.
    pub grads: GradStore,
    /// The objective's value.
    pub objective: f64,
    /// The ELBO terms.
    pub terms: ElboSummary,
    /// [`StepRecord::effective_sample_size`].
    pub effective_sample_size: Option<f64>,
}

/// Where and how a run writes, and whether it continues an earlier one.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// The checkpoint file (written atomically every `checkpoint_every` steps and at the end).
    pub checkpoint: Option<PathBuf>,
    /// Continue from `checkpoint` if it exists.
    pub resume: bool,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// A label for the progress bar and the logs (e.g. `ddssm`).
    pub label: String,
    /// Start from the parameters in this file (a checkpoint or saved model of the same model
    /// config; its standardisation, if any, must be the data's) instead of the seed's
    /// initialisation: a warm start, with a fresh optimiser at step 0 and the whole schedule
    /// (λ, learning-rate decay) run from its start. Ignored when `resume` finds a checkpoint to
    /// continue.
    pub init: Option<PathBuf>,
}

/// The outcome of [`train`]. A resumed run carries the report its earlier processes left beside
/// the checkpoint ([`history_path`]), so `history`, `validations` and `seconds` cover the whole
/// run; where that file was missing or unusable (a warning says so) they begin at `start_step`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainReport {
    /// The step this process started from (0, or the resumed checkpoint's step).
    pub start_step: usize,
    /// One record per step, in order (a record's `step` says where the history begins).
    pub history: Vec<StepRecord>,
    /// `(step, metrics)` of every validation.
    pub validations: Vec<(usize, Metrics)>,
    /// Wall time of the steps in `history`, seconds, summed over the processes that ran them.
    pub seconds: f64,
}

/// `Ok` for a finite `v`; otherwise [`Error::NonFinite`] at the 0-based `step`, reported 1-based
/// as on the progress line.
fn finite_or(step: usize, what: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite {
            step: step + 1,
            what: what.to_string(),
        })
    }
}

/// The AdamW of [`train`] for `model`: one parameter group per App. I.1 group, each with its
/// learning rate from `config` (Table 3), in the order of [`GroupNorms::in_group_order`] (the
/// per-group clipping factors rely on it).
pub fn optimizer_for(model: &Model, config: &TrainConfig) -> Result<AdamW> {
    let g = model.parameter_groups();
    let lr = config.learning_rates;
    AdamW::new(
        vec![
            ParamGroup {
                name: "encoder".into(),
                lr: lr.encoder,
                params: g.encoder,
            },
            ParamGroup {
                name: "decoder".into(),
                lr: lr.decoder,
                params: g.decoder,
            },
            ParamGroup {
                name: "transition".into(),
                lr: lr.transition,
                params: g.transition,
            },
            ParamGroup {
                name: "zinit".into(),
                lr: lr.zinit,
                params: g.vhp,
            },
        ],
        config.optimizer,
    )
}

/// What the trainer tells the user about how a step's passes (micro-batches) meet the hardware,
/// if anything. On a non-CPU device: several passes per batch, where one pass was 3.9× faster on
/// a GPU. On the CPU: fewer passes than worker threads, since each pass runs on one worker and
/// the others idle, with the `micro_batch` that would keep as many busy as the batch allows.
fn pass_advice(config: &TrainConfig, workers: usize, on_cpu: bool) -> Option<String> {
    let (batch, micro) = (config.batch_size, config.micro_batch);
    let passes = if micro == 0 || micro >= batch {
        1
    } else {
        batch.div_ceil(micro)
    };
    if !on_cpu {
        return (passes > 1).then(|| {
            format!(
                "micro_batch = {micro} splits each batch of {batch} into {passes} passes, run in \
                 parallel on the worker threads; on a GPU one pass (micro_batch = 0) was 3.9x \
                 faster (docs/performance.md, \"The `cuda` feature on a GPU\")"
            )
        });
    }
    let usable = workers.min(batch);
    (passes < usable).then(|| {
        format!(
            "{passes} of the {workers} worker threads busy: a batch of {batch} in passes of {} \
             runs one pass per worker; micro_batch = {} would keep {usable} busy (another split \
             draws other noise, so the numbers change with it)",
            batch.div_ceil(passes),
            batch.div_ceil(usable)
        )
    })
}

/// Keeps only what the optimiser needs of a `GradStore`, so that a micro-batch's forward graph
/// is freed before the next one runs. Two things would otherwise keep it alive: candle's backward
/// computes gradients from the (tracked) forward tensors, so every gradient carries an op graph
/// reaching back through the whole forward pass — parameter gradients are detached here; and
/// `backward` leaves entries for tensors that are not parameters (inputs, noise, constants),
/// which can be as large as the activations — those are replaced by a shared scalar (`GradStore`
/// has no removal by id).
fn release_graph(grads: &mut GradStore, parameters: &HashSet<TensorId>, placeholder: &Tensor) {
    let ids: Vec<TensorId> = grads.get_ids().copied().collect();
    for id in ids {
        let kept = if parameters.contains(&id) {
            grads.get_id(id).map(Tensor::detach)
        } else {
            None
        };
        grads.insert_id(id, kept.unwrap_or_else(|| placeholder.clone()));
    }
}

/// The gradient of step `step`'s objective over the batch `indices`, in chunks of
/// `config.micro_batch` sequences (each chunk's objective weighted by its share of the batch, the
/// gradients summed), with the objective's value, the batch means of the ELBO terms and, under
/// the importance-weighted objective, of the effective sample size. A single chunk draws from
/// `step_noise(seed, step)`; chunk `k` of several from its fork `micro{k}`.
pub fn accumulated_gradients(
    model: &Model,
    data: &Batch,
    indices: &[u32],
    config: &TrainConfig,
    lambda: f64,
    step: usize,
) -> Result<Accumulated> {
    let elbo_options = config.elbo_options_at(step);
    let size = match config.micro_batch {
        0 => indices.len(),
        m => m.min(indices.len()),
    };
    let chunks: Vec<&[u32]> = indices.chunks(size.max(1)).collect();
    let several = chunks.len() > 1;
    let named = model.named_parameters();
    let parameters: HashSet<TensorId> = named.iter().map(|(_, v)| v.as_tensor().id()).collect();
    let placeholder = Tensor::zeros((), candle_core::DType::F32, data.x.device())?;
    // The chunks are independent (each draws its own noise), so they run on the worker threads
    // (`ddssm_tensor_ops::workers`); the sums below run in chunk order, so the result does not
    // depend on the worker count.
    let per_chunk = ddssm_tensor_ops::map_ordered(&chunks, |k, chunk| -> Result<_> {
        let share = chunk.len() as f64 / indices.len() as f64;
        let mut noise = step_noise(config.seed, step);
        if several {
            noise = noise.fork(&format!("micro{k}"));
        }
        let terms = model.elbo(&select(data, chunk)?, &elbo_options, &mut noise)?;
        let summary = terms.summary()?;
        for (what, v) in [
            ("reconstruction", summary.recon),
            ("initial entropy", summary.init_entropy),
            ("vhp", summary.vhp),
            ("transition", summary.transition),
            ("entropy", summary.entropy),
        ] {
            finite_or(step, what, v)?;
        }
        let iwae = config.objective == Objective::Iwae;
        let ess = if iwae {
            Some(share * terms.effective_sample_size(lambda)?)
        } else {
            None
        };
        let objective = if iwae {
            terms.importance_weighted_objective(lambda)?
        } else if config.pin_latent_scale {
            terms.scale_pinned_objective(lambda, config.entropy_weight)?
        } else {
            terms.tempered_objective(lambda, config.entropy_weight)?
        };
        let objective = if several {
            objective.affine(share, 0.0)?
        } else {
            objective
        };
        let value = objective
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let mut grads = objective.backward()?;
        drop(objective);
        drop(terms);
        release_graph(&mut grads, &parameters, &placeholder);
        Ok((share, summary, value, ess, grads))
    })?;
    let mut total: Option<GradStore> = None;
    let mut objective_value = 0.0;
    let mut effective_sample_size = None;
    let mut mean = ElboSummary {
        recon: 0.0,
        init_entropy: 0.0,
        vhp: 0.0,
        transition: 0.0,
        entropy: 0.0,
        negative_elbo: 0.0,
    };
    for (share, summary, value, ess, grads) in per_chunk {
        effective_sample_size = ess.map(|e| e + effective_sample_size.unwrap_or(0.0));
        mean.recon += share * summary.recon;
        mean.init_entropy += share * summary.init_entropy;
        mean.vhp += share * summary.vhp;
        mean.transition += share * summary.transition;
        mean.entropy += share * summary.entropy;
        mean.negative_elbo += share * summary.negative_elbo;
        objective_value += value;
        total = Some(match total {
            None => grads,
            Some(mut acc) => {
                for (_, var) in &named {
                    let t = var.as_tensor();
                    if let Some(g) = grads.get(t) {
                        let sum = match acc.get(t) {
                            Some(a) => (a + g)?,
                            None => g.clone(),
                        };
                        acc.insert(t, sum);
                    }
                }
                acc
            }
        });
    }
    Ok(Accumulated {
        grads: total.ok_or_else(|| Error::State("empty batch".into()))?,
        objective: objective_value,
        terms: mean,
        effective_sample_size,
    })
}

/// Trains `model` on `data` (all `N` training sequences, in model space) for `config.steps`
/// steps. `validate(model, step)` runs every `validate_every` steps and at the end; its metrics
/// are logged and returned. A non-finite loss term or gradient stops the run with
/// [`Error::NonFinite`] before the optimizer touches the parameters, leaving the last checkpoint
/// as it was.
pub fn train(
    model: &mut Model,
    data: &Batch,
    config: &TrainConfig,
    options: &TrainOptions,
    validate: &mut Validator<'_>,
) -> Result<TrainReport> {
    config.validate()?;
    let n = data.batch();
    if config.batch_size > n {
        return Err(Error::InvalidConfig {
            field: "batch_size".into(),
            value: config.batch_size.to_string(),
            allowed: format!("at most the {n} training sequences"),
        });
    }
    let on_cpu = data.x.device().is_cpu();
    match pass_advice(config, ddssm_tensor_ops::workers(), on_cpu) {
        Some(advice) if on_cpu => tracing::info!("{}: {advice}", options.label),
        Some(advice) => tracing::warn!("{}: {advice}", options.label),
        None => {}
    }
    let mut opt = optimizer_for(model, config)?;
    let mut start = 0;
    let mut resumed = false;
    if let (true, Some(path)) = (options.resume, &options.checkpoint) {
        if path.exists() {
            start = restore(model, &mut opt, config, path)?;
            resumed = true;
            tracing::info!(
                "{}: resumed from {} at step {start}",
                options.label,
                path.display()
            );
        }
    }
    // Where the parameters came from, carried into every checkpoint: a resumed run keeps its
    // checkpoint's record, whatever `options.init` says (it is ignored on resume).
    let init_record = match (resumed, &options.checkpoint) {
        (true, Some(path)) => warm_start_of(path)?,
        _ => options.init.clone(),
    };
    if let (false, Some(init)) = (resumed, &options.init) {
        check_init(init, model.config(), model.standardization())?;
        model.load_weights(init)?;
        tracing::info!(
            "{}: starting from the parameters of {}",
            options.label,
            init.display()
        );
    }
    let mut report = TrainReport::default();
    if let (true, Some(path)) = (resumed, &options.checkpoint) {
        match restore_history(path, start) {
            Ok(carried) => report = carried,
            Err(why) => tracing::warn!(
                "{}: the history before step {start} is not carried ({why}); this run's \
                 history and time begin at step {start}",
                options.label
            ),
        }
    }
    report.start_step = start;
    let carried_seconds = report.seconds;
    let bar = if options.progress {
        let bar = ProgressBar::new(config.steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .map_err(|e| Error::State(e.to_string()))?,
        );
        bar.set_prefix(options.label.clone());
        bar.set_position(start as u64);
        bar
    } else {
        ProgressBar::hidden()
    };
    let began = Instant::now();
    for step in start..config.steps {
        let indices = batch_indices(config.seed, step, n, config.batch_size);
        let lambda = config.lambda.at(step);
        let Accumulated {
            grads,
            objective: objective_value,
            terms: summary,
            effective_sample_size,
        } = accumulated_gradients(model, data, &indices, config, lambda, step)?;
        let (gradient_norm, group_norms) = gradient_norms(&grads, model, step)?;
        let grad_scales = group_clip_scales(config, step, gradient_norm, &group_norms);
        opt.step_groups(&grads, &config.rate_factors(step), &grad_scales)?;
        report.history.push(StepRecord {
            step,
            lambda,
            objective: objective_value,
            terms: summary,
            effective_sample_size,
            gradient_norm: Some(gradient_norm),
            group_gradient_norms: Some(group_norms),
        });
        bar.set_position(step as u64 + 1);
        bar.set_message(format!(
            "λ {lambda:.2} loss {objective_value:.2} −elbo {:.2}",
            summary.negative_elbo
        ));
        let done = step + 1;
        // Without a terminal there is no bar: log progress about 20 times per run instead.
        if !options.progress && done % (config.steps / 20).max(1) == 0 {
            let rate = (done - start) as f64 / began.elapsed().as_secs_f64().max(1e-9);
            let ess = effective_sample_size
                .map(|e| format!(", ESS {e:.2} of {}", config.samples))
                .unwrap_or_default();
            let clipped = if grad_scales.iter().any(|&c| c < 1.0) {
                " (clipped)"
            } else {
                ""
            };
            // Under a training-only option the step's ELBO is not the model's (validation's).
            let differs = config
                .elbo_options_at(step)
                .objective_differs()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let g = group_norms;
            // Which block trained, when the run alternates ([`crate::Alternation`]).
            let phase = config
                .alternation
                .map(|a| format!(" [{}]", a.phase(step)))
                .unwrap_or_default();
            tracing::info!(
                "{} step {done}/{}{phase}: λ {lambda:.3}, loss {objective_value:.3}, −ELBO {:.3}{differs}{ess}, \
                 ‖∇‖ {gradient_norm:.3}{clipped} (encoder {:.3}, decoder {:.3}, transition \
                 {:.3}, zinit {:.3}) ({rate:.2} steps/s, ETA {:.0} s)",
                options.label,
                config.steps,
                summary.negative_elbo,
                g.encoder,
                g.decoder,
                g.transition,
                g.zinit,
                (config.steps - done) as f64 / rate
            );
        }
        if config.validate_every > 0 && done % config.validate_every == 0 && done < config.steps {
            let metrics = validate(model, done)?;
            // Printed above the bar, never glued onto it.
            bar.suspend(|| tracing::info!("{} step {done}: {metrics:?}", options.label));
            report.validations.push((done, metrics));
        }
        if let Some(path) = &options.checkpoint {
            if config.checkpoint_every > 0 && done % config.checkpoint_every == 0 {
                save(model, &opt, config, path, done, init_record.as_deref())?;
                report.seconds = carried_seconds + began.elapsed().as_secs_f64();
                save_history(path, done, &report)?;
            }
        }
    }
    report.seconds = carried_seconds + began.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(path) = &options.checkpoint {
        save(
            model,
            &opt,
            config,
            path,
            config.steps,
            init_record.as_deref(),
        )?;
        save_history(path, config.steps, &report)?;
    }
    let metrics = validate(model, config.steps)?;
    tracing::info!("{} final: {metrics:?}", options.label);
    // A finished run resumed validates its last step again (the same numbers): kept once.
    report.validations.retain(|(s, _)| *s != config.steps);
    report.validations.push((config.steps, metrics));
    if let Some(path) = &options.checkpoint {
        save_history(path, config.steps, &report)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
