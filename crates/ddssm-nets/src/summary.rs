//! The future summary of the encoder (App. H.4, Eq. 21): `h_t` summarises `x_{t:T}`.
//!
//! Per step, `[x_t ⊙ m_t, time embedding, m_t, static]` → linear to `C_summary` → reversed in time
//! → a multi-layer GRU → reversed back. Missing observations enter only through the mask
//! (their values are zeroed), and `h_t` depends only on steps `≥ t`.

use candle_core::{Tensor, D};
use candle_nn::{rnn::GRUConfig, VarBuilder};
use ddssm_tensor_ops::{reverse_time, time_embedding};
use serde::{Deserialize, Serialize};

use crate::{check_config, check_shape, gru_sequence, require, Dense, Result};

/// Configuration; the defaults are the paper's (Table 1: 3 GRU layers × 16, no time embedding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FutureSummaryConfig {
    /// `C_summary`, the width of `h_t` and of every GRU layer.
    pub hidden: usize,
    /// Number of stacked GRU layers.
    pub layers: usize,
    /// Width of the absolute-time embedding fed per step (0 disables it).
    pub time_embedding_dim: usize,
}

impl Default for FutureSummaryConfig {
    fn default() -> Self {
        Self {
            hidden: 16,
            layers: 3,
            time_embedding_dim: 0,
        }
    }
}

/// The built module for `D`-dimensional observations and `static_dim` static covariates.
#[derive(Debug, Clone)]
pub struct FutureSummary {
    config: FutureSummaryConfig,
    obs_dim: usize,
    static_dim: usize,
    input_projection: Dense,
    grus: Vec<candle_nn::GRU>,
}

impl FutureSummary {
    /// Parameters `input_projection`, `gru0`, `gru1`, ….
    pub fn new(
        config: &FutureSummaryConfig,
        obs_dim: usize,
        static_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        check_config(
            config.hidden >= 1,
            "summary.hidden",
            config.hidden,
            "an integer ≥ 1",
        )?;
        check_config(
            config.layers >= 1,
            "summary.layers",
            config.layers,
            "an integer ≥ 1",
        )?;
        let input = 2 * obs_dim + config.time_embedding_dim + static_dim;
        let grus = (0..config.layers)
            .map(|i| {
                candle_nn::gru(
                    config.hidden,
                    config.hidden,
                    GRUConfig::default(),
                    vb.pp(format!("gru{i}")),
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            config: *config,
            obs_dim,
            static_dim,
            input_projection: Dense::new(input, config.hidden, vb.pp("input_projection"))?,
            grus,
        })
    }

    /// `x`, `mask`: `[B, T, D]` (mask 1 = observed; `None` = all observed); `statics`:
    /// `[B, E_static]`. Returns `h_{1:T}`, `[B, T, C_summary]`.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        statics: Option<&Tensor>,
    ) -> Result<Tensor> {
        let dims = x.dims();
        check_shape(
            dims.len() == 3 && dims[2] == self.obs_dim,
            "future summary x",
            format!("[B, T, {}]", self.obs_dim),
            dims,
        )?;
        let (b, t) = (dims[0], dims[1]);
        let mask = match mask {
            Some(m) => {
                check_shape(
                    m.dims() == dims,
                    "observation mask",
                    format!("{dims:?}"),
                    m.dims(),
                )?;
                m.clone()
            }
            None => x.ones_like()?,
        };
        let mut parts = vec![(x * &mask)?, mask];
        if self.config.time_embedding_dim > 0 {
            let dim = self.config.time_embedding_dim;
            let emb = time_embedding(t, dim, 10_000.0, x.dtype(), x.device())?;
            parts.push(emb.unsqueeze(0)?.broadcast_as((b, t, dim))?.contiguous()?);
        }
        if self.static_dim > 0 {
            let s = require("static covariates", statics, &[b, self.static_dim])?;
            parts.push(
                s.unsqueeze(1)?
                    .broadcast_as((b, t, self.static_dim))?
                    .contiguous()?,
            );
        }
        let features = self
            .input_projection
            .forward(&Tensor::cat(&parts, D::Minus1)?)?;
        let mut h = reverse_time(&features, 1)?;
        for gru in &self.grus {
            h = gru_sequence(gru, &h)?;
        }
        Ok(reverse_time(&h, 1)?)
    }
}
