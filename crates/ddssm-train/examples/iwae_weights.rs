//! How much of the spread of a trained model's per-trajectory log importance weights is the
//! diffusion transition's estimator noise (Eq. 52's sampled noise levels and draws), and how much
//! the trajectories' own differences: what decides whether an importance-weighted training
//! objective (`train.objective = "iwae"`) weighs trajectories or noise (issue 17;
//! docs/results/bimodal.md §4).
//!
//! ```text
//! cargo run --release -p ddssm-train --example iwae_weights -- CONFIG CHECKPOINT K [SEQUENCES] [REPEATS]
//! ```
//!
//! It draws `K` encoder trajectories for each of the first `SEQUENCES` (default 64) test
//! sequences of `CONFIG`'s data and scores each with the single-sample terms (`λ = 1`), then
//! re-estimates every trajectory's transition term `REPEATS` (default 8) times with fresh draws.
//! Printed, in nats: the SD of the log weights across the `K` trajectories of a sequence (mean
//! over sequences), the SD of one trajectory's transition term across repeats (the estimator's
//! noise), and the effective sample size of the normalised weights with one repeat's transition
//! terms against that with the transition terms averaged over all repeats. The transition terms
//! are estimated with `CONFIG`'s level sampling (`ddssm.model.transition.loss.levels`), not the
//! checkpoint's, so one checkpoint can be scored under each estimator of Eq. 52.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_model::{
    effective_sample_size as ess, Batch, ElboOptions, Estimator, Model, TransitionConfig,
    TransitionInput,
};
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};
use ddssm_train::experiment::ExperimentConfig;

mod common;

const USAGE: &str = "usage: iwae_weights CONFIG CHECKPOINT K [SEQUENCES] [REPEATS]";

fn main() -> Result<()> {
    let args = common::start(USAGE, 3..=5)?;
    let cfg = ExperimentConfig::load(Some(std::path::Path::new(&args[0])))?;
    let dev = Device::Cpu;
    let model = with_config_levels(std::path::Path::new(&args[1]), &cfg, &dev)?;
    let k: usize = common::arg(&args, 2, "K")?;
    let sequences: usize = common::arg_or(&args, 3, 64, "SEQUENCES")?;
    let repeats: usize = common::arg_or(&args, 4, 8, "REPEATS")?;
    if k < 2 || sequences == 0 || repeats < 2 {
        bail!("K ≥ 2, SEQUENCES ≥ 1 and REPEATS ≥ 2 required\n{USAGE}");
    }
    let root = SeededNoise::new(cfg.seed);
    let (_, test) = cfg
        .data
        .sim
        .simulate(sequences, &mut root.fork("data/test"))?;
    let batch = Batch::new(test.to_tensor(DType::F32, &dev)?);
    let mut noise = root.fork("iwae-weights");
    let options = ElboOptions {
        samples: k,
        estimator: Estimator::Sample,
        ..ElboOptions::default()
    };
    let terms = model.elbo(&batch, &options, &mut noise)?;
    let log_w = (&terms.trajectory_distortion + &terms.trajectory_rate)?
        .neg()?
        .to_dtype(DType::F64)?;
    let (input, target) = model.transition_pairs(&terms.latent.detach(), None)?;
    let steps = cfg.data.sim.t - model.config().order;
    // Each trajectory's transition term summed over its steps, `[trajectories, sequences]`, for
    // rows ordered trajectory × sequence × step (Eq. 52 ignores the posterior: it needs the draw).
    let score = |input: &TransitionInput, z: &Tensor, stream: &mut SeededNoise| -> Result<Tensor> {
        let q = DiagGaussian::new(z.clone(), z.zeros_like()?)?;
        let loss = model
            .transition()
            .loss(input, z, &q, Estimator::Sample, stream)?;
        Ok(loss
            .objective
            .reshape(((), steps))?
            .sum(1)?
            .reshape(((), sequences))?
            .to_dtype(DType::F64)?)
    };
    let draws = (0..repeats)
        .map(|_| score(&input, &target, &mut noise))
        .collect::<Result<Vec<_>>>()?;
    // Common random numbers: every trajectory of a sequence scored with the same noise levels
    // and draws (each trajectory's rows through the loss with one cloned stream).
    let rows = sequences * steps;
    let mut common = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let stream = noise.split();
        let per_trajectory = (0..k)
            .map(|i| {
                let part = TransitionInput {
                    history: input.history.narrow(0, i * rows, rows)?,
                    times: input.times.narrow(0, i * rows, rows)?,
                    covariates: None,
                };
                score(
                    &part,
                    &target.narrow(0, i * rows, rows)?,
                    &mut stream.clone(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        common.push(Tensor::cat(&per_trajectory, 0)?);
    }
    let common = Tensor::stack(&common, 0)?;
    let relative = |t: &Tensor| -> Result<f64> {
        let centred = t.broadcast_sub(&t.mean_keepdim(1)?)?;
        Ok(sd(&centred, 0)?.mean_all()?.to_scalar::<f64>()?)
    };
    let stacked = Tensor::stack(&draws, 0)?;
    let mean_transition = stacked.mean(0)?;
    let noise_sd = sd(&stacked, 0)?.mean_all()?.to_scalar::<f64>()?;
    // The weights without the transition term, to which each repeat's estimate is added.
    let first = &draws[0];
    let rest = (&log_w + terms.trajectory_transition.to_dtype(DType::F64)?)?;
    let ess_one = ess(&(&rest - first)?)?;
    let ess_mean = ess(&(&rest - &mean_transition)?)?;
    println!(
        "K = {k}, {sequences} sequences, {repeats} repeats of the transition term ({steps} steps)"
    );
    println!(
        "SD of log w across trajectories (mean over sequences): {:.3} nats",
        sd(&log_w, 0)?.mean_all()?.to_scalar::<f64>()?
    );
    println!(
        "SD of log w without its transition term:              {:.3} nats",
        sd(&rest, 0)?.mean_all()?.to_scalar::<f64>()?
    );
    println!(
        "ESS of the weights without the transition term:       {:.3} of {k}",
        ess(&rest)?
    );
    println!(
        "SD of the transition term across trajectories:        {:.3} nats",
        sd(&mean_transition, 0)?.mean_all()?.to_scalar::<f64>()?
    );
    println!("SD of one trajectory's transition term across repeats: {noise_sd:.3} nats");
    println!(
        "SD across repeats of a trajectory's transition term relative to its sequence's mean: \
         independent draws {:.3}, common draws {:.3} nats",
        relative(&stacked)?,
        relative(&common)?
    );
    println!(
        "ESS of the weights, one repeat's common-draw transition terms: {:.3} of {k}",
        ess(&(&rest - common.get(0)?)?)?
    );
    println!("ESS of the weights, one repeat's transition terms:     {ess_one:.3} of {k}");
    println!(
        "ESS of the weights, transition averaged over repeats:  {ess_mean:.3} of {k} \
         (its noise SD {:.3})",
        noise_sd / (repeats as f64).sqrt()
    );
    Ok(())
}

/// The standard deviation along `dim` (denominator `n − 1`).
fn sd(t: &Tensor, dim: usize) -> Result<Tensor> {
    let n = t.dim(dim)? as f64;
    let centred = t.broadcast_sub(&t.mean_keepdim(dim)?)?;
    Ok((centred.sqr()?.sum(dim)? / (n - 1.0))?.sqrt()?)
}

/// The checkpoint's model with `cfg`'s level sampling for Eq. 52 (an estimator's choice, not a
/// parameter).
fn with_config_levels(
    path: &std::path::Path,
    cfg: &ExperimentConfig,
    dev: &Device,
) -> Result<Model> {
    let mut model = Model::load(path, dev)?;
    match &cfg.ddssm.model.transition {
        TransitionConfig::Diffusion(c) => model.set_level_sampling(c.loss.levels)?,
        TransitionConfig::Gaussian(_) => bail!("CONFIG's DDSSM must have a diffusion transition"),
    }
    Ok(model)
}
