//! Trains the DDSSM's diffusion transition *alone* on the bimodal walk's true latent paths (an
//! oracle encoder), optionally blurred by Gaussian noise of a given spread, and measures the
//! width of its learned modes: how sharp the transition of an experiment config can get when its
//! inputs are exact, and how much of the trained DDSSM's mode width it inherits from the
//! encoder's spread (issue 17; docs/results/bimodal.md §4).
//!
//! ```text
//! cargo run --release -p ddssm-train --example oracle_transition -- [--seed N] CONFIG STEPS [INPUT_NOISE] [GAUGE] [ALSO]
//! ```
//!
//! - `CONFIG`: an experiment config (e.g. `configs/ablations/bimodal-sharp-steps-9000.toml`); its
//!   DDSSM model, its transition learning rate, optimiser, batch size, samples `S` and learning-rate
//!   decay (rescaled to `STEPS`, [`ddssm_train::LrDecay::rescaled`]), its data and seed are used.
//! - `--seed N` (anywhere on the line): the seed of the data, the initialisation and the noise
//!   instead of the config's.
//! - `INPUT_NOISE` (data units, default 0): every training path is `z + σ·ε` with `ε` drawn afresh
//!   for each of the `S` copies, independently per time step — what the transition sees when the
//!   encoder's draws scatter around the true path by `σ` (0.13–0.15 in the trained DDSSMs).
//! - `GAUGE` (default 1.674, the latent units per data unit of the 9000-step DDSSM on seed 0: its
//!   modes are 13.39 latent units apart for 8 data units): the latent the transition models is
//!   `GAUGE · z`.
//! - `ALSO` (optional): `beta` or `beta_tilde`, a second reverse variance of the ancestral sampler
//!   whose widths are measured beside the config's at every measurement, from noise of its own
//!   (so the training and the config's measurements are those of a run without it).
//!
//! Every 1000 steps and at the end it draws 64 samples of `z_32` from the true `z_31` of 256 test
//! sequences and prints the modes' width in data units: the root-mean-square distance of the
//! draws from the exact mode centres `φ·z_31 ± step` (exact: 0) and the pooled within-mode
//! standard deviation around each side's own mean (the same split as `ddssm_eval::diagnosis`),
//! and the scale `s` the diffusion divides the latent by (1 unless `latent_scale = "learned"`).

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_diffusion::{ReverseVariance, Sampler};
use ddssm_model::{Model, Transition};
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};
use ddssm_train::experiment::ExperimentConfig;
use ddssm_train::{AdamW, ParamGroup};

mod common;

const USAGE: &str = "usage: oracle_transition [--seed N] CONFIG STEPS [INPUT_NOISE] [GAUGE] \
                     [ALSO: beta | beta_tilde]";
/// Test sequences and draws per sequence of each width measurement.
const EVAL_SEQUENCES: usize = 256;
const EVAL_DRAWS: usize = 64;

fn main() -> Result<()> {
    common::setup()?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let seed: Option<u64> = common::take_option(&mut args, "--seed", USAGE)?;
    common::check_count(&args, USAGE, 2..=5)?;
    let mut cfg = ExperimentConfig::load(Some(std::path::Path::new(&args[0])))?;
    if let Some(seed) = seed {
        cfg.seed = seed;
    }
    let steps: usize = common::arg(&args, 1, "STEPS")?;
    let input_noise: f64 = common::arg_or(&args, 2, 0.0, "INPUT_NOISE")?;
    let gauge: f64 = common::arg_or(&args, 3, 1.674, "GAUGE")?;
    let also = match args.get(4).map(String::as_str) {
        None => None,
        Some("beta") => Some(ReverseVariance::Beta),
        Some("beta_tilde") => Some(ReverseVariance::BetaTilde),
        Some(other) => bail!("ALSO: {other:?} is not beta or beta_tilde\n{USAGE}"),
    };
    if steps == 0 || input_noise < 0.0 || gauge <= 0.0 || !input_noise.is_finite() {
        bail!("STEPS ≥ 1, INPUT_NOISE ≥ 0 and GAUGE > 0 required\n{USAGE}");
    }
    let train = &cfg.ddssm.train;
    let decay = train.lr_decay.rescaled(train.steps, steps);
    let sim = cfg.data.sim;
    let root = SeededNoise::new(cfg.seed);
    let (z_train, _) = sim.simulate(cfg.data.train, &mut root.fork("data/train"))?;
    let (z_test, _) = sim.simulate(EVAL_SEQUENCES, &mut root.fork("data/test"))?;

    let dev = Device::Cpu;
    let mut model = Model::new(&cfg.ddssm.model, cfg.seed, DType::F32, &dev)?;
    // The second reverse variance and the config's sampler, swapped around each second measurement.
    let also = match (also, &cfg.ddssm.model.transition) {
        (None, _) => None,
        (Some(variance), ddssm_model::TransitionConfig::Diffusion(d)) => {
            Some((variance, d.sampler))
        }
        (Some(_), ddssm_model::TransitionConfig::Gaussian(_)) => bail!(
            "ALSO needs a diffusion transition: this config's DDSSM has a Gaussian one\n{USAGE}"
        ),
    };
    let params = model.parameter_groups().transition;
    let mut opt = AdamW::new(
        vec![ParamGroup {
            name: "transition".into(),
            lr: train.learning_rates.transition,
            params: params.clone(),
        }],
        train.optimizer,
    )?;
    let mut noise = root.fork("oracle");
    let mut also_noise = root.fork("oracle/also");
    let (n, t_len) = (z_train.n, z_train.t);
    let copies = train.batch_size * train.samples;
    println!(
        "oracle transition: {steps} steps, {} sequences × S = {} per step, lr {} × decay {:?}, \
         input noise {input_noise}, gauge {gauge}, seed {}, max_grad_norm {:?}",
        train.batch_size,
        train.samples,
        train.learning_rates.transition,
        decay,
        cfg.seed,
        train.max_grad_norm
    );
    let mut running = 0.0;
    let (mut norm_sum, mut norm_max, mut clipped) = (0.0, 0.0f64, 0);
    for step in 0..steps {
        let rows = noise.uniform_ints(train.batch_size, 0, n as u32 - 1)?;
        let eps = noise.normals(copies * t_len);
        let mut values = Vec::with_capacity(copies * t_len);
        for c in 0..copies {
            let i = rows[c % train.batch_size] as usize;
            for t in 0..t_len {
                let blurred = z_train.get(i, t, 0) + input_noise * eps[c * t_len + t];
                values.push((gauge * blurred) as f32);
            }
        }
        let z = Tensor::from_vec(values, (copies, t_len, 1), &dev)?;
        let (input, target) = model.transition_pairs(&z, None)?;
        // The diffusion transition ignores the posterior (Eq. 52 needs only the draw).
        let posterior = DiagGaussian::new(target.clone(), target.zeros_like()?)?;
        let loss = model
            .transition()
            .loss(&input, &target, &posterior, train.estimator, &mut noise)?
            .objective
            .mean_all()?;
        running += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let grads = loss.backward()?;
        let norm = ddssm_train::gradient_norm(&grads, &params, step)?;
        let grad_scale = ddssm_train::clip_scale(norm, train.max_grad_norm);
        (norm_sum, norm_max) = (norm_sum + norm, norm_max.max(norm));
        clipped += usize::from(grad_scale < 1.0);
        opt.step_clipped(&grads, decay.scale(step, steps), grad_scale)?;
        if (step + 1) % 250 == 0 {
            println!(
                "step {:>6}: mean loss {:.4} (lr × {:.3}), gradient norm mean {:.3} max {:.3}, \
                 {clipped} steps clipped",
                step + 1,
                running / 250.0,
                decay.scale(step, steps),
                norm_sum / 250.0,
                norm_max
            );
            (running, norm_sum, norm_max, clipped) = (0.0, 0.0, 0.0, 0);
        }
        if (step + 1) % 1000 == 0 || step + 1 == steps {
            let (rms, pooled, bias) = widths(model.transition(), &z_test, &sim, gauge, &mut noise)?;
            println!(
                "step {:>6}: width (data units) rms from exact centres {rms:.4}, pooled within-mode \
                 SD {pooled:.4}, mean |bias| of the side means {bias:.4}; the diffusion's latent \
                 scale s = {:.4}",
                step + 1,
                model.transition().latent_scale()?
            );
            if let Some((variance, configured)) = also {
                // Swapped in for this measurement only; the training never samples.
                model.set_sampler(Sampler::Ancestral { variance })?;
                let (rms, pooled, bias) =
                    widths(model.transition(), &z_test, &sim, gauge, &mut also_noise)?;
                model.set_sampler(configured)?;
                println!(
                    "step {:>6}: with the ancestral sampler's variance {variance:?}: rms {rms:.4}, \
                     pooled within-mode SD {pooled:.4}, mean |bias| {bias:.4}",
                    step + 1
                );
            }
        }
    }
    Ok(())
}

/// The draws' root-mean-square distance from the exact centres, the pooled within-mode SD and the
/// mean absolute offset of each side's mean from its exact centre, all in data units.
fn widths(
    transition: &dyn Transition,
    z: &ddssm_eval::Series,
    sim: &ddssm_eval::BimodalRandomWalk,
    gauge: f64,
    noise: &mut SeededNoise,
) -> Result<(f64, f64, f64)> {
    let dev = Device::Cpu;
    let last = z.t - 1;
    let rows = z.n * EVAL_DRAWS;
    let history: Vec<f32> = (0..rows)
        .map(|r| (gauge * z.get(r / EVAL_DRAWS, last - 1, 0)) as f32)
        .collect();
    let input = ddssm_model::TransitionInput {
        history: Tensor::from_vec(history, (rows, 1, 1), &dev)?,
        times: Tensor::from_vec(
            [last as f32, last as f32 + 1.0].repeat(rows),
            (rows, 2),
            &dev,
        )?,
        covariates: None,
    };
    let draws = transition
        .sample(&input, noise)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (mut sq, mut within, mut bias, mut sides) = (0.0, 0.0, 0.0, 0usize);
    for i in 0..z.n {
        let centre = sim.phi * z.get(i, last - 1, 0);
        let d: Vec<f64> = draws[i * EVAL_DRAWS..(i + 1) * EVAL_DRAWS]
            .iter()
            .map(|v| v / gauge - centre)
            .collect();
        sq += d.iter().map(|v| (v.abs() - sim.step).powi(2)).sum::<f64>();
        for upper in [false, true] {
            let side: Vec<f64> = d.iter().copied().filter(|v| (*v > 0.0) == upper).collect();
            if side.len() < 2 {
                continue;
            }
            let mean = side.iter().sum::<f64>() / side.len() as f64;
            within += side.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
            bias += (mean.abs() - sim.step).abs();
            sides += 1;
        }
    }
    let total = rows as f64;
    Ok((
        (sq / total).sqrt(),
        (within / (total - 2.0 * z.n as f64)).sqrt(),
        bias / sides.max(1) as f64,
    ))
}
