//! Diagonal Gaussians `N(μ, diag(exp(log σ²)))`, batched over every leading dimension.
//!
//! The last dimension is the event dimension: `log_prob`, `entropy` and the KL divergences sum
//! over it and keep every leading dimension (batch, time, samples, …). All operations are plain
//! candle ops, so gradients flow to the mean and the log-variance (the reparameterisation trick,
//! `z = μ + exp(½ log σ²) ⊙ ε`, App. H.6 of the paper).
//!
//! # Bounding the log-variance
//! A network's raw output can be anything; `exp` of it can overflow to `inf` and a tiny variance
//! makes `(x − μ)²/σ²` explode. [`DiagGaussian::from_raw`] therefore passes the raw output through
//! a *soft clamp* to `[min, max]` ([`LogVarBounds`], default `[−12, 8]`, i.e. standard deviations
//! between 2.5e-3 and 55):
//!
//! `log σ² = max − softplus(max − (min + softplus(raw − min)))`,
//!
//! with the overflow-free `softplus(x) = relu(x) + ln(1 + e^{−|x|})`. The map is smooth and
//! strictly increasing, equal to the identity (to within 4e-4) well inside the bounds, and its
//! value stays in `[min − ln(1 + e^{−(max − min)}), max]` for every finite input (below
//! `[min − 1e-8, max]` for the default bounds), so neither the value nor the gradient can become
//! inf or NaN. Bounds closer than about 10 widen the lower end: as `max − min → 0` the range
//! tends to `[max − ln 2, max]`, so the clamp cannot hold a log-variance in a narrower interval. [`DiagGaussian::new`] takes a log-variance as it is, for
//! distributions whose variance is known to be sane (a fixed prior, the diffusion forward
//! process).

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, SeededNoise};

/// ln(2π).
pub const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// The interval a raw network output is softly clamped to before it is used as a log-variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogVarBounds {
    /// Lower bound of log σ² (default −12: σ ≈ 2.5e-3).
    pub min: f64,
    /// Upper bound of log σ² (default 8: σ ≈ 55).
    pub max: f64,
}

impl Default for LogVarBounds {
    fn default() -> Self {
        Self {
            min: -12.0,
            max: 8.0,
        }
    }
}

impl LogVarBounds {
    /// Checks `min < max` and that both are finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.min.is_finite() && self.max.is_finite() && self.min < self.max) {
            return Err(Error::InvalidArgument {
                name: "logvar bounds",
                value: format!("[{}, {}]", self.min, self.max),
                allowed: "finite min < max".into(),
            });
        }
        Ok(())
    }

    /// Applies the soft clamp of the module documentation to a raw tensor.
    pub fn apply(&self, raw: &Tensor) -> Result<Tensor> {
        let lower = (softplus(&(raw - self.min)?)? + self.min)?;
        let upper = softplus(&(lower.affine(-1.0, self.max)?))?;
        Ok(upper.affine(-1.0, self.max)?)
    }
}

/// `ln(1 + eˣ)`, computed as `relu(x) + ln(1 + e^{−|x|})` so that it never overflows.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((crate::relu(x)? + tail)?)
}

/// A diagonal Gaussian with tensors `mean` and `logvar` of the same shape `[…, M]`.
#[derive(Debug, Clone)]
pub struct DiagGaussian {
    mean: Tensor,
    logvar: Tensor,
}

impl DiagGaussian {
    /// A Gaussian with this mean and log-variance, taken as they are (no clamping).
    ///
    /// # Errors
    /// [`Error::Shape`] when the two shapes differ or are scalars.
    pub fn new(mean: Tensor, logvar: Tensor) -> Result<Self> {
        if mean.dims() != logvar.dims() || mean.rank() == 0 {
            return Err(Error::Shape {
                what: "DiagGaussian logvar",
                expected: format!("the mean's shape {:?} (rank ≥ 1)", mean.dims()),
                got: logvar.dims().to_vec(),
            });
        }
        Ok(Self { mean, logvar })
    }

    /// A Gaussian from a network's raw outputs: the log-variance is soft-clamped by `bounds`.
    pub fn from_raw(mean: Tensor, raw_logvar: &Tensor, bounds: &LogVarBounds) -> Result<Self> {
        Self::new(mean, bounds.apply(raw_logvar)?)
    }

    /// The standard normal `N(0, I)` with the shape, dtype and device of `like`.
    pub fn standard_like(like: &Tensor) -> Result<Self> {
        Self::new(like.zeros_like()?, like.zeros_like()?)
    }

    /// The mean μ.
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// The log-variance log σ².
    pub fn logvar(&self) -> &Tensor {
        &self.logvar
    }

    /// The variance σ².
    pub fn variance(&self) -> Result<Tensor> {
        Ok(self.logvar.exp()?)
    }

    /// The standard deviation σ.
    pub fn std(&self) -> Result<Tensor> {
        Ok((&self.logvar * 0.5)?.exp()?)
    }

    /// `μ + σ ⊙ ε` for a given standard-normal `eps` of the same shape (differentiable in μ, σ).
    pub fn sample_with(&self, eps: &Tensor) -> Result<Tensor> {
        Ok((&self.mean + (self.std()? * eps)?)?)
    }

    /// A reparameterised draw, with ε taken from `noise`.
    pub fn sample(&self, noise: &mut SeededNoise) -> Result<Tensor> {
        let eps = noise.randn_like(&self.mean)?;
        self.sample_with(&eps)
    }

    /// `log N(x; μ, σ²)` per event dimension, shape `[…, M]` (no sum): useful when some
    /// coordinates must be masked out, e.g. missing observations. `x` may carry extra leading
    /// dimensions (e.g. samples) that broadcast against the distribution's.
    pub fn log_prob_elementwise(&self, x: &Tensor) -> Result<Tensor> {
        let sq = x.broadcast_sub(&self.mean)?.sqr()?;
        let mahalanobis = sq.broadcast_mul(&self.logvar.neg()?.exp()?)?;
        Ok((mahalanobis.broadcast_add(&self.logvar)? + LN_2PI)?.affine(-0.5, 0.0)?)
    }

    /// `log N(x; μ, σ²)` summed over the event dimension: shape `[…]`.
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.log_prob_elementwise(x)?.sum(D::Minus1)?)
    }

    /// The differential entropy `½ Σ (ln 2πe + log σ²)`: shape `[…]`.
    pub fn entropy(&self) -> Result<Tensor> {
        let per = ((&self.logvar + (LN_2PI + 1.0))? * 0.5)?;
        Ok(per.sum(D::Minus1)?)
    }

    /// `KL(self ‖ other) = ½ Σ [log σ²_p − log σ²_q + (σ²_q + (μ_q − μ_p)²)/σ²_p − 1]`: shape `[…]`.
    pub fn kl(&self, other: &DiagGaussian) -> Result<Tensor> {
        let diff2 = (&self.mean - &other.mean)?.sqr()?;
        let ratio = ((self.logvar.exp()? + diff2)? * other.logvar.neg()?.exp()?)?;
        let per = (((&other.logvar - &self.logvar)? + ratio)? - 1.0)?;
        Ok((per * 0.5)?.sum(D::Minus1)?)
    }

    /// `KL(self ‖ N(0, I)) = ½ Σ [σ² + μ² − 1 − log σ²]`: shape `[…]`.
    pub fn kl_standard(&self) -> Result<Tensor> {
        let per = (((self.logvar.exp()? + self.mean.sqr()?)? - 1.0)? - &self.logvar)?;
        Ok((per * 0.5)?.sum(D::Minus1)?)
    }
}
