//! `max(x, 0)` as one graph node with a one-pass backward.
//!
//! Candle's own ReLU backward builds a zero tensor, compares the input with it into a `u8` mask,
//! converts the mask to floats, multiplies it with the gradient and adds the product into another
//! zero tensor: five passes and four allocations per use. The context producers apply a ReLU to
//! every row of their widest tensors (`B·H·L` rows of `C` channels, twice per call), and the
//! Gaussian heads between their layers, so this op's backward is a single pass that writes
//! `g · 1[x ≥ 0]` — the same products, so the same bits, as candle's.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::*;
use crate::Result;

/// `max(x, 0)` elementwise, differentiable, with the gradient `∂L/∂x = ∂L/∂out · 1[x ≥ 0]`
/// (candle's convention at 0). On other devices or dtypes it is candle's `relu`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if supported(x) {
        return Ok(x.contiguous()?.apply_op1(ReluOp)?);
    }
    Ok(x.relu()?)
}

/// Candle's `v.max(0)` for f32 and f64.
trait Relu:
    Copy + PartialOrd + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn relu(self) -> Self;
}

impl Relu for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn relu(self) -> f32 {
        self.max(0.0)
    }
}

impl Relu for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    #[inline(always)]
    fn relu(self) -> f64 {
        self.max(0.0)
    }
}

#[inline(always)]
fn relu_fwd<T: Relu>(x: &[T]) -> Vec<T> {
    x.iter().map(|&v| v.relu()).collect()
}

/// `0 + g · m` with candle's mask `m = 1[x ≥ 0]` as a float, added to zero as candle adds it
/// into a fresh zero gradient, so NaN inputs and signed zeros give what candle's backward gives.
#[inline(always)]
fn relu_bwd<T: Relu>(x: &[T], g: &[T]) -> Vec<T> {
    x.iter()
        .zip(g)
        .map(|(&v, &g)| T::ZERO + g * if v >= T::ZERO { T::ONE } else { T::ZERO })
        .collect()
}

crate::simd::wide_f32! {
    fn relu_fwd_f32(x: &[f32]) -> Vec<f32> = relu_fwd::<f32>;
}
crate::simd::wide_f32! {
    fn relu_bwd_f32(x: &[f32], g: &[f32]) -> Vec<f32> = relu_bwd::<f32>;
}

struct ReluOp;

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "ddssm-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(relu_fwd_f32(contiguous_slice(v, l)?)),
            CpuStorage::F64(v) => CpuStorage::F64(relu_fwd(contiguous_slice(v, l)?)),
            _ => candle_core::bail!("ddssm-relu: f32 or f64"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        elementwise_grad(arg, grad, &ReluGradOp)
    }
}

/// The backward of [`ReluOp`]: `(x, ∂L/∂out) → ∂L/∂x`.
struct ReluGradOp;

impl CustomOp2 for ReluGradOp {
    fn name(&self) -> &'static str {
        "ddssm-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (s, g) {
            (CpuStorage::F32(v), CpuStorage::F32(g)) => CpuStorage::F32(relu_bwd_f32(
                contiguous_slice(v, l)?,
                contiguous_slice(g, lg)?,
            )),
            (CpuStorage::F64(v), CpuStorage::F64(g)) => {
                CpuStorage::F64(relu_bwd(contiguous_slice(v, l)?, contiguous_slice(g, lg)?))
            }
            _ => candle_core::bail!("ddssm-relu-grad: f32 or f64 with matching dtypes"),
        };
        Ok((out, l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    /// The fused op and candle's `relu` agree bit for bit, forward and backward, on seeded inputs
    /// that include exact zeros, a negative zero and a non-contiguous view.
    #[test]
    fn relu_matches_candle_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let mut v = test_random(6 * 37, 3);
            v[0] = 0.0;
            v[5] = -0.0;
            let x = Tensor::from_vec(v, (6, 37), &dev)?.to_dtype(dtype)?;
            // A transposed view, so the op's contiguous copy is exercised too.
            let x = Var::from_tensor(&x.t()?.contiguous()?.t()?)?;
            let g = Tensor::from_vec(test_random(6 * 37, 8), (6, 37), &dev)?.to_dtype(dtype)?;
            let (ours, theirs) = (relu(x.as_tensor())?, x.as_tensor().relu()?);
            let bits = |t: &Tensor| -> Result<Vec<u64>> {
                let t = t.to_dtype(DType::F64)?.flatten_all()?;
                Ok(t.to_vec1::<f64>()?.iter().map(|v| v.to_bits()).collect())
            };
            assert_eq!(bits(&ours)?, bits(&theirs)?, "{dtype:?} forward");
            let grad = |y: &Tensor| -> Result<Tensor> {
                let grads = (y * &g)?.sum_all()?.backward()?;
                Ok(grads.get(x.as_tensor()).expect("a gradient").clone())
            };
            assert_eq!(
                bits(&grad(&ours)?)?,
                bits(&grad(&theirs)?)?,
                "{dtype:?} backward"
            );
        }
        Ok(())
    }
}
