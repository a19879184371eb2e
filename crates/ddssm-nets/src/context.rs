//! The context producer (App. H.2): a CSDI-style network that condenses a short sequence into one
//! context vector. It serves the encoder, the decoder, the Gaussian transition and the VHP.
//!
//! Input `[B, H_seq, L]`, treated as one channel → 1×1 projection + ReLU to `C` channels
//! (`[B, H_seq, L, C]`, channels-last) → residual blocks with side information (no diffusion
//! embedding) → the scaled skip sum → 1×1 projection + ReLU (CSDI's first output projection; the
//! projection back to one channel is omitted, as App. H.2 says) → a grouped convolution over time
//! with one length-`L` kernel per `(h, c)` (`groups = C·H_seq`, kernel `L`) → a flat context
//! vector `[B, H_seq·C]`.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::{check_shape, Dense, ResidualStack, ResidualStackConfig, Result, SideInfo};

/// Configuration of a context producer; the default is the paper's encoder/decoder context
/// (Table 1: 2 layers, 16 channels, Conv(k = 2) time and feature mixers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextProducerConfig {
    /// The residual stack.
    #[serde(flatten)]
    pub stack: ResidualStackConfig,
}

impl Default for ContextProducerConfig {
    fn default() -> Self {
        Self {
            stack: ResidualStackConfig::paper(2),
        }
    }
}

/// A built context producer for inputs of shape `[B, h_seq, len]`.
#[derive(Debug, Clone)]
pub struct ContextProducer {
    h_seq: usize,
    len: usize,
    channels: usize,
    input_projection: Dense,
    stack: ResidualStack,
    output_projection: Dense,
    pool_weight: Tensor,
    pool_bias: Tensor,
}

impl ContextProducer {
    /// Builds the network for inputs `[B, h_seq, len]` with side information of widths
    /// `temporal_dim`, `static_dim` (0 = absent).
    pub fn new(
        config: &ContextProducerConfig,
        h_seq: usize,
        len: usize,
        temporal_dim: usize,
        static_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        crate::check_config(h_seq >= 1, "h_seq", h_seq, "an integer ≥ 1")?;
        crate::check_config(len >= 1, "sequence length", len, "an integer ≥ 1")?;
        let c = config.stack.channels;
        let bound = 1.0 / (len as f64).sqrt();
        let pool = vb.pp("pool");
        Ok(Self {
            h_seq,
            len,
            channels: c,
            input_projection: Dense::kaiming(1, c, vb.pp("input_projection"))?,
            stack: ResidualStack::new(&config.stack, temporal_dim, static_dim, 0, vb.clone())?,
            output_projection: Dense::kaiming(c, c, vb.pp("output_projection"))?,
            pool_weight: pool.get_with_hints(
                (h_seq, len, c),
                "weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            pool_bias: pool.get_with_hints(
                (h_seq, c),
                "bias",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
        })
    }

    /// The width of the context vector, `H_seq·C`.
    pub fn output_dim(&self) -> usize {
        self.h_seq * self.channels
    }

    /// `input`: `[B, H_seq, L]`; returns `[B, H_seq·C]`.
    pub fn forward(&self, input: &Tensor, side: &SideInfo) -> Result<Tensor> {
        let dims = input.dims();
        check_shape(
            dims.len() == 3 && dims[1] == self.h_seq && dims[2] == self.len,
            "context producer input",
            format!("[B, {}, {}]", self.h_seq, self.len),
            dims,
        )?;
        let b = dims[0];
        let h0 = self.input_projection.forward(&input.unsqueeze(3)?)?;
        let h0 = ddssm_tensor_ops::relu(&h0)?;
        let y = self.stack.forward(&h0, side, None)?;
        let y = ddssm_tensor_ops::relu(&self.output_projection.forward(&y)?)?;
        let pooled = ddssm_tensor_ops::time_pool(&y, &self.pool_weight, &self.pool_bias)?;
        Ok(pooled.reshape((b, self.h_seq * self.channels))?)
    }
}
