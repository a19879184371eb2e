//! # ddssm-model
//!
//! The diffusion-driven state space model (Eq. 1/12) and the DKF baseline. Today this crate holds
//! [`Standardization`], the per-dimension affine map between raw observations and the standardised
//! space a model is trained in; the encoder, decoder, transitions, VHP and ELBO build on it.

mod standardize;

pub use standardize::Standardization;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
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
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
