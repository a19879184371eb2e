//! EDM preconditioning (Karras et al. 2022, Table 1 "Ours"; App. E.2).
//!
//! The raw network `F_ψ` is wrapped into the denoiser
//! `D_ψ(ẑ, σ, c) = c_skip(σ) ẑ + c_out(σ) F_ψ(c_in(σ) ẑ, c_noise(σ), c)` with
//! `c_skip = σ_d²/(σ² + σ_d²)`, `c_out = σ σ_d/√(σ² + σ_d²)`, `c_in = 1/√(σ² + σ_d²)`,
//! `c_noise = ¼ ln σ`, and the noise prediction is recovered as `ε_ψ = (ẑ − D_ψ)/σ`. The paper
//! uses `σ_d = σ_data = 1` (the default); [`crate::NoiseScheduleConfig::sigma_data`] changes it
//! for latents whose scale is far from 1.

use candle_core::{DType, Tensor};

use crate::{Denoiser, Error, Result};

/// The four EDM coefficients at one noise level `σ` (with `σ_data = 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdmCoefficients {
    /// The noise level σ.
    pub sigma: f64,
    /// `c_skip = 1/(σ² + 1)`.
    pub c_skip: f64,
    /// `c_out = σ/√(σ² + 1)`.
    pub c_out: f64,
    /// `c_in = 1/√(σ² + 1)`.
    pub c_in: f64,
    /// `c_noise = ¼ ln σ`.
    pub c_noise: f64,
}

impl EdmCoefficients {
    /// The coefficients at `sigma > 0` with `σ_data = 1`.
    pub fn at_sigma(sigma: f64) -> Self {
        Self::at_sigma_with(sigma, 1.0)
    }

    /// The coefficients at `sigma > 0` for data of scale `sigma_data > 0` (at `σ_data = 1` the
    /// same numbers as [`EdmCoefficients::at_sigma`], bit for bit).
    pub fn at_sigma_with(sigma: f64, sigma_data: f64) -> Self {
        let d2 = sigma_data * sigma_data;
        let s2 = sigma * sigma + d2;
        Self {
            sigma,
            c_skip: d2 / s2,
            c_out: sigma * sigma_data / s2.sqrt(),
            c_in: 1.0 / s2.sqrt(),
            c_noise: 0.25 * sigma.ln(),
        }
    }
}

/// Per-example coefficient columns (`[N, 1]`, broadcastable over `[N, M]`) and `c_noise` (`[N]`).
pub(crate) struct CoefficientColumns {
    pub sigma: Tensor,
    pub c_skip: Tensor,
    pub c_out: Tensor,
    pub c_in: Tensor,
    pub c_noise: Tensor,
}

impl CoefficientColumns {
    pub(crate) fn new(
        coeffs: &[EdmCoefficients],
        dtype: DType,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let n = coeffs.len();
        let col = |f: fn(&EdmCoefficients) -> f64| -> Result<Tensor> {
            let v: Vec<f64> = coeffs.iter().map(f).collect();
            Ok(Tensor::from_vec(v, (n, 1), device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            sigma: col(|c| c.sigma)?,
            c_skip: col(|c| c.c_skip)?,
            c_out: col(|c| c.c_out)?,
            c_in: col(|c| c.c_in)?,
            c_noise: col(|c| c.c_noise)?.squeeze(1)?,
        })
    }
}

/// Wraps a raw network `F_ψ` with EDM's preconditioning.
#[derive(Debug, Clone, Copy)]
pub struct EdmPreconditioning<'a, N: ?Sized> {
    net: &'a N,
    sigma_data: f64,
}

impl<'a, N: Denoiser + ?Sized> EdmPreconditioning<'a, N> {
    /// Wraps `net` with `σ_data = 1`.
    pub fn new(net: &'a N) -> Self {
        Self {
            net,
            sigma_data: 1.0,
        }
    }

    /// Wraps `net` with the `σ_data` of `schedule`.
    pub fn for_schedule(net: &'a N, schedule: &crate::NoiseSchedule) -> Self {
        Self {
            net,
            sigma_data: schedule.config().sigma_data,
        }
    }

    /// The raw network output `F_ψ(c_in ẑ, c_noise, cond)` for per-example coefficients.
    pub(crate) fn raw(
        &self,
        z_hat: &Tensor,
        cols: &CoefficientColumns,
        cond: &N::Cond,
    ) -> Result<Tensor> {
        let x_in = z_hat.broadcast_mul(&cols.c_in)?;
        self.call(&x_in, &cols.c_noise, cond)
    }

    /// `F_ψ(x_in, c_noise, cond)`, checked to keep the input's shape.
    fn call(&self, x_in: &Tensor, c_noise: &Tensor, cond: &N::Cond) -> Result<Tensor> {
        let out = self.net.forward(x_in, c_noise, cond)?;
        if out.dims() != x_in.dims() {
            return Err(Error::Shape {
                what: "denoiser output",
                expected: format!("the input's shape {:?}", x_in.dims()),
                got: out.dims().to_vec(),
            });
        }
        Ok(out)
    }

    /// `D_ψ(ẑ, σ, cond)` for `ẑ` of shape `[N, M]` and one `σ` per example.
    pub fn denoise_per_example(
        &self,
        z_hat: &Tensor,
        sigmas: &[f64],
        cond: &N::Cond,
    ) -> Result<Tensor> {
        let coeffs: Vec<_> = sigmas
            .iter()
            .map(|&s| EdmCoefficients::at_sigma_with(s, self.sigma_data))
            .collect();
        let cols = CoefficientColumns::new(&coeffs, z_hat.dtype(), z_hat.device())?;
        let f = self.raw(z_hat, &cols, cond)?;
        Ok((z_hat.broadcast_mul(&cols.c_skip)? + f.broadcast_mul(&cols.c_out)?)?)
    }

    /// `D_ψ(ẑ, σ, cond)` with one `σ` for the whole batch.
    pub fn denoise(&self, z_hat: &Tensor, sigma: f64, cond: &N::Cond) -> Result<Tensor> {
        let n = z_hat.dim(0)?;
        let c = EdmCoefficients::at_sigma_with(sigma, self.sigma_data);
        let x_in = (z_hat * c.c_in)?;
        let c_noise = Tensor::full(c.c_noise, n, z_hat.device())?.to_dtype(z_hat.dtype())?;
        let f = self.call(&x_in, &c_noise, cond)?;
        Ok(((z_hat * c.c_skip)? + (f * c.c_out)?)?)
    }

    /// The noise prediction `ε_ψ = (ẑ − D_ψ(ẑ, σ, cond))/σ` (App. E.2).
    pub fn epsilon(&self, z_hat: &Tensor, sigma: f64, cond: &N::Cond) -> Result<Tensor> {
        let d = self.denoise(z_hat, sigma, cond)?;
        Ok(((z_hat - d)? / sigma)?)
    }
}
