//! Per-dimension standardisation of observations: `x̃ = (x − m)/s`.
//!
//! A model trained on raw data whose scale is far from 1 (the bimodal walk spans about ±40) tends
//! to ignore its latent and collapse to a constant emission; it is trained on `x̃` instead. The
//! mean `m_d` and standard deviation `s_d` come from the training split (observed entries only),
//! are stored with the model, and bring predictions back to original units. A density of `x̃`
//! converts to one of `x` by the Jacobian: `log p(x) = log p(x̃) − Σ_t Σ_d log s_d` over the
//! observed entries, which [`Standardization::log_det_per_step`] provides.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Per-dimension mean and standard deviation of the observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standardization {
    /// `m_d`.
    pub mean: Vec<f64>,
    /// `s_d > 0`.
    pub std: Vec<f64>,
}

impl Standardization {
    /// The identity map for `d` dimensions.
    pub fn identity(d: usize) -> Self {
        Self {
            mean: vec![0.0; d],
            std: vec![1.0; d],
        }
    }

    /// Fits mean and standard deviation per dimension of `x` (`[N, T, D]`), counting only entries
    /// where `mask` (same shape, 1 = observed) is 1, or all entries without a mask.
    ///
    /// # Errors
    /// [`Error::InvalidData`] when a dimension has fewer than two observed entries or no spread,
    /// or holds a non-finite value.
    pub fn fit(x: &Tensor, mask: Option<&Tensor>) -> Result<Self> {
        if x.rank() != 3 {
            return Err(Error::Shape {
                what: "observations",
                expected: "[N, T, D]".into(),
                got: x.dims().to_vec(),
            });
        }
        let d = x.dim(2)?;
        let xs = x
            .to_dtype(candle_core::DType::F64)?
            .reshape(((), d))?
            .to_vec2::<f64>()?;
        let ms = match mask {
            Some(m) => {
                if m.dims() != x.dims() {
                    return Err(Error::Shape {
                        what: "observation mask",
                        expected: format!("{:?}", x.dims()),
                        got: m.dims().to_vec(),
                    });
                }
                Some(
                    m.to_dtype(candle_core::DType::F64)?
                        .reshape(((), d))?
                        .to_vec2::<f64>()?,
                )
            }
            None => None,
        };
        let mut mean = vec![0.0; d];
        let mut std = vec![0.0; d];
        for k in 0..d {
            let vals: Vec<f64> = xs
                .iter()
                .enumerate()
                .filter(|(i, _)| ms.as_ref().is_none_or(|m| m[*i][k] > 0.5))
                .map(|(_, row)| row[k])
                .collect();
            if vals.iter().any(|v| !v.is_finite()) {
                return Err(Error::InvalidData(format!(
                    "dimension {k} holds a non-finite observed value"
                )));
            }
            if vals.len() < 2 {
                return Err(Error::InvalidData(format!(
                    "dimension {k} has {} observed entries; at least 2 are needed",
                    vals.len()
                )));
            }
            let n = vals.len() as f64;
            let m = vals.iter().sum::<f64>() / n;
            let s = (vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            if s.is_nan() || s <= 0.0 {
                return Err(Error::InvalidData(format!(
                    "dimension {k} is constant ({m}); it cannot be standardised"
                )));
            }
            mean[k] = m;
            std[k] = s;
        }
        Ok(Self { mean, std })
    }

    fn rows(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let d = self.mean.len();
        if like.dim(D::Minus1)? != d {
            return Err(Error::Shape {
                what: "observations",
                expected: format!("last dimension {d}"),
                got: like.dims().to_vec(),
            });
        }
        let m = Tensor::from_vec(self.mean.clone(), d, like.device())?.to_dtype(like.dtype())?;
        let s = Tensor::from_vec(self.std.clone(), d, like.device())?.to_dtype(like.dtype())?;
        Ok((m, s))
    }

    /// `(x − m)/s` for any `x` whose last dimension is `D`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (m, s) = self.rows(x)?;
        Ok(x.broadcast_sub(&m)?.broadcast_div(&s)?)
    }

    /// `m + s·x̃`, back to original units.
    pub fn invert(&self, x_std: &Tensor) -> Result<Tensor> {
        let (m, s) = self.rows(x_std)?;
        Ok(x_std.broadcast_mul(&s)?.broadcast_add(&m)?)
    }

    /// `Σ_d log s_d`: subtract it once per fully observed step to turn `log p(x̃)` into `log p(x)`.
    pub fn log_det_per_step(&self) -> f64 {
        self.std.iter().map(|s| s.ln()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fit_apply_invert_round_trip() {
        let v: Vec<f64> = (0..24)
            .map(|i| (i as f64) * 1.5 - 3.0 + if i % 2 == 0 { 10.0 } else { 0.0 })
            .collect();
        let x = Tensor::from_vec(v, (3, 4, 2), &Device::Cpu).unwrap();
        let s = Standardization::fit(&x, None).unwrap();
        let z = s.apply(&x).unwrap();
        let zs = z.reshape((12, 2)).unwrap().to_vec2::<f64>().unwrap();
        for k in 0..2 {
            let col: Vec<f64> = zs.iter().map(|r| r[k]).collect();
            let m = col.iter().sum::<f64>() / 12.0;
            let var = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / 11.0;
            assert!(m.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
        }
        let back = s.invert(&z).unwrap();
        let diff = (back - &x)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-12);
        assert!((s.log_det_per_step() - s.std.iter().map(|v| v.ln()).sum::<f64>()).abs() < 1e-15);
    }

    #[test]
    fn masked_entries_are_ignored_and_degenerate_data_is_an_error() {
        let x = Tensor::from_vec(vec![1.0, 3.0, 1000.0, 5.0], (1, 4, 1), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0], (1, 4, 1), &Device::Cpu).unwrap();
        let s = Standardization::fit(&x, Some(&mask)).unwrap();
        assert!((s.mean[0] - 3.0).abs() < 1e-12 && (s.std[0] - 2.0).abs() < 1e-12);
        let constant = Tensor::ones((2, 3, 1), candle_core::DType::F64, &Device::Cpu).unwrap();
        assert!(Standardization::fit(&constant, None)
            .unwrap_err()
            .to_string()
            .contains("constant"));
        let wrong = Tensor::ones((2, 3), candle_core::DType::F64, &Device::Cpu).unwrap();
        assert!(Standardization::fit(&wrong, None).is_err());
    }
}
