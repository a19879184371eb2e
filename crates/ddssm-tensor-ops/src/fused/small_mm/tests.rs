//! The kernels against candle's matmul (gemm), bit for bit, and their shape checks.

use super::super::test_random as random;
use super::*;
use candle_core::{Device, Tensor};

type Kernel = fn(&[f32], Rhs<'_>) -> Option<Vec<f32>>;

/// The kernels this CPU can run, each by name.
fn kernels() -> Vec<(&'static str, Kernel)> {
    let mut found: Vec<(&str, Kernel)> = vec![("dispatched", small_matmul)];
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::x86::{level, Level};
        // The 8-lane kernel at every width (the dispatch uses it for `N` = 8 only).
        fn avx2_at_every_width(x: &[f32], w: Rhs<'_>) -> Option<Vec<f32>> {
            let mut out = vec![MaybeUninit::new(f32::NAN); x.len() / w.k * w.n];
            // SAFETY: only listed below where `level` found AVX2 and FMA.
            unsafe {
                match w.n {
                    8 => rows_avx2::<8, 1, 4>(x, w, Epilogue::default(), &mut out),
                    16 => rows_avx2::<4, 2, 2>(x, w, Epilogue::default(), &mut out),
                    32 => rows_avx2::<2, 4, 1>(x, w, Epilogue::default(), &mut out),
                    64 => rows_avx2::<1, 8, 1>(x, w, Epilogue::default(), &mut out),
                    _ => return None,
                }
            }
            // SAFETY: initialised with NaN above.
            Some(
                out.into_iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect(),
            )
        }
        if matches!(level(), Level::Avx512 | Level::Avx2) {
            found.push(("avx2", avx2_at_every_width));
        }
    }
    found
}

/// Every kernel, at every row count modulo its block, against candle's matmul (gemm):
/// identical bits, not just close ones; also with `w` read transposed in place, and with a
/// bias added (against gemm's output plus the bias).
#[test]
fn the_kernels_give_gemms_bits() {
    for (name, kernel) in kernels() {
        for n in [8, 16, 32, 64] {
            for k in (1..=33).filter(|&k| k != 2).chain([64, 256]) {
                for rows in [1, 3, 8, 13, 517] {
                    let x = random(rows * k, (n * 1000 + k * 10 + rows) as u64);
                    let w = random(k * n, 7 + n as u64);
                    let want = Tensor::from_vec(x.clone(), (rows, k), &Device::Cpu)
                        .unwrap()
                        .matmul(&Tensor::from_vec(w.clone(), (k, n), &Device::Cpu).unwrap())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    let wt: Vec<f32> = (0..n * k).map(|i| w[i % k * n + i / k]).collect();
                    let transposed = Rhs {
                        data: &wt,
                        k,
                        n,
                        k_stride: 1,
                        n_stride: k,
                        bias: None,
                    };
                    let bias = random(n, 11 + k as u64);
                    let want_biased: Vec<f32> = want
                        .iter()
                        .zip(bias.iter().cycle())
                        .map(|(y, b)| y + b)
                        .collect();
                    let rhs = [Rhs::rows(&w, k, n), transposed];
                    let biased = rhs.map(|r| Rhs {
                        bias: Some(&bias),
                        ..r
                    });
                    for (rhs, want) in rhs
                        .into_iter()
                        .map(|r| (r, &want))
                        .chain(biased.into_iter().map(|r| (r, &want_biased)))
                    {
                        let Some(got) = kernel(&x, rhs) else {
                            // No AVX-512 on this CPU: gemm runs, nothing to compare.
                            assert_eq!(name, "dispatched");
                            continue;
                        };
                        let same = got
                            .iter()
                            .zip(want.iter())
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{name}: n = {n}, k = {k}, rows = {rows}, {rhs:?}");
                    }
                }
            }
        }
    }
}

/// Adding a tap's products in place gives, bit for bit, the product tensor added by a
/// separate pass (`out[q − shift·stride] += y[q]` where the position stays in the sequence),
/// for both axes' strides, shifts of either sign and every width.
#[test]
fn products_added_in_place_match_a_separate_pass() {
    for n in [8, 16, 32, 64] {
        for (len, stride, shift) in [(5, 1, 1), (5, 1, -1), (3, 4, 1), (3, 4, -2), (7, 2, 0)] {
            let (k, rows) = (16, 2 * 3 * len * stride);
            let x = random(rows * k, (n + len + stride) as u64);
            let w = random(k * n, 3 + n as u64);
            let start = random(rows * n, 5);
            let Some(y) = small_matmul(&x, Rhs::rows(&w, k, n)) else {
                assert!(!small_matmul_into(&x, Rhs::rows(&w, k, n), &mut [], {
                    Scatter { len, stride, shift }
                }));
                continue;
            };
            let mut want = start.clone();
            for q in 0..rows {
                let pos = (q / stride % len) as isize - shift;
                if (0..len as isize).contains(&pos) {
                    let t = (q as isize - shift * stride as isize) as usize;
                    for j in 0..n {
                        want[t * n + j] += y[q * n + j];
                    }
                }
            }
            let mut got = start.clone();
            let scatter = Scatter { len, stride, shift };
            assert!(small_matmul_into(
                &x,
                Rhs::rows(&w, k, n),
                &mut got,
                scatter
            ));
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "n = {n}, {scatter:?}");
        }
    }
}

#[test]
fn other_widths_and_bad_shapes_are_left_to_gemm() {
    let w = [1.0; 64];
    // Width 3 has no kernel; 5 floats are not rows of 4; w is too short for 8 × 16.
    assert!(small_matmul(&[1.0; 4], Rhs::rows(&w[..3], 1, 3)).is_none());
    assert!(small_matmul(&[1.0; 5], Rhs::rows(&w, 4, 16)).is_none());
    assert!(small_matmul(&[1.0; 8], Rhs::rows(&w, 8, 16)).is_none());
    // A bias of the wrong length.
    let short_bias = Rhs {
        bias: Some(&w[..15]),
        ..Rhs::rows(&w, 4, 16)
    };
    assert!(small_matmul(&[1.0; 8], short_bias).is_none());
    // gemm's `K = 2` is `x₀w₀ + x₁w₁` without FMA.
    assert!(small_matmul(&[1.0; 2], Rhs::rows(&w, 2, 8)).is_none());
    // The same shapes that fit run (where the CPU has FMA).
    assert_eq!(
        small_matmul(&[1.0; 8], Rhs::rows(&w, 4, 16)).is_some(),
        has_kernel(4, 16)
    );
}

/// The tensor-level op reads a strided (column-sliced) `b` in place and agrees with candle.
#[test]
fn the_tensor_op_reads_strided_weights() -> candle_core::Result<()> {
    let a = Tensor::from_vec(random(37 * 16, 1), (37, 16), &Device::Cpu)?;
    let w = Tensor::from_vec(random(16 * 48, 2), (16, 48), &Device::Cpu)?;
    for b in [
        w.narrow(1, 16, 16)?,
        w.narrow(1, 8, 32)?,
        w.narrow(1, 0, 16)?.t()?,
    ] {
        let got = matmul(&a, &b)?.flatten_all()?.to_vec1::<f32>()?;
        let want = a.matmul(&b)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(got, want);
    }
    Ok(())
}
