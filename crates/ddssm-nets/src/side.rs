//! Side information (App. H.2): what each residual block is told besides its input.
//!
//! The paper builds a tensor `S ∈ R^{E_side × H × L}` by concatenating a temporal part
//! (time embeddings, dynamic covariates, embedded masks: `(E_time + E_mask, L)`, the same for every
//! feature `h`) and a static part (`(E_static, H)`, the same for every step `l`). A 1×1 projection
//! of a concatenation is the sum of the projections of its parts, so [`SideInfo`] keeps the two
//! parts unexpanded — `[B, L, E_temporal]` and `[B, H, E_static]` — and each residual block
//! projects them separately and broadcasts the sum: the same function, without materialising
//! `[B, H, L, E_side]`. Either part may be absent (App. H.5 uses no masks, H.1 no statics).

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use ddssm_tensor_ops::sinusoidal_embedding;
use serde::{Deserialize, Serialize};

use crate::{require, Dense, Result};

/// Side information for one batch, unexpanded.
#[derive(Debug, Clone, Default)]
pub struct SideInfo {
    /// `[B, L, E_temporal]`, broadcast over `H`.
    pub temporal: Option<Tensor>,
    /// `[B, H, E_static]`, broadcast over `L`.
    pub static_: Option<Tensor>,
}

impl SideInfo {
    /// No side information.
    pub fn none() -> Self {
        Self::default()
    }

    /// `E_temporal` (0 when absent).
    pub fn temporal_dim(&self) -> Result<usize> {
        Ok(match &self.temporal {
            Some(t) => t.dim(D::Minus1)?,
            None => 0,
        })
    }

    /// `E_static` (0 when absent).
    pub fn static_dim(&self) -> Result<usize> {
        Ok(match &self.static_ {
            Some(t) => t.dim(D::Minus1)?,
            None => 0,
        })
    }

    /// Each part repeated `times` times along the batch axis (copy `r` of row `i` at `r·B + i`).
    pub fn repeat_batch(&self, times: usize) -> Result<Self> {
        let rep = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(t.as_ref()
                .map(|t| ddssm_tensor_ops::repeat_rows(t, times))
                .transpose()?)
        };
        Ok(Self {
            temporal: rep(&self.temporal)?,
            static_: rep(&self.static_)?,
        })
    }
}

/// Sizes of the temporal side information; the defaults are the paper's (App. F.1: continuous
/// time embeddings disabled, mask embeddings of dimension 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalSideConfig {
    /// Width of the sinusoidal absolute-time embedding `E_time` (0 disables it).
    pub time_embedding_dim: usize,
    /// Width `E_mask` each binary mask channel is embedded to.
    pub mask_dim: usize,
}

impl Default for TemporalSideConfig {
    fn default() -> Self {
        Self {
            time_embedding_dim: 0,
            mask_dim: 8,
        }
    }
}

/// Builds the temporal part `[time embedding | covariates | embedded masks]` (`[B, L, E]`).
#[derive(Debug, Clone)]
pub struct TemporalSide {
    config: TemporalSideConfig,
    covariate_dim: usize,
    mask_channels: usize,
    mask_embedding: Option<Dense>,
}

impl TemporalSide {
    /// A builder for `covariate_dim` dynamic covariates and `mask_channels` binary masks per
    /// step (0 for none); the masks are embedded by one linear layer `mask_embedding`
    /// (`mask_channels → mask_dim`).
    pub fn new(
        config: &TemporalSideConfig,
        covariate_dim: usize,
        mask_channels: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mask_embedding = if mask_channels > 0 && config.mask_dim > 0 {
            Some(Dense::new(
                mask_channels,
                config.mask_dim,
                vb.pp("mask_embedding"),
            )?)
        } else {
            None
        };
        Ok(Self {
            config: *config,
            covariate_dim,
            mask_channels,
            mask_embedding,
        })
    }

    /// The width `E_temporal` of what [`TemporalSide::build`] returns.
    pub fn dim(&self) -> usize {
        self.config.time_embedding_dim
            + self.covariate_dim
            + if self.mask_embedding.is_some() {
                self.config.mask_dim
            } else {
                0
            }
    }

    /// Builds `[B, L, E_temporal]` (or `None` when every part is absent) from
    /// - `times`: the absolute time index of every step, `[B, L]` (needed when time embeddings
    ///   are on);
    /// - `covariates`: `[B, L, V]`;
    /// - `masks`: `[B, L, mask_channels]` of 0/1.
    pub fn build(
        &self,
        batch: usize,
        len: usize,
        times: Option<&Tensor>,
        covariates: Option<&Tensor>,
        masks: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        let mut parts = Vec::new();
        if self.config.time_embedding_dim > 0 {
            let times = require("side information times", times, &[batch, len])?;
            let emb = sinusoidal_embedding(
                &times.flatten_all()?,
                self.config.time_embedding_dim,
                10_000.0,
            )?;
            parts.push(emb.reshape((batch, len, self.config.time_embedding_dim))?);
        }
        if self.covariate_dim > 0 {
            parts.push(
                require("covariates", covariates, &[batch, len, self.covariate_dim])?.clone(),
            );
        }
        if let Some(embed) = &self.mask_embedding {
            parts.push(embed.forward(require(
                "masks",
                masks,
                &[batch, len, self.mask_channels],
            )?)?);
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Tensor::cat(&parts, D::Minus1)?),
        })
    }
}
