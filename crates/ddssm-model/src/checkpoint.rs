//! Checkpoints: every parameter in one safetensors file, named like the architecture
//! (`encoder.context.block0.mid_projection.weight`, …), with the model config (JSON) and the
//! observation standardisation in the file's metadata, so the file alone rebuilds the model.
//! Other tools read it as any safetensors file (`safetensors.safe_open(path, "np").metadata()`).
//!
//! Files are written atomically: to a temporary file beside the target, then renamed, so an
//! interrupted save never leaves a half-written checkpoint under the target name.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device};

use crate::{Error, Model, ModelConfig, Result, Standardization};

/// The value of the `format` metadata key this version writes and reads.
pub const FORMAT: &str = "ddssm-checkpoint/1";

/// Tensors whose names start with this prefix are not model parameters but training state saved
/// alongside them (optimizer moments, …); the model ignores them when loading.
pub const STATE_PREFIX: &str = "state.";

/// Metadata keys.
pub mod keys {
    /// The checkpoint format, [`super::FORMAT`].
    pub const FORMAT: &str = "format";
    /// The [`crate::ModelConfig`] as JSON.
    pub const CONFIG: &str = "config";
    /// The [`crate::Standardization`] as JSON (absent when the model has none).
    pub const STANDARDIZATION: &str = "standardization";
    /// The parameters' dtype (`f32`, `f64`, …).
    pub const DTYPE: &str = "dtype";
}

fn checkpoint_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| checkpoint_error(path, "not a file path"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads a checkpoint's metadata (format, config, …) without loading its tensors.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = read_file(path)?;
    metadata_of(path, &bytes)
}

fn metadata_of(path: &Path, bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| checkpoint_error(path, format!("not a readable safetensors file ({e})")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    match meta.get(keys::FORMAT) {
        Some(f) if f == FORMAT => Ok(meta),
        Some(f) => Err(checkpoint_error(
            path,
            format!("format {f:?}; this version reads {FORMAT:?}"),
        )),
        None => Err(checkpoint_error(
            path,
            "no ddssm metadata (was it written by another tool?)",
        )),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn load_tensors(path: &Path, bytes: &[u8]) -> Result<HashMap<String, candle_core::Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| checkpoint_error(path, format!("unreadable tensors ({e})")))
}

/// The metadata and the training-state tensors (names without [`STATE_PREFIX`]) of a checkpoint,
/// on the CPU.
pub fn read_state(
    path: &Path,
) -> Result<(
    HashMap<String, String>,
    HashMap<String, candle_core::Tensor>,
)> {
    let bytes = read_file(path)?;
    let meta = metadata_of(path, &bytes)?;
    let state = load_tensors(path, &bytes)?
        .into_iter()
        .filter_map(|(name, t)| {
            name.strip_prefix(STATE_PREFIX)
                .map(|rest| (rest.to_string(), t))
        })
        .collect();
    Ok((meta, state))
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F64 => "f64",
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}

fn parse_dtype(path: &Path, name: &str) -> Result<DType> {
    Ok(match name {
        "f64" => DType::F64,
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => {
            return Err(checkpoint_error(
                path,
                format!("unknown dtype {other:?} (allowed: f32, f64, f16, bf16)"),
            ))
        }
    })
}

impl Model {
    /// The checkpoint bytes: every parameter plus the metadata of [`keys`] and `extra` entries.
    pub fn checkpoint_bytes(&self, extra: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        self.checkpoint_bytes_with_state(extra, &[])
    }

    /// [`Model::checkpoint_bytes`] plus training-state tensors, each stored under
    /// [`STATE_PREFIX`]`name`.
    pub fn checkpoint_bytes_with_state(
        &self,
        extra: &BTreeMap<String, String>,
        state: &[(String, candle_core::Tensor)],
    ) -> Result<Vec<u8>> {
        let mut meta: HashMap<String, String> = extra.clone().into_iter().collect();
        meta.insert(keys::FORMAT.into(), FORMAT.into());
        meta.insert(keys::CONFIG.into(), self.config().to_json()?);
        meta.insert(keys::DTYPE.into(), dtype_name(self.dtype()).into());
        if let Some(s) = self.standardization() {
            let json = serde_json::to_string(s)
                .map_err(|e| Error::InvalidData(format!("standardization to JSON: {e}")))?;
            meta.insert(keys::STANDARDIZATION.into(), json);
        }
        let mut tensors: Vec<(String, candle_core::Tensor)> = self
            .named_parameters()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        tensors.extend(
            state
                .iter()
                .map(|(name, t)| (format!("{STATE_PREFIX}{name}"), t.clone())),
        );
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
            .map_err(|e| Error::InvalidData(format!("serialising the checkpoint: {e}")))
    }

    /// Saves the model to `path` atomically, with `extra` metadata entries (e.g. a git commit).
    pub fn save(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        write_atomic(path, &self.checkpoint_bytes(extra)?)
    }

    /// Rebuilds a model from a checkpoint alone, on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes = read_file(path)?;
        let meta = metadata_of(path, &bytes)?;
        let config_json = meta
            .get(keys::CONFIG)
            .ok_or_else(|| checkpoint_error(path, "no model config in the metadata"))?;
        let config = ModelConfig::from_json(config_json)
            .map_err(|e| checkpoint_error(path, format!("its model config is invalid: {e}")))?;
        let dtype = parse_dtype(path, meta.get(keys::DTYPE).map_or("f32", |s| s.as_str()))?;
        let mut model = Model::new(&config, 0, dtype, device)?;
        model.assign_from_bytes(path, &bytes)?;
        if let Some(json) = meta.get(keys::STANDARDIZATION) {
            let s: Standardization = serde_json::from_str(json)
                .map_err(|e| checkpoint_error(path, format!("bad standardization: {e}")))?;
            model.set_standardization(Some(s))?;
        }
        Ok(model)
    }

    /// Loads the parameters of a checkpoint written for the same config into this model (the
    /// standardisation too, if the file has one). A file for another config is an error naming
    /// the first difference; the model is left unchanged on any error.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        let bytes = read_file(path)?;
        let meta = metadata_of(path, &bytes)?;
        let theirs = meta
            .get(keys::CONFIG)
            .map(|json| ModelConfig::from_json(json))
            .transpose()
            .map_err(|e| checkpoint_error(path, format!("its model config is invalid: {e}")))?
            .ok_or_else(|| checkpoint_error(path, "no model config in the metadata"))?;
        if &theirs != self.config() {
            let ours = self.config().to_toml()?;
            let other = theirs.to_toml()?;
            let diff = ours
                .lines()
                .zip(other.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("this model has `{a}`, the file `{b}`"))
                .unwrap_or_else(|| "the configs differ".into());
            return Err(checkpoint_error(
                path,
                format!("written for another model config: {diff}"),
            ));
        }
        let standardization = meta
            .get(keys::STANDARDIZATION)
            .map(|json| serde_json::from_str::<Standardization>(json))
            .transpose()
            .map_err(|e| checkpoint_error(path, format!("bad standardization: {e}")))?;
        self.assign_from_bytes(path, &bytes)?;
        if standardization.is_some() {
            self.set_standardization(standardization)?;
        }
        Ok(())
    }

    fn assign_from_bytes(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut tensors = load_tensors(path, bytes)?;
        tensors.retain(|name, _| !name.starts_with(STATE_PREFIX));
        self.assign(&tensors, &path.display().to_string())
    }
}
