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

use crate::{
    check_shape, Dense, ResidualStack, ResidualStackConfig, Result, SideInfo, StackWeights,
};

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
        let y = self.stack.forward(&self.lift(input)?, side, None)?;
        self.pool(&self.project(&y)?)
    }

    /// The residual stack's weights cut once for many calls of [`ContextProducer::prefix`] and
    /// [`ContextProducer::forward_with_prefix`] on the same parameters (the encoder's `T`
    /// sequential steps; [`ddssm_nets::ResidualBlock::weights`](crate::ResidualBlock::weights)).
    pub fn weights(&self) -> Result<ContextWeights> {
        Ok(ContextWeights(self.stack.weights()?))
    }

    /// Whether [`ContextProducer::prefix`] and [`ContextProducer::forward_with_prefix`] apply:
    /// every time mixer is a causal convolution or the identity.
    pub fn supports_prefix(&self) -> bool {
        self.stack.supports_suffix()
    }

    /// The work on the first `P` slots of inputs `[B, H_seq, P]` (`P < L`), which a causal time
    /// mixer lets [`ContextProducer::forward_with_prefix`] reuse for every continuation of them:
    /// the encoder's summary slot is shared by all of a sequence's chains. `side` covers the `P`
    /// slots; `weights` from [`ContextProducer::weights`]. Fails where
    /// [`ContextProducer::supports_prefix`] is false.
    pub fn prefix(
        &self,
        weights: &ContextWeights,
        input: &Tensor,
        side: &SideInfo,
    ) -> Result<ContextPrefix> {
        let dims = input.dims();
        check_shape(
            self.supports_prefix()
                && dims.len() == 3
                && dims[1] == self.h_seq
                && dims[2] >= 1
                && dims[2] < self.len,
            "context producer prefix (a causal time mixer)",
            format!("[B, {}, P] with 1 ≤ P < {}", self.h_seq, self.len),
            dims,
        )?;
        let (y, block_inputs) =
            self.stack
                .forward_keeping_inputs(&weights.0, &self.lift(input)?, side)?;
        Ok(ContextPrefix {
            block_inputs,
            output: self.project(&y)?,
        })
    }

    /// [`ContextProducer::forward`] of inputs whose first `P` slots `prefix` (over `B` rows)
    /// already holds: `input` `[repeat·B, H_seq, L − P]` is the rest, row `r·B + b` continuing
    /// prefix row `b`, and `side` covers those `L − P` slots. Returns `[repeat·B, H_seq·C]`, with
    /// the bits of [`ContextProducer::forward`] on the joined input. `weights` from
    /// [`ContextProducer::weights`].
    pub fn forward_with_prefix(
        &self,
        weights: &ContextWeights,
        prefix: &ContextPrefix,
        repeat: usize,
        input: &Tensor,
        side: &SideInfo,
    ) -> Result<Tensor> {
        let dims = input.dims();
        let (b, p) = (prefix.batch()?, prefix.slots()?);
        check_shape(
            dims.len() == 3
                && dims[0] == repeat * b
                && dims[1] == self.h_seq
                && dims[2] + p == self.len,
            "context producer input after a prefix",
            format!("[{}, {}, {}]", repeat * b, self.h_seq, self.len - p),
            dims,
        )?;
        let y = self.stack.forward_suffix(
            &weights.0,
            &prefix.block_inputs,
            repeat,
            &self.lift(input)?,
            side,
        )?;
        let head = ddssm_tensor_ops::repeat_rows(&prefix.output, repeat)?;
        self.pool(&Tensor::cat(&[&head, &self.project(&y)?], 2)?)
    }

    /// The input projection: `[B, H, L]` → `[B, H, L, C]`.
    fn lift(&self, input: &Tensor) -> Result<Tensor> {
        let h0 = self.input_projection.forward(&input.unsqueeze(3)?)?;
        Ok(ddssm_tensor_ops::relu(&h0)?)
    }

    /// The output projection of the stack's skip sum.
    fn project(&self, y: &Tensor) -> Result<Tensor> {
        Ok(ddssm_tensor_ops::relu(&self.output_projection.forward(y)?)?)
    }

    /// The pooling over time: `[B, H, L, C]` → `[B, H·C]`.
    fn pool(&self, y: &Tensor) -> Result<Tensor> {
        let b = y.dim(0)?;
        let pooled = ddssm_tensor_ops::time_pool(y, &self.pool_weight, &self.pool_bias)?;
        Ok(pooled.reshape((b, self.h_seq * self.channels))?)
    }
}

/// A context producer's work on the first `P` slots of a batch of inputs
/// ([`ContextProducer::prefix`]), to be continued by [`ContextProducer::forward_with_prefix`].
#[derive(Debug, Clone)]
pub struct ContextPrefix {
    /// Each residual block's input at the `P` slots, `[B, H, P, C]`.
    block_inputs: Vec<Tensor>,
    /// The output projection's activations at the `P` slots, `[B, H, P, C]`.
    output: Tensor,
}

impl ContextPrefix {
    /// The batch size `B`.
    pub fn batch(&self) -> Result<usize> {
        Ok(self.output.dim(0)?)
    }

    /// The number of slots `P`.
    pub fn slots(&self) -> Result<usize> {
        Ok(self.output.dim(2)?)
    }
}

/// A context producer's residual-stack weights cut once for many calls on the same parameters
/// ([`ContextProducer::weights`]).
#[derive(Debug, Clone)]
pub struct ContextWeights(StackWeights);
