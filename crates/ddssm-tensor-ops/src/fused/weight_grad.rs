//! The weight gradient `∂L/∂W = gᵀ x` of the fused linear maps (`g` `[R, N]`, `x` `[R, K]`,
//! very many rows `R`, `K` = 16, 32 or 64), in our own AVX-512 kernel, summed in a fixed order.
//!
//! gemm treats this product as a reduction of depth `R` and splits that depth into blocks it
//! sizes from the caches it detects, so its bits depend on the machine (the pinned Section 4 run
//! documents the effect). Here every output `(n, k)` is summed in row order within blocks of
//! [`ROW_BLOCK`] rows (one FMA chain per block, from zero) and the blocks' sums are added in
//! order: the same bits on every CPU with AVX-512, and the error of a `ROW_BLOCK`-term chain plus
//! `R / ROW_BLOCK` additions rather than one `R`-term chain. The kernel holds 16 accumulator
//! vectors — `16 / (K/16)` outputs' rows of `K` — loads one row of `x` per row of `g`, and takes
//! `g`'s entries as broadcasts.
//!
//! Without AVX-512, for other `K` and for `N` not a multiple of the block, candle's matmul runs.
//! The bias's gradient, [`column_sums`], uses the same order with plain additions on every CPU;
//! [`weight_and_bias_grad`] computes it in the weight gradient's pass over `g` (same bits).

// The kernel may only be called where the CPU has its features (guarded by
// `simd::x86::level`); its loads and stores are bounded as their comments say.
#![allow(unsafe_code)]

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::small_mm::{Scatter, ScatterCursor};
use super::{contiguous_slice, supported};

/// Rows per block of the fixed summation order (see the module documentation).
pub(crate) const ROW_BLOCK: usize = 256;

/// The number of outputs `n` one pass of the kernel holds for inputs of width `k` (16
/// accumulator vectors), or `None` where there is no kernel for `(n, k)` on this CPU.
fn outputs_per_pass(n: usize, k: usize) -> Option<usize> {
    let avx512 = crate::simd::avx512();
    let per_pass = match k {
        16 if n.is_multiple_of(16) => 16,
        16 | 32 => 8,
        64 => 4,
        _ => return None,
    };
    (avx512 && n > 0 && n.is_multiple_of(per_pass)).then_some(per_pass)
}

/// What one call of [`weight_grad_f32`] computes besides `gᵀ x`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extras {
    /// Also `g`'s column sums (`[n]`, the bias's gradient) in the order of [`column_sums`],
    /// from the same pass over `g`.
    pub sums: bool,
    /// Read `g` shifted along a sequence axis: row `q` of `x` pairs with the row of `g` that
    /// the cursor of this [`Scatter`] gives (`g[q − shift]` along the axis), or with a zero row
    /// outside — a convolution tap's weight gradient without a shifted copy of `g`. Not with
    /// `sums`.
    pub shift: Option<Scatter>,
}

/// `gᵀ x` as a row-major `[n, k]`, for row-major `g` (`[R, n]`) and `x` (`[R, k]`), or `None`
/// where there is no kernel (see the module documentation) or the shapes do not fit; with
/// [`Extras::sums`] also the column sums (else an empty vector).
pub(crate) fn weight_grad_f32(
    g: &[f32],
    n: usize,
    x: &[f32],
    k: usize,
    extras: Extras,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let per_pass = outputs_per_pass(n, k)?;
    let rows = g.len() / n;
    if g.len() != rows * n || x.len() != rows * k {
        return None;
    }
    if let Some(s) = extras.shift {
        let whole = s.len > 0 && s.stride > 0 && rows.is_multiple_of(s.len * s.stride);
        if extras.sums || !whole {
            return None;
        }
    }
    let mut out = vec![0f32; n * k];
    let mut col = vec![0f32; if extras.sums { n } else { 0 }];
    let run = match (k, per_pass) {
        (16, 16) => pass_kind::<1, 16>,
        (16, 8) => pass_kind::<1, 8>,
        (32, 8) => pass_kind::<2, 8>,
        (64, 4) => pass_kind::<4, 4>,
        _ => return None,
    };
    // SAFETY: `outputs_per_pass` found AVX-512F (with AVX2 and FMA) through
    // `simd::x86::level`, which checked them with `is_x86_feature_detected!`.
    unsafe { run(g, n, x, (&mut out, &mut col), extras) };
    Some((out, col))
}

/// [`passes`] for the kind of pass `extras` asks for.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA.
unsafe fn pass_kind<const CK: usize, const NB: usize>(
    g: &[f32],
    n: usize,
    x: &[f32],
    (out, col): (&mut [f32], &mut [f32]),
    extras: Extras,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the features `passes` is compiled for.
    unsafe {
        // A cursor that never moves anything, for the passes that read `g` in place.
        let unshifted = Scatter {
            len: 1,
            stride: 1,
            shift: 0,
        };
        match (extras.sums, extras.shift) {
            (false, None) => passes::<CK, NB, false, false>(g, n, x, (out, col), unshifted),
            (true, None) => passes::<CK, NB, true, false>(g, n, x, (out, col), unshifted),
            (false, Some(s)) => passes::<CK, NB, false, true>(g, n, x, (out, col), s),
            (true, Some(_)) => unreachable!("refused by weight_grad_f32"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (g, n, x, out, col, extras);
}

/// One pass per `NB` outputs: `out[n0 + j, :] = Σ_r g[r, n0 + j] · x[r, :]`, with `x`'s rows as
/// `CK` vectors of 16; with `SUMS`, also `col[n0 + j] = Σ_r g[r, n0 + j]` by plain additions in
/// the same blocks (the order of [`column_sums`]); with `SHIFTED`, row `r` of `x` pairs with the
/// row of `g` that `shift`'s cursor gives (and adds nothing where it gives none).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn passes<const CK: usize, const NB: usize, const SUMS: bool, const SHIFTED: bool>(
    g: &[f32],
    n: usize,
    x: &[f32],
    (out, col): (&mut [f32], &mut [f32]),
    shift: Scatter,
) {
    use std::arch::x86_64::*;
    let k = CK * 16;
    let rows = g.len() / n;
    assert!(x.len() == rows * k && out.len() == n * k && n.is_multiple_of(NB));
    assert!(!SUMS || (col.len() == n && !SHIFTED));
    for n0 in (0..n).step_by(NB) {
        let mut total = [[_mm512_setzero_ps(); CK]; NB];
        let mut col_total = [0f32; NB];
        let mut cursor = ScatterCursor::new(shift);
        for r0 in (0..rows).step_by(ROW_BLOCK) {
            let mut acc = [[_mm512_setzero_ps(); CK]; NB];
            let mut col_acc = [0f32; NB];
            for r in r0..rows.min(r0 + ROW_BLOCK) {
                // The row of `g` paired with row `r` of `x`; a row outside the shifted sequence
                // is zero and would add nothing to the sums.
                let rg = if SHIFTED {
                    match cursor.next() {
                        usize::MAX => continue,
                        rg => rg,
                    }
                } else {
                    r
                };
                // SAFETY: `r < rows` and `c < CK`, so the 16 floats at `r·k + 16c` lie in `x`
                // (`rows·k` floats, asserted above).
                let xr: [__m512; CK] = std::array::from_fn(|c| unsafe {
                    _mm512_loadu_ps(x.as_ptr().add(r * k + c * 16))
                });
                let gr: &[f32; NB] = g[rg * n + n0..rg * n + n0 + NB]
                    .try_into()
                    .expect("NB entries");
                for (acc, &gv) in acc.iter_mut().zip(gr) {
                    let gv = _mm512_set1_ps(gv);
                    for (a, &xv) in acc.iter_mut().zip(&xr) {
                        *a = _mm512_fmadd_ps(gv, xv, *a);
                    }
                }
                if SUMS {
                    for j in 0..NB {
                        col_acc[j] += gr[j];
                    }
                }
            }
            for (t, a) in total.iter_mut().zip(&acc) {
                for (t, &a) in t.iter_mut().zip(a) {
                    *t = _mm512_add_ps(*t, a);
                }
            }
            if SUMS {
                for j in 0..NB {
                    col_total[j] += col_acc[j];
                }
            }
        }
        if SUMS {
            col[n0..n0 + NB].copy_from_slice(&col_total);
        }
        for (j, t) in total.iter().enumerate() {
            for (c, &t) in t.iter().enumerate() {
                let at = (n0 + j) * k + c * 16;
                // SAFETY: `n0 + j < n` and `c < CK`, so the 16 floats at `at` lie in `out`
                // (`n·k` floats, asserted above).
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(at), t) };
            }
        }
    }
}

/// `gᵀ x` for 2-D `g` (`[R, N]`) and `x` (`[R, K]`): through [`weight_grad_f32`] on the CPU for
/// f32 where it has a kernel, else candle's matmul. Not differentiable: for the backward passes
/// of the fused ops.
pub(crate) fn weight_grad(g: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    if has_kernel(g, x)? {
        g.contiguous()?
            .apply_op2_no_bwd(&x.contiguous()?, &WeightGradOp(Extras::default()))
    } else {
        g.t()?.matmul(x)
    }
}

/// `dyᵀ x` for `dy` = `g` (`[R, N]`) moved along a sequence axis as `shift`'s cursor reads it
/// (a convolution tap's `∂L/∂Y_i`), without building `dy`. Only where [`has_kernel`] holds (the
/// caller otherwise builds `dy` and calls [`weight_grad`]: the same bits).
pub(crate) fn weight_grad_shifted(
    g: &Tensor,
    x: &Tensor,
    shift: Scatter,
) -> candle_core::Result<Tensor> {
    let extras = Extras {
        sums: false,
        shift: Some(shift),
    };
    g.contiguous()?
        .apply_op2_no_bwd(&x.contiguous()?, &WeightGradOp(extras))
}

/// `[gᵀ x | Σ_r g[r, :]]` as one `[N, K + 1]`: a linear map's weight gradient with its bias's
/// beside it (the layout of a `[W | b]` weight), the same bits as [`weight_grad`] and
/// [`column_sums`] apart but from one pass over `g` where the kernel runs.
pub(crate) fn weight_and_bias_grad(g: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    if has_kernel(g, x)? {
        let extras = Extras {
            sums: true,
            shift: None,
        };
        g.contiguous()?
            .apply_op2_no_bwd(&x.contiguous()?, &WeightGradOp(extras))
    } else {
        Tensor::cat(&[g.t()?.matmul(x)?, column_sums(g)?.unsqueeze(1)?], 1)
    }
}

/// Whether [`weight_grad_f32`] has a kernel for `g` (`[R, N]`) and `x` (`[R, K]`) here.
pub(crate) fn has_kernel(g: &Tensor, x: &Tensor) -> candle_core::Result<bool> {
    let (_, n) = g.dims2()?;
    let (_, k) = x.dims2()?;
    let f32s = g.dtype() == DType::F32 && x.dtype() == DType::F32;
    Ok(supported(g) && f32s && outputs_per_pass(n, k).is_some())
}

/// The op behind [`weight_grad`], [`weight_and_bias_grad`] and [`weight_grad_shifted`].
struct WeightGradOp(Extras);

impl CustomOp2 for WeightGradOp {
    fn name(&self) -> &'static str {
        "ddssm-weight-grad"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        x: &CpuStorage,
        lx: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, n) = lg.shape().dims2()?;
        let (rows_x, k) = lx.shape().dims2()?;
        let (CpuStorage::F32(g), CpuStorage::F32(x)) = (g, x) else {
            candle_core::bail!("ddssm-weight-grad: f32");
        };
        if rows != rows_x {
            candle_core::bail!("ddssm-weight-grad: {rows} rows of g, {rows_x} of x");
        }
        let (g, x) = (contiguous_slice(g, lg)?, contiguous_slice(x, lx)?);
        match weight_grad_f32(g, n, x, k, self.0) {
            Some((out, _)) if !self.0.sums => Ok((CpuStorage::F32(out), Shape::from((n, k)))),
            Some((out, col)) => {
                let rows: Vec<f32> = out
                    .chunks_exact(k)
                    .zip(col)
                    .flat_map(|(w, b)| w.iter().copied().chain([b]))
                    .collect();
                Ok((CpuStorage::F32(rows), Shape::from((n, k + 1))))
            }
            None => candle_core::bail!("ddssm-weight-grad: no kernel for N = {n}, K = {k}"),
        }
    }
}

/// `Σ_r g[r, :]` of a `[R, C]` gradient (a bias's gradient) as `[C]`, on the CPU in the fixed
/// order of [`weight_grad`]: additions in row order within blocks of [`ROW_BLOCK`] rows, the
/// blocks' sums added in order. Additions alone, vectorised across columns, so the bits are the
/// same at every SIMD level and on every CPU. Elsewhere a `1×R` matmul (candle's strided
/// `sum(0)` is far slower at these shapes).
pub(crate) fn column_sums(g: &Tensor) -> candle_core::Result<Tensor> {
    if supported(g) {
        g.contiguous()?.apply_op1_no_bwd(&ColumnSumsOp)
    } else {
        Tensor::ones((1, g.dim(0)?), g.dtype(), g.device())?
            .matmul(g)?
            .squeeze(0)
    }
}

/// The kernel of [`column_sums`] for a row-major `[R, c]`.
#[inline(always)]
fn column_sums_of<T: Copy + Default + std::ops::AddAssign>(g: &[T], c: usize) -> Vec<T> {
    let mut total = vec![T::default(); c];
    let mut block = vec![T::default(); c];
    for rows in g.chunks(ROW_BLOCK * c) {
        block.fill(T::default());
        for row in rows.chunks_exact(c) {
            for (b, &v) in block.iter_mut().zip(row) {
                *b += v;
            }
        }
        for (t, &b) in total.iter_mut().zip(&block) {
            *t += b;
        }
    }
    total
}

crate::simd::wide_f32! {
    fn column_sums_f32(g: &[f32], c: usize) -> Vec<f32> = column_sums_of::<f32>;
}

/// The op behind [`column_sums`].
struct ColumnSumsOp;

impl candle_core::CustomOp1 for ColumnSumsOp {
    fn name(&self) -> &'static str {
        "ddssm-column-sums"
    }

    fn cpu_fwd(&self, g: &CpuStorage, lg: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c) = lg.shape().dims2()?;
        let out = match g {
            CpuStorage::F32(g) => CpuStorage::F32(column_sums_f32(contiguous_slice(g, lg)?, c)),
            CpuStorage::F64(g) => CpuStorage::F64(column_sums_of(contiguous_slice(g, lg)?, c)),
            _ => candle_core::bail!("ddssm-column-sums: f32 or f64"),
        };
        Ok((out, Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_bits as bits, test_random as random};
    use super::*;
    use candle_core::Device;

    /// The fixed order, written out in scalar code: an FMA chain per block of `ROW_BLOCK` rows,
    /// the blocks' sums added in order.
    fn reference(g: &[f32], n: usize, x: &[f32], k: usize) -> Vec<f32> {
        let rows = g.len() / n;
        let mut out = vec![0f32; n * k];
        for (j, o) in out.iter_mut().enumerate() {
            let (nn, kk) = (j / k, j % k);
            for r0 in (0..rows).step_by(ROW_BLOCK) {
                let mut acc = 0f32;
                for r in r0..rows.min(r0 + ROW_BLOCK) {
                    acc = g[r * n + nn].mul_add(x[r * k + kk], acc);
                }
                *o += acc;
            }
        }
        out
    }

    /// Every kernel, at row counts around the block size, gives the documented order's bits,
    /// and agrees with candle's matmul to f32 rounding.
    #[test]
    fn the_kernel_sums_in_the_documented_order() {
        for (n, k) in [(16, 16), (32, 16), (8, 16), (24, 32), (8, 64)] {
            for rows in [1, 255, 256, 257, 1000] {
                let g = random(rows * n, (rows * 7 + n) as u64);
                let x = random(rows * k, (rows * 3 + k) as u64);
                let Some((got, none)) = weight_grad_f32(&g, n, &x, k, Extras::default()) else {
                    // No AVX-512 on this CPU: candle's matmul runs, nothing to compare.
                    continue;
                };
                assert!(none.is_empty());
                let want = reference(&g, n, &x, k);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "n = {n}, k = {k}, rows = {rows}");
                // With the column sums from the same pass: the same products, and the sums
                // bit for bit those of `column_sums`' own kernel.
                let sums_too = Extras {
                    sums: true,
                    shift: None,
                };
                let (again, sums) = weight_grad_f32(&g, n, &x, k, sums_too).unwrap();
                assert_eq!(again, got, "n = {n}, k = {k}, rows = {rows}");
                let want_sums = column_sums_f32(&g, n);
                let same = sums
                    .iter()
                    .zip(&want_sums)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "sums: n = {n}, k = {k}, rows = {rows}");
                let gt = Tensor::from_vec(g, (rows, n), &Device::Cpu).unwrap();
                let xt = Tensor::from_vec(x, (rows, k), &Device::Cpu).unwrap();
                let gemm = gt.t().unwrap().matmul(&xt).unwrap().flatten_all().unwrap();
                for (a, b) in got.iter().zip(gemm.to_vec1::<f32>().unwrap()) {
                    // Sums of ≤ 1000 products of entries below 2 in size: a few ulps of 1e3.
                    assert!(
                        (a - b).abs() <= 1e-3,
                        "n = {n}, k = {k}, rows = {rows}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// The column sums follow the documented order (checked against a scalar version of it, in
    /// f32 at the SIMD level this CPU picks) and agree with the plain path's matmul.
    #[test]
    fn column_sums_follow_the_documented_order() {
        for (rows, c) in [(1, 16), (255, 32), (257, 16), (1000, 3)] {
            let g = random(rows * c, (rows + c) as u64);
            let mut want = vec![0f32; c];
            for block in g.chunks(ROW_BLOCK * c) {
                let mut part = vec![0f32; c];
                for row in block.chunks_exact(c) {
                    for (p, &v) in part.iter_mut().zip(row) {
                        *p += v;
                    }
                }
                for (w, p) in want.iter_mut().zip(part) {
                    *w += p;
                }
            }
            let gt = Tensor::from_vec(g, (rows, c), &Device::Cpu).unwrap();
            let got = column_sums(&gt).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, want, "rows = {rows}, c = {c}");
            let ones = Tensor::ones((1, rows), DType::F32, &Device::Cpu).unwrap();
            let plain = ones.matmul(&gt).unwrap().squeeze(0).unwrap();
            for (a, b) in got.iter().zip(plain.to_vec1::<f32>().unwrap()) {
                assert!((a - b).abs() <= 1e-3, "rows = {rows}, c = {c}: {a} vs {b}");
            }
        }
    }

    /// `[gᵀ x | column sums]` is the two gradients side by side, bit for bit, with the kernel
    /// (N = 16, K = 16) and without it (N = 12: gemm and `column_sums`).
    #[test]
    fn weight_and_bias_gradients_in_one_pass_are_the_two_apart() {
        for (rows, n, k) in [(700, 16, 16), (300, 8, 32), (40, 12, 16)] {
            let g = Tensor::from_vec(random(rows * n, 5), (rows, n), &Device::Cpu).unwrap();
            let x = Tensor::from_vec(random(rows * k, 6), (rows, k), &Device::Cpu).unwrap();
            let both = weight_and_bias_grad(&g, &x).unwrap();
            assert_eq!(both.dims(), [n, k + 1]);
            let apart = Tensor::cat(
                &[
                    weight_grad(&g, &x).unwrap(),
                    column_sums(&g).unwrap().unsqueeze(1).unwrap(),
                ],
                1,
            )
            .unwrap();
            assert_eq!(bits(&both), bits(&apart), "rows = {rows}, n = {n}, k = {k}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_gemm() {
        let plain = Extras::default();
        assert!(weight_grad_f32(&[1.0; 12], 12, &[1.0; 16], 16, plain).is_none());
        assert!(weight_grad_f32(&[1.0; 16], 16, &[1.0; 8], 8, plain).is_none());
        assert!(weight_grad_f32(&[1.0; 16], 16, &[1.0; 32], 16, plain).is_none());
        let g = Tensor::from_vec(random(40 * 12, 1), (40, 12), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(random(40 * 16, 2), (40, 16), &Device::Cpu).unwrap();
        let got = weight_grad(&g, &x).unwrap().flatten_all().unwrap();
        let want = g.t().unwrap().matmul(&x).unwrap().flatten_all().unwrap();
        assert_eq!(
            got.to_vec1::<f32>().unwrap(),
            want.to_vec1::<f32>().unwrap()
        );
    }
}
