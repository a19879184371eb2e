//! The error type of `ddssm-nets`.

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

pub(crate) fn check_config(
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

/// `tensor`, which must be present with exactly the shape `dims` (a missing tensor is reported
/// with an empty shape).
pub(crate) fn require<'a>(
    what: &'static str,
    tensor: Option<&'a candle_core::Tensor>,
    dims: &[usize],
) -> Result<&'a candle_core::Tensor> {
    match tensor {
        Some(t) if t.dims() == dims => Ok(t),
        other => Err(Error::Shape {
            what,
            expected: format!("{dims:?}"),
            got: other.map(|t| t.dims().to_vec()).unwrap_or_default(),
        }),
    }
}
