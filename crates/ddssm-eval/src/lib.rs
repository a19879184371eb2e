//! # ddssm-eval
//!
//! Simulators with exact references, for judging trained models:
//! - [`BimodalRandomWalk`], the latent random walk with bimodal steps of the paper's Section 4;
//! - [`LinearGaussianSsm`] with its exact Kalman-filter log-likelihood, against which any ELBO
//!   must be a bound.
//!
//! Series are plain [`Series`] values (`[N, T, D]`, row-major f64) that convert to candle tensors.

mod bimodal;
mod linear_gaussian;
mod series;

pub use bimodal::BimodalRandomWalk;
pub use linear_gaussian::LinearGaussianSsm;
pub use series::Series;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check(
    ok: bool,
    field: &'static str,
    value: impl ToString,
    allowed: &str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            value: value.to_string(),
            allowed: allowed.to_string(),
        })
    }
}
