//! Device selection from a string: `"cpu"`, `"cuda"` / `"cuda:N"`, `"metal"` / `"metal:N"`.
//!
//! A device whose cargo feature was not compiled in is a clear error naming the feature, not a
//! panic deep inside candle.

use candle_core::Device;

use crate::{Error, Result};

/// The device kinds this build of ddssm can use, in words (for error messages and `--help`).
pub fn available_devices() -> String {
    let mut kinds = vec!["cpu"];
    if cfg!(feature = "cuda") {
        kinds.push("cuda:N");
    }
    if cfg!(feature = "metal") {
        kinds.push("metal:N");
    }
    kinds.join(", ")
}

/// Parses `"cpu"`, `"cuda"`, `"cuda:N"`, `"metal"` or `"metal:N"` (case-insensitive, surrounding
/// whitespace ignored) and opens that device.
///
/// # Errors
/// [`Error::UnknownDevice`] for anything else, [`Error::DeviceNotCompiled`] when the device's
/// feature (`cuda`, `metal`) was not enabled at build time, and [`Error::Candle`] when the device
/// exists in this build but cannot be opened (no GPU present, say).
pub fn parse_device(spec: &str) -> Result<Device> {
    let lower = spec.trim().to_ascii_lowercase();
    let (kind, ordinal) = match lower.split_once(':') {
        Some((kind, n)) => {
            let n: usize = n
                .parse()
                .map_err(|_| Error::UnknownDevice(spec.to_string()))?;
            (kind, n)
        }
        None => (lower.as_str(), 0),
    };
    match kind {
        "cpu" if !lower.contains(':') => Ok(Device::Cpu),
        "cuda" => open_cuda(spec, ordinal),
        "metal" => open_metal(spec, ordinal),
        _ => Err(Error::UnknownDevice(spec.to_string())),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(_spec: &str, ordinal: usize) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(spec: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::DeviceNotCompiled {
        requested: spec.to_string(),
        feature: "cuda",
        available: available_devices(),
    })
}

#[cfg(feature = "metal")]
fn open_metal(_spec: &str, ordinal: usize) -> Result<Device> {
    Ok(Device::new_metal(ordinal)?)
}

#[cfg(not(feature = "metal"))]
fn open_metal(spec: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::DeviceNotCompiled {
        requested: spec.to_string(),
        feature: "metal",
        available: available_devices(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_in_any_case() {
        for s in ["cpu", "CPU", " cpu "] {
            assert!(parse_device(s).unwrap().is_cpu(), "{s}");
        }
    }

    #[test]
    fn garbage_is_an_unknown_device() {
        for s in ["gpu", "cuda:x", "cpu:1", "", "tpu:0"] {
            assert!(
                matches!(parse_device(s), Err(Error::UnknownDevice(_))),
                "{s:?} should be unknown"
            );
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_the_feature() {
        let err = parse_device("cuda:0").unwrap_err();
        assert!(matches!(
            err,
            Error::DeviceNotCompiled {
                feature: "cuda",
                ..
            }
        ));
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }

    #[cfg(not(feature = "metal"))]
    #[test]
    fn metal_without_the_feature_names_the_feature() {
        let err = parse_device("metal").unwrap_err();
        assert!(matches!(
            err,
            Error::DeviceNotCompiled {
                feature: "metal",
                ..
            }
        ));
    }
}
