//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses only some of them

use candle_core::Tensor;

/// The largest absolute entry of `t` (f32).
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The bit patterns of an f32 tensor's entries, flattened: for comparisons that must be exact.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}
