//! On a CUDA device the models give the CPU's numbers: the ELBO terms, every parameter's
//! gradient and one-step predictive draws of both paper models (the pinned case of `pinned.rs`),
//! and the ELBO and gradients of a model that uses every input (order 2, covariates, statics, a
//! time embedding, the residual posterior).
//!
//! Compiled only with `--features cuda`, and it needs a GPU: `cargo test --release -p ddssm-model
//! --features cuda --test cuda -- --nocapture` (docs/performance.md, "The `cuda` feature on a
//! GPU"). CI compiles it (`.ci/cuda-check` checks `--all-targets`) but has no GPU to run it on.
//! Every random number comes from a host-side `SeededNoise`, so both devices see the same model,
//! data and noise; what differs is only rounding (cuBLAS and candle's reduction kernels sum in
//! other orders than the CPU's fused ops).
#![cfg(feature = "cuda")]

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Batch, ElboOptions, EncoderResidual, Model, ModelConfig, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;

fn gpu() -> Result<Device> {
    Ok(ddssm_tensor_ops::parse_device("cuda:0")?)
}

#[test]
fn both_paper_models_give_the_cpus_numbers() -> Result<()> {
    let gpu = gpu()?;
    for config in [ModelConfig::paper_dkf(), ModelConfig::paper_ddssm()] {
        let kind = config.transition.kind();
        let cpu = common::pinned_numbers(&config, &Device::Cpu)?;
        let cuda = common::pinned_numbers(&config, &gpu)?;
        let (terms, grads, draws) = (
            common::worst_relative(&cuda.terms, &cpu.terms),
            common::worst_relative(&cuda.gradients, &cpu.gradients),
            common::worst_relative(&cuda.draws, &cpu.draws),
        );
        eprintln!("{kind}: worst relative difference, cuda vs cpu: terms {terms:.2e}, gradients {grads:.2e}, draws {draws:.2e}");
        // The tolerances of `generic_path.rs` (two f32 paths that round differently): 1e-4 of
        // the scale for the terms and draws, 1e-3 for the gradients (one more pass).
        assert!(terms < 1e-4, "{kind}: ELBO terms differ by {terms:e}");
        assert!(grads < 1e-3, "{kind}: gradients differ by {grads:e}");
        assert!(draws < 1e-4, "{kind}: draws differ by {draws:e}");
    }
    Ok(())
}

/// `batch` with every tensor moved to `device`.
fn on(batch: &Batch, device: &Device) -> Result<Batch> {
    Ok(Batch {
        x: batch.x.to_device(device)?,
        mask: batch
            .mask
            .as_ref()
            .map(|m| m.to_device(device))
            .transpose()?,
        covariates: batch
            .covariates
            .as_ref()
            .map(|c| c.to_device(device))
            .transpose()?,
        statics: batch
            .statics
            .as_ref()
            .map(|s| s.to_device(device))
            .transpose()?,
    })
}

/// ELBO terms and gradients (parameter-name order) of `config`'s model on `device`.
fn elbo_and_gradients(
    config: &ModelConfig,
    data: &Batch,
    device: &Device,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let model = Model::new(config, 3, DType::F32, device)?;
    common::randomise_zero_parameters(&model, 4)?;
    let terms = model.elbo(
        &on(data, device)?,
        &ElboOptions::default(),
        &mut SeededNoise::new(5),
    )?;
    Ok((
        common::term_values(&terms)?,
        common::elbo_gradients(&model, &terms)?,
    ))
}

#[test]
fn a_model_with_every_input_gives_the_cpus_elbo_and_gradients() -> Result<()> {
    let gpu = gpu()?;
    let mut config = common::general_config(TransitionConfig::default());
    if let TransitionConfig::Diffusion(d) = &mut config.transition {
        d.denoiser.side.time_embedding_dim = 4;
    }
    config.encoder.residual = EncoderResidual::Transition;
    let data = common::batch(&config, 3, 7, 11)?;
    let (cpu_terms, cpu_grads) = elbo_and_gradients(&config, &data, &Device::Cpu)?;
    let (cuda_terms, cuda_grads) = elbo_and_gradients(&config, &data, &gpu)?;
    let terms = common::worst_relative(&cuda_terms, &cpu_terms);
    let grads = common::worst_relative(&cuda_grads, &cpu_grads);
    eprintln!("every input: worst relative difference, cuda vs cpu: terms {terms:.2e}, gradients {grads:.2e}");
    assert!(terms < 1e-4, "ELBO terms differ by {terms:e}");
    assert!(grads < 1e-3, "gradients differ by {grads:e}");
    Ok(())
}
