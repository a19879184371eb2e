//! How long one training step of a configuration takes on given data, and how many one-step
//! predictive samples a model draws per second: the figures `cargo xtask bench` reports, and what
//! a user sizing a run for their own series would measure.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use ddssm_model::{Batch, Model, ModelConfig};
use ddssm_tensor_ops::host;

use crate::{accumulated_gradients, optimizer_for, Result, TrainConfig};

/// Untimed steps before the timed ones (the first steps of a process are slower while the heap
/// grows to its working size).
pub const WARMUP_STEPS: usize = 3;

/// The wall time of each timed training step, and the peak resident memory over them.
#[derive(Debug, Clone)]
pub struct StepTimes {
    /// Seconds per step, in order, after [`WARMUP_STEPS`] untimed ones.
    pub seconds: Vec<f64>,
    /// Peak resident memory of the steps, MiB (None where the peak cannot be reset, e.g. outside
    /// Linux: then only the process-wide peak is known).
    pub peak_rss_mib: Option<f64>,
}

/// Times `runs` training steps (ELBO with `train_config`'s S, S_k and micro-batches, backward,
/// AdamW) of a fresh model of `model_config` (seed 0) at `train_config`'s batch size on `x`
/// (`[≥ batch, T, D]`, model space), after [`WARMUP_STEPS`] untimed ones; step `s` takes rows
/// `s … s + batch − 1` (cyclically).
pub fn time_training_steps(
    model_config: &ModelConfig,
    train_config: &TrainConfig,
    x: &Tensor,
    runs: usize,
    device: &Device,
) -> Result<StepTimes> {
    let model = Model::new(model_config, 0, DType::F32, device)?;
    let mut opt = optimizer_for(&model, train_config)?;
    let data = Batch::new(x.clone());
    let batch = train_config.batch_size;
    let n = x.dim(0)? as u32;
    let mut seconds = Vec::with_capacity(runs);
    let reset = host::reset_peak_memory();
    for step in 0..WARMUP_STEPS + runs {
        let indices: Vec<u32> = (0..batch as u32).map(|i| (i + step as u32) % n).collect();
        let began = Instant::now();
        let lambda = train_config.lambda.at(step);
        let grads =
            accumulated_gradients(&model, &data, &indices, train_config, lambda, step)?.grads;
        opt.step(&grads)?;
        device.synchronize()?;
        if step >= WARMUP_STEPS {
            seconds.push(began.elapsed().as_secs_f64());
        }
    }
    Ok(StepTimes {
        seconds,
        peak_rss_mib: host::peak_memory_mib().filter(|_| reset),
    })
}

/// Samples per second of `model`'s one-step predictive `p(x_T | x_(1:T−1))` for the prefixes
/// `prefix` (`[N, T−1, D]`, data units), `samples` draws each, in chunks of at most
/// `max_chains` chains: one rate per timed call, `runs` calls after one untimed call on the
/// first prefix. The draws come from `noise`.
pub fn predictive_samples_per_second(
    model: &Model,
    prefix: &Tensor,
    samples: usize,
    max_chains: usize,
    runs: usize,
    noise: &mut ddssm_tensor_ops::SeededNoise,
) -> Result<Vec<f64>> {
    ddssm_eval::model_predictive_samples(model, &prefix.narrow(0, 0, 1)?, 4, max_chains, noise)?;
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let began = Instant::now();
        let draws =
            ddssm_eval::model_predictive_samples(model, prefix, samples, max_chains, noise)?;
        let total: usize = draws.iter().map(Vec::len).sum();
        rates.push(total as f64 / began.elapsed().as_secs_f64());
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddssm_tensor_ops::SeededNoise;

    /// One time per asked run, each positive, on a small DKF problem whose batch wraps around
    /// the data.
    #[test]
    fn one_time_per_run() -> Result<()> {
        let model = ModelConfig::paper_dkf();
        let train = TrainConfig {
            batch_size: 4,
            samples: 1,
            ..TrainConfig::paper_dkf()
        };
        let x = SeededNoise::new(1).randn((6, 5, 1), DType::F32, &Device::Cpu)?;
        let timed = time_training_steps(&model, &train, &x, 2, &Device::Cpu)?;
        assert_eq!(timed.seconds.len(), 2);
        assert!(timed.seconds.iter().all(|&s| s > 0.0), "{timed:?}");
        Ok(())
    }

    /// One positive rate per asked run.
    #[test]
    fn one_sampler_rate_per_run() -> Result<()> {
        let model = Model::new(&ModelConfig::paper_ddssm(), 0, DType::F32, &Device::Cpu)?;
        let prefix = SeededNoise::new(2).randn((2, 4, 1), DType::F32, &Device::Cpu)?;
        let rates =
            predictive_samples_per_second(&model, &prefix, 3, 8, 2, &mut SeededNoise::new(1))?;
        assert_eq!(rates.len(), 2);
        assert!(rates.iter().all(|&r| r > 0.0), "{rates:?}");
        Ok(())
    }
}
