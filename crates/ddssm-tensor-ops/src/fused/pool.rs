//! The context producer's pooling over time (App. H.2).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::*;
use crate::{Error, Result};

/// The context producer's time pooling (App. H.2: a grouped convolution with one length-`L`
/// kernel per `(h, c)`): `out[b, h, c] = bias[h, c] + Σ_l y[b, h, l, c]·w[h, l, c]`, with `y`
/// `[B, H, L, C]`, `w` `[H, L, C]`, `bias` `[H, C]`; returns `[B, H, C]`.
pub fn time_pool(y: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, h, l, c) = y.dims4()?;
    if w.dims() != [h, l, c] || bias.dims() != [h, c] {
        return Err(Error::Shape {
            what: "time pool weights",
            expected: format!("[{h}, {l}, {c}] and [{h}, {c}]"),
            got: [w.dims(), bias.dims()].concat(),
        });
    }
    if supported(y) && y.dtype() == w.dtype() && w.dtype() == bias.dtype() {
        return Ok(y
            .contiguous()?
            .apply_op3(&w.contiguous()?, &bias.contiguous()?, PoolOp)?);
    }
    Ok(y.broadcast_mul(w)?.sum(2)?.broadcast_add(bias)?)
}

struct PoolOp;

#[inline(always)]
fn pool_fwd<T: Copy + std::ops::Mul<Output = T> + std::ops::AddAssign>(
    y: &[T],
    w: &[T],
    bias: &[T],
    (h, l, c): (usize, usize, usize),
) -> Vec<T> {
    let per = h * l * c;
    let mut out = Vec::with_capacity(y.len() / l);
    for yb in y.chunks_exact(per) {
        for hh in 0..h {
            let start = out.len();
            out.extend_from_slice(&bias[hh * c..(hh + 1) * c]);
            let row = &mut out[start..];
            for ll in 0..l {
                let off = (hh * l + ll) * c;
                for ((acc, &a), &b) in row.iter_mut().zip(&yb[off..off + c]).zip(&w[off..off + c]) {
                    *acc += a * b;
                }
            }
        }
    }
    out
}

/// `Σ_b g[b, h, c]·y[b, h, l, c]`: the pool weight's gradient, accumulated in one pass.
fn pool_weight_grad<T: Copy + Default + std::ops::Mul<Output = T> + std::ops::AddAssign>(
    y: &[T],
    g: &[T],
    (h, l, c): (usize, usize, usize),
) -> Vec<T> {
    let per = h * l * c;
    let mut dw = vec![T::default(); per];
    for (yb, gb) in y.chunks_exact(per).zip(g.chunks_exact(h * c)) {
        for hh in 0..h {
            let gr = &gb[hh * c..(hh + 1) * c];
            for ll in 0..l {
                let off = (hh * l + ll) * c;
                for ((d, &a), &b) in dw[off..off + c].iter_mut().zip(&yb[off..off + c]).zip(gr) {
                    *d += a * b;
                }
            }
        }
    }
    dw
}

impl CustomOp3 for PoolOp {
    fn name(&self) -> &'static str {
        "ddssm-time-pool"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h, l, c) = ly.shape().dims4()?;
        let out = match (y, w, b) {
            (CpuStorage::F32(y), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                CpuStorage::F32(pool_fwd(
                    contiguous_slice(y, ly)?,
                    contiguous_slice(w, lw)?,
                    contiguous_slice(b, lb)?,
                    (h, l, c),
                ))
            }
            (CpuStorage::F64(y), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                CpuStorage::F64(pool_fwd(
                    contiguous_slice(y, ly)?,
                    contiguous_slice(w, lw)?,
                    contiguous_slice(b, lb)?,
                    (h, l, c),
                ))
            }
            _ => candle_core::bail!("ddssm-time-pool: f32 or f64 with matching dtypes"),
        };
        Ok((out, Shape::from((n, h, c))))
    }

    fn bwd(
        &self,
        y: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, h, _, c) = y.dims4()?;
        let g = grad.contiguous()?;
        let dy = g.unsqueeze(2)?.broadcast_mul(&w.unsqueeze(0)?)?;
        let dw = y.apply_op2_no_bwd(&g, &PoolWeightGradOp)?;
        let db = column_sums(&g.reshape((n, h * c))?)?.reshape((h, c))?;
        Ok((Some(dy), Some(dw), Some(db)))
    }
}

struct PoolWeightGradOp;

impl CustomOp2 for PoolWeightGradOp {
    fn name(&self) -> &'static str {
        "ddssm-time-pool-weight-grad"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, h, l, c) = ly.shape().dims4()?;
        let out = match (y, g) {
            (CpuStorage::F32(y), CpuStorage::F32(g)) => CpuStorage::F32(pool_weight_grad(
                contiguous_slice(y, ly)?,
                contiguous_slice(g, lg)?,
                (h, l, c),
            )),
            (CpuStorage::F64(y), CpuStorage::F64(g)) => CpuStorage::F64(pool_weight_grad(
                contiguous_slice(y, ly)?,
                contiguous_slice(g, lg)?,
                (h, l, c),
            )),
            _ => candle_core::bail!("ddssm-time-pool-weight-grad: f32 or f64"),
        };
        Ok((out, Shape::from((h, l, c))))
    }
}
