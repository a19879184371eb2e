//! # ddssm-data
//!
//! Time series from CSV files, for fitting and scoring state space models on a user's own data,
//! with no command line and no tensors: plain `f64` arrays that any layer above can turn into its
//! own types.
//!
//! - [`read_csv`] reads a file by a [`Columns`] description: a time column, target columns,
//!   dynamic covariates (known over history and horizon), optional static columns, and an
//!   optional id column for many series in one file (long format: one row per series and time).
//!   Empty cells, `NA` and `NaN` in a target are missing values, kept as a mask
//!   ([`Series::observed`]) and never imputed. Every error names the file, the row and the column.
//! - [`rolling_origin`] cuts each series into windows of `context` + `horizon` steps, as
//!   forecasting libraries evaluate: the last `test_windows` forecast origins of every series
//!   (non-overlapping horizons) are the test set, as many before them the validation set, and
//!   every window whose horizon ends before the validation set begins is a training window.
//!   Covariates must be complete over every window used: a gap is an error naming column and row.
//! - [`Scaling`] is fitted on the training part of each series only.

mod columns;
mod reader;
mod windows;

pub use columns::Columns;
pub use reader::{read_csv, Panel, Series, Time};
pub use windows::{rolling_origin, ObservedStep, Scaling, Splits, Window, WindowSpec};

/// Everything that can be wrong with a data file or a windowing request. Each names the file and,
/// where there is one, the 1-based line of the file (the header is line 1) and the column.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV itself is malformed (a ragged row, bad quoting, not UTF-8).
    #[error("{path}: line {line}: {message}")]
    Csv {
        /// The file.
        path: String,
        /// The line (1-based; the header is line 1).
        line: u64,
        /// What the CSV reader said.
        message: String,
    },
    /// A column named in [`Columns`] is not in the header, or is named twice.
    #[error("{path}: {message}; the file's columns are: {available}")]
    Column {
        /// The file.
        path: String,
        /// What is wrong with which column.
        message: String,
        /// The header's column names.
        available: String,
    },
    /// A cell that must hold a number does not.
    #[error("{path}: line {line}, column `{column}`: {message}")]
    Cell {
        /// The file.
        path: String,
        /// The line (1-based).
        line: u64,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A series as a whole does not fit (all missing, too short, times out of order, …).
    #[error("{path}: {series}: {message}")]
    Series {
        /// The file.
        path: String,
        /// Which series, as the message names it: a [`SeriesName`] (``series `id` ``, or `the
        /// series` in a file holding one), or a phrase such as `every series`.
        series: String,
        /// What is wrong.
        message: String,
    },
    /// A windowing request that cannot be met.
    #[error("invalid {field} = {value}: {allowed}")]
    InvalidConfig {
        /// The option (`context`, `horizon`, `test_windows`, …).
        field: &'static str,
        /// The value given.
        value: String,
        /// What would be accepted.
        allowed: String,
    },
}

/// How a message names a series: ``series `id` ``, or `the series` for the one series of a file
/// without an id column (whose id is `""`), where an empty name in backquotes would read as a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesName<'a>(pub &'a str);

impl std::fmt::Display for SeriesName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("the series")
        } else {
            write!(f, "series `{}`", self.0)
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
