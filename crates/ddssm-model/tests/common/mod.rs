//! Helpers shared by this crate's integration tests.
#![allow(dead_code)]

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Batch, ElboOptions, ElboTerms, Model, ModelConfig, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;

/// Gives every parameter that is exactly zero (the denoiser's last projection, zero-initialised as
/// in CSDI, and the biases) seeded N(0, 0.3²) values; returns how many tensors changed. At zero,
/// the denoiser's last layer hides the whole denoiser from its output: its conditioning and every
/// parameter before it would have no effect and get no gradient, so a test could not see them.
pub fn randomise_zero_parameters(model: &Model, seed: u64) -> Result<usize> {
    let mut init = SeededNoise::new(seed);
    let mut changed = 0;
    for (_, var) in model.named_parameters() {
        let t = var.as_tensor();
        if t.abs()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?
            == 0.0
        {
            let values = init.randn_like(t)?.affine(0.3, 0.0)?;
            var.set(&values)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// A model that uses every input the paper describes: `M = 2`, `D = 3`, `j = 2`, two dynamic
/// and two static covariates, with `transition`.
pub fn general_config(transition: TransitionConfig) -> ModelConfig {
    ModelConfig {
        latent_dim: 2,
        obs_dim: 3,
        order: 2,
        covariate_dim: 2,
        static_dim: 2,
        transition,
        ..ModelConfig::default()
    }
}

/// `b` random sequences of length `t` for `config` (with covariates / statics when it has them).
pub fn batch(config: &ModelConfig, b: usize, t: usize, seed: u64) -> Result<Batch> {
    let mut noise = SeededNoise::new(seed);
    let x = noise.randn((b, t, config.obs_dim), DType::F32, &Device::Cpu)?;
    let covariates = (config.covariate_dim > 0)
        .then(|| noise.randn((b, t, config.covariate_dim), DType::F32, &Device::Cpu))
        .transpose()?;
    let statics = (config.static_dim > 0)
        .then(|| noise.randn((b, config.static_dim), DType::F32, &Device::Cpu))
        .transpose()?;
    Ok(Batch {
        x,
        mask: None,
        covariates,
        statics,
    })
}

/// A tensor's values as f64, flattened.
pub fn scalars(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// The pinned case of `pinned.rs`: `config`'s model from seed 7 (f32, CPU), three seeded
/// sequences of length 6, and their ELBO terms under seed 9.
pub fn pinned_case(config: &ModelConfig) -> Result<(Model, Batch, ElboTerms)> {
    pinned_case_on(config, &Device::Cpu)
}

/// [`pinned_case`] on `device`. Every random number comes from a host-side [`SeededNoise`], so
/// the model, the data and the ELBO's noise are the same on every device.
pub fn pinned_case_on(config: &ModelConfig, device: &Device) -> Result<(Model, Batch, ElboTerms)> {
    let model = Model::new(config, 7, DType::F32, device)?;
    let x = SeededNoise::new(8).randn((3, 6, 1), DType::F32, device)?;
    let batch = Batch::new(x);
    let terms = model.elbo(&batch, &ElboOptions::default(), &mut SeededNoise::new(9))?;
    Ok((model, batch, terms))
}

/// The pinned case's numbers on `device`, as f64: its ELBO terms, the gradient of the negative
/// ELBO for every parameter (in parameter-name order) and two one-step predictive draws per
/// sequence (seed 10).
pub struct PinnedNumbers {
    /// [`term_values`] of the pinned case.
    pub terms: Vec<f64>,
    /// Every parameter's gradient, flattened, in parameter-name order.
    pub gradients: Vec<f64>,
    /// The one-step predictive draws.
    pub draws: Vec<f64>,
}

/// [`PinnedNumbers`] of `config` on `device`.
pub fn pinned_numbers(config: &ModelConfig, device: &Device) -> Result<PinnedNumbers> {
    let (model, batch, terms) = pinned_case_on(config, device)?;
    let values = term_values(&terms)?;
    let gradients = elbo_gradients(&model, &terms)?;
    let draws = scalars(&model.one_step_predictive(&batch, 2, &mut SeededNoise::new(10))?)?;
    Ok(PinnedNumbers {
        terms: values,
        gradients,
        draws,
    })
}

/// The gradient of the negative ELBO `terms` for every parameter of `model`, flattened, in
/// parameter-name order, as f64; an error names a parameter that got none.
pub fn elbo_gradients(model: &Model, terms: &ElboTerms) -> Result<Vec<f64>> {
    let grads = terms.negative_elbo()?.backward()?;
    let mut gradients = Vec::new();
    for (name, var) in model.named_parameters() {
        let g = grads
            .get(var.as_tensor())
            .ok_or_else(|| anyhow::anyhow!("no gradient for {name}"))?;
        gradients.extend(scalars(g)?);
    }
    Ok(gradients)
}

/// Largest `|a − b|` relative to `max(1, |b|)` over two equally long lists.
pub fn worst_relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Every ELBO term per sequence, as f64, in the order recon, init_entropy, vhp, transition,
/// entropy.
pub fn term_values(terms: &ElboTerms) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for t in term_tensors(terms) {
        out.extend(scalars(t)?);
    }
    Ok(out)
}

/// The per-sequence ELBO terms in the order recon, init_entropy, vhp, transition, entropy.
pub fn term_tensors(terms: &ElboTerms) -> [&Tensor; 5] {
    [
        &terms.recon,
        &terms.init_entropy,
        &terms.vhp,
        &terms.transition,
        &terms.entropy,
    ]
}

/// Moves every transition parameter of `model` by seeded noise of scale 0.3: a fresh denoiser's
/// output layer is zero (CSDI's), so without this its predictions are all zero and a test of
/// what the transition's output feeds into has no teeth.
pub fn jitter_transition(model: &Model, seed: u64) -> Result<()> {
    let mut noise = SeededNoise::new(seed);
    for (name, v) in model.named_parameters() {
        if name.starts_with("transition.") {
            let bump = (noise.randn_like(v.as_tensor())? * 0.3)?;
            v.set(&(v.as_tensor() + bump)?)?;
        }
    }
    Ok(())
}
