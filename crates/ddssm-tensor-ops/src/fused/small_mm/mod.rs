//! `[R, K] × [K, N]` matmuls for the paper's narrow layers (`N` = 8, 16, 32 or 64 columns,
//! `K ≤ 256`, very many rows), faster than gemm at these shapes on CPUs with AVX-512, and with
//! gemm's bits.
//!
//! gemm is built for large blocks: for a 16- or 32-column output it packs both operands and runs
//! a 2×6-register AVX2 microkernel. Here the whole right-hand side (at most `K·64` floats) stays
//! in cache, each block of rows keeps its `N` outputs in registers as whole AVX-512 vectors (two
//! for `N` = 32), and a chunk of `w`'s rows sits in registers too. `RAYON_NUM_THREADS=1 cargo
//! bench -p ddssm-tensor-ops --bench small_mm` compares the two; docs/performance.md has the
//! figures.
//!
//! Every output is the chain `fma(x[r,K−1], w[K−1,n], … fma(x[r,0], w[0,n], 0))` in `k` order,
//! the order gemm's microkernels use when `K` fits in one depth block (measured: up to at least
//! 300), so the results are gemm's bit for bit (tested against candle's matmul). gemm keeps:
//! CPUs without AVX-512 (with AVX2 only, these kernels made training steps slower, not faster),
//! other widths, and `K = 2`, where gemm itself sums `x₀w₀ + x₁w₁` without FMA.

// The kernels may only be called where the CPU has their features (guarded by
// `simd::x86::level`); their loads, stores and unchecked reads of `x` are bounded as their
// comments say.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::{contiguous_slice, supported};

/// The right-hand side `w` (`[k, n]`) of [`small_matmul`], read in place: element `(i, j)` is
/// `data[i·k_stride + j·n_stride]`, so a transposed or column-sliced weight needs no copy; and
/// an optional bias `[n]`, added to each output row as it is stored (the same bits as adding it
/// afterwards, without a second pass over the output).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rhs<'a> {
    pub data: &'a [f32],
    pub k: usize,
    pub n: usize,
    pub k_stride: usize,
    pub n_stride: usize,
    pub bias: Option<&'a [f32]>,
}

impl<'a> Rhs<'a> {
    /// A row-major `[k, n]` matrix.
    #[cfg(test)]
    pub fn rows(data: &'a [f32], k: usize, n: usize) -> Self {
        Self {
            data,
            k,
            n,
            k_stride: n,
            n_stride: 1,
            bias: None,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.k > 0
            && self.n > 0
            && (self.k - 1) * self.k_stride + (self.n - 1) * self.n_stride < self.data.len()
            && self.bias.is_none_or(|b| b.len() == self.n)
    }

    /// The bias as `C` vectors of `W` lanes.
    #[inline(always)]
    fn packed_bias<const C: usize, const W: usize>(&self) -> Option<[[f32; W]; C]> {
        self.bias
            .map(|b| std::array::from_fn(|c| std::array::from_fn(|l| b[c * W + l])))
    }

    /// The rows of `w` as `C` vectors of `W` lanes each (`C·W = n`).
    #[inline(always)]
    fn pack<const C: usize, const W: usize>(&self) -> Vec<[[f32; W]; C]> {
        (0..self.k)
            .map(|i| {
                std::array::from_fn(|c| {
                    std::array::from_fn(|l| {
                        self.data[i * self.k_stride + (c * W + l) * self.n_stride]
                    })
                })
            })
            .collect()
    }
}

/// Whether [`small_matmul`] has a kernel for `[·, k] × [k, n]` on this CPU: AVX-512 present,
/// `n` one of 8, 16, 32, 64, and `k` in `1 ..= 256` but not 2 (see the module documentation:
/// outside that, the kernel's bits would not be gemm's).
pub(crate) fn has_kernel(k: usize, n: usize) -> bool {
    let avx512 = crate::simd::avx512();
    avx512 && (1..=256).contains(&k) && k != 2 && matches!(n, 8 | 16 | 32 | 64)
}

/// `x · w` for a row-major `x` (`[R, k]`), as a row-major `[R, n]`, or `None` where
/// [`has_kernel`] is false or the shapes do not fit.
pub(crate) fn small_matmul(x: &[f32], w: Rhs<'_>) -> Option<Vec<f32>> {
    small_matmul_then(x, w, Epilogue::default())
}

/// What is done to each output vector after the bias, as it is stored: `(addend + y)·scale`,
/// each part optional. The addition and the product are the ones a separate residual or sum
/// pass made (`addend + y`, then `·scale`), so the bits are the same.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Epilogue<'a> {
    /// Row-major `[R, n]`, added to the outputs.
    pub addend: Option<&'a [f32]>,
    /// Multiplies the sum.
    pub scale: Option<f32>,
}

/// [`small_matmul`] with an [`Epilogue`] applied as each output is stored; `None` where there
/// is no kernel, the shapes do not fit, or the addend is not `[R, n]`.
pub(crate) fn small_matmul_then(x: &[f32], w: Rhs<'_>, then: Epilogue<'_>) -> Option<Vec<f32>> {
    if !has_kernel(w.k, w.n) || !x.len().is_multiple_of(w.k) || !w.in_bounds() {
        return None;
    }
    let len = x.len() / w.k * w.n;
    if then.addend.is_some_and(|a| a.len() != len) {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    let done = {
        let dst = &mut out.spare_capacity_mut()[..len];
        // SAFETY: `has_kernel` found AVX-512F (with AVX2 and FMA) through `simd::x86::level`,
        // which checked them with `is_x86_feature_detected!`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx512(x, w, then, dst)
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    };
    if !done {
        return None;
    }
    // SAFETY: the kernel wrote all `len` elements (`rows` covers every row of `x`, and each
    // row's `n` outputs).
    unsafe { out.set_len(len) };
    Some(out)
}

/// Where [`small_matmul_into`] adds each product row: row `q` of `x`, at position
/// `pos = (q / stride) mod len` along a sequence axis, goes to row `q − shift·stride` of the
/// output when `0 ≤ pos − shift < len`, and nowhere otherwise — one tap of a length-preserving
/// convolution along that axis (`out[p] += y[p + shift]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scatter {
    pub len: usize,
    pub stride: usize,
    pub shift: isize,
}

/// Walks the rows of `x` in order, tracking each one's position along the axis without a
/// division per row.
pub(crate) struct ScatterCursor {
    scatter: Scatter,
    q: usize,
    sub: usize,
    pos: usize,
}

impl ScatterCursor {
    /// A cursor before the first row.
    pub(crate) fn new(scatter: Scatter) -> Self {
        Self {
            scatter,
            q: 0,
            sub: 0,
            pos: 0,
        }
    }

    /// The output row of the next row of `x`, or `usize::MAX` where it falls outside.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> usize {
        let Scatter { len, stride, shift } = self.scatter;
        let p = self.pos as isize - shift;
        let target = if p >= 0 && (p as usize) < len {
            (self.q as isize - shift * stride as isize) as usize
        } else {
            usize::MAX
        };
        self.q += 1;
        self.sub += 1;
        if self.sub == stride {
            self.sub = 0;
            self.pos += 1;
            if self.pos == len {
                self.pos = 0;
            }
        }
        target
    }
}

/// `out[target(q)] += (x · w)[q]` for every row `q` of the row-major `x` (`[R, k]`), with the
/// rows' targets from `scatter` and `out` row-major `[R, n]`: one convolution tap added into the
/// output without a product tensor. Each sum is `out + product`, the addition the separate pass
/// made, so the bits are the same. Returns false (and leaves `out` alone) where
/// [`small_matmul`] has no kernel or the shapes do not fit; `w.bias` must be `None`.
pub(crate) fn small_matmul_into(x: &[f32], w: Rhs<'_>, out: &mut [f32], scatter: Scatter) -> bool {
    let rows = x.len() / w.k.max(1);
    let fits = x.len() == rows * w.k
        && out.len() == rows * w.n
        && scatter.len > 0
        && scatter.stride > 0
        && rows.is_multiple_of(scatter.len * scatter.stride)
        && w.bias.is_none();
    if !has_kernel(w.k, w.n) || !fits || !w.in_bounds() {
        return false;
    }
    // SAFETY: `&mut [f32]` as `&mut [MaybeUninit<f32>]`: same layout, and the kernel writes only
    // initialised floats into it.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    let cursor = ScatterCursor::new(scatter);
    // SAFETY: `has_kernel` found AVX-512F (with AVX2 and FMA) through `simd::x86::level`. Every
    // target is a row of `out` (`q − shift·stride` stays inside the sequence of row `q`, and
    // `out` has as many rows as `x`).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match w.n {
            8 => rows_avx2_into::<8, 1, 4>(x, w, out, cursor),
            16 => rows_avx512_into::<8, 1, 16>(x, w, out, cursor),
            32 => rows_avx512_into::<4, 2, 8>(x, w, out, cursor),
            _ => rows_avx512_into::<2, 4, 4>(x, w, out, cursor),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (out, cursor);
    true
}

/// AVX-512: 16-float vectors in 32 registers; row blocks and `w` chunks sized so that the
/// accumulators take 8 registers and `w`'s chunk 16. `N` = 8 takes 8-float (AVX2) vectors.
///
/// There is no AVX2-only path: on this machine, steps with the AVX2 kernels everywhere were
/// 1.05× those with gemm (median of 8 paired runs), so CPUs without AVX-512 keep gemm.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn avx512(x: &[f32], w: Rhs<'_>, then: Epilogue<'_>, out: &mut [MaybeUninit<f32>]) -> bool {
    match w.n {
        8 => rows_avx2::<8, 1, 4>(x, w, then, out),
        16 => rows_avx512::<8, 1, 16>(x, w, then, out),
        32 => rows_avx512::<4, 2, 8>(x, w, then, out),
        64 => rows_avx512::<2, 4, 4>(x, w, then, out),
        _ => return false,
    }
    true
}

/// Defines `$name::<RB, C, KC>(x, w, out)`, the kernel for one vector width in intrinsics
/// (autovectorised loops compiled far worse here — measured 3.6× slower steps with AVX2): rows
/// in blocks of `RB` (then the leftover rows one at a time), each row's `C` output vectors held
/// in registers while `k` runs, and `w` taken `KC` rows at a time into registers (`KC·C`), so
/// that each FMA loads only its broadcast `x` — with `w` as a memory operand too, the load
/// ports, not the FMA units, bound the loop.
macro_rules! simd_rows {
    ($name:ident, $into:ident, $one:ident, $features:literal, $vec:ident, $lanes:literal, $zero:ident,
     $set1:ident, $fmadd:ident, $add:ident, $mul:ident, $load:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name<const RB: usize, const C: usize, const KC: usize>(
            x: &[f32],
            w: Rhs<'_>,
            then: Epilogue<'_>,
            out: &mut [MaybeUninit<f32>],
        ) {
            use std::arch::x86_64::*;
            let (k, n) = (w.k, C * $lanes);
            let bias = w.packed_bias::<C, $lanes>();
            let bias = bias.as_ref();
            let scale = then.scale.map(|s| $set1(s));
            let w = w.pack::<C, $lanes>();
            let mut x_blocks = x.chunks_exact(RB * k);
            let mut out_blocks = out.chunks_exact_mut(RB * n);
            let mut addends = then.addend.map(|a| a.chunks_exact(RB * n));
            let rows: [usize; RB] = std::array::from_fn(|i| i);
            for (xb, ob) in (&mut x_blocks).zip(&mut out_blocks) {
                let ab = addends.as_mut().and_then(|a| a.next());
                $one::<RB, C, KC, false>(xb, k, &w, bias, (ab, scale), ob, rows);
            }
            let mut rest = addends.map(|a| a.remainder().chunks_exact(n));
            for (xr, or) in x_blocks
                .remainder()
                .chunks_exact(k)
                .zip(out_blocks.into_remainder().chunks_exact_mut(n))
            {
                let ar = rest.as_mut().and_then(|a| a.next());
                $one::<1, C, KC, false>(xr, k, &w, bias, (ar, scale), or, [0]);
            }
        }

        /// The kernel of `$name`, adding each product row into the output row the cursor
        /// gives (`small_matmul_into`).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $into<const RB: usize, const C: usize, const KC: usize>(
            x: &[f32],
            w: Rhs<'_>,
            out: &mut [MaybeUninit<f32>],
            mut cursor: ScatterCursor,
        ) {
            let k = w.k;
            let w = w.pack::<C, $lanes>();
            let mut x_blocks = x.chunks_exact(RB * k);
            for xb in &mut x_blocks {
                let rows = std::array::from_fn(|_| cursor.next());
                $one::<RB, C, KC, true>(xb, k, &w, None, (None, None), out, rows);
            }
            for xr in x_blocks.remainder().chunks_exact(k) {
                $one::<1, C, KC, true>(xr, k, &w, None, (None, None), out, [cursor.next()]);
            }
        }

        /// `RB` rows of `x · w` (plus `bias`), kept in registers, then stored as rows `rows[i]`
        /// of `out` (`usize::MAX`: dropped) — added to what is there when `ACC`.
        #[cfg(target_arch = "x86_64")]
        #[inline]
        #[target_feature(enable = $features)]
        fn $one<const RB: usize, const C: usize, const KC: usize, const ACC: bool>(
            x: &[f32],
            k: usize,
            w: &[[[f32; $lanes]; C]],
            bias: Option<&[[f32; $lanes]; C]>,
            (addend, scale): (Option<&[f32]>, Option<std::arch::x86_64::$vec>),
            out: &mut [MaybeUninit<f32>],
            rows: [usize; RB],
        ) {
            use std::arch::x86_64::*;
            let load = |v: &[f32; $lanes]| {
                // SAFETY: `$lanes` floats behind a reference; unaligned load.
                unsafe { $load(v.as_ptr()) }
            };
            assert!(x.len() >= RB * k && w.len() == k);
            let x_at = |i: usize, kk: usize| {
                debug_assert!(i < RB && kk < k);
                // SAFETY: `i < RB` and `kk < k` at every call below (a row of the block,
                // and a `k` index from `w`'s `k` rows), and `x` holds `RB·k` floats
                // (asserted above). Checked indexing costs three instructions per FMA here
                // and made the loop front-end bound.
                unsafe { *x.get_unchecked(i * k + kk) }
            };
            let mut acc = [[$zero(); C]; RB];
            let mut chunks = w.chunks_exact(KC);
            let mut k0 = 0;
            for wc in &mut chunks {
                let wr: [[$vec; C]; KC] =
                    std::array::from_fn(|j| std::array::from_fn(|c| load(&wc[j][c])));
                for (j, wj) in wr.iter().enumerate() {
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let xv = $set1(x_at(i, k0 + j));
                        for (a, &wv) in acc.iter_mut().zip(wj) {
                            *a = $fmadd(xv, wv, *a);
                        }
                    }
                }
                k0 += KC;
            }
            for (j, wj) in chunks.remainder().iter().enumerate() {
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xv = $set1(x_at(i, k0 + j));
                    for (a, wv) in acc.iter_mut().zip(wj) {
                        *a = $fmadd(xv, load(wv), *a);
                    }
                }
            }
            let n = C * $lanes;
            for (&r, acc) in rows.iter().zip(&acc) {
                if r == usize::MAX {
                    continue;
                }
                let row = &mut out[r * n..(r + 1) * n];
                for (c, (dst, &a)) in row.chunks_exact_mut($lanes).zip(acc).enumerate() {
                    let a = match bias {
                        Some(b) => $add(a, load(&b[c])),
                        None => a,
                    };
                    // The epilogue, `(addend + y)·scale` (`addend` holds this block's rows).
                    let a = match addend {
                        Some(ad) => {
                            let at: &[f32; $lanes] = ad[r * n + c * $lanes..][..$lanes]
                                .try_into()
                                .expect("a whole vector");
                            $add(load(at), a)
                        }
                        None => a,
                    };
                    let a = match scale {
                        Some(k) => $mul(a, k),
                        None => a,
                    };
                    // SAFETY: `$lanes` floats of `out`, initialised where `ACC` (the
                    // caller's contract); unaligned load and store.
                    let a = if ACC {
                        $add(unsafe { $load(dst.as_ptr().cast()) }, a)
                    } else {
                        a
                    };
                    unsafe { $store(dst.as_mut_ptr().cast(), a) };
                }
            }
        }
    };
}

simd_rows!(
    rows_avx512,
    rows_avx512_into,
    block_avx512,
    "avx512f,avx2,fma",
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_mul_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps
);
simd_rows!(
    rows_avx2,
    rows_avx2_into,
    block_avx2,
    "avx2,fma",
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_mul_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps
);

/// `a · b` for `a` `[R, K]` and `b` `[K, N]` (any strides): through [`small_matmul`] on the CPU
/// for f32 where it has a kernel, else candle's matmul; the bits are the same. Not
/// differentiable: for the backward passes of the fused ops.
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (k, n) = b.dims2()?;
    if supported(a) && a.dtype() == DType::F32 && b.dtype() == DType::F32 && has_kernel(k, n) {
        let b = b.clone();
        a.contiguous()?.apply_op1_no_bwd(&MatmulBy(b))
    } else {
        a.matmul(b)
    }
}

/// The op behind [`matmul`]: its one input is `a`, and it holds `b`.
struct MatmulBy(Tensor);

impl CustomOp1 for MatmulBy {
    fn name(&self) -> &'static str {
        "ddssm-small-matmul"
    }

    fn cpu_fwd(&self, a: &CpuStorage, la: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (r, k) = la.shape().dims2()?;
        let (storage, lb) = self.0.storage_and_layout();
        let (a, b) = match (a, &*storage) {
            (CpuStorage::F32(a), candle_core::Storage::Cpu(CpuStorage::F32(b))) => (a, b),
            _ => candle_core::bail!("ddssm-small-matmul: f32 on the CPU"),
        };
        let (_, n) = lb.shape().dims2()?;
        let stride = lb.stride();
        let rhs = Rhs {
            data: &b[lb.start_offset()..],
            k,
            n,
            k_stride: stride[0],
            n_stride: stride[1],
            bias: None,
        };
        match small_matmul(contiguous_slice(a, la)?, rhs) {
            Some(y) => Ok((CpuStorage::F32(y), Shape::from((r, n)))),
            None => candle_core::bail!("ddssm-small-matmul: no kernel for [{r}, {k}] × [{k}, {n}]"),
        }
    }
}

#[cfg(test)]
mod tests;
