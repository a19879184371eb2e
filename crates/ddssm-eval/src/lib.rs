//! # ddssm-eval
//!
//! Simulators with exact references, for judging trained models:
//! - [`BimodalRandomWalk`], the latent random walk with bimodal steps of the paper's Section 4;
//! - [`LinearGaussianSsm`] with its exact Kalman-filter log-likelihood, against which any ELBO
//!   must be a bound;
//! - the exact one-step predictive of the bimodal walk by a Gaussian-sum filter
//!   ([`BimodalRandomWalk::exact_predictive`]);
//! - metrics: the histogram JSD with its noise floor ([`JsdHistogram`]), the CRPS, mean ± SEM;
//! - forecast scores from sample paths: [`crps_fair`], [`energy_score`], [`covered`],
//!   [`mase_scale`];
//! - [`forecasting`]: a panel's forecast windows scored per step and overall (CRPS, CRPS-sum,
//!   energy score, MAE, RMSE, MASE, coverage), with the last-value and seasonal-naive baselines;
//! - [`plot`] (feature `plot`, default): fan charts as PNG and SVG with a bundled font;
//! - [`diagnosis`]: where a model's one-step predictive gets its width (encoder, transition,
//!   emission) beside the exact values; [`encoder_lookahead`]: how far ahead the encoder reads;
//! - scoring a model on a set of sequences ([`score_one_step`], [`negative_elbo_per_sequence`],
//!   the importance-weighted bound [`iwae_per_sequence`])
//!   and the LOCF baseline ([`locf_samples`]).
//!
//! Series are plain [`Series`] values (`[N, T, D]`, row-major f64) that convert to candle tensors.

mod bimodal;
pub mod diagnosis;
mod forecast_metrics;
pub mod forecasting;
mod linear_gaussian;
mod lookahead;
mod metrics;
mod onestep;
#[cfg(feature = "plot")]
pub mod plot;
mod predictive;
mod scoring;
mod series;

pub use bimodal::BimodalRandomWalk;
pub use forecast_metrics::{covered, crps_fair, energy_score, mase_scale, sorted_quantile};
pub use linear_gaussian::LinearGaussianSsm;
pub use lookahead::{encoder_lookahead, Lookahead};
pub use metrics::{crps, sample_mixture, spearman, JsdHistogram, MeanSem, Tails};
pub use onestep::{
    model_predictive_samples, model_predictive_samples_with_progress, paper_reference,
    score_sequence, SequenceScores,
};
pub use predictive::{ExactPredictive, PRUNE};
pub use scoring::{
    iwae_per_sequence, locf_samples, log_mean_exp, negative_elbo_per_sequence, score_one_step,
    ModelScores, OUT_OF_RANGE_WARNING,
};
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
    /// An error from the shared tensor operations.
    #[error(transparent)]
    TensorOps(#[from] ddssm_tensor_ops::Error),
    /// An error from the model.
    #[error(transparent)]
    Model(#[from] ddssm_model::Error),
    /// A figure that could not be drawn or written.
    #[error("{0}")]
    Figure(String),
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

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
