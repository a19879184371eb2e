//! A linear layer whose output is added into another tensor as it is stored: a CSDI block's
//! residual half with the residual update, `(x + y Wᵀ + b)/√2`, and its skip half added into the
//! running sum of the stack's skips, `s + y Wᵀ + b`.
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
    linear_add(y, w, b, x, true)
}

/// `sum + linear(y, w, b)`, as one graph node where there is a kernel for the product (shapes as
/// in [`linear_residual`]).
pub fn linear_accumulate(
    y: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    sum: &Tensor,
) -> Result<Tensor> {
    linear_add(y, w, b, sum, false)
}

fn linear_add(
    y: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    addend: &Tensor,
    scaled: bool,
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
        return if scaled {
            residual_update(addend, &out)
        } else {
            Ok((addend + out)?)
        };
    };
    // The bias rides along as the weight's last column, so the op has three inputs.
    let wb = Tensor::cat(&[w, &b.unsqueeze(1)?], 1)?.contiguous()?;
    let flat_y = y.reshape(((), in_dim))?.contiguous()?;
    let flat_a = addend.reshape(((), out_dim))?.contiguous()?;
    let out = flat_y.apply_op3(&wb, &flat_a, LinearAddOp { scaled })?;
    Ok(out.reshape(out_dims)?)
}

/// `(a + y Wᵀ + b)·(1/√2 if scaled)` for contiguous `y` `[R, in]`, `[W | b]` `[out, in + 1]` and
/// `a` `[R, out]`.
struct LinearAddOp {
    scaled: bool,
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
            scale: self.scaled.then_some(std::f32::consts::FRAC_1_SQRT_2),
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
        // The gradients the separate ops gave: the residual update's `g/√2` (computed as it
        // computed it) or the sum's `g`, then the linear layer's backward on that.
        let g = if self.scaled {
            (grad * std::f64::consts::FRAC_1_SQRT_2)?
        } else {
            grad.contiguous()?
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
