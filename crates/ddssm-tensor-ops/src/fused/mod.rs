//! Fused CPU operations with their own backward passes (candle `CustomOp`s), one file per op
//! family: [`linear`], the gated activations ([`gated_activation`], and [`gated_with_side`] with
//! the side information added inside), the pooling over time ([`time_pool`]), the convolution
//! along one axis ([`axis_conv`]), the residual update ([`residual_update`]), a linear layer
//! added into a tensor as it is stored ([`linear_residual`], [`linear_accumulate`]) and the ReLU
//! ([`relu`]).
//!
//! Candle builds every elementwise op as its own graph node with a freshly allocated output, and
//! its backward adds each gradient into a zero tensor. For the paper's tiny channel counts and
//! huge row counts (the denoiser sees `S·B·(T−j)·S_k` rows) that bookkeeping, not arithmetic, is
//! the cost (docs/performance.md). Two ops cover the hot spots of every CSDI residual block:
//!
//! - [`linear`]: `x Wᵀ + b` as one node. Its backward is two matmuls and a column sum (candle's
//!   strided `sum(0)` is ≈ 25× slower at these shapes). On CPUs with AVX-512 the matmuls are our
//!   own kernels (`small_mm`, with gemm's bits; `weight_grad`, summed in a fixed order).
//! - [`gated_activation`]: `σ(gate) ⊙ tanh(filter)` on the two halves of the last axis, one pass
//!   forward and one backward, with a vectorisable `exp` for f32.
//!
//! Both run on the CPU for f32 and f64; on other devices or dtypes they fall back to the same
//! function built from plain candle ops, so results agree everywhere up to rounding. That plain
//! path (the only one CUDA and Metal take) can be forced on the CPU with [`set_fused_ops`], so it
//! is run and checked without a GPU (`ddssm-model/tests/generic_path.rs`).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Layout, Tensor};

mod conv;
mod gate;
mod linear;
mod linear_add;
mod pool;
mod relu;
mod residual;
mod side;
mod small_mm;
mod weight_grad;

use weight_grad::column_sums;

pub use conv::axis_conv;
pub use gate::gated_activation;
pub use linear::linear;
pub use linear_add::{linear_accumulate, linear_accumulate_scaled, linear_residual};
pub use pool::time_pool;
pub use relu::relu;
pub use residual::residual_update;
pub use side::gated_with_side;

static FUSED_ON_CPU: AtomicBool = AtomicBool::new(true);

/// Turns the fused CPU ops on (the default) or off, for the whole process. Off, every op of this
/// module takes its plain-candle path on the CPU too — the path every other device takes — so
/// that path can be tested on a machine without a GPU, and a suspected fused-op bug bisected.
/// The results agree up to rounding; the plain path is several times slower.
pub fn set_fused_ops(enabled: bool) {
    FUSED_ON_CPU.store(enabled, Ordering::Relaxed);
}

/// Whether the fused ops' own matmul kernels (`small_mm`, `weight_grad`: AVX-512) run on this
/// CPU. Where they do, every output row of a fused op has the same bits whatever the number of
/// rows in the call; where they do not, the ops fall back to gemm, whose rounding can depend on
/// the matrix sizes (`DDSSM_NO_SIMD` forces the fallback).
pub fn matmul_kernels() -> bool {
    crate::simd::avx512()
}

/// Whether the fused CPU ops are on ([`set_fused_ops`]).
pub fn fused_ops() -> bool {
    FUSED_ON_CPU.load(Ordering::Relaxed)
}

fn supported(t: &Tensor) -> bool {
    fused_ops() && t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// The backward of an elementwise op whose gradient is a function of its input and the
/// upstream gradient: `grad_op(arg, ∂L/∂out)`.
fn elementwise_grad(
    arg: &Tensor,
    grad: &Tensor,
    grad_op: &impl candle_core::CustomOp2,
) -> candle_core::Result<Option<Tensor>> {
    Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, grad_op)?))
}

fn contiguous_slice<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("ddssm fused op: non-contiguous input"),
    }
}

/// `n` pseudo-random floats in `[−2, 2)` from `seed` (a linear congruential generator: the
/// kernels' tests need fixed inputs, not good randomness).
#[cfg(test)]
fn test_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        })
        .collect()
}

/// The bits of every element of an f32 tensor, for tests that compare two computations exactly.
#[cfg(test)]
fn test_bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("an f32 tensor")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}
