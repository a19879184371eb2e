//! # ddssm-train
//!
//! Training that does not care which transition a model holds (DESIGN.md §2, App. I):
//! - [`TrainConfig`]: Table 3's tuned settings per model, validated;
//! - [`AdamW`] with one learning rate per parameter group (encoder, decoder, transition, VHP) and
//!   a state that checkpoints save;
//! - [`LambdaSchedule`]: the annealing of the rate weight λ (App. I.2);
//! - [`Alternation`]: the encoder and the generative model trained in turn (not in the paper);
//! - [`tpe`]: the Tree-structured Parzen Estimator of the hyperparameter search (App. F.1.1);
//! - [`train`]: the loop, with seeded batches, progress, validation, atomic checkpoints, exact
//!   resume and a clear stop on a non-finite loss or gradient;
//! - [`fit`]: a [`ModelRun`] (model and training config) to a trained, validated, checkpointed
//!   model in one call;
//! - [`experiment`]: the paper's Section 4 experiment (config, data splits, validation score);
//! - [`study`]: the hyperparameter search's study file, search-space names and one trial;
//! - [`dataset`]: windows of a user's CSV series (`ddssm-data`) as the model's batches;
//! - [`start_process`]: what a binary does first in `main` (allocator, threads, logging, and
//!   [`PLAIN_OPS_VAR`] to run the GPU's plain op path on the CPU);
//! - [`series`]: a user's series end to end: configs sized to the data, fit on the rolling-origin
//!   training windows, the test windows scored beside the baselines.

mod adamw;
mod alternation;
pub mod benchmark;
mod config;
mod config_file;
pub mod dataset;
pub mod experiment;
pub mod figures;
mod fit;
mod lambda;
mod lr_decay;
mod process;
pub mod series;
pub mod study;
pub mod timing;
pub mod tpe;
mod trainer;

pub use adamw::{AdamW, AdamWConfig, ParamGroup};
pub use alternation::{Alternation, Phase};
pub use config::{LearningRates, Objective, TrainConfig};
pub use config_file::{read_toml, read_toml_over};
pub use fit::{fit, ModelRun};
pub use lambda::{LambdaSchedule, LambdaShape};
pub use lr_decay::LrDecay;
pub use process::{start_process, PLAIN_OPS_VAR};
pub use trainer::{
    accumulated_gradients, batch_indices, check_init, clip_scale, gradient_norm, gradient_norms,
    group_clip_scales, history_path, keys, optimizer_for, resumable_step, select, step_noise,
    train, warm_start_of, Accumulated, GroupBounds, GroupNorms, Metrics, StepRecord, TrainOptions,
    TrainReport, Validator,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A loss term or a gradient that is not finite: the run stops before the parameters change.
    #[error(
        "step {step}: the {what} is not finite; the run stopped and the last checkpoint was kept"
    )]
    NonFinite {
        /// The step, 1-based as on the progress line (`step 1` is the first).
        step: usize,
        /// Which term or gradient.
        what: String,
    },
    /// A training checkpoint that cannot be resumed.
    #[error("{0}")]
    State(String),
    /// An error from the model.
    #[error(transparent)]
    Model(#[from] ddssm_model::Error),
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from the evaluation crate (simulators, metrics); boxed, it is large.
    #[error(transparent)]
    Eval(Box<ddssm_eval::Error>),
    /// An error from the shared tensor operations.
    #[error(transparent)]
    TensorOps(#[from] ddssm_tensor_ops::Error),
}

impl From<ddssm_eval::Error> for Error {
    fn from(e: ddssm_eval::Error) -> Self {
        Error::Eval(Box::new(e))
    }
}

impl Error {
    /// The same error with a configuration field's path placed under `prefix` (a
    /// [`TrainConfig`] nested in a larger config: `ddssm.model` + `order` → `ddssm.model.order`),
    /// also where the model crate raised it (a [`TrainConfig`]'s ELBO options). Other errors are
    /// returned as they are.
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
            Error::Model(e) => Error::Model(e.within(prefix)),
            other => other,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
