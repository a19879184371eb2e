//! A batch of equally long multivariate time series.

use candle_core::{DType, Device, Tensor};

/// `N` series of `T` steps with `D` dimensions each, stored row-major as `[N, T, D]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Number of series.
    pub n: usize,
    /// Steps per series.
    pub t: usize,
    /// Dimensions per step.
    pub d: usize,
    /// `values[(i·T + t)·D + k]`.
    pub values: Vec<f64>,
}

impl Series {
    /// The value of series `i` at step `t` (0-based), dimension `k`.
    pub fn get(&self, i: usize, t: usize, k: usize) -> f64 {
        self.values[(i * self.t + t) * self.d + k]
    }

    /// The first `n` series (at most [`Series::n`]; more panics).
    pub fn first(&self, n: usize) -> Series {
        Series {
            n,
            values: self.values[..n * self.t * self.d].to_vec(),
            ..*self
        }
    }

    /// The series as a `[N, T, D]` tensor of `dtype` on `device`.
    pub fn to_tensor(&self, dtype: DType, device: &Device) -> crate::Result<Tensor> {
        Ok(
            Tensor::from_vec(self.values.clone(), (self.n, self.t, self.d), device)?
                .to_dtype(dtype)?,
        )
    }
}
