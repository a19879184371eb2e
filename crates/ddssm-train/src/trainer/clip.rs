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

/// The factor for each parameter group (the optimizer's order) under `config` at optimiser step
/// `step`: with `max_group_grad_norms` each group's own [`clip_scale`] under its own bound (1 for a
/// group without one), else the whole gradient's under `max_grad_norm` for every group. "Whole"
/// means the groups that train at `step`: when one is frozen (a learning rate of 0, or an
/// alternation's phase: [`TrainConfig::rate_factors`]) the bound applies to the norm of the
/// others, whose step it scales; with every group training it is `whole`, as given.
pub fn group_clip_scales(
    config: &TrainConfig,
    step: usize,
    whole: f64,
    groups: &GroupNorms,
) -> [f64; 4] {
    let norms = groups.in_group_order();
    match &config.max_group_grad_norms {
        Some(bounds) => {
            let bounds = bounds.in_group_order();
            std::array::from_fn(|i| clip_scale(norms[i], bounds[i]))
        }
        None => {
            let base = config.learning_rates.in_group_order();
            let factors = config.rate_factors(step);
            let trains: [bool; 4] = std::array::from_fn(|i| base[i] * factors[i] != 0.0);
            let trained = if trains.iter().all(|&t| t) {
                whole
            } else {
                (0..4)
                    .filter(|&i| trains[i])
                    .map(|i| norms[i] * norms[i])
                    .sum::<f64>()
                    .sqrt()
            };
            [clip_scale(trained, config.max_grad_norm); 4]
        }
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
            group_clip_scales(&transition_only, 0, whole, &groups),
            [1.0, 1.0, 0.4, 1.0]
        );
        let all = TrainConfig {
            max_group_grad_norms: Some(GroupBounds::all(8.0)),
            ..TrainConfig::paper_ddssm()
        };
        assert_eq!(
            group_clip_scales(&all, 0, whole, &groups),
            [0.8, 0.4, 1.0, 1.0]
        );
        // The whole gradient's bound scales every group alike; no bound, nothing.
        let whole_bound = TrainConfig {
            max_grad_norm: Some(11.45),
            ..TrainConfig::paper_ddssm()
        };
        assert_eq!(group_clip_scales(&whole_bound, 0, whole, &groups), [0.5; 4]);
        assert_eq!(
            group_clip_scales(&TrainConfig::paper_ddssm(), 0, whole, &groups),
            [1.0; 4]
        );
    }

    /// With a group frozen the whole gradient's bound applies to the groups that train: by a
    /// learning rate of 0, or by an alternation's phase.
    #[test]
    fn the_whole_bound_counts_only_the_groups_that_train() {
        let groups = GroupNorms {
            encoder: 3.0,
            decoder: 20.0,
            transition: 4.0,
            zinit: 0.0,
        };
        let whole = (9.0f64 + 400.0 + 16.0).sqrt();
        let bound = TrainConfig {
            max_grad_norm: Some(2.5),
            ..TrainConfig::paper_ddssm()
        };
        assert_eq!(
            group_clip_scales(&bound, 0, whole, &groups),
            [2.5 / whole; 4]
        );
        // The decoder frozen: the encoder and transition's norm is 5.
        let frozen = TrainConfig {
            learning_rates: crate::LearningRates {
                decoder: 0.0,
                ..bound.learning_rates
            },
            ..bound
        };
        assert_eq!(group_clip_scales(&frozen, 0, whole, &groups), [0.5; 4]);
        // An encoder phase: only the encoder's 3 counts.
        let alternating = TrainConfig {
            steps: 10,
            alternation: Some(crate::Alternation {
                start: 0,
                end: None,
                encoder_steps: 2,
                model_steps: 2,
                encoder_rate_factor: 1.0,
            }),
            ..bound
        };
        assert_eq!(
            group_clip_scales(&alternating, 1, whole, &groups),
            [2.5 / 3.0; 4]
        );
        // A model phase: the decoder, transition and VHP's.
        assert_eq!(
            group_clip_scales(&alternating, 2, whole, &groups),
            [2.5 / (400.0f64 + 16.0).sqrt(); 4]
        );
    }
}
