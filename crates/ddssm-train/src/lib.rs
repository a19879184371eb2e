//! # ddssm-train
//!
//! The pieces of training that do not depend on which transition a model holds. Today: the
//! annealing schedule of the rate weight λ (App. I.2), [`LambdaSchedule`].

mod lambda;

pub use lambda::{LambdaSchedule, LambdaShape};

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
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
