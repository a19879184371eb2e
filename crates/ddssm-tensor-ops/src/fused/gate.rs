//! The gated activation `σ(gate) ⊙ tanh(filter)` of every CSDI block, with the vectorisable
//! f32 `exp` and sigmoid/tanh it is built on.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};

use super::*;
use crate::{Error, Result};

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

pub(super) trait Gate: Copy + 'static {
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
pub(super) fn gated_fwd<T: Gate>(y: &[T], c: usize) -> Vec<T> {
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
pub(super) fn gated_bwd<T: Gate>(y: &[T], grad: &[T], c: usize) -> Vec<T> {
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
        elementwise_grad(arg, grad, &GatedGradOp)
    }
}

/// The backward of [`GatedOp`]: `(y, ∂L/∂out) → ∂L/∂y`.
pub(super) struct GatedGradOp;

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
    gated_plain(y)
}

/// The plain-candle path of [`gated_activation`] (every device but a CPU with the fused ops on).
/// The sigmoid is `½(1 + tanh(x/2))`: its backward `¼(1 − tanh²(x/2))` is finite everywhere.
/// The textbook `1/(1 + e^(−x))` is not: below x ≈ −88 (f32) `e^(−x)` overflows, the forward
/// still gives 0, but the backward multiplies a zero gradient by `e^(−x) = ∞` — NaN. A gate
/// pre-activation that low appears within the first hundred steps of the bimodal experiment's
/// DDSSM, which stopped every training run on a GPU (docs/performance.md).
fn gated_plain(y: &Tensor) -> Result<Tensor> {
    let c = y.dim(D::Minus1)? / 2;
    let gate = y.narrow(D::Minus1, 0, c)?;
    let filter = y.narrow(D::Minus1, c, c)?;
    let sigmoid = gate.affine(0.5, 0.0)?.tanh()?.affine(0.5, 0.5)?;
    Ok((sigmoid * filter.tanh()?)?)
}

crate::simd::wide_f32! {
    fn gated_fwd_f32(y: &[f32], c: usize) -> Vec<f32> = gated_fwd::<f32>;
}
crate::simd::wide_f32! {
    fn gated_bwd_f32(y: &[f32], grad: &[f32], c: usize) -> Vec<f32> = gated_bwd::<f32>;
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

    /// The plain path's gradient is finite and right at gate pre-activations far past where
    /// `e^(−x)` overflows (|x| ≥ 88 in f32): against the exact `σ'(g)·tanh(f)` and
    /// `σ(g)·(1 − tanh²(f))` in f64, to f32 rounding (1e-6 absolute; every value here is O(1)).
    #[test]
    fn the_plain_path_has_finite_gradients_at_saturated_gates() -> candle_core::Result<()> {
        let gates = [
            -300.0f32, -100.0, -89.0, -20.0, -1.5, 0.0, 0.7, 20.0, 100.0, 300.0,
        ];
        let filters = [0.3f32, -1.2, 2.0, 0.5, -0.1, 1.0, -2.5, 0.9, -0.4, 0.05];
        let n = gates.len();
        let y = candle_core::Var::from_tensor(&Tensor::from_vec(
            [gates, filters].concat(),
            (1, 2 * n),
            &candle_core::Device::Cpu,
        )?)?;
        let out = gated_plain(y.as_tensor()).unwrap();
        let grad = out.sum_all()?.backward()?;
        let grad = grad
            .get(y.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        let values = out.flatten_all()?.to_vec1::<f32>()?;
        for i in 0..n {
            let (g, f) = (gates[i] as f64, filters[i] as f64);
            let sigma = 1.0 / (1.0 + (-g).exp());
            let want = [
                sigma * f.tanh(),
                sigma * (1.0 - sigma) * f.tanh(),
                sigma * (1.0 - f.tanh().powi(2)),
            ];
            let got = [values[i], grad[i], grad[n + i]];
            for (w, v) in want.iter().zip(got) {
                assert!(v.is_finite(), "gate {g}: {v}");
                assert!((v as f64 - w).abs() < 1e-6, "gate {g}: {v} against {w}");
            }
        }
        Ok(())
    }
}
