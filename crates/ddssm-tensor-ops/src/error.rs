//! The error type of `ddssm-tensor-ops`.

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by candle itself (shape mismatch inside an op, allocation, …).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A tensor had a shape this function cannot work with.
    #[error("{what}: expected {expected}, got shape {got:?}")]
    Shape {
        /// Which argument was wrong.
        what: &'static str,
        /// The shape that was expected, in words.
        expected: String,
        /// The shape that was received.
        got: Vec<usize>,
    },

    /// A scalar argument was outside its allowed range.
    #[error("invalid {name} = {value}: {allowed}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The value that was received, formatted.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },

    /// A device string could not be understood.
    #[error(
        "unknown device {0:?}: expected \"cpu\", \"cuda\", \"cuda:N\", \"metal\" or \"metal:N\""
    )]
    UnknownDevice(String),

    /// The requested device exists, but ddssm was built without its feature.
    #[error("device {requested:?} needs ddssm built with `--features {feature}`; this build has only: {available}")]
    DeviceNotCompiled {
        /// The device string that was asked for.
        requested: String,
        /// The cargo feature that would enable it.
        feature: &'static str,
        /// The devices this build supports.
        available: String,
    },

    /// The device's feature is compiled in, but its libraries could not be opened on this
    /// machine (no GPU driver, say).
    #[error("device {requested:?} could not be opened: {reason}")]
    DeviceUnavailable {
        /// The device string that was asked for.
        requested: String,
        /// What failed, in the driver library's words.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
