//! Helpers shared by the integration tests.

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
