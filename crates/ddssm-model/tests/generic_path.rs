//! The plain-candle path of the fused ops — the one CUDA and Metal take — run on the CPU
//! (`ddssm_tensor_ops::set_fused_ops(false)`) gives the fused path's numbers for both paper
//! models: the ELBO terms, every parameter's gradient and one-step predictive draws. Without a
//! GPU in CI this is what keeps the device path from rotting.
//!
//! The switch is process-wide, so this file holds a single test (its own process, no other test
//! sees the switch).

mod common;

use anyhow::Result;
use candle_core::Device;
use ddssm_model::ModelConfig;
use ddssm_tensor_ops::{fused_ops, set_fused_ops};

#[test]
fn the_plain_path_gives_the_fused_paths_numbers() -> Result<()> {
    for config in [ModelConfig::paper_dkf(), ModelConfig::paper_ddssm()] {
        let kind = config.transition.kind();
        set_fused_ops(true);
        let fused = common::pinned_numbers(&config, &Device::Cpu)?;
        set_fused_ops(false);
        assert!(!fused_ops());
        let plain = common::pinned_numbers(&config, &Device::Cpu)?;
        set_fused_ops(true);
        // f32 throughout: ~6e-8 relative per operation, sums of O(10²) terms, and the fused ops
        // round differently (a vectorised exp, other summation orders) — the pinned tests'
        // 1e-4 relative tolerance. Gradients go through one more pass, so 1e-3 of their scale.
        let (terms, grads, draws) = (
            common::worst_relative(&plain.terms, &fused.terms),
            common::worst_relative(&plain.gradients, &fused.gradients),
            common::worst_relative(&plain.draws, &fused.draws),
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
