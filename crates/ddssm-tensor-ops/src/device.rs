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

/// Opens CUDA device `ordinal`. candle's cudarc opens the CUDA libraries at run time
/// (third_party/README.md) and panics when one is missing; that panic becomes
/// [`Error::DeviceUnavailable`], with the library's message and no panic report on stderr.
#[cfg(feature = "cuda")]
fn open_cuda(spec: &str, ordinal: usize) -> Result<Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(hook);
    match opened {
        Ok(device) => Ok(device?),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the CUDA driver library could not be loaded".to_string());
            Err(Error::DeviceUnavailable {
                requested: spec.to_string(),
                reason,
            })
        }
    }
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

    /// With the feature compiled in, `cuda:0` opens where a GPU and its driver are, and is a
    /// [`Error::DeviceUnavailable`] naming the missing library where they are not — never a
    /// panic. Runs only in a `--features cuda` build (`bash .ci/cuda-check cargo test --release
    /// -p ddssm-tensor-ops --features cuda --lib`, or on a GPU machine).
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_opens_or_says_which_library_is_missing() {
        match parse_device("cuda:0") {
            Ok(device) => assert!(device.is_cuda()),
            Err(Error::DeviceUnavailable { requested, reason }) => {
                assert_eq!(requested, "cuda:0");
                assert!(reason.contains("cuda"), "{reason}");
            }
            Err(other) => panic!("neither a device nor DeviceUnavailable: {other}"),
        }
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
