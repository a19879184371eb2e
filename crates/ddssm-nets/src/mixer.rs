//! Time and feature mixers of the residual block (App. H.1: CSDI's two transformer layers,
//! abstracted so that cheaper operations can replace attention when the sequence is short).
//!
//! All tensors are channels-last: `[B, H, L, C]` (batch, feature axis, time axis, channels).
//!
//! - A **convolution** of kernel `k` along an axis is written as one matmul on the `k` shifted
//!   copies concatenated along the channels (`[…, k·C] → […, C]`): exact, with plain-op
//!   gradients, and fast for the paper's tiny channel counts (CANDLE-NOTES). Along time it is
//!   causal (position `l` sees `l−k+1 … l`, zero-padded on the left), so in the denoiser the target
//!   step — the last one — sees its history; along features it pads like PyTorch's `'same'`
//!   (`⌊(k−1)/2⌋` before, the rest after).
//! - The **GRU** time mixer runs one GRU over `L` for every `(b, h)` row.
//! - **Identity** passes the input through.

use candle_core::Tensor;
use candle_nn::{rnn::GRUConfig, VarBuilder, RNN};
use serde::{Deserialize, Serialize};

use crate::{check_config, Dense, Result};

/// The time mixer (along `L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TimeMixerConfig {
    /// A causal, length-preserving convolution over time.
    Conv {
        /// Kernel size (the paper: 2).
        kernel: usize,
    },
    /// A GRU over time.
    Gru,
    /// No mixing.
    Identity,
}

/// The feature mixer (along `H`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureMixerConfig {
    /// A length-preserving convolution over features.
    Conv {
        /// Kernel size (the paper: 2).
        kernel: usize,
    },
    /// No mixing.
    Identity,
}

impl TimeMixerConfig {
    /// Checks the kernel size.
    pub fn validate(&self) -> Result<()> {
        if let Self::Conv { kernel } = self {
            check_config(*kernel >= 1, "time_mixer.kernel", kernel, "an integer ≥ 1")?;
        }
        Ok(())
    }
}

impl FeatureMixerConfig {
    /// Checks the kernel size.
    pub fn validate(&self) -> Result<()> {
        if let Self::Conv { kernel } = self {
            check_config(
                *kernel >= 1,
                "feature_mixer.kernel",
                kernel,
                "an integer ≥ 1",
            )?;
        }
        Ok(())
    }
}

/// A length-preserving convolution along one axis of a channels-last tensor.
#[derive(Debug, Clone)]
pub struct AxisConv {
    axis: usize,
    kernel: usize,
    pad_before: usize,
    proj: Dense,
}

impl AxisConv {
    /// A convolution along `axis` (1 = H, 2 = L) with `pad_before` zeros before the sequence and
    /// `kernel − 1 − pad_before` after; parameters `proj.weight` `[C, k·C]`, `proj.bias`.
    pub fn new(
        axis: usize,
        kernel: usize,
        pad_before: usize,
        channels: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            axis,
            kernel,
            pad_before,
            proj: Dense::new(kernel * channels, channels, vb.pp("proj"))?,
        })
    }

    /// Applies the convolution to `x` (`[B, H, L, C]`).
    ///
    /// Taps whose shifted copy lies entirely in the zero padding (`|i − pad_before| ≥ n`, e.g.
    /// the past tap of a causal kernel-2 convolution over a length-1 sequence) contribute nothing
    /// and are skipped: a single remaining tap at offset 0 is a plain 1×1 projection, anything else
    /// is [`ddssm_tensor_ops::axis_conv`] (one fused op).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None)
    }

    /// [`AxisConv::forward`] taking a tap's weights from `taps` where one tap is used alone
    /// (else cut from the weight for this call); the same bits.
    pub fn forward_with(&self, x: &Tensor, taps: Option<&ConvTaps>) -> Result<Tensor> {
        if self.kernel == 1 {
            return self.proj.forward(x);
        }
        let n = x.dim(self.axis)?;
        let valid: Vec<usize> = (0..self.kernel)
            .filter(|&i| i.abs_diff(self.pad_before) < n)
            .collect();
        if let [only] = valid[..] {
            // One tap with offset 0 — a plain 1×1 projection with that tap's weights.
            if only == self.pad_before {
                let w = self.tap(only, taps)?;
                return Ok(ddssm_tensor_ops::linear(x, &w, self.proj.bias())?);
            }
        }
        let bias = self
            .proj
            .bias()
            .expect("AxisConv projections are built with a bias");
        Ok(ddssm_tensor_ops::axis_conv(
            x,
            self.proj.weight(),
            bias,
            self.axis,
            self.pad_before,
        )?)
    }

    /// Every tap's `[C, C]` weights, cut from the weight `[C, k·C]` and made contiguous, to be
    /// passed to many calls on the same parameters ([`AxisConv::forward_with`],
    /// [`AxisConv::forward_after`]): each cut is an autograd node whose backward pass pads its
    /// gradient back to the whole weight, so cutting once per sequence of calls (the encoder's
    /// `T` sequential steps) instead of once per call removes `T − 1` of them.
    pub fn taps(&self) -> Result<ConvTaps> {
        let w = self.proj.weight();
        let c = w.dim(0)?;
        let taps = (0..self.kernel)
            .map(|i| Ok(w.narrow(1, i * c, c)?.contiguous()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConvTaps(taps))
    }

    /// Tap `i`'s weights `[C, C]`: from `taps`, or a view of the weight's columns.
    fn tap(&self, i: usize, taps: Option<&ConvTaps>) -> Result<Tensor> {
        match taps {
            Some(taps) => Ok(taps.0[i].clone()),
            None => {
                let w = self.proj.weight();
                let c = w.dim(0)?;
                Ok(w.narrow(1, i * c, c)?)
            }
        }
    }
}

/// An [`AxisConv`]'s taps cut from its weight once ([`AxisConv::taps`]): tap `i` holds columns
/// `i·C … (i+1)·C − 1` of the weight, contiguous.
#[derive(Debug, Clone)]
pub struct ConvTaps(Vec<Tensor>);

impl AxisConv {
    /// A causal convolution along time (axis 2) evaluated at the slots of `x` (`[R·B, H, L_s,
    /// C]`) that follow the `P` slots of `prefix` (`[B, H, P, C]`; prefix row `b` precedes rows
    /// `r·B + b` of `x`), with the bits of [`AxisConv::forward`] on the joined slots. For the
    /// paper's kernel 2 and one slot after the prefix, the past tap and the bias are applied to
    /// the `B` prefix rows only (`(b + W₀x_{P−1}) + W₁x_P`, the forward pass's order); otherwise
    /// the repeated prefix and `x` are joined, convolved and cut.
    /// The taps' weights come from `taps` where given (else they are cut for this call).
    pub fn forward_after(
        &self,
        prefix: &Tensor,
        x: &Tensor,
        repeat: usize,
        taps: Option<&ConvTaps>,
    ) -> Result<Tensor> {
        let p = prefix.dim(2)?;
        if self.axis == 2 && self.kernel == 2 && self.pad_before == 1 && x.dim(2)? == 1 {
            let past = ddssm_tensor_ops::linear(
                &prefix.narrow(2, p - 1, 1)?,
                &self.tap(0, taps)?,
                self.proj.bias(),
            )?;
            let past = ddssm_tensor_ops::repeat_rows(&past, repeat)?;
            return Ok(ddssm_tensor_ops::linear_accumulate(
                x,
                &self.tap(1, taps)?,
                None,
                &past,
            )?);
        }
        let joined = Tensor::cat(&[&ddssm_tensor_ops::repeat_rows(prefix, repeat)?, x], 2)?;
        Ok(self.forward(&joined)?.narrow(2, p, x.dim(2)?)?)
    }
}

/// A built time mixer.
#[derive(Debug, Clone)]
pub enum TimeMixer {
    /// See [`TimeMixerConfig::Conv`].
    Conv(AxisConv),
    /// See [`TimeMixerConfig::Gru`].
    Gru(candle_nn::GRU),
    /// See [`TimeMixerConfig::Identity`].
    Identity,
}

impl TimeMixer {
    /// Builds the mixer for `channels` channels.
    pub fn new(config: &TimeMixerConfig, channels: usize, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        Ok(match *config {
            TimeMixerConfig::Conv { kernel } => {
                Self::Conv(AxisConv::new(2, kernel, kernel - 1, channels, vb)?)
            }
            TimeMixerConfig::Gru => Self::Gru(candle_nn::gru(
                channels,
                channels,
                GRUConfig::default(),
                vb.pp("gru"),
            )?),
            TimeMixerConfig::Identity => Self::Identity,
        })
    }

    /// Mixes `x` (`[B, H, L, C]`) along `L`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None)
    }

    /// [`TimeMixer::forward`] with a convolution's taps cut beforehand ([`TimeMixer::taps`]).
    pub fn forward_with(&self, x: &Tensor, taps: Option<&ConvTaps>) -> Result<Tensor> {
        match self {
            Self::Conv(c) => c.forward_with(x, taps),
            Self::Gru(gru) => {
                let (b, h, l, c) = x.dims4()?;
                Ok(gru_sequence(gru, &x.reshape((b * h, l, c))?)?.reshape((b, h, l, c))?)
            }
            Self::Identity => Ok(x.clone()),
        }
    }

    /// A convolution's taps, cut once for many calls ([`AxisConv::taps`]); `None` for the others.
    pub fn taps(&self) -> Result<Option<ConvTaps>> {
        match self {
            Self::Conv(c) => c.taps().map(Some),
            _ => Ok(None),
        }
    }

    /// Whether the mixer is causal without state, so that [`TimeMixer::forward_after`] applies
    /// (a convolution or the identity, not a GRU).
    pub fn continues_prefix(&self) -> bool {
        !matches!(self, Self::Gru(_))
    }

    /// The mixer's output at the slots of `x` (`[R·B, H, L_s, C]`) that follow the slots of
    /// `prefix` (`[B, H, P, C]`, prefix row `b` preceding rows `r·B + b`), with the bits of
    /// [`TimeMixer::forward`] on the joined slots ([`AxisConv::forward_after`], with `taps` as
    /// there). Fails for a GRU.
    pub fn forward_after(
        &self,
        prefix: &Tensor,
        x: &Tensor,
        repeat: usize,
        taps: Option<&ConvTaps>,
    ) -> Result<Tensor> {
        match self {
            Self::Conv(c) => c.forward_after(prefix, x, repeat, taps),
            Self::Identity => Ok(x.clone()),
            Self::Gru(_) => Err(crate::Error::InvalidConfig {
                field: "time_mixer.kind",
                value: "gru".into(),
                allowed: "conv or identity, to continue a prefix".into(),
            }),
        }
    }
}

/// Runs `gru` over `x` (`[N, L, C_in]`, batch first) and returns every hidden state, `[N, L, C]`.
pub fn gru_sequence(gru: &candle_nn::GRU, x: &Tensor) -> Result<Tensor> {
    let states = gru.seq(x)?;
    let hs: Vec<Tensor> = states.into_iter().map(|s| s.h).collect();
    Ok(Tensor::stack(&hs, 1)?)
}

/// A built feature mixer.
#[derive(Debug, Clone)]
pub enum FeatureMixer {
    /// See [`FeatureMixerConfig::Conv`].
    Conv(AxisConv),
    /// See [`FeatureMixerConfig::Identity`].
    Identity,
}

impl FeatureMixer {
    /// Builds the mixer for `channels` channels.
    pub fn new(config: &FeatureMixerConfig, channels: usize, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        Ok(match *config {
            FeatureMixerConfig::Conv { kernel } => {
                Self::Conv(AxisConv::new(1, kernel, (kernel - 1) / 2, channels, vb)?)
            }
            FeatureMixerConfig::Identity => Self::Identity,
        })
    }

    /// Mixes `x` (`[B, H, L, C]`) along `H`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None)
    }

    /// [`FeatureMixer::forward`] with a convolution's taps cut beforehand
    /// ([`FeatureMixer::taps`]).
    pub fn forward_with(&self, x: &Tensor, taps: Option<&ConvTaps>) -> Result<Tensor> {
        match self {
            Self::Conv(c) => c.forward_with(x, taps),
            Self::Identity => Ok(x.clone()),
        }
    }

    /// A convolution's taps, cut once for many calls ([`AxisConv::taps`]); `None` for the
    /// identity.
    pub fn taps(&self) -> Result<Option<ConvTaps>> {
        match self {
            Self::Conv(c) => c.taps().map(Some),
            Self::Identity => Ok(None),
        }
    }
}
