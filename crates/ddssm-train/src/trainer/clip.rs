//! The gradient's norms, whole and per parameter group, and the clipping factors they give
//! (`train.max_grad_norm`, `train.max_group_grad_norms`; not in the paper, docs/paper-notes.md).

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

/// A bound on the L2 norm of each parameter group's gradient (`train.max_group_grad_norms`):
/// each group is clipped to its own bound on its own; a group left out is not clipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBounds {
    /// φ, the encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<f64>,
    /// θ, the decoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<f64>,
    /// ψ, the transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<f64>,
    /// η and Φ, the VHP ("zinit").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zinit: Option<f64>,
}

impl GroupBounds {
    /// The group names as a config writes them, in the optimizer's group order.
    pub const NAMES: [&'static str; 4] = ["encoder", "decoder", "transition", "zinit"];

    /// The same bound on every group.
    pub fn all(max: f64) -> Self {
        Self {
            encoder: Some(max),
            decoder: Some(max),
            transition: Some(max),
            zinit: Some(max),
        }
    }

    /// The bounds in the optimizer's group order (encoder, decoder, transition, zinit).
    pub fn in_group_order(&self) -> [Option<f64>; 4] {
        [self.encoder, self.decoder, self.transition, self.zinit]
    }
}

/// As an inline TOML table of the groups that have a bound: `{ transition = 190 }`.
impl std::fmt::Display for GroupBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<String> = Self::NAMES
            .iter()
            .zip(self.in_group_order())
            .filter_map(|(name, bound)| bound.map(|b| format!("{name} = {b}")))
            .collect();
        if set.is_empty() {
            f.write_str("{}")
        } else {
            write!(f, "{{ {} }}", set.join(", "))
        }
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

/// The factor for each parameter group (the optimizer's order) under `config`: with
/// `max_group_grad_norms` each group's own [`clip_scale`] under its own bound (1 for a group
/// without one), else the whole gradient's under `max_grad_norm` for every group.
pub fn group_clip_scales(config: &TrainConfig, whole: f64, groups: &GroupNorms) -> [f64; 4] {
    match &config.max_group_grad_norms {
        Some(bounds) => {
            let norms = groups.in_group_order();
            let bounds = bounds.in_group_order();
            std::array::from_fn(|i| clip_scale(norms[i], bounds[i]))
        }
        None => [clip_scale(whole, config.max_grad_norm); 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_is_clipped_to_its_own_bound_and_a_group_without_one_is_not() {
        let groups = GroupNorms {
            encoder: 10.0,
            decoder: 20.0,
            transition: 5.0,
            zinit: 1.0,
        };
        let whole = 22.9;
        let transition_only = TrainConfig {
            max_group_grad_norms: Some(GroupBounds {
                transition: Some(2.0),
                ..GroupBounds::default()
            }),
            ..TrainConfig::paper_ddssm()
        };
        assert_eq!(
            group_clip_scales(&transition_only, whole, &groups),
            [1.0, 1.0, 0.4, 1.0]
        );
        let all = TrainConfig {
            max_group_grad_norms: Some(GroupBounds::all(8.0)),
            ..TrainConfig::paper_ddssm()
        };
        assert_eq!(
            group_clip_scales(&all, whole, &groups),
            [0.8, 0.4, 1.0, 1.0]
        );
        // The whole gradient's bound scales every group alike; no bound, nothing.
        let whole_bound = TrainConfig {
            max_grad_norm: Some(11.45),
            ..TrainConfig::paper_ddssm()
        };
        assert_eq!(group_clip_scales(&whole_bound, whole, &groups), [0.5; 4]);
        assert_eq!(
            group_clip_scales(&TrainConfig::paper_ddssm(), whole, &groups),
            [1.0; 4]
        );
    }
}
