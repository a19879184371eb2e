//! Sinusoidal embeddings of a scalar — the diffusion level (App. H.1) or the absolute time index
//! (App. H.2–H.4).
//!
//! For an even width `d = 2h`, position `p` maps to
//! `[sin(p·ω₀), …, sin(p·ω_{h−1}), cos(p·ω₀), …, cos(p·ω_{h−1})]` with geometrically spaced
//! frequencies `ω_i = max_period^{−i/h}` (Vaswani et al. 2017; the layout of DDPM's and EDM's
//! positional embeddings). Callers scale the input so that its range matters to the
//! frequencies: an integer time index can be used as is, while EDM's `c_noise = ¼ ln σ` lives in
//! roughly `[−3, 3]` and is usually multiplied up first.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Embeds every element of the 1-D tensor `positions` (`[N]`) into `dim` sinusoidal features:
/// the result is `[N, dim]` with the dtype and device of `positions`.
///
/// # Errors
/// [`Error::InvalidArgument`] when `dim` is odd or zero or `max_period ≤ 1`, [`Error::Shape`] when
/// `positions` is not 1-D.
pub fn sinusoidal_embedding(positions: &Tensor, dim: usize, max_period: f64) -> Result<Tensor> {
    if dim == 0 || !dim.is_multiple_of(2) {
        return Err(Error::InvalidArgument {
            name: "embedding dim",
            value: dim.to_string(),
            allowed: "an even number ≥ 2".into(),
        });
    }
    if max_period.is_nan() || max_period <= 1.0 {
        return Err(Error::InvalidArgument {
            name: "max_period",
            value: max_period.to_string(),
            allowed: "a number > 1".into(),
        });
    }
    if positions.rank() != 1 {
        return Err(Error::Shape {
            what: "sinusoidal_embedding positions",
            expected: "a 1-D tensor [N]".into(),
            got: positions.dims().to_vec(),
        });
    }
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half)
        .map(|i| (-(max_period.ln()) * i as f64 / half as f64).exp())
        .collect();
    let freqs =
        Tensor::from_vec(freqs, (1, half), positions.device())?.to_dtype(positions.dtype())?;
    let args = positions.unsqueeze(1)?.broadcast_mul(&freqs)?;
    Ok(Tensor::cat(&[args.sin()?, args.cos()?], 1)?)
}

/// Embeds the absolute time indices `0..len` into `[len, dim]` (f32 unless `dtype` says otherwise).
pub fn time_embedding(
    len: usize,
    dim: usize,
    max_period: f64,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let positions = Tensor::arange(0u32, len as u32, device)?.to_dtype(dtype)?;
    sinusoidal_embedding(&positions, dim, max_period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn values_match_the_formula() {
        let p = Tensor::new(&[0.0f64, 1.5, -2.0], &Device::Cpu).unwrap();
        let e = sinusoidal_embedding(&p, 6, 100.0)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        for (row, &pos) in e.iter().zip(&[0.0f64, 1.5, -2.0]) {
            for i in 0..3 {
                let w = 100f64.powf(-(i as f64) / 3.0);
                assert!((row[i] - (pos * w).sin()).abs() < 1e-12);
                assert!((row[3 + i] - (pos * w).cos()).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn distinct_positions_get_distinct_embeddings() {
        let e = time_embedding(32, 16, 10_000.0, DType::F32, &Device::Cpu).unwrap();
        let rows = e.to_vec2::<f32>().unwrap();
        for a in 0..32 {
            for b in (a + 1)..32 {
                let d: f32 = rows[a]
                    .iter()
                    .zip(&rows[b])
                    .map(|(x, y)| (x - y).powi(2))
                    .sum();
                assert!(d > 1e-4, "rows {a} and {b} coincide");
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let p = Tensor::new(&[0.0f32], &Device::Cpu).unwrap();
        assert!(sinusoidal_embedding(&p, 5, 100.0).is_err());
        assert!(sinusoidal_embedding(&p, 0, 100.0).is_err());
        assert!(sinusoidal_embedding(&p, 4, 1.0).is_err());
        assert!(sinusoidal_embedding(&p.unsqueeze(0).unwrap(), 4, 100.0).is_err());
    }
}
