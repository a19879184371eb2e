//! AdamW with parameter groups and a state we own, so that it can be saved in a checkpoint and a
//! resumed run continues exactly (candle's `AdamW` keeps its moments private; CANDLE-NOTES).
//!
//! For each parameter `θ` with gradient `g`, at step `t` (1-based), as PyTorch's `AdamW`:
//! `θ ← θ(1 − lr·wd)`; `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
//! `θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyperparameters shared by every group (Table 4: weight decay 0.01; PyTorch's betas and ε).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One group of parameters with its learning rate.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// The group's name (`encoder`, `decoder`, `transition`, `zinit`).
    pub name: String,
    /// Its learning rate.
    pub lr: f64,
    /// Its parameters, by name.
    pub params: Vec<(String, Var)>,
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// The optimizer; see the module documentation.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    groups: Vec<(String, f64, Vec<Slot>)>,
    step: usize,
}

impl AdamW {
    /// An optimizer over `groups`, with zero moments.
    pub fn new(groups: Vec<ParamGroup>, config: AdamWConfig) -> Result<Self> {
        let groups = groups
            .into_iter()
            .map(|g| -> Result<_> {
                let slots = g
                    .params
                    .into_iter()
                    .map(|(name, var)| -> Result<Slot> {
                        Ok(Slot {
                            m: var.as_tensor().zeros_like()?,
                            v: var.as_tensor().zeros_like()?,
                            name,
                            var,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((g.name, g.lr, slots))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            groups,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// One update of every parameter that has a gradient in `grads` (groups with learning rate 0
    /// are frozen: neither they nor their moments change).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_scaled(grads, 1.0)
    }

    /// One update with every group's learning rate multiplied by `scale` (a decay schedule,
    /// [`crate::LrDecay`]); weight decay scales with it, as in AdamW's `lr·wd`.
    pub fn step_scaled(&mut self, grads: &GradStore, scale: f64) -> Result<()> {
        self.step_clipped(grads, scale, 1.0)
    }

    /// [`AdamW::step_scaled`] on the gradient multiplied by `grad_scale` (gradient clipping: the
    /// trainer's `max_grad_norm`); at 1 the gradient is used as it is, bit for bit.
    pub fn step_clipped(&mut self, grads: &GradStore, scale: f64, grad_scale: f64) -> Result<()> {
        let scales = vec![grad_scale; self.groups.len()];
        self.step_group_clipped(grads, scale, &scales)
    }

    /// [`AdamW::step_clipped`] with one gradient factor per group, in the groups' order (the
    /// trainer's `max_group_grad_norms`).
    pub fn step_group_clipped(
        &mut self,
        grads: &GradStore,
        scale: f64,
        grad_scales: &[f64],
    ) -> Result<()> {
        let scales = vec![scale; self.groups.len()];
        self.step_groups(grads, &scales, grad_scales)
    }

    /// The general step: group `i`'s learning rate multiplied by `lr_scales[i]` (a decay and an
    /// alternation's phase: [`crate::TrainConfig::rate_factors`]) and its gradient by
    /// `grad_scales[i]`, in the groups' order. A group whose rate is 0 at this step (a rate or a
    /// factor of 0) is frozen for it: neither its parameters nor its moments change.
    pub fn step_groups(
        &mut self,
        grads: &GradStore,
        lr_scales: &[f64],
        grad_scales: &[f64],
    ) -> Result<()> {
        for (what, len) in [
            ("learning-rate", lr_scales.len()),
            ("gradient", grad_scales.len()),
        ] {
            if len != self.groups.len() {
                return Err(Error::State(format!(
                    "{len} {what} factors for {} parameter groups",
                    self.groups.len()
                )));
            }
        }
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (((_, base_lr, slots), &grad_scale), &scale) in
            self.groups.iter_mut().zip(grad_scales).zip(lr_scales)
        {
            let lr = *base_lr * scale;
            // A frozen group: parameters and moments stay as they are.
            if lr == 0.0 {
                continue;
            }
            for slot in slots.iter_mut() {
                let Some(g) = grads.get(slot.var.as_tensor()) else {
                    continue;
                };
                // Gradients computed by candle's backward pass can carry an autograd history
                // back into the step's forward graph; detaching everything the optimizer keeps
                // stops each step's graph from living on in the moments (a leak of the whole
                // graph per step otherwise).
                let g = if grad_scale == 1.0 {
                    g.detach()
                } else {
                    (g.detach() * grad_scale)?
                };
                let theta = slot.var.as_tensor().detach();
                slot.m = ((&slot.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?.detach();
                slot.v = ((&slot.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?.detach();
                let m_hat = (&slot.m / bias1)?;
                let v_hat = (&slot.v / bias2)?;
                let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
                let decayed = (theta * (1.0 - lr * c.weight_decay))?;
                slot.var.set(&(decayed - (update * lr)?)?.detach())?;
            }
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<param>`, `v.<param>`), for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (_, _, slots) in &self.groups {
            for s in slots {
                out.push((format!("m.{}", s.name), s.m.clone()));
                out.push((format!("v.{}", s.name), s.v.clone()));
            }
        }
        out
    }

    /// Restores the moments written by [`AdamW::state_tensors`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for (_, _, slots) in &mut self.groups {
            for s in slots.iter_mut() {
                let get = |key: String| -> Result<Tensor> {
                    let t = state.get(&key).ok_or_else(|| {
                        Error::State(format!("the checkpoint has no optimizer moment {key}"))
                    })?;
                    if t.dims() != s.var.dims() {
                        return Err(Error::State(format!(
                            "optimizer moment {key} has shape {:?}, the parameter {:?}",
                            t.dims(),
                            s.var.dims()
                        )));
                    }
                    Ok(t.to_dtype(s.var.dtype())?.to_device(s.var.device())?)
                };
                s.m = get(format!("m.{}", s.name))?;
                s.v = get(format!("v.{}", s.name))?;
            }
        }
        self.step = step;
        Ok(())
    }

    /// Group names with their learning rates.
    pub fn learning_rates(&self) -> Vec<(String, f64)> {
        self.groups
            .iter()
            .map(|(n, lr, _)| (n.clone(), *lr))
            .collect()
    }
}
