//! The gradient's norms, whole and per parameter group, and the clipping factors they give
//! (`train.max_grad_norm`, `train.clip_per_group`; not in the paper, docs/paper-notes.md).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::Var;
use ddssm_model::Model;
use serde::{Deserialize, Serialize};

use super::finite_or;
use crate::{Result, TrainConfig};

/// The L2 norms of one step's gradient in each parameter group of [`super::optimizer_for`]
/// (App. I.1's groups), before any clipping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupNorms {
    /// φ, the encoder.
    pub encoder: f64,
    /// θ, the decoder.
    pub decoder: f64,
    /// ψ, the transition.
    pub transition: f64,
    /// η and Φ, the VHP ("zinit").
    pub zinit: f64,
}

impl GroupNorms {
    /// The norms in the optimizer's group order (encoder, decoder, transition, zinit).
    pub fn in_group_order(&self) -> [f64; 4] {
        [self.encoder, self.decoder, self.transition, self.zinit]
    }
}

/// The L2 norm of the gradients in `grads` of `params` together (a parameter without one counts
/// as zero); [`crate::Error::NonFinite`] at the 0-based `step`, naming the first parameter whose
/// gradient is not finite.
pub fn gradient_norm(grads: &GradStore, params: &[(String, Var)], step: usize) -> Result<f64> {
    Ok(squared_norms(grads, params, step)?
        .iter()
        .map(|(_, s)| s)
        .sum::<f64>()
        .sqrt())
}

/// Each parameter's squared gradient norm, in the order of `params` (0 without a gradient).
fn squared_norms<'a>(
    grads: &GradStore,
    params: &'a [(String, Var)],
    step: usize,
) -> Result<Vec<(&'a str, f64)>> {
    let mut out = Vec::with_capacity(params.len());
    for (name, var) in params {
        let squared = match grads.get(var.as_tensor()) {
            Some(g) => g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?,
            None => 0.0,
        };
        finite_or(step, &format!("gradient of {name}"), squared)?;
        out.push((name.as_str(), squared));
    }
    Ok(out)
}

/// `model`'s whole gradient norm ([`gradient_norm`] over all its parameters, summed in their
/// order) and its norm per parameter group.
pub fn gradient_norms(grads: &GradStore, model: &Model, step: usize) -> Result<(f64, GroupNorms)> {
    let params = model.named_parameters();
    let squared = squared_norms(grads, &params, step)?;
    let whole = squared.iter().map(|(_, s)| s).sum::<f64>().sqrt();
    let by_name: HashMap<&str, f64> = squared.into_iter().collect();
    let norm = |group: &[(String, Var)]| -> f64 {
        group
            .iter()
            .map(|(name, _)| by_name.get(name.as_str()).copied().unwrap_or(0.0))
            .sum::<f64>()
            .sqrt()
    };
    let g = model.parameter_groups();
    let groups = GroupNorms {
        encoder: norm(&g.encoder),
        decoder: norm(&g.decoder),
        transition: norm(&g.transition),
        zinit: norm(&g.vhp),
    };
    Ok((whole, groups))
}

/// The factor a gradient of L2 norm `norm` is multiplied by under `max_grad_norm`: 1 without
/// clipping or within the bound, else `max / norm`.
pub fn clip_scale(norm: f64, max_grad_norm: Option<f64>) -> f64 {
    match max_grad_norm {
        Some(max) if norm > max => max / norm,
        _ => 1.0,
    }
}

/// The factor for each parameter group (the optimizer's order) under `config`: the whole
/// gradient's [`clip_scale`] for every group, or with `clip_per_group` each group's own.
pub fn group_clip_scales(config: &TrainConfig, whole: f64, groups: &GroupNorms) -> [f64; 4] {
    if config.clip_per_group {
        groups
            .in_group_order()
            .map(|n| clip_scale(n, config.max_grad_norm))
    } else {
        [clip_scale(whole, config.max_grad_norm); 4]
    }
}
