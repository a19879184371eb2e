//! # ddssm-nets
//!
//! The network building blocks of App. H, on candle-nn. They know nothing of diffusion losses,
//! ELBOs or state space models: each is a plain network with an `XConfig` holding the paper's
//! sizes as defaults and a constructor taking a `VarBuilder`, so checkpoint tensor names read like
//! the architecture (`block0.mid_projection.weight`, …).
//!
//! All 4-D activations are channels-last, `[B, H, L, C]`, so every 1×1 convolution is one matmul.
//!
//! - [`TimeMixer`] / [`FeatureMixer`]: convolution, GRU or identity along time / features;
//! - [`ResidualBlock`], [`ResidualStack`]: CSDI's gated residual block (App. H.1);
//! - [`SideInfo`], [`TemporalSide`]: side information (App. H.2);
//! - [`ContextProducer`]: a short sequence → one context vector (App. H.2);
//! - [`GaussianHead`]: context → diagonal Gaussian (App. H.3–H.5);
//! - [`FutureSummary`]: the encoder's backward GRU summary `h_t` of `x_{t:T}` (App. H.4);
//! - [`CsdiDenoiser`]: the diffusion transition's denoiser (App. H.1);
//! - [`SeededVarMap`]: parameter initialisation that depends only on `(seed, name)`.

mod block;
mod context;
mod denoiser;
mod dense;
mod error;
mod head;
mod init;
mod mixer;
mod side;
mod summary;

pub use block::{
    BlockWeights, LevelEmbedding, ResidualBlock, ResidualStack, ResidualStackConfig, StackWeights,
};
pub use context::{ContextPrefix, ContextProducer, ContextProducerConfig, ContextWeights};
pub use denoiser::{CsdiDenoiser, CsdiDenoiserConfig};
pub use dense::Dense;
pub(crate) use error::{check_config, check_shape, require};
pub use error::{Error, Result};
pub use head::{GaussianHead, GaussianHeadConfig};
pub use init::SeededVarMap;
pub use mixer::{
    gru_sequence, AxisConv, ConvTaps, FeatureMixer, FeatureMixerConfig, TimeMixer, TimeMixerConfig,
};
pub use side::{SideInfo, TemporalSide, TemporalSideConfig};
pub use summary::{FutureSummary, FutureSummaryConfig};

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
