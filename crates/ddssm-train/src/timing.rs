//! How long one training step of a configuration takes on given data: the figure `cargo xtask
//! bench` reports, and what a user sizing a run for their own series would measure.

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
}
