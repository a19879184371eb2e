//! `x Wᵀ + b` as one graph node.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::small_mm::{small_matmul, Rhs};
use super::*;
use crate::{Error, Result};

/// `x Wᵀ + b` over the last axis of `x` (`[…, in]`), with `weight` `[out, in]` and `bias` `[out]`:
/// `[…, out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let (out_dim, in_dim) = weight.dims2()?;
    if dims.last() != Some(&in_dim) {
        return Err(Error::Shape {
            what: "linear input",
            expected: format!("[…, {in_dim}]"),
            got: dims.to_vec(),
        });
    }
    let mut out_shape = dims.to_vec();
    *out_shape.last_mut().expect("rank ≥ 1") = out_dim;
    let flat = x.reshape(((), in_dim))?;
    let y = if supported(x) && x.dtype() == weight.dtype() {
        let flat = flat.contiguous()?;
        let weight = weight.contiguous()?;
        match bias {
            Some(b) => flat.apply_op3(&weight, &b.contiguous()?, LinearOp)?,
            None => flat.apply_op2(&weight, LinearOp)?,
        }
    } else {
        // candle's CUDA matmul takes only operands whose rows are packed (a transposed
        // contiguous tensor is fine, a view of some of a weight's columns is not: the
        // `AxisConv` tap weights are such views), so both are made contiguous first.
        let y = flat.contiguous()?.matmul(&weight.contiguous()?.t()?)?;
        match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        }
    };
    Ok(y.reshape(out_shape)?)
}

/// The fused linear layer; inputs are contiguous `x` `[R, in]`, `w` `[out, in]`, `b` `[out]`.
struct LinearOp;

impl LinearOp {
    /// `x Wᵀ (+ b)` as `[R, out]`: one pass through [`small_matmul`] with the bias added as the
    /// outputs are stored, else gemm and a bias pass.
    fn forward(
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (r, k) = lx.shape().dims2()?;
        let n = lw.dims()[0];
        let shape = Shape::from((r, n));
        if let (CpuStorage::F32(xs), CpuStorage::F32(ws)) = (x, w) {
            let bias = match b {
                Some((CpuStorage::F32(b), lb)) => Some(contiguous_slice(b, lb)?),
                Some(_) => candle_core::bail!("ddssm-linear: f32 or f64 with matching dtypes"),
                None => None,
            };
            // `Wᵀ` read in place from the row-major `[n, k]` weight.
            let wt = Rhs {
                data: contiguous_slice(ws, lw)?,
                k,
                n,
                k_stride: 1,
                n_stride: k,
                bias,
            };
            if let Some(y) = small_matmul(contiguous_slice(xs, lx)?, wt) {
                return Ok((CpuStorage::F32(y), shape));
            }
        }
        let wt = lw.transpose(0, 1)?;
        let y = x.matmul(w, (1, r, n, k), lx, &wt)?;
        let Some((b, lb)) = b else {
            return Ok((y, shape));
        };
        let y = match (y, b) {
            (CpuStorage::F32(mut y), CpuStorage::F32(b)) => {
                add_bias_f32(&mut y, contiguous_slice(b, lb)?);
                CpuStorage::F32(y)
            }
            (CpuStorage::F64(mut y), CpuStorage::F64(b)) => {
                add_bias(&mut y, contiguous_slice(b, lb)?);
                CpuStorage::F64(y)
            }
            _ => candle_core::bail!("ddssm-linear: f32 or f64 with matching dtypes"),
        };
        Ok((y, shape))
    }

    /// `(∂L/∂x, ∂L/∂W)` of `x Wᵀ`, each `None` where candle does not track that input (data fed
    /// to a first layer, weights outside training): nothing would read it.
    fn backward(
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dw = w
            .track_op()
            .then(|| weight_grad::weight_grad(grad, x))
            .transpose()?;
        Ok((Self::input_grad(x, w, grad)?, dw))
    }

    /// `∂L/∂x = g W`, or `None` where candle does not track `x`.
    fn input_grad(x: &Tensor, w: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        x.track_op().then(|| small_mm::matmul(grad, w)).transpose()
    }
}

/// `[dW | db]` (`[N, K + 1]`, from [`weight_grad::weight_and_bias_grad`]) as `(dW, db)`.
pub(super) fn split_weight_and_bias(both: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let k = both.dim(1)? - 1;
    Ok((
        both.narrow(1, 0, k)?.contiguous()?,
        both.narrow(1, k, 1)?.squeeze(1)?.contiguous()?,
    ))
}

#[inline(always)]
fn add_bias<T: Copy + std::ops::AddAssign>(y: &mut [T], b: &[T]) {
    for row in y.chunks_exact_mut(b.len()) {
        for (a, &c) in row.iter_mut().zip(b) {
            *a += c;
        }
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "ddssm-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Self::forward(x, lx, w, lw, Some((b, lb)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !(w.track_op() && b.track_op()) {
            let (dx, dw) = Self::backward(x, w, grad)?;
            let db = b.track_op().then(|| column_sums(grad)).transpose()?;
            return Ok((dx, dw, db));
        }
        // Both trained: their gradients from one pass over `grad`.
        let dx = Self::input_grad(x, w, grad)?;
        let (dw, db) = split_weight_and_bias(&weight_grad::weight_and_bias_grad(grad, x)?)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "ddssm-linear-no-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Self::forward(x, lx, w, lw, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Self::backward(x, w, grad)
    }
}

crate::simd::wide_f32! {
    fn add_bias_f32(y: &mut [f32], b: &[f32]) -> () = add_bias::<f32>;
}
