//! The fused linear layer's matmuls against candle's (gemm) at the paper's narrow shapes: `R` rows
//! of `K = 16` or `32` inputs to `N = 16` or `32` outputs (App. F: 16 channels, gated layers
//! produce 32), on one core as the trainer's workers run (set `RAYON_NUM_THREADS=1` for gemm).
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p ddssm-tensor-ops --bench small_mm`
//!
//! - `forward`: `linear(x, W, None)` against `x.matmul(Wᵀ)`;
//! - `forward+backward`: `linear` and the gradients of `Σ y` in `x` and `W`, with the fused ops
//!   on and off (off: candle's matmul and its backward, as on every other device). Only the
//!   forward and the input gradient use the new kernels; `∂L/∂W` is gemm either way.

use candle_core::{DType, Device, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ddssm_tensor_ops::{linear, set_fused_ops, SeededNoise};

const SHAPES: [(usize, usize, usize); 4] = [
    (8192, 16, 16),
    (8192, 16, 32),
    (8192, 32, 16),
    (65536, 16, 32),
];

fn matmuls(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut noise = SeededNoise::new(3);
    let mut group = c.benchmark_group("small_mm");
    group.sample_size(30);
    for (r, k, n) in SHAPES {
        let shape = format!("{r}x{k}x{n}");
        let x = noise.randn((r, k), DType::F32, &dev).unwrap();
        let w = noise.randn((n, k), DType::F32, &dev).unwrap();
        let wt = w.t().unwrap();
        group.bench_function(BenchmarkId::new("forward/fused", &shape), |b| {
            b.iter(|| linear(&x, &w, None).unwrap())
        });
        group.bench_function(BenchmarkId::new("forward/gemm", &shape), |b| {
            b.iter(|| x.matmul(&wt).unwrap())
        });
        // Forward and backward (∂L/∂x and ∂L/∂W) through the fused op, and through the plain
        // candle ops every other device takes (gemm for all three matmuls).
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&w).unwrap();
        for (name, fused) in [("fused", true), ("plain", false)] {
            set_fused_ops(fused);
            let id = BenchmarkId::new(format!("forward+backward/{name}"), &shape);
            group.bench_function(id, |b| {
                b.iter(|| {
                    let y = linear(xv.as_tensor(), wv.as_tensor(), None).unwrap();
                    y.sum_all().unwrap().backward().unwrap()
                })
            });
        }
        set_fused_ops(true);
    }
    group.finish();
}

criterion_group!(benches, matmuls);
criterion_main!(benches);
