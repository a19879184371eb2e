//! CSDI's residual block (Tashiro et al. 2021; App. H.1), channels-last.
//!
//! For input `x` (`[B, H, L, C]`):
//! `y = x (+ diffusion_projection(e_diff))` → time mixer → feature mixer → `mid_projection`
//! (`C → 2C`) `+ cond_projection(S)` (`E_side → 2C`) → `σ(gate) ⊙ tanh(filter)` →
//! `output_projection` (`C → 2C`) split into `residual, skip`; the block returns
//! `((x + residual)/√2, skip)`. A stack sums its skips and scales by `1/√(number of blocks)`.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::{
    ConvTaps, Dense, FeatureMixer, FeatureMixerConfig, Result, SideInfo, TimeMixer, TimeMixerConfig,
};

/// A per-row diffusion-level embedding stored once per distinct level: row `r` uses
/// `table[index[r]]`, or `table[r]` without an index. Rows of a denoiser call share few levels
/// (one per call when sampling), so every projection of the embedding runs on the table only.
#[derive(Debug, Clone)]
pub struct LevelEmbedding {
    /// `[U, E]`: the embedding of each distinct level.
    pub table: Tensor,
    /// `[B]` (u32): each row's level, a row of `table`.
    pub index: Option<Tensor>,
}

impl LevelEmbedding {
    /// `proj` of every row's embedding, `[B, out]`: projected once per distinct level, then
    /// gathered.
    pub fn project(&self, proj: &Dense) -> Result<Tensor> {
        let table = proj.forward(&self.table)?;
        Ok(match &self.index {
            Some(index) => table.index_select(index, 0)?,
            None => table,
        })
    }
}

/// Configuration of a stack of residual blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualStackConfig {
    /// Number of blocks.
    pub layers: usize,
    /// Channels `C`.
    pub channels: usize,
    /// Mixer along time.
    pub time_mixer: TimeMixerConfig,
    /// Mixer along features.
    pub feature_mixer: FeatureMixerConfig,
}

impl ResidualStackConfig {
    /// `layers` blocks of 16 channels with Conv(k = 2) time and feature mixers: the paper's
    /// encoder, decoder and denoiser stacks (App. F, Tables 1–2).
    pub fn paper(layers: usize) -> Self {
        Self {
            layers,
            channels: 16,
            time_mixer: TimeMixerConfig::Conv { kernel: 2 },
            feature_mixer: FeatureMixerConfig::Conv { kernel: 2 },
        }
    }
}

/// One residual block; see the module documentation.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    diffusion_projection: Option<Dense>,
    time_mixer: TimeMixer,
    feature_mixer: FeatureMixer,
    mid_projection: Dense,
    cond_temporal: Option<Dense>,
    cond_static: Option<Dense>,
    output_projection: Dense,
}

impl ResidualBlock {
    /// A block with `channels` channels, side information of widths `temporal_dim` and
    /// `static_dim` (0 = absent), and a diffusion-embedding projection from `diffusion_dim`
    /// (0 = no diffusion embedding, as in the context producer).
    pub fn new(
        config: &ResidualStackConfig,
        temporal_dim: usize,
        static_dim: usize,
        diffusion_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let c = config.channels;
        let cond = vb.pp("cond_projection");
        Ok(Self {
            diffusion_projection: if diffusion_dim > 0 {
                Some(Dense::new(diffusion_dim, c, vb.pp("diffusion_projection"))?)
            } else {
                None
            },
            time_mixer: TimeMixer::new(&config.time_mixer, c, vb.pp("time_mixer"))?,
            feature_mixer: FeatureMixer::new(&config.feature_mixer, c, vb.pp("feature_mixer"))?,
            mid_projection: Dense::kaiming(c, 2 * c, vb.pp("mid_projection"))?,
            cond_temporal: if temporal_dim > 0 {
                Some(Dense::kaiming(temporal_dim, 2 * c, cond.pp("temporal"))?)
            } else {
                None
            },
            cond_static: if static_dim > 0 {
                Some(Dense::kaiming_no_bias(
                    static_dim,
                    2 * c,
                    cond.pp("static"),
                )?)
            } else {
                None
            },
            output_projection: Dense::kaiming(c, 2 * c, vb.pp("output_projection"))?,
        })
    }

    /// `x`: `[B, H, L, C]`; `diffusion_emb`: the rows' level embedding (`E_diff` wide) when the
    /// block has a diffusion projection; `skip_sum`: the skips of the blocks before this one,
    /// summed (None for the first). Returns `(next x, skip_sum + this block's skip)`, both
    /// `[B, H, L, C]`.
    pub fn forward(
        &self,
        x: &Tensor,
        side: &SideInfo,
        diffusion_emb: Option<&LevelEmbedding>,
        skip_sum: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        not_last(self.forward_as(x, side, diffusion_emb, skip_sum, None, None)?)
    }

    /// [`ResidualBlock::forward`] in a stack: `last` and `weights` as in
    /// [`ResidualBlock::after_time_mixer`].
    fn forward_as(
        &self,
        x: &Tensor,
        side: &SideInfo,
        diffusion_emb: Option<&LevelEmbedding>,
        skip_sum: Option<&Tensor>,
        last: Option<f64>,
        weights: Option<&BlockWeights>,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let mut y = x.clone();
        if let (Some(proj), Some(e)) = (&self.diffusion_projection, diffusion_emb) {
            y = y.broadcast_add(&e.project(proj)?.unsqueeze(1)?.unsqueeze(1)?)?;
        }
        let y = self
            .time_mixer
            .forward_with(&y, weights.and_then(|w| w.time.as_ref()))?;
        self.after_time_mixer(&y, x, side, skip_sum, last, weights)
    }

    /// [`ResidualBlock::forward`] on the last slots of the time axis only, for a block without a
    /// diffusion projection whose time mixer is causal: `x` (`[R·B, H, L_s, C]`) holds slots
    /// `P…P+L_s−1`, `prefix` (`[B, H, P, C]`) this block's input at slots `0…P−1`, which the
    /// time mixer reads (prefix row `b` precedes rows `r·B + b` of `x`); `side` and `skip_sum`
    /// cover the `L_s` slots. Every slot's result has the bits of the whole-sequence call's
    /// ([`TimeMixer::forward_after`]; every other part works row by row). `weights`: this
    /// block's weights cut beforehand ([`ResidualBlock::weights`]), else cut for this call.
    pub fn forward_suffix(
        &self,
        prefix: &Tensor,
        repeat: usize,
        x: &Tensor,
        side: &SideInfo,
        skip_sum: Option<&Tensor>,
        weights: Option<&BlockWeights>,
    ) -> Result<(Tensor, Tensor)> {
        not_last(self.forward_suffix_as(prefix, repeat, x, side, skip_sum, None, weights)?)
    }

    /// [`ResidualBlock::forward_suffix`] in a stack: `last` as in
    /// [`ResidualBlock::after_time_mixer`].
    #[allow(clippy::too_many_arguments)]
    fn forward_suffix_as(
        &self,
        prefix: &Tensor,
        repeat: usize,
        x: &Tensor,
        side: &SideInfo,
        skip_sum: Option<&Tensor>,
        last: Option<f64>,
        weights: Option<&BlockWeights>,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let y = self.time_mixer.forward_after(
            prefix,
            x,
            repeat,
            weights.and_then(|w| w.time.as_ref()),
        )?;
        self.after_time_mixer(&y, x, side, skip_sum, last, weights)
    }

    /// The pieces of this block's weights that its ops take separately — the output
    /// projection's residual and skip halves, the mixers' convolution taps — cut once, to be
    /// passed to many calls on the same parameters (the encoder's `T` sequential steps): each
    /// cut is an autograd node whose backward pass pads its gradient back to the whole weight,
    /// so cutting once per ELBO evaluation instead of once per call removes those nodes from
    /// every step but one. The same bits as cutting at each call.
    pub fn weights(&self) -> Result<BlockWeights> {
        Ok(BlockWeights {
            time: self.time_mixer.taps()?,
            feature: self.feature_mixer.taps()?,
            ..self.weights_for_one_call()?
        })
    }

    /// The weights' pieces for a single call: the output projection's halves (views of its
    /// weight and bias); the taps are left to the mixers to cut where they need them (a
    /// whole-sequence convolution takes the whole weight and cuts none).
    fn weights_for_one_call(&self) -> Result<BlockWeights> {
        let (w, b) = (
            self.output_projection.weight(),
            self.output_projection.bias(),
        );
        let c = w.dim(1)?;
        let half = |i: usize| -> Result<(Tensor, Option<Tensor>)> {
            Ok((
                w.narrow(0, i * c, c)?,
                b.map(|b| b.narrow(0, i * c, c)).transpose()?,
            ))
        };
        Ok(BlockWeights {
            time: None,
            feature: None,
            residual: half(0)?,
            skip: half(1)?,
        })
    }

    /// Everything after the time mixer: `y` is the time mixer's output, `x` the block's input.
    /// `last`: the stack's `1/√layers` when this is its last block, whose residual output no
    /// one reads (then `None` is returned for it, and the scale is applied to the skip sum).
    /// `weights`: the weights' pieces cut beforehand ([`ResidualBlock::weights`]), else they are
    /// cut for this call.
    fn after_time_mixer(
        &self,
        y: &Tensor,
        x: &Tensor,
        side: &SideInfo,
        skip_sum: Option<&Tensor>,
        last: Option<f64>,
        weights: Option<&BlockWeights>,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let cut;
        let weights = match weights {
            Some(w) => w,
            None => {
                cut = self.weights_for_one_call()?;
                &cut
            }
        };
        let y = self
            .feature_mixer
            .forward_with(y, weights.feature.as_ref())?;
        let y = self.mid_projection.forward(&y)?;
        let temporal = match (&self.cond_temporal, &side.temporal) {
            (Some(proj), Some(t)) => Some(proj.forward(t)?),
            _ => None,
        };
        let static_ = match (&self.cond_static, &side.static_) {
            (Some(proj), Some(s)) => Some(proj.forward(s)?),
            _ => None,
        };
        let y = ddssm_tensor_ops::gated_with_side(&y, temporal.as_ref(), static_.as_ref())?;
        // The output projection (`C → 2C`) as its residual and skip halves, two `C → C`
        // projections, each added as it is stored: the residual half into the residual update,
        // the skip half into the running sum of skips.
        let (w_res, b_res) = &weights.residual;
        let (w_skip, b_skip) = &weights.skip;
        let next = match last {
            Some(_) => None,
            None => Some(ddssm_tensor_ops::linear_residual(
                &y,
                w_res,
                b_res.as_ref(),
                x,
            )?),
        };
        let b_skip = b_skip.as_ref();
        let sum = match (skip_sum, last) {
            (Some(s), Some(k)) => {
                ddssm_tensor_ops::linear_accumulate_scaled(&y, w_skip, b_skip, s, k)?
            }
            (Some(s), None) => ddssm_tensor_ops::linear_accumulate(&y, w_skip, b_skip, s)?,
            (None, Some(k)) => (ddssm_tensor_ops::linear(&y, w_skip, b_skip)? * k)?,
            (None, None) => ddssm_tensor_ops::linear(&y, w_skip, b_skip)?,
        };
        Ok((next, sum))
    }
}

/// The pieces of a residual block's weights its ops take separately, cut once for many calls
/// ([`ResidualBlock::weights`]).
#[derive(Debug, Clone)]
pub struct BlockWeights {
    /// The time mixer's convolution taps.
    time: Option<ConvTaps>,
    /// The feature mixer's convolution taps.
    feature: Option<ConvTaps>,
    /// The output projection's residual half: weight `[C, C]`, bias `[C]`.
    residual: (Tensor, Option<Tensor>),
    /// The output projection's skip half.
    skip: (Tensor, Option<Tensor>),
}

/// The `(next x, skip sum)` of a block run outside a stack's last position, where the residual
/// output is always computed.
fn not_last((next, sum): (Option<Tensor>, Tensor)) -> Result<(Tensor, Tensor)> {
    Ok((
        next.expect("computed unless the block is a stack's last"),
        sum,
    ))
}

/// A stack of residual blocks whose skips are summed and scaled by `1/√layers`.
#[derive(Debug, Clone)]
pub struct ResidualStack {
    blocks: Vec<ResidualBlock>,
}

impl ResidualStack {
    /// `config.layers` blocks named `block0`, `block1`, ….
    pub fn new(
        config: &ResidualStackConfig,
        temporal_dim: usize,
        static_dim: usize,
        diffusion_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        crate::check_config(
            config.layers >= 1,
            "layers",
            config.layers,
            "an integer ≥ 1",
        )?;
        crate::check_config(
            config.channels >= 1,
            "channels",
            config.channels,
            "an integer ≥ 1",
        )?;
        let blocks = (0..config.layers)
            .map(|i| {
                ResidualBlock::new(
                    config,
                    temporal_dim,
                    static_dim,
                    diffusion_dim,
                    vb.pp(format!("block{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { blocks })
    }

    /// The scaled sum of the blocks' skips, `[B, H, L, C]`.
    pub fn forward(
        &self,
        x: &Tensor,
        side: &SideInfo,
        diffusion_emb: Option<&LevelEmbedding>,
    ) -> Result<Tensor> {
        self.run(x, |block, x, skip, last| {
            block.forward_as(x, side, diffusion_emb, skip, last, None)
        })
    }

    /// Every block's weights cut once for many calls on the same parameters
    /// ([`ResidualBlock::weights`]).
    pub fn weights(&self) -> Result<StackWeights> {
        Ok(StackWeights(
            self.blocks
                .iter()
                .map(ResidualBlock::weights)
                .collect::<Result<_>>()?,
        ))
    }

    /// [`ResidualStack::forward`], also returning each block's input (for
    /// [`ResidualStack::forward_suffix`] on later slots); `weights` from
    /// [`ResidualStack::weights`].
    pub fn forward_keeping_inputs(
        &self,
        weights: &StackWeights,
        x: &Tensor,
        side: &SideInfo,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut inputs = Vec::with_capacity(self.blocks.len());
        let mut weights = weights.blocks();
        let total = self.run(x, |block, x, skip, last| {
            inputs.push(x.clone());
            block.forward_as(x, side, None, skip, last, weights.next())
        })?;
        Ok((total, inputs))
    }

    /// [`ResidualStack::forward`] on the last slots of the time axis
    /// ([`ResidualBlock::forward_suffix`]): `prefix_inputs` holds each block's input at the earlier
    /// slots for `B` rows, as [`ResidualStack::forward_keeping_inputs`] returned them, and `x` has
    /// `repeat·B` rows; `weights` from [`ResidualStack::weights`].
    pub fn forward_suffix(
        &self,
        weights: &StackWeights,
        prefix_inputs: &[Tensor],
        repeat: usize,
        x: &Tensor,
        side: &SideInfo,
    ) -> Result<Tensor> {
        let mut prefixes = prefix_inputs.iter();
        let mut weights = weights.blocks();
        self.run(x, |block, x, skip, last| {
            let prefix = prefixes.next().expect("one prefix per block");
            block.forward_suffix_as(prefix, repeat, x, side, skip, last, weights.next())
        })
    }

    /// Runs `block_forward` through the blocks, summing the skips; the scaled sum. The last
    /// block is told the scale `1/√layers` (its residual output is not computed, and the scale is
    /// applied as its skip is added: `Tensor::affine`'s product, so the separate division's bits).
    fn run(
        &self,
        x: &Tensor,
        mut block_forward: impl FnMut(
            &ResidualBlock,
            &Tensor,
            Option<&Tensor>,
            Option<f64>,
        ) -> Result<(Option<Tensor>, Tensor)>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        let mut skip_sum: Option<Tensor> = None;
        let scale = 1.0 / (self.blocks.len() as f64).sqrt();
        for (i, block) in self.blocks.iter().enumerate() {
            let last = (i + 1 == self.blocks.len()).then_some(scale);
            let (next, sum) = block_forward(block, &x, skip_sum.as_ref(), last)?;
            if let Some(next) = next {
                x = next;
            }
            skip_sum = Some(sum);
        }
        Ok(skip_sum.expect("at least one block"))
    }

    /// Whether every block's time mixer is causal without state, so that later slots can be
    /// computed from earlier slots' block inputs ([`ResidualStack::forward_suffix`]): a causal
    /// convolution or the identity (not a GRU).
    pub fn supports_suffix(&self) -> bool {
        self.blocks
            .iter()
            .all(|b| b.diffusion_projection.is_none() && b.time_mixer.continues_prefix())
    }
}

/// A stack's weights cut once for many calls ([`ResidualStack::weights`]): one
/// [`BlockWeights`] per block.
#[derive(Debug, Clone)]
pub struct StackWeights(Vec<BlockWeights>);

impl StackWeights {
    /// Each block's weights, in the stack's order.
    fn blocks(&self) -> impl Iterator<Item = &BlockWeights> {
        self.0.iter()
    }
}
