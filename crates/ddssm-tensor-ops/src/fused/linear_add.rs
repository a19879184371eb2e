//! A linear layer whose output is added into another tensor as it is stored: a CSDI block's
//! residual half with the residual update, `(x + y Wᵀ + b)/√2`, and its skip half added into the
//! running sum of the stack's skips, `s + y Wᵀ + b` (for the last block, with the stack's
//! `1/√layers` applied as well).
//!
//! Separately, the layer writes its `[R, C]` output and the update or sum reads it back and writes
//! another; here the addition (and the `1/√2`) happen on the output vectors in registers, the
//! same operations in the same order, so the bits are those of the separate ops.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::small_mm::{has_kernel, small_matmul_then, Epilogue, Rhs};
use super::*;
use crate::{residual_update, Error, Result};

/// `residual_update(x, linear(y, w, b))`, `(x + y Wᵀ + b)/√2`, as one graph node where there is a
/// bias and a kernel for the product (else those two ops): `y` `[…, in]`, `w` `[out, in]`, `b`
/// `[out]`, `x` `[…, out]`.
pub fn linear_residual(y: &Tensor, w: &Tensor, b: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    linear_add(y, w, b, x, Sum::Residual)
}

/// `sum + linear(y, w, b)`, as one graph node where there is a kernel for the product (shapes as
/// in [`linear_residual`]).
pub fn linear_accumulate(
    y: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    sum: &Tensor,
) -> Result<Tensor> {
    linear_add(y, w, b, sum, Sum::Plain)
}

/// `(sum + linear(y, w, b))·scale`, as one graph node where there is a kernel for the product:
/// the last skip of a stack, with the stack's `1/√layers`. The product is the one
/// `Tensor::affine(scale, 0)` makes (in both passes), so the bits are the separate ops'.
pub fn linear_accumulate_scaled(
    y: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    sum: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    linear_add(y, w, b, sum, Sum::Scaled(scale))
}

/// What [`linear_add`] makes of `addend + y Wᵀ + b`.
#[derive(Clone, Copy)]
enum Sum {
    /// As it is.
    Plain,
    /// The residual update's `/√2`.
    Residual,
    /// Times a factor.
    Scaled(f64),
}

impl Sum {
    /// The factor applied to the sum, if any.
    fn scale(self) -> Option<f64> {
        match self {
            Sum::Plain => None,
            Sum::Residual => Some(std::f64::consts::FRAC_1_SQRT_2),
            Sum::Scaled(k) => Some(k),
        }
    }
}

fn linear_add(
    y: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    addend: &Tensor,
    sum: Sum,
) -> Result<Tensor> {
    let (out_dim, in_dim) = w.dims2()?;
    let dims = y.dims();
    let mut out_dims = dims.to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = out_dim;
    }
    let bias_ok = b.is_none_or(|b| b.dims() == [out_dim]);
    if dims.last() != Some(&in_dim) || addend.dims() != out_dims || !bias_ok {
        return Err(Error::Shape {
            what: "linear layer added into a tensor",
            expected: format!("y […, {in_dim}], bias [{out_dim}], addend [{out_dims:?}]"),
            got: [dims, b.map_or(&[][..], |b| b.dims()), addend.dims()].concat(),
        });
    }
    let f32s = [y, w, addend]
        .iter()
        .chain(&b)
        .all(|t| t.dtype() == candle_core::DType::F32);
    let (Some(b), true) = (b, supported(y) && f32s && has_kernel(in_dim, out_dim)) else {
        let out = linear(y, w, b)?;
        return match sum {
            Sum::Residual => residual_update(addend, &out),
            Sum::Plain => Ok((addend + out)?),
            Sum::Scaled(k) => Ok(((addend + out)? * k)?),
        };
    };
    // The bias rides along as the weight's last column, so the op has three inputs.
    let wb = Tensor::cat(&[w, &b.unsqueeze(1)?], 1)?.contiguous()?;
    let flat_y = y.reshape(((), in_dim))?.contiguous()?;
    let flat_a = addend.reshape(((), out_dim))?.contiguous()?;
    let out = flat_y.apply_op3(&wb, &flat_a, LinearAddOp { scale: sum.scale() })?;
    Ok(out.reshape(out_dims)?)
}

/// `(a + y Wᵀ + b)·scale` (no product without a scale) for contiguous `y` `[R, in]`, `[W | b]`
/// `[out, in + 1]` and `a` `[R, out]`. The scale is applied in f32, as `Tensor::affine` applies
/// its `f64` factor.
struct LinearAddOp {
    scale: Option<f64>,
}

impl CustomOp3 for LinearAddOp {
    fn name(&self) -> &'static str {
        "ddssm-linear-add"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        wb: &CpuStorage,
        lwb: &Layout,
        a: &CpuStorage,
        la: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (r, k) = ly.shape().dims2()?;
        let (n, k1) = lwb.shape().dims2()?;
        let (CpuStorage::F32(ys), CpuStorage::F32(wbs), CpuStorage::F32(adds)) = (y, wb, a) else {
            candle_core::bail!("ddssm-linear-add: f32");
        };
        let wbs = contiguous_slice(wbs, lwb)?;
        if k1 != k + 1 || la.dims() != [r, n] {
            candle_core::bail!(
                "ddssm-linear-add: [W | b] [{n}, {}], addend [{r}, {n}]",
                k + 1
            );
        }
        let bias: Vec<f32> = (0..n).map(|j| wbs[j * k1 + k]).collect();
        // `Wᵀ` read in place from the row-major `[n, k + 1]` `[W | b]`.
        let wt = Rhs {
            data: wbs,
            k,
            n,
            k_stride: 1,
            n_stride: k1,
            bias: Some(&bias),
        };
        let then = Epilogue {
            addend: Some(contiguous_slice(adds, la)?),
            scale: self.scale.map(|k| k as f32),
        };
        match small_matmul_then(contiguous_slice(ys, ly)?, wt, then) {
            Some(out) => Ok((CpuStorage::F32(out), Shape::from((r, n)))),
            None => candle_core::bail!("ddssm-linear-add: no kernel for [{r}, {k}] × [{k}, {n}]"),
        }
    }

    fn bwd(
        &self,
        y: &Tensor,
        wb: &Tensor,
        a: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The gradients the separate ops gave: the scaled sum's `g·scale` (computed as the
        // residual update and `Tensor::affine` computed it) or the sum's `g`, then the linear
        // layer's backward on that.
        let g = match self.scale {
            Some(k) => (grad * k)?,
            None => grad.contiguous()?,
        };
        let k = y.dim(1)?;
        let dy = if y.track_op() {
            // `W` read in place from `[W | b]` (the product takes any strides).
            Some(small_mm::matmul(&g, &wb.narrow(1, 0, k)?)?)
        } else {
            None
        };
        let dwb = if wb.track_op() {
            Some(weight_grad::weight_and_bias_grad(&g, y)?)
        } else {
            None
        };
        let da = a.track_op().then_some(g);
        Ok((dy, dwb, da))
    }
}
