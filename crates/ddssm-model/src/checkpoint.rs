//! Checkpoints: every parameter in one safetensors file, named like the architecture
//! (`encoder.context.block0.mid_projection.weight`, …), with the model config (JSON) and the
//! observation standardisation in the file's metadata, so the file alone rebuilds the model.
//! Other tools read it as any safetensors file (`safetensors.safe_open(path, "np").metadata()`).
//!
//! Files are written atomically: to a temporary file beside the target, then renamed, so an
//! interrupted save never leaves a half-written checkpoint under the target name; the temporary
//! files a killed writer leaves behind are removed by [`remove_stale_temp_files`].
//!
//! Integrity: the metadata key `checksum` holds `crc32:XXXXXXXX`, the CRC-32 (zlib's) of every
//! other metadata entry (`key NUL value NUL`, sorted by key), then each tensor's name and
//! `dtype shape offsets` (sorted by name, each followed by NUL, as Rust's `Debug` prints them),
//! then the tensor data section.
//! A file whose checksum, format, dtype, tensor names or shapes do not fit is an error, and
//! nothing is changed; a flipped bit anywhere in the file is caught. (Files of format
//! `ddssm-checkpoint/1`, written before the checksum existed, are still read, unchecked.)

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device};

use crate::{Error, Model, ModelConfig, Result, Standardization};

/// The value of the `format` metadata key this version writes and reads.
pub const FORMAT: &str = "ddssm-checkpoint/2";

/// The format before the checksum; still read.
const FORMAT_V1: &str = "ddssm-checkpoint/1";

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
    /// `crc32:XXXXXXXX` over the other metadata and the tensor data (module docs).
    pub const CHECKSUM: &str = "checksum";
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

/// Removes the temporary files that [`write_atomic`] calls of processes that no longer run left
/// in `dir` (`.NAME.tmpPID`, e.g. after a `kill -9` during a save); returns their paths. On
/// systems without `/proc` a temporary file is taken as stale unless it is this process's.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.display().to_string(),
                source,
            })
        }
    };
    let me = std::process::id();
    let proc_fs = Path::new("/proc/self").exists();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|rest| rest.rsplit_once(".tmp"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == me || (proc_fs && Path::new(&format!("/proc/{pid}")).exists());
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// The checksum of the module docs over a parsed header (its metadata without the `checksum`
/// entry, and each tensor's name, dtype, shape and offsets) and the tensor data section `data`.
fn checksum(header: &safetensors::tensor::Metadata, data: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(bytes);
        h.update(&[0]);
    };
    let meta = header.metadata().clone().unwrap_or_default();
    let mut entries: Vec<(&String, &String)> = meta
        .iter()
        .filter(|(k, _)| k.as_str() != keys::CHECKSUM)
        .collect();
    entries.sort();
    for (k, v) in entries {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut tensors: Vec<(String, &safetensors::tensor::TensorInfo)> =
        header.tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, info) in tensors {
        field(name.as_bytes());
        let layout = format!("{:?} {:?} {:?}", info.dtype, info.shape, info.data_offsets);
        field(layout.as_bytes());
    }
    h.update(data);
    format!("crc32:{:08x}", h.finalize())
}

/// A safetensors buffer's parsed header and its tensor data section.
fn parse_header<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(safetensors::tensor::Metadata, &'a [u8])> {
    let (len, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| checkpoint_error(path, format!("not a readable safetensors file ({e})")))?;
    let data = bytes
        .get(8usize.saturating_add(len)..)
        .ok_or_else(|| checkpoint_error(path, "truncated header"))?;
    Ok((header, data))
}

/// Serialises `tensors` with the metadata `meta` as a checkpoint file's bytes: `meta` gains the
/// [`keys::FORMAT`] and [`keys::CHECKSUM`] entries. (What [`Model::checkpoint_bytes`] writes;
/// public so tools and tests can write files in this format.)
pub fn seal(
    tensors: &[(String, candle_core::Tensor)],
    mut meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    meta.insert(keys::FORMAT.into(), FORMAT.into());
    meta.remove(keys::CHECKSUM);
    let serialise = |meta: HashMap<String, String>| {
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
            .map_err(|e| Error::InvalidData(format!("serialising the checkpoint: {e}")))
    };
    // The data section and the tensors' offsets do not depend on the metadata: serialise once
    // to checksum them, then again with the checksum.
    let unsealed = serialise(meta.clone())?;
    let (header, data) = parse_header(Path::new("checkpoint"), &unsealed)?;
    meta.insert(keys::CHECKSUM.into(), checksum(&header, data));
    sorted_header(serialise(meta)?)
}

/// `bytes` (a safetensors buffer) with its JSON header's keys sorted, tensors' and metadata's
/// alike: safetensors writes the metadata in its `HashMap`'s iteration order, which changes from
/// one process (or map) to the next, so without this the same checkpoint was different bytes.
/// Readers locate tensors by their offsets, so the order of the header's entries is free; the
/// header keeps its length and its padding to a multiple of 8 bytes.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let invalid = |e: String| Error::InvalidData(format!("serialising the checkpoint: {e}"));
    let len = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| invalid("no header length".into()))? as usize;
    let header = bytes
        .get(8..8 + len)
        .ok_or_else(|| invalid("truncated header".into()))?;
    // serde_json's maps are ordered by key (its `preserve_order` feature is off).
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| invalid(e.to_string()))?;
    let mut text = serde_json::to_vec(&value).map_err(|e| invalid(e.to_string()))?;
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

/// Reads a checkpoint's metadata (format, config, …) without loading its tensors.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = read_file(path)?;
    metadata_of(path, &bytes)
}

fn metadata_of(path: &Path, bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (header, data) = parse_header(path, bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    match meta.get(keys::FORMAT) {
        Some(f) if f == FORMAT => {
            let stored = meta
                .get(keys::CHECKSUM)
                .ok_or_else(|| checkpoint_error(path, "no checksum in the metadata"))?;
            let actual = checksum(&header, data);
            if *stored != actual {
                return Err(checkpoint_error(
                    path,
                    format!("corrupt: checksum {actual}, the file says {stored}"),
                ));
            }
            Ok(meta)
        }
        Some(f) if f == FORMAT_V1 => Ok(meta),
        Some(f) => Err(checkpoint_error(
            path,
            format!("format {f:?}; this version reads {FORMAT:?} and {FORMAT_V1:?}"),
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

/// Every tensor of the file, on the CPU; each must have the dtype the metadata declares.
fn load_tensors(
    path: &Path,
    bytes: &[u8],
    meta: &HashMap<String, String>,
) -> Result<HashMap<String, candle_core::Tensor>> {
    let dtype = parse_dtype(path, meta.get(keys::DTYPE).map_or("f32", |s| s.as_str()))?;
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| checkpoint_error(path, format!("unreadable tensors ({e})")))?;
    let mut odd: Vec<(&String, DType)> = tensors
        .iter()
        .filter(|(_, t)| t.dtype() != dtype)
        .map(|(n, t)| (n, t.dtype()))
        .collect();
    odd.sort_by_key(|(n, _)| n.as_str());
    if let Some((name, other)) = odd.first() {
        return Err(checkpoint_error(
            path,
            format!(
                "tensor {name} is {}, the file declares {}",
                dtype_name(*other),
                dtype_name(dtype)
            ),
        ));
    }
    Ok(tensors)
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
    let state = load_tensors(path, &bytes, &meta)?
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
        seal(&tensors, meta)
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
        model.assign_from_bytes(path, &bytes, &meta)?;
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
        if let Some(diff) = crate::config_difference(self.config(), &theirs) {
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
        if let Some(s) = &standardization {
            self.check_standardization(s)
                .map_err(|e| checkpoint_error(path, e.to_string()))?;
        }
        self.assign_from_bytes(path, &bytes, &meta)?;
        if standardization.is_some() {
            self.set_standardization(standardization)?;
        }
        Ok(())
    }

    fn assign_from_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        meta: &HashMap<String, String>,
    ) -> Result<()> {
        let mut tensors = load_tensors(path, bytes, meta)?;
        tensors.retain(|name, _| !name.starts_with(STATE_PREFIX));
        self.assign(&tensors, &path.display().to_string())
    }
}
