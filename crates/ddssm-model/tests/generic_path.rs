//! The plain-candle path of the fused ops — the one CUDA and Metal take — run on the CPU
//! (`ddssm_tensor_ops::set_fused_ops(false)`) gives the fused path's numbers for both paper
//! models: the ELBO terms, every parameter's gradient and one-step predictive draws. Without a
//! GPU in CI this is what keeps the device path from rotting.
//!
//! The switch is process-wide, so this file holds a single test (its own process, no other test
//! sees the switch).

mod common;

use anyhow::Result;
use ddssm_model::ModelConfig;
use ddssm_tensor_ops::{fused_ops, set_fused_ops, SeededNoise};

/// ELBO terms, gradients of the negative ELBO (in parameter-name order) and draws, as f64, for
/// the pinned case (`pinned.rs`).
fn numbers(config: &ModelConfig) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (model, batch, terms) = common::pinned_case(config)?;
    let values = common::term_values(&terms)?;
    let grads = terms.negative_elbo()?.backward()?;
    let mut gradients = Vec::new();
    for (name, var) in model.named_parameters() {
        let g = grads
            .get(var.as_tensor())
            .ok_or_else(|| anyhow::anyhow!("no gradient for {name}"))?;
        gradients.extend(common::scalars(g)?);
    }
    let draws =
        common::scalars(&model.one_step_predictive(&batch, 2, &mut SeededNoise::new(10))?)?;
    Ok((values, gradients, draws))
}

/// Largest |a − b| relative to max(1, |b|).
fn worst(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn the_plain_path_gives_the_fused_paths_numbers() -> Result<()> {
    for config in [ModelConfig::paper_dkf(), ModelConfig::paper_ddssm()] {
        let kind = config.transition.kind();
        set_fused_ops(true);
        let fused = numbers(&config)?;
        set_fused_ops(false);
        assert!(!fused_ops());
        let plain = numbers(&config)?;
        set_fused_ops(true);
        // f32 throughout: ~6e-8 relative per operation, sums of O(10²) terms, and the fused ops
        // round differently (a vectorised exp, other summation orders) — the pinned tests'
        // 1e-4 relative tolerance. Gradients go through one more pass, so 1e-3 of their scale.
        let (terms, grads, draws) = (
            worst(&plain.0, &fused.0),
            worst(&plain.1, &fused.1),
            worst(&plain.2, &fused.2),
        );
        assert!(terms < 1e-4, "{kind}: ELBO terms differ by {terms:e}");
        assert!(grads < 1e-3, "{kind}: gradients differ by {grads:e}");
        assert!(draws < 1e-4, "{kind}: draws differ by {draws:e}");
        // The switch took effect: the two paths do not round identically.
        assert!(
            terms + grads + draws > 0.0,
            "{kind}: the plain path returned the fused numbers bit for bit"
        );
    }
    Ok(())
}
