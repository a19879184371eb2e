//! # ddssm-model
//!
//! The diffusion-driven state space model (Eq. 1/12) and the DKF baseline, as one [`Model`] with
//! two interchangeable [`Transition`]s, and its ELBO (Eq. 46/53):
//!
//! - [`Encoder`] (App. H.4): the future summary `h_{1:T}` of `x`, then an autoregressive context
//!   producer giving `q_φ(z_t | z_{t−j:t−1}, h_t, u)`; S trajectories per sequence (App. I.4);
//! - [`Decoder`] (App. H.3): diagonal-Gaussian emissions `p_θ(x_t | z_{t−j+1:t}, u)` for all `t` in
//!   one batched call;
//! - [`Transition`]: [`GaussianTransition`] (App. H.5, the DKF) or [`DiffusionTransition`] (the
//!   DDSSM: CSDI denoiser, EDM preconditioning, the Eq. 52 loss and the samplers);
//! - [`Vhp`] (App. G, H.6): the variational hierarchical prior over `z_{1:j}`;
//! - [`ElboTerms`]: every term of Eq. 46 per sequence, the λ-weighted objective `D + λR`
//!   (App. I.2) and the negative ELBO, a bound in nats;
//! - inference: reconstruction, forecasting, the one-step predictive of Sec. 4;
//! - [`Model::log_weights`]: importance weights of whole trajectories, for the importance-weighted
//!   bound on `log p(x)` beyond the ELBO;
//! - [`checkpoint`]: safetensors files whose metadata holds the config, so a file alone rebuilds
//!   the model.
//!
//! Everything runs in the model's (standardised) observation space; [`Standardization`] maps raw
//! data in and out and travels with the model in its checkpoints.

pub mod checkpoint;
mod config;
mod decoder;
mod elbo;
mod elbo_options;
mod encoder;
mod inference;
mod iwae;
mod model;
mod residual;
mod standardize;
mod transition;
mod transition_term;
mod vhp;

pub use config::{
    config_difference, DecoderConfig, DiffusionTransitionConfig, EncoderConfig, EncoderResidual,
    Estimator, GaussianTransitionConfig, LatentScale, ModelConfig, TransitionConfig, VhpConfig,
};
pub use decoder::Decoder;
pub use elbo::{ElboSummary, ElboTerms};
pub use elbo_options::ElboOptions;
pub use encoder::{Encoder, EncoderInputs, Trajectories};
pub use inference::{Forecast, OneStepParts, Reconstruction};
pub use iwae::effective_sample_size;
pub use model::{Batch, Model, ParameterGroups};
pub use standardize::Standardization;
pub use transition::{
    DiffusionTransition, GaussianTransition, Transition, TransitionInput, TransitionLoss,
};
pub use vhp::Vhp;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from the shared tensor operations.
    #[error(transparent)]
    TensorOps(#[from] ddssm_tensor_ops::Error),
    /// An error from a network building block.
    #[error(transparent)]
    Nets(#[from] ddssm_nets::Error),
    /// An error from the diffusion crate.
    #[error(transparent)]
    Diffusion(#[from] ddssm_diffusion::Error),
    /// A tensor argument with the wrong shape.
    #[error("{what}: expected {expected}, got shape {got:?}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The received shape.
        got: Vec<usize>,
    },
    /// Data that cannot be used as it is.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A configuration value outside its allowed range.
    #[error("invalid {field} = {value}: {allowed}")]
    InvalidConfig {
        /// The config field, as written in a TOML file (dotted path).
        field: String,
        /// The value that was given.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// The same error with a configuration field's path placed under `prefix` (a
    /// [`ModelConfig`] nested in a larger config: `ddssm.model` + `order` → `ddssm.model.order`).
    /// Other errors are returned as they are.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Error::InvalidConfig {
                field,
                value,
                allowed,
            } => Error::InvalidConfig {
                field: format!("{prefix}.{field}"),
                value,
                allowed,
            },
            other => other,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check_config(
    ok: bool,
    field: &str,
    value: impl std::fmt::Display,
    allowed: &str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: field.to_string(),
            value: value.to_string(),
            allowed: allowed.to_string(),
        })
    }
}

pub(crate) fn check_shape(
    ok: bool,
    what: &'static str,
    expected: impl Into<String>,
    got: &[usize],
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected: expected.into(),
            got: got.to_vec(),
        })
    }
}

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
