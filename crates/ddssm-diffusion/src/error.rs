//! The error type of `ddssm-diffusion`.

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An error from the shared tensor operations.
    #[error(transparent)]
    TensorOps(#[from] ddssm_tensor_ops::Error),

    /// A configuration value outside its allowed range.
    #[error("invalid {field} = {value}: {allowed}")]
    InvalidConfig {
        /// The config field, as written in a TOML file.
        field: &'static str,
        /// The value that was given.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },

    /// An error raised by the network behind a [`crate::Denoiser`] (its own error type, boxed).
    #[error("denoiser network: {0}")]
    Network(Box<dyn std::error::Error + Send + Sync>),

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
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
