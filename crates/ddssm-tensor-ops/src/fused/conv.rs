//! A length-preserving convolution along one axis, as matmuls of shifted taps.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use super::small_mm::{small_matmul_into, Rhs, Scatter};
use super::*;
use crate::{Error, Result};

/// A length-preserving convolution of `kernel` taps along `axis` (1 or 2) of a channels-last
/// `x` (`[B, H, L, C]`), zero-padded with `pad_before` positions before the sequence and
/// `kernel − 1 − pad_before` after: `out[p] = b + Σ_i W_i x[p + i − pad_before]`, with `w`
/// `[C, kernel·C]` holding the taps' `[C_out, C_in]` blocks side by side and `b` `[C]`.
///
/// One graph node: the taps are matmuls of the unshifted `x`, shifted while summing, so no
/// padded or concatenated copy of `x` is built; taps that fall wholly into the padding are
/// skipped.
pub fn axis_conv(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    axis: usize,
    pad_before: usize,
) -> Result<Tensor> {
    let (_, _, _, c) = x.dims4()?;
    let (c_out, kc) = w.dims2()?;
    let kernel = kc / c.max(1);
    if !(axis == 1 || axis == 2)
        || c_out != c
        || kernel * c != kc
        || pad_before >= kernel
        || b.dims() != [c]
    {
        return Err(Error::Shape {
            what: "axis convolution",
            expected: format!("axis 1 or 2, w [{c}, k·{c}], b [{c}], pad_before < k"),
            got: [w.dims(), b.dims(), &[axis, pad_before]].concat(),
        });
    }
    if supported(x) && x.dtype() == w.dtype() && w.dtype() == b.dtype() {
        let op = AxisConvOp {
            axis,
            kernel,
            pad_before,
        };
        return Ok(x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, op)?);
    }
    let n = x.dim(axis)?;
    let padded = x.pad_with_zeros(axis, pad_before, kernel - 1 - pad_before)?;
    let shifted = (0..kernel)
        .map(|i| padded.narrow(axis, i, n))
        .collect::<candle_core::Result<Vec<_>>>()?;
    linear(&Tensor::cat(&shifted, 3)?, w, Some(b))
}

#[derive(Clone, Copy)]
struct AxisConvOp {
    axis: usize,
    kernel: usize,
    pad_before: usize,
}

impl AxisConvOp {
    /// The taps that touch the sequence, with their offsets `i − pad_before`.
    fn taps(&self, len: usize) -> Vec<(usize, isize)> {
        (0..self.kernel)
            .map(|i| (i, i as isize - self.pad_before as isize))
            .filter(|(_, d)| d.unsigned_abs() < len)
            .collect()
    }

    /// Moves `t` (`[B, H, L, C]`) by `shift` positions along the axis: `out[q] = t[q − shift]`,
    /// zero where that is outside.
    fn shifted(&self, t: &Tensor, shift: isize) -> candle_core::Result<Tensor> {
        let len = t.dim(self.axis)?;
        let s = shift.unsigned_abs();
        if shift == 0 {
            Ok(t.clone())
        } else if shift > 0 {
            t.narrow(self.axis, 0, len - s)?
                .pad_with_zeros(self.axis, s, 0)
        } else {
            t.narrow(self.axis, s, len - s)?
                .pad_with_zeros(self.axis, 0, s)
        }
    }
}

#[inline(always)]
fn conv_accumulate<T: Copy + std::ops::AddAssign>(
    out: &mut [T],
    y: &[T],
    (n, h, l, c): (usize, usize, usize, usize),
    axis: usize,
    d: isize,
) {
    for nn in 0..n {
        for hh in 0..h {
            for ll in 0..l {
                let (sh, sl) = if axis == 1 {
                    (hh as isize + d, ll as isize)
                } else {
                    (hh as isize, ll as isize + d)
                };
                if sh < 0 || sh >= h as isize || sl < 0 || sl >= l as isize {
                    continue;
                }
                let dst = ((nn * h + hh) * l + ll) * c;
                let src = ((nn * h + sh as usize) * l + sl as usize) * c;
                for (o, &v) in out[dst..dst + c].iter_mut().zip(&y[src..src + c]) {
                    *o += v;
                }
            }
        }
    }
}

impl CustomOp3 for AxisConvOp {
    fn name(&self) -> &'static str {
        "ddssm-axis-conv"
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
        let (n, h, l, c) = lx.shape().dims4()?;
        let rows = n * h * l;
        let len = if self.axis == 1 { h } else { l };
        let kc = self.kernel * c;
        if !lw.is_contiguous() || lw.dims() != [c, kc] {
            candle_core::bail!("ddssm-axis-conv: a contiguous [{c}, {kc}] weight");
        }
        let x2 = Layout::contiguous_with_offset((rows, c), lx.start_offset());
        let mut out = match b {
            CpuStorage::F32(b) => CpuStorage::F32(contiguous_slice(b, lb)?.repeat(rows)),
            CpuStorage::F64(b) => CpuStorage::F64(contiguous_slice(b, lb)?.repeat(rows)),
            _ => candle_core::bail!("ddssm-axis-conv: f32 or f64"),
        };
        for (i, d) in self.taps(len) {
            if let (CpuStorage::F32(o), CpuStorage::F32(xs), CpuStorage::F32(ws)) = (&mut out, x, w)
            {
                // `W_iᵀ` read in place: tap `i`'s `[C_out, C_in]` block of the `[C, k·C]`
                // weight, transposed; the tap's products added straight into `out`.
                let wt = Rhs {
                    data: &ws[lw.start_offset() + i * c..],
                    k: c,
                    n: c,
                    k_stride: 1,
                    n_stride: kc,
                    bias: None,
                };
                let scatter = Scatter {
                    len,
                    stride: if self.axis == 1 { l } else { 1 },
                    shift: d,
                };
                if small_matmul_into(contiguous_slice(xs, &x2)?, wt, o, scatter) {
                    continue;
                }
            }
            // No kernel for this CPU or dtype: gemm's product, then a pass adding it in.
            let wt = lw.narrow(1, i * c, c)?.transpose(0, 1)?;
            let y = x.matmul(w, (1, rows, c, c), &x2, &wt)?;
            match (&mut out, &y) {
                (CpuStorage::F32(o), CpuStorage::F32(y)) => {
                    let axis = self.axis;
                    conv_accumulate_f32(o, y, (n, h, l, c), axis, d)
                }
                (CpuStorage::F64(o), CpuStorage::F64(y)) => {
                    conv_accumulate(o, y, (n, h, l, c), self.axis, d)
                }
                _ => candle_core::bail!("ddssm-axis-conv: matching dtypes"),
            }
        }
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, h, l, c) = x.dims4()?;
        let rows = n * h * l;
        let len = if self.axis == 1 { h } else { l };
        let g = grad.contiguous()?;
        let (x2, g2) = (x.reshape((rows, c))?, g.reshape((rows, c))?);
        let mut dw: Vec<Tensor> = (0..self.kernel)
            .map(|_| Tensor::zeros((c, c), w.dtype(), w.device()))
            .collect::<candle_core::Result<_>>()?;
        let in_place = supported(&g)
            && g.dtype() == DType::F32
            && w.dtype() == DType::F32
            && small_mm::has_kernel(c, c)
            && weight_grad::has_kernel(&g2, &x2)?;
        if !in_place {
            // No kernels here: each tap on a shifted copy of `g` (the same bits).
            let mut dx: Option<Tensor> = None;
            for (i, d) in self.taps(len) {
                // out[p] collects Y_i[p + d], so ∂L/∂Y_i[q] = g[q − d].
                let dy = self.shifted(&g, d)?.reshape((rows, c))?;
                if x.track_op() {
                    let term = small_mm::matmul(&dy, &w.narrow(1, i * c, c)?)?;
                    dx = Some(match dx {
                        Some(acc) => (acc + term)?,
                        None => term,
                    });
                }
                dw[i] = weight_grad::weight_grad(&dy, &x2)?;
            }
            // Only the inputs candle tracks get a gradient (`x` is untracked where it is data).
            let dx = match dx {
                Some(d) => Some(d.reshape((n, h, l, c))?),
                None if x.track_op() => Some(x.zeros_like()?),
                None => None,
            };
            return Ok((dx, Some(Tensor::cat(&dw, 1)?), Some(column_sums(&g2)?)));
        }
        let dx = if x.track_op() {
            Some(g.apply_op2_no_bwd(&w.contiguous()?, &AxisConvInputGrad { conv: *self })?)
        } else {
            None
        };
        // Every tap has `d = 0` once (`pad_before < kernel`): that pass gives the bias's too.
        let mut db = None;
        for (i, d) in self.taps(len) {
            if d == 0 {
                let both = weight_grad::weight_and_bias_grad(&g2, &x2)?;
                let (dw_i, db_i) = linear::split_weight_and_bias(&both)?;
                dw[i] = dw_i;
                db = Some(db_i);
            } else {
                // ∂L/∂Y_i[q] = g[q − d], read in place.
                let scatter = Scatter {
                    len,
                    stride: if self.axis == 1 { l } else { 1 },
                    shift: d,
                };
                dw[i] = weight_grad::weight_grad_shifted(&g2, &x2, scatter)?;
            }
        }
        let db = match db {
            Some(db) => db,
            None => column_sums(&g2)?,
        };
        Ok((dx, Some(Tensor::cat(&dw, 1)?), Some(db)))
    }
}

/// `∂L/∂x` of an [`AxisConvOp`] from its output's gradient `g` and its weight: each tap's
/// `g W_i` added straight into `∂L/∂x` at its shift (`∂L/∂x[q] = Σ_i (g W_i)[q − d_i]`), in tap
/// order from zero — the sums the per-tap products and tensor additions gave, without the
/// shifted copies of `g` or the product tensors. f32 on the CPU, where [`small_matmul_into`] has
/// a kernel for `C × C`.
struct AxisConvInputGrad {
    conv: AxisConvOp,
}

impl CustomOp2 for AxisConvInputGrad {
    fn name(&self) -> &'static str {
        "ddssm-axis-conv-input-grad"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h, l, c) = lg.shape().dims4()?;
        let conv = &self.conv;
        let (len, kc) = (if conv.axis == 1 { h } else { l }, conv.kernel * c);
        let (CpuStorage::F32(gs), CpuStorage::F32(ws)) = (g, w) else {
            candle_core::bail!("ddssm-axis-conv-input-grad: f32");
        };
        if !lw.is_contiguous() || lw.dims() != [c, kc] {
            candle_core::bail!("ddssm-axis-conv-input-grad: a contiguous [{c}, {kc}] weight");
        }
        let (gs, ws) = (contiguous_slice(gs, lg)?, contiguous_slice(ws, lw)?);
        let mut out = vec![0f32; n * h * l * c];
        for (i, d) in conv.taps(len) {
            // `W_i` read in place: tap `i`'s `[C_out, C_in]` block of the `[C, k·C]` weight.
            let wi = Rhs {
                data: &ws[i * c..],
                k: c,
                n: c,
                k_stride: kc,
                n_stride: 1,
                bias: None,
            };
            // Row `q` of `g W_i` belongs to `∂L/∂x[q + d]`.
            let scatter = Scatter {
                len,
                stride: if conv.axis == 1 { l } else { 1 },
                shift: -d,
            };
            if !small_matmul_into(gs, wi, &mut out, scatter) {
                candle_core::bail!("ddssm-axis-conv-input-grad: no kernel for C = {c}");
            }
        }
        Ok((CpuStorage::F32(out), lg.shape().clone()))
    }
}

crate::simd::wide_f32! {
    fn conv_accumulate_f32(
        o: &mut [f32],
        y: &[f32],
        dims: (usize, usize, usize, usize),
        axis: usize,
        d: isize,
    ) -> () = conv_accumulate::<f32>;
}

#[cfg(test)]
mod tests {
    use super::super::{test_bits as bits, test_random as random};
    use super::*;
    use candle_core::{Device, Var};

    /// The backward pass reads `g` in place — each tap's `∂x` added into one buffer at its
    /// shift, each tap's `∂W` from a shifted read of `g`, the bias's gradient from the unshifted
    /// tap's pass — and gives the bits of the per-tap computation on shifted copies of `g` that
    /// it replaces (products, tensor sums, `weight_grad` and `column_sums`), for both axes,
    /// several kernels and paddings, and widths with and without the AVX-512 kernels.
    #[test]
    fn the_backward_pass_gives_the_shifted_copies_bits() {
        let dev = Device::Cpu;
        for (c, axis, kernel, pad_before) in [
            (16, 1, 2, 0),
            (16, 2, 2, 0),
            (16, 2, 2, 1),
            (32, 1, 3, 1),
            (16, 2, 3, 2),
            (12, 2, 2, 0),
        ] {
            let (n, h, l) = (3, 4, 5);
            let rows = n * h * l;
            let at = format!("c = {c}, axis = {axis}, kernel = {kernel}, pad = {pad_before}");
            let x = Var::from_vec(random(rows * c, 1), (n, h, l, c), &dev).unwrap();
            let w = Tensor::from_vec(random(c * kernel * c, 2), (c, kernel * c), &dev).unwrap();
            let b = Tensor::from_vec(random(c, 3), c, &dev).unwrap();
            let g = Tensor::from_vec(random(rows * c, 4), (n, h, l, c), &dev).unwrap();
            let op = AxisConvOp {
                axis,
                kernel,
                pad_before,
            };
            let (dx, dw, db) = op.bwd(x.as_tensor(), &w, &b, &g, &g).unwrap();

            let len = if axis == 1 { h } else { l };
            let x2 = x.as_tensor().reshape((rows, c)).unwrap();
            let mut want_dx: Option<Tensor> = None;
            let mut want_dw = vec![Tensor::zeros((c, c), DType::F32, &dev).unwrap(); kernel];
            for (i, d) in op.taps(len) {
                let dy = op.shifted(&g, d).unwrap().reshape((rows, c)).unwrap();
                let term = small_mm::matmul(&dy, &w.narrow(1, i * c, c).unwrap()).unwrap();
                want_dx = Some(match want_dx {
                    Some(acc) => (acc + term).unwrap(),
                    None => term,
                });
                want_dw[i] = weight_grad::weight_grad(&dy, &x2).unwrap();
            }
            let want_db = column_sums(&g.reshape((rows, c)).unwrap()).unwrap();
            assert_eq!(bits(&dx.unwrap()), bits(&want_dx.unwrap()), "dx: {at}");
            let want_dw = Tensor::cat(&want_dw, 1).unwrap();
            assert_eq!(bits(&dw.unwrap()), bits(&want_dw), "dw: {at}");
            assert_eq!(bits(&db.unwrap()), bits(&want_db), "db: {at}");
        }
    }
}
