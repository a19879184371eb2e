//! Fused CPU operations with their own backward passes (candle `CustomOp`s).
//!
//! Candle builds every elementwise op as its own graph node with a freshly allocated output, and
//! its backward adds each gradient into a zero tensor. For the paper's tiny channel counts and
//! huge row counts (the denoiser sees `S·B·(T−j)·S_k` rows) that bookkeeping, not arithmetic, is
//! the cost (docs/performance.md). Two ops cover the hot spots of every CSDI residual block:
//!
//! - [`linear`]: `x Wᵀ + b` as one node. Its backward is two matmuls and a column sum done as a
//!   `1×R` matmul, instead of candle's strided `sum(0)` (≈ 25× slower at these shapes).
//! - [`gated_activation`]: `σ(gate) ⊙ tanh(filter)` on the two halves of the last axis, one pass
//!   forward and one backward, with a vectorisable `exp` for f32.
//!
//! Both run on the CPU for f32 and f64; on other devices or dtypes they fall back to the same
//! function built from plain candle ops, so results agree everywhere up to rounding.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};

use crate::{Error, Result};

fn supported(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

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
        let y = flat.matmul(&weight.t()?)?;
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
    fn matmul(
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, usize, usize)> {
        let (r, k) = lx.shape().dims2()?;
        let n = lw.dims()[0];
        let wt = lw.transpose(0, 1)?;
        Ok((x.matmul(w, (1, r, n, k), lx, &wt)?, r, n))
    }

    /// `(∂L/∂x, ∂L/∂W)` of `x Wᵀ`.
    fn backward(x: &Tensor, w: &Tensor, grad: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((grad.matmul(w)?, grad.t()?.matmul(x)?))
    }
}

/// `Σ_r g[r, :]` of a `[R, C]` gradient as a `1×R` matmul (candle's strided `sum(0)` is far
/// slower at these shapes).
fn column_sums(g: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::ones((1, g.dim(0)?), g.dtype(), g.device())?
        .matmul(g)?
        .squeeze(0)
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
        let (y, r, n) = Self::matmul(x, lx, w, lw)?;
        let off = lb.start_offset();
        let y = match (y, b) {
            (CpuStorage::F32(mut y), CpuStorage::F32(b)) => {
                add_bias_f32(&mut y, &b[off..off + n]);
                CpuStorage::F32(y)
            }
            (CpuStorage::F64(mut y), CpuStorage::F64(b)) => {
                add_bias(&mut y, &b[off..off + n]);
                CpuStorage::F64(y)
            }
            _ => candle_core::bail!("ddssm-linear: f32 or f64 with matching dtypes"),
        };
        Ok((y, Shape::from((r, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = Self::backward(x, w, grad)?;
        Ok((Some(dx), Some(dw), Some(column_sums(grad)?)))
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
        let (y, r, n) = Self::matmul(x, lx, w, lw)?;
        Ok((y, Shape::from((r, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = Self::backward(x, w, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `exp(x)` for f32 by range reduction and a degree-6 polynomial, written with plain arithmetic so
/// that loops over it vectorise (relative error below 2e-7 over the clamped range).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ⁿ from the bits of `shifted`, whose low mantissa bits hold n (|n| ≤ 127) as an offset from
    // ROUND's bit pattern: integer arithmetic only, where `n as i32` (a saturating conversion)
    // would keep the loop scalar.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

trait Gate: Copy + 'static {
    fn sigmoid(x: Self) -> Self;
    fn tanh(x: Self) -> Self;
    fn one() -> Self;
    fn zero() -> Self;
    fn mul(a: Self, b: Self) -> Self;
    fn sub(a: Self, b: Self) -> Self;
}

impl Gate for f32 {
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + exp_f32(-x))
    }
    #[inline(always)]
    fn tanh(x: f32) -> f32 {
        2.0 / (1.0 + exp_f32(-2.0 * x)) - 1.0
    }
    fn one() -> f32 {
        1.0
    }
    fn zero() -> f32 {
        0.0
    }
    fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
}

impl Gate for f64 {
    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    fn tanh(x: f64) -> f64 {
        x.tanh()
    }
    fn one() -> f64 {
        1.0
    }
    fn zero() -> f64 {
        0.0
    }
    fn mul(a: f64, b: f64) -> f64 {
        a * b
    }
    fn sub(a: f64, b: f64) -> f64 {
        a - b
    }
}

#[inline(always)]
fn gated_fwd<T: Gate>(y: &[T], c: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len() / 2];
    for (o, row) in out.chunks_exact_mut(c).zip(y.chunks_exact(2 * c)) {
        let (gate, filter) = row.split_at(c);
        for ((o, &g), &f) in o.iter_mut().zip(gate).zip(filter) {
            *o = T::mul(T::sigmoid(g), T::tanh(f));
        }
    }
    out
}

#[inline(always)]
fn gated_bwd<T: Gate>(y: &[T], grad: &[T], c: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    for ((o, row), g) in out
        .chunks_exact_mut(2 * c)
        .zip(y.chunks_exact(2 * c))
        .zip(grad.chunks_exact(c))
    {
        let (o_gate, o_filter) = o.split_at_mut(c);
        let (gate, filter) = row.split_at(c);
        // d/dgate = g·tanh(f)·σ(1 − σ); d/dfilter = g·σ·(1 − tanh²); σ and tanh computed once.
        for i in 0..c {
            let s = T::sigmoid(gate[i]);
            let t = T::tanh(filter[i]);
            o_gate[i] = T::mul(T::mul(g[i], t), T::mul(s, T::sub(T::one(), s)));
            o_filter[i] = T::mul(T::mul(g[i], s), T::sub(T::one(), T::mul(t, t)));
        }
    }
    out
}

fn contiguous_slice<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("ddssm fused op: non-contiguous input"),
    }
}

/// `σ(gate) ⊙ tanh(filter)`: the forward op.
struct GatedOp;

impl CustomOp1 for GatedOp {
    fn name(&self) -> &'static str {
        "ddssm-gated"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut dims = l.dims().to_vec();
        let c = dims[dims.len() - 1] / 2;
        *dims.last_mut().expect("rank ≥ 1") = c;
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32({
                let v = contiguous_slice(v, l)?;
                gated_fwd_f32(v, c)
            }),
            CpuStorage::F64(v) => CpuStorage::F64(gated_fwd(contiguous_slice(v, l)?, c)),
            _ => candle_core::bail!("ddssm-gated: f32 or f64"),
        };
        Ok((out, Shape::from(dims)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &GatedGradOp)?,
        ))
    }
}

/// The backward of [`GatedOp`]: `(y, ∂L/∂out) → ∂L/∂y`.
struct GatedGradOp;

impl CustomOp2 for GatedGradOp {
    fn name(&self) -> &'static str {
        "ddssm-gated-grad"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let c = l.dims()[l.dims().len() - 1] / 2;
        let out = match (s, g) {
            (CpuStorage::F32(v), CpuStorage::F32(g)) => {
                let (v, g) = (contiguous_slice(v, l)?, contiguous_slice(g, lg)?);
                CpuStorage::F32(gated_bwd_f32(v, g, c))
            }
            (CpuStorage::F64(v), CpuStorage::F64(g)) => CpuStorage::F64(gated_bwd(
                contiguous_slice(v, l)?,
                contiguous_slice(g, lg)?,
                c,
            )),
            _ => candle_core::bail!("ddssm-gated-grad: f32 or f64 with matching dtypes"),
        };
        Ok((out, l.shape().clone()))
    }
}

/// CSDI's gated activation `σ(gate) ⊙ tanh(filter)`, where `gate` and `filter` are the first and
/// second halves of the last axis of `y` (`[…, 2C]` → `[…, C]`).
pub fn gated_activation(y: &Tensor) -> Result<Tensor> {
    let two_c = y.dim(D::Minus1)?;
    if two_c % 2 != 0 {
        return Err(Error::Shape {
            what: "gated activation input",
            expected: "[…, 2C]".into(),
            got: y.dims().to_vec(),
        });
    }
    if supported(y) {
        return Ok(y.contiguous()?.apply_op1(GatedOp)?);
    }
    let c = two_c / 2;
    let gate = y.narrow(D::Minus1, 0, c)?;
    let filter = y.narrow(D::Minus1, c, c)?;
    Ok((candle_core::Tensor::exp(&gate.neg()?)?
        .affine(1.0, 1.0)?
        .recip()?
        * filter.tanh()?)?)
}

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
        return Ok(x.contiguous()?.apply_op3(w, &b.contiguous()?, op)?);
    }
    let n = x.dim(axis)?;
    let padded = x.pad_with_zeros(axis, pad_before, kernel - 1 - pad_before)?;
    let shifted = (0..kernel)
        .map(|i| padded.narrow(axis, i, n))
        .collect::<candle_core::Result<Vec<_>>>()?;
    linear(&Tensor::cat(&shifted, 3)?, w, Some(b))
}

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
        let x2 = Layout::contiguous_with_offset((rows, c), lx.start_offset());
        let mut out = match b {
            CpuStorage::F32(b) => CpuStorage::F32(contiguous_slice(b, lb)?.repeat(rows)),
            CpuStorage::F64(b) => CpuStorage::F64(contiguous_slice(b, lb)?.repeat(rows)),
            _ => candle_core::bail!("ddssm-axis-conv: f32 or f64"),
        };
        for (i, d) in self.taps(len) {
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
        let x2 = x.reshape((rows, c))?;
        let mut dx: Option<Tensor> = None;
        let mut dw: Vec<Tensor> = (0..self.kernel)
            .map(|_| Tensor::zeros((c, c), w.dtype(), w.device()))
            .collect::<candle_core::Result<_>>()?;
        for (i, d) in self.taps(len) {
            // out[p] collects Y_i[p + d], so ∂L/∂Y_i[q] = g[q − d].
            let dy = self.shifted(&g, d)?.reshape((rows, c))?;
            let wi = w.narrow(1, i * c, c)?;
            let term = dy.matmul(&wi)?;
            dx = Some(match dx {
                Some(acc) => (acc + term)?,
                None => term,
            });
            dw[i] = dy.t()?.matmul(&x2)?;
        }
        let dx = match dx {
            Some(d) => d.reshape((n, h, l, c))?,
            None => x.zeros_like()?,
        };
        let db = column_sums(&g.reshape((rows, c))?)?;
        Ok((Some(dx), Some(Tensor::cat(&dw, 1)?), Some(db)))
    }
}

/// CSDI's gated activation after adding the side information's projections:
/// `pre = y + temporal[b, l] + static[b, h]`, `out = σ(pre[…, :C]) ⊙ tanh(pre[…, C:])`, with `y`
/// `[B, H, L, 2C]`, `temporal` `[B, L, 2C]` (broadcast over `H`) and `static_` `[B, H, 2C]`
/// (broadcast over `L`); either may be absent. One graph node instead of two broadcast additions
/// (whose backward passes are strided reductions) and the activation.
pub fn gated_with_side(
    y: &Tensor,
    temporal: Option<&Tensor>,
    static_: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, h, l, c2) = y.dims4()?;
    if temporal.is_none() && static_.is_none() {
        return gated_activation(y);
    }
    let ok_t = temporal.is_none_or(|t| t.dims() == [b, l, c2]);
    let ok_s = static_.is_none_or(|s| s.dims() == [b, h, c2]);
    if !ok_t || !ok_s {
        return Err(Error::Shape {
            what: "gated activation side information",
            expected: format!("temporal [{b}, {l}, {c2}], static [{b}, {h}, {c2}]"),
            got: [
                temporal.map_or(&[][..], |t| t.dims()),
                static_.map_or(&[][..], |s| s.dims()),
            ]
            .concat(),
        });
    }
    if supported(y) {
        let zeros = || Tensor::zeros((b, 1, c2), y.dtype(), y.device());
        let t = match temporal {
            Some(t) => t.contiguous()?,
            None => zeros()?,
        };
        let s = match static_ {
            Some(s) => s.contiguous()?,
            None => zeros()?,
        };
        return Ok(y.contiguous()?.apply_op3(&t, &s, GatedSideOp)?);
    }
    let mut pre = y.clone();
    if let Some(t) = temporal {
        pre = pre.broadcast_add(&t.unsqueeze(1)?)?;
    }
    if let Some(s) = static_ {
        pre = pre.broadcast_add(&s.unsqueeze(2)?)?;
    }
    gated_activation(&pre)
}

/// `y + t + s` with the broadcasting of [`gated_with_side`], as a plain buffer.
#[inline(always)]
fn side_sum<T: Copy + std::ops::Add<Output = T>>(
    y: &[T],
    t: &[T],
    s: &[T],
    (b, h, l, c2): (usize, usize, usize, usize),
    (tl, sh): (usize, usize),
) -> Vec<T> {
    let mut out = Vec::with_capacity(y.len());
    for bb in 0..b {
        for hh in 0..h {
            let so = (bb * sh + if sh == 1 { 0 } else { hh }) * c2;
            for ll in 0..l {
                let to = (bb * tl + if tl == 1 { 0 } else { ll }) * c2;
                let yo = ((bb * h + hh) * l + ll) * c2;
                out.extend(
                    y[yo..yo + c2]
                        .iter()
                        .zip(&t[to..to + c2])
                        .zip(&s[so..so + c2])
                        .map(|((&a, &b), &c)| a + b + c),
                );
            }
        }
    }
    out
}

struct GatedSideOp;

impl CustomOp3 for GatedSideOp {
    fn name(&self) -> &'static str {
        "ddssm-gated-side"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        t: &CpuStorage,
        lt: &Layout,
        s: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, l, c2) = ly.shape().dims4()?;
        let dims = (b, h, l, c2);
        let bc = (lt.dims()[1], ls.dims()[1]);
        let out = match (y, t, s) {
            (CpuStorage::F32(y), CpuStorage::F32(t), CpuStorage::F32(s)) => {
                let (y, t, s) = (
                    contiguous_slice(y, ly)?,
                    contiguous_slice(t, lt)?,
                    contiguous_slice(s, ls)?,
                );
                CpuStorage::F32(gated_side_f32(y, t, s, dims, bc))
            }
            (CpuStorage::F64(y), CpuStorage::F64(t), CpuStorage::F64(s)) => {
                CpuStorage::F64(gated_side(
                    contiguous_slice(y, ly)?,
                    contiguous_slice(t, lt)?,
                    contiguous_slice(s, ls)?,
                    dims,
                    bc,
                ))
            }
            _ => candle_core::bail!("ddssm-gated-side: f32 or f64 with matching dtypes"),
        };
        Ok((out, Shape::from((b, h, l, c2 / 2))))
    }

    fn bwd(
        &self,
        y: &Tensor,
        t: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let pre = y.apply_op3_no_bwd(t, s, &SideSumOp)?;
        let dpre = pre.apply_op2_no_bwd(&grad.contiguous()?, &GatedGradOp)?;
        let dt = dpre.apply_op1_no_bwd(&SideReduceOp {
            keep: 2,
            broadcast: t.dims()[1] == 1,
        })?;
        let ds = dpre.apply_op1_no_bwd(&SideReduceOp {
            keep: 1,
            broadcast: s.dims()[1] == 1,
        })?;
        Ok((Some(dpre), Some(dt), Some(ds)))
    }
}

/// `y + t + s` as a tensor (the backward pass recomputes the pre-activation).
struct SideSumOp;

impl CustomOp3 for SideSumOp {
    fn name(&self) -> &'static str {
        "ddssm-side-sum"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        t: &CpuStorage,
        lt: &Layout,
        s: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = ly.shape().dims4()?;
        let bc = (lt.dims()[1], ls.dims()[1]);
        let out = match (y, t, s) {
            (CpuStorage::F32(y), CpuStorage::F32(t), CpuStorage::F32(s)) => {
                let (y, t, s) = (
                    contiguous_slice(y, ly)?,
                    contiguous_slice(t, lt)?,
                    contiguous_slice(s, ls)?,
                );
                CpuStorage::F32(side_sum_f32(y, t, s, dims, bc))
            }
            (CpuStorage::F64(y), CpuStorage::F64(t), CpuStorage::F64(s)) => {
                CpuStorage::F64(side_sum(
                    contiguous_slice(y, ly)?,
                    contiguous_slice(t, lt)?,
                    contiguous_slice(s, ls)?,
                    dims,
                    bc,
                ))
            }
            _ => candle_core::bail!("ddssm-side-sum: f32 or f64"),
        };
        Ok((out, ly.shape().clone()))
    }
}

/// Sums `[B, H, L, C']` down to `[B, L, C']` (`keep = 2`: over `H`) or `[B, H, C']` (`keep = 1`:
/// over `L`); with `broadcast`, over both, to `[B, 1, C']`.
struct SideReduceOp {
    keep: usize,
    broadcast: bool,
}

#[inline(always)]
fn side_reduce<T: Copy + Default + std::ops::AddAssign>(
    d: &[T],
    (b, h, l, c): (usize, usize, usize, usize),
    keep: usize,
    broadcast: bool,
) -> Vec<T> {
    let kept = if broadcast {
        1
    } else if keep == 2 {
        l
    } else {
        h
    };
    let mut out = vec![T::default(); b * kept * c];
    for bb in 0..b {
        for hh in 0..h {
            for ll in 0..l {
                let k = if broadcast {
                    0
                } else if keep == 2 {
                    ll
                } else {
                    hh
                };
                let src = ((bb * h + hh) * l + ll) * c;
                let dst = (bb * kept + k) * c;
                for (o, &v) in out[dst..dst + c].iter_mut().zip(&d[src..src + c]) {
                    *o += v;
                }
            }
        }
    }
    out
}

impl CustomOp1 for SideReduceOp {
    fn name(&self) -> &'static str {
        "ddssm-side-reduce"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, len, c) = l.shape().dims4()?;
        let kept = if self.broadcast {
            1
        } else if self.keep == 2 {
            len
        } else {
            h
        };
        let dims = (b, h, len, c);
        let out = match s {
            CpuStorage::F32(v) => {
                let v = contiguous_slice(v, l)?;
                let (keep, broadcast) = (self.keep, self.broadcast);
                CpuStorage::F32(side_reduce_f32(v, dims, keep, broadcast))
            }
            CpuStorage::F64(v) => CpuStorage::F64(side_reduce(
                contiguous_slice(v, l)?,
                dims,
                self.keep,
                self.broadcast,
            )),
            _ => candle_core::bail!("ddssm-side-reduce: f32 or f64"),
        };
        Ok((out, Shape::from((b, kept, c))))
    }
}

/// The residual update of a CSDI block, `(x + r)/√2`, as one graph node (`x` and `r` of the same
/// shape).
pub fn residual_update(x: &Tensor, r: &Tensor) -> Result<Tensor> {
    if x.dims() != r.dims() {
        return Err(Error::Shape {
            what: "residual update",
            expected: format!("{:?}", x.dims()),
            got: r.dims().to_vec(),
        });
    }
    if supported(x) && x.dtype() == r.dtype() {
        return Ok(x.contiguous()?.apply_op2(&r.contiguous()?, ResidualOp)?);
    }
    Ok(((x + r)? * std::f64::consts::FRAC_1_SQRT_2)?)
}

struct ResidualOp;

impl CustomOp2 for ResidualOp {
    fn name(&self) -> &'static str {
        "ddssm-residual-update"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        r: &CpuStorage,
        lr: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (x, r) {
            (CpuStorage::F32(x), CpuStorage::F32(r)) => {
                let k = std::f32::consts::FRAC_1_SQRT_2;
                CpuStorage::F32(
                    contiguous_slice(x, lx)?
                        .iter()
                        .zip(contiguous_slice(r, lr)?)
                        .map(|(a, b)| (a + b) * k)
                        .collect(),
                )
            }
            (CpuStorage::F64(x), CpuStorage::F64(r)) => {
                let k = std::f64::consts::FRAC_1_SQRT_2;
                CpuStorage::F64(
                    contiguous_slice(x, lx)?
                        .iter()
                        .zip(contiguous_slice(r, lr)?)
                        .map(|(a, b)| (a + b) * k)
                        .collect(),
                )
            }
            _ => candle_core::bail!("ddssm-residual-update: f32 or f64 with matching dtypes"),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = (grad * std::f64::consts::FRAC_1_SQRT_2)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

// The f32 kernels in copies compiled for the CPU's widest vector instructions (`crate::simd`).
crate::simd::wide_f32! {
    fn add_bias_f32(y: &mut [f32], b: &[f32]) -> () = add_bias::<f32>;
}
crate::simd::wide_f32! {
    fn gated_fwd_f32(y: &[f32], c: usize) -> Vec<f32> = gated_fwd::<f32>;
}
crate::simd::wide_f32! {
    fn gated_bwd_f32(y: &[f32], grad: &[f32], c: usize) -> Vec<f32> = gated_bwd::<f32>;
}
crate::simd::wide_f32! {
    fn gated_side_f32(
        y: &[f32],
        t: &[f32],
        s: &[f32],
        dims: (usize, usize, usize, usize),
        bc: (usize, usize),
    ) -> Vec<f32> = gated_side::<f32>;
}
crate::simd::wide_f32! {
    fn side_sum_f32(
        y: &[f32],
        t: &[f32],
        s: &[f32],
        dims: (usize, usize, usize, usize),
        bc: (usize, usize),
    ) -> Vec<f32> = side_sum::<f32>;
}
crate::simd::wide_f32! {
    fn side_reduce_f32(
        v: &[f32],
        dims: (usize, usize, usize, usize),
        keep: usize,
        broadcast: bool,
    ) -> Vec<f32> = side_reduce::<f32>;
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

/// `side_sum` then the gated activation, as one kernel.
#[inline(always)]
fn gated_side<T: Gate + std::ops::Add<Output = T>>(
    y: &[T],
    t: &[T],
    s: &[T],
    dims: (usize, usize, usize, usize),
    bc: (usize, usize),
) -> Vec<T> {
    gated_fwd(&side_sum(y, t, s, dims, bc), dims.3 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let exact = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - exact) / exact).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(-200.0), exp_f32(-87.0));
        assert!(exp_f32(200.0).is_finite());
    }
}
