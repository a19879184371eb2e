//! Reading config files with errors that name the offending key.

use std::path::Path;

use crate::{Error, Result};

/// Reads the TOML file `path` as a `what` (e.g. "experiment config"). A value that does not fit
/// is named by its full key path (`` `data.train` ``), with the parser's line and column.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::State(format!("reading {}: {e}", path.display())))?;
    let bad = |key: String, e: toml::de::Error| {
        let key = if key.is_empty() || key == "." {
            String::new()
        } else {
            format!(" at `{key}`")
        };
        Error::State(format!("{}: not a valid {what}{key}: {e}", path.display()))
    };
    let de = toml::Deserializer::parse(&text).map_err(|e| bad(String::new(), e))?;
    serde_path_to_error::deserialize(de).map_err(|e| bad(e.path().to_string(), e.into_inner()))
}
