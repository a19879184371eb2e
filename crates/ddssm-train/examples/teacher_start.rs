//! A diagnostic of issue 17 (docs/results/bimodal.md §1): is a DDSSM that starts *at* the
//! bimodal walk's true latent paths kept there by its own ELBO, or pulled back to the wide fixed
//! point every run from scratch ends in? The first answer would make the width an optimisation
//! trap (the encoder–transition loop converging slowly, as EM does), the second a property of the
//! objective and its estimator.
//!
//! ```text
//! cargo run --release -p ddssm-train --example teacher_start -- CONFIG SEED STEPS RESUME_STEP OUT [GAUGE]
//! ```
//!
//! Phase 1 (this program) trains every part of the DDSSM of `CONFIG` (seed `SEED`, as
//! `bimodal-experiment --seed` would set it) for `STEPS` steps on the simulation's true paths
//! `GAUGE · z` (default 1.674 latent units per data unit, the 9000-step DDSSM's gauge on seed 0):
//! the encoder by the likelihood of the true path under its teacher-forced posteriors
//! (`Encoder::posteriors`), the decoder by `−log p(x | z)`, the VHP by its Eq. 48 term on `z_1`,
//! the transition by Eq. 52 on every true pair — the oracle fit of `oracle_transition`, for the
//! whole model. Learning rates, optimiser and batch are `CONFIG`'s, its learning-rate decay
//! rescaled to `STEPS` ([`ddssm_train::LrDecay::rescaled`]).
//!
//! After phase 1 it prints how the teacher-forced encoder places its mean on 256 validation
//! sequences — the rms error from the true state and its slope on the observation noise (1: the
//! mean copies `x_t`; 0: it follows the dynamics, as the exact posterior does) — and the
//! validation scores the experiment would log.
//!
//! It then writes `OUT/ddssm.safetensors` as a training checkpoint at step `RESUME_STEP` (the
//! optimiser's moments included) and `OUT/config.toml`, so that
//! `cargo xtask bimodal-experiment --config CONFIG --seed SEED --ddssm-only --out OUT --resume`
//! continues with the paper's ELBO from there — from a step past the λ warm-up, so the objective
//! is the full one from the first step — and scores the result as any run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_eval::negative_elbo_per_sequence;
use ddssm_model::Model;
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};
use ddssm_train::experiment::{validation_scores, ExperimentConfig, Splits};
use ddssm_train::{batch_indices, keys, optimizer_for};

mod common;

const USAGE: &str = "usage: teacher_start CONFIG SEED STEPS RESUME_STEP OUT [GAUGE]";

fn main() -> Result<()> {
    let args = common::start(USAGE, 5..=6)?;
    let seed: u64 = common::arg(&args, 1, "SEED")?;
    let cfg = ExperimentConfig::load(Some(std::path::Path::new(&args[0])))?.with_overrides(
        false,
        Some(seed),
        None,
    )?;
    let steps: usize = common::arg(&args, 2, "STEPS")?;
    let resume_step: usize = common::arg(&args, 3, "RESUME_STEP")?;
    let out = PathBuf::from(&args[4]);
    let gauge: f64 = common::arg_or(&args, 5, 1.674, "GAUGE")?;
    let train = &cfg.ddssm.train;
    if steps == 0 || !(gauge > 0.0 && gauge.is_finite()) {
        bail!("STEPS ≥ 1 and GAUGE > 0 required\n{USAGE}");
    }
    if resume_step > train.steps || resume_step < train.lambda.lambda_warmup_steps {
        bail!(
            "RESUME_STEP must lie between the λ warm-up ({}) and the config's {} steps",
            train.lambda.lambda_warmup_steps,
            train.steps
        );
    }
    let checkpoint = out.join("ddssm.safetensors");
    if checkpoint.exists() {
        bail!("{} exists: choose another OUT", checkpoint.display());
    }

    let dev = Device::Cpu;
    // The experiment's own data (the same forks), with the true paths beside the observations.
    let splits = Splits::new(&cfg, &dev)?;
    let root = SeededNoise::new(cfg.seed);
    let (z_train, x_train) = cfg
        .data
        .sim
        .simulate(cfg.data.train, &mut root.fork("data/train"))?;
    let x_raw = x_train.to_tensor(DType::F32, &dev)?;
    if x_raw.to_vec3::<f32>()? != splits.train.x.to_vec3::<f32>()? {
        bail!("the simulated training split differs from the experiment's");
    }
    let x_all = splits.standardization.apply(&x_raw)?;
    let z_all = (z_train.to_tensor(DType::F32, &dev)? * gauge)?;

    let mut model = Model::new(&cfg.ddssm.model, cfg.seed, DType::F32, &dev)?;
    model.set_standardization(Some(splits.standardization.clone()))?;
    let mut opt = optimizer_for(&model, train)?;
    let decay = train.lr_decay.rescaled(train.steps, steps);
    let mut noise = root.fork("teacher");
    let n = z_train.n;
    println!(
        "teacher start: {steps} steps on the true paths × {gauge}, batch {}, decay {decay:?}; \
         checkpoint at step {resume_step} into {}",
        train.batch_size,
        out.display()
    );
    let mut sums = [0.0f64; 4];
    for step in 0..steps {
        let idx = Tensor::from_vec(
            batch_indices(cfg.seed ^ 0x7eac, step, n, train.batch_size),
            train.batch_size,
            &dev,
        )?;
        let x = x_all.index_select(&idx, 0)?;
        let z = z_all.index_select(&idx, 0)?;
        let b = train.batch_size as f64;
        let inputs = model.encoder().prepare(&x, None, None, None)?;
        let encoder = model
            .encoder()
            .posteriors(&inputs, &z, model.residual_prior())?
            .log_prob(&z)?
            .sum_all()?
            .neg()?;
        let decoder = model
            .decoder()
            .forward(&z, None, None)?
            .log_prob(&x)?
            .sum_all()?
            .neg()?;
        let vhp = model
            .vhp()
            .loss(&z.narrow(1, 0, model.config().order)?, None, &mut noise)?
            .sum_all()?;
        let (input, target) = model.transition_pairs(&z, None)?;
        // The diffusion transition ignores the posterior (Eq. 52 needs only the draw).
        let posterior = DiagGaussian::new(target.clone(), target.zeros_like()?)?;
        let transition = model
            .transition()
            .loss(&input, &target, &posterior, train.estimator, &mut noise)?
            .objective
            .sum_all()?;
        let parts = [encoder, decoder, vhp, transition];
        for (s, p) in sums.iter_mut().zip(&parts) {
            *s += p.to_dtype(DType::F64)?.to_scalar::<f64>()? / b;
        }
        let loss = ((((&parts[0] + &parts[1])? + &parts[2])? + &parts[3])? / b)?;
        opt.step_scaled(&loss.backward()?, decay.scale(step, steps))?;
        if (step + 1) % 250 == 0 {
            let [e, d, v, t] = sums.map(|s| s / 250.0);
            println!(
                "step {:>6}: nats per sequence — encoder −log q(z*) {e:.2}, decoder −log p(x|z*) \
                 {d:.2}, VHP {v:.2}, transition {t:.2} (lr × {:.3})",
                step + 1,
                decay.scale(step, steps)
            );
            sums = [0.0; 4];
        }
    }

    // How the teacher-forced encoder places its mean on held-out sequences (the validation
    // split's first 256, their true paths given): its error from the true state, and the part of
    // that error that is the observation's noise (slope 1: the mean copies x_t; 0: it follows
    // the dynamics from z_{t−1}, as the exact posterior does).
    let (z_val, x_val) = cfg
        .data
        .sim
        .simulate(cfg.data.validation, &mut root.fork("data/validation"))?;
    let rows = 256.min(z_val.n);
    let pick = |s: &ddssm_eval::Series| -> Result<Tensor> {
        Ok(s.to_tensor(DType::F32, &dev)?.narrow(0, 0, rows)?)
    };
    let (zv, xv) = (pick(&z_val)?, pick(&x_val)?);
    let inputs = model
        .encoder()
        .prepare(&splits.standardization.apply(&xv)?, None, None, None)?;
    let mean = model
        .encoder()
        .posteriors(&inputs, &(&zv * gauge)?, model.residual_prior())?
        .mean()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (zs, xs) = (
        zv.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
        xv.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
    );
    let t_len = z_val.t;
    let (mut en, mut nn, mut ee) = (0.0, 0.0, 0.0);
    for i in (0..rows * t_len).filter(|i| i % t_len > 0) {
        let err = mean[i] / gauge - zs[i];
        let obs = xs[i] - zs[i];
        en += err * obs;
        nn += obs * obs;
        ee += err * err;
    }
    let count = (rows * (t_len - 1)) as f64;
    let slope = en / nn;
    println!(
        "teacher-forced encoder mean on {rows} validation sequences (t ≥ 2, data units): rms error \
         {:.4}, slope on the observation noise {slope:.3} (1: copies x_t, 0: follows the \
         dynamics), rms error left after that part {:.4}",
        (ee / count).sqrt(),
        ((ee - slope * en) / count).max(0.0).sqrt()
    );

    // Where phase 2 starts: the validation scores the experiment logs every 250 steps.
    let mut val_noise = root.fork("teacher/validation");
    let scores = validation_scores(&cfg, &model, &splits.validation, &mut val_noise)?;
    let val_raw = splits.validation.to_tensor(DType::F32, &dev)?;
    let elbo = negative_elbo_per_sequence(
        &model,
        &val_raw,
        cfg.evaluation.elbo_samples,
        &mut val_noise,
    )?;
    println!(
        "after phase 1 (validation): jsd_exact {:.4}, jsd_paper {:.4}, −ELBO {:.2}",
        scores.jsd_exact.mean,
        scores.jsd_paper.mean,
        elbo.iter().sum::<f64>() / elbo.len() as f64
    );

    std::fs::create_dir_all(&out)?;
    let mut meta = BTreeMap::new();
    meta.insert(keys::STEP.to_string(), resume_step.to_string());
    meta.insert(keys::CONFIG.to_string(), serde_json::to_string(train)?);
    let bytes = model.checkpoint_bytes_with_state(&meta, &opt.state_tensors())?;
    ddssm_model::checkpoint::write_atomic(&checkpoint, &bytes)?;
    ddssm_model::checkpoint::write_atomic(
        &out.join("config.toml"),
        toml::to_string(&cfg)?.as_bytes(),
    )?;
    println!("wrote {}", checkpoint.display());
    Ok(())
}
