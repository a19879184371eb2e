//! The vendored candle-core's CPU matmul (third_party/README.md) writes its output into an
//! uninitialised buffer instead of a zero-filled one. Every element must still be written: the
//! products here are computed right after the allocator has been handed back buffers full of NaN,
//! so an element gemm skipped would show up as NaN (or a stale value) against the naive product.

use candle_core::{DType, Device, Tensor};
use ddssm_tensor_ops::SeededNoise;

/// Uniform draws on [-1, 1) from a fixed seed.
fn uniform(noise: &mut SeededNoise, shape: (usize, usize, usize)) -> Tensor {
    let u = noise.rand_uniform(shape, DType::F32, &Device::Cpu).unwrap();
    ((u * 2.0).unwrap() - 1.0).unwrap()
}

/// Frees a few NaN-filled buffers of `len` elements so the next allocations of that size likely
/// reuse their memory.
fn poison(len: usize) {
    let bufs: Vec<Vec<f32>> = (0..4).map(|_| vec![f32::NAN; len]).collect();
    drop(bufs);
    let t = Tensor::full(f32::NAN, len, &Device::Cpu).unwrap();
    drop(t);
}

/// Naive batched product of `[b, m, k]` and `[b, k, n]` (given as nested vectors).
fn naive(a: &[Vec<Vec<f32>>], w: &[Vec<Vec<f32>>]) -> Vec<Vec<Vec<f32>>> {
    a.iter()
        .zip(w)
        .map(|(a, w)| {
            let n = w.first().map_or(0, |r| r.len());
            a.iter()
                .map(|row| {
                    (0..n)
                        .map(|j| row.iter().zip(w).map(|(x, wr)| x * wr[j]).sum())
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<Vec<f32>>], want: &[Vec<Vec<f32>>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got
        .iter()
        .flatten()
        .flatten()
        .zip(want.iter().flatten().flatten())
    {
        // Sums of at most 40 products of values in [-1, 1]: f32 rounding stays far below 1e-4.
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
}

#[test]
fn every_output_element_is_written() {
    let mut noise = SeededNoise::new(7);
    // (b, m, k, n): single and batched, gemv-like (m = 1 or n = 1), outer products (k = 1), the
    // sizes of this project's channel mixers, and a case large enough for gemm's blocked path.
    for &(b, m, k, n) in &[
        (1, 1, 1, 1),
        (1, 5, 3, 7),
        (3, 4, 6, 2),
        (2, 1, 9, 5),
        (2, 6, 9, 1),
        (4, 7, 1, 3),
        (8, 33, 16, 16),
        (1, 130, 40, 70),
    ] {
        let a = uniform(&mut noise, (b, m, k));
        let w = uniform(&mut noise, (b, k, n));
        let want = naive(&a.to_vec3().unwrap(), &w.to_vec3().unwrap());

        poison(b * m * n);
        let got = a.matmul(&w).unwrap();
        assert_close(&got.to_vec3().unwrap(), &want);

        // A transposed right operand (strided gemm inputs).
        let wt = w.transpose(1, 2).unwrap().contiguous().unwrap();
        poison(b * m * n);
        let got = a.matmul(&wt.transpose(1, 2).unwrap()).unwrap();
        assert_close(&got.to_vec3().unwrap(), &want);

        // A batch-invariant right operand: candle folds the batches into one (b·m, k) gemm.
        let w0 = w.narrow(0, 0, 1).unwrap();
        let want0 = naive(
            &a.to_vec3().unwrap(),
            &vec![w0.squeeze(0).unwrap().to_vec2().unwrap(); b],
        );
        poison(b * m * n);
        let got = a.broadcast_matmul(&w0).unwrap();
        assert_close(&got.to_vec3().unwrap(), &want0);
    }
}

#[test]
fn an_empty_inner_dimension_gives_zeros() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((2, 3, 0), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((2, 0, 4), DType::F32, &dev).unwrap();
    poison(2 * 3 * 4);
    let got = a.matmul(&w).unwrap().to_vec3::<f32>().unwrap();
    assert!(got.iter().flatten().flatten().all(|&x| x == 0.0), "{got:?}");
}
