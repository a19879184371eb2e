//! Helpers shared by this crate's integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};

pub fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

pub fn vec1(x: &Tensor) -> Vec<f64> {
    x.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Central finite differences of `loss(inputs)` in f64, one vector per input (step 1e-6; the
/// truncation error is O(h²) ≈ 1e-12, round-off ≈ 1e-10).
fn numeric_gradients(inputs: &[Vec<f64>], loss: &impl Fn(&[Tensor]) -> Tensor) -> Vec<Vec<f64>> {
    let h = 1e-6;
    (0..inputs.len())
        .map(|k| {
            (0..inputs[k].len())
                .map(|i| {
                    let eval = |delta: f64| {
                        let moved: Vec<Tensor> = inputs
                            .iter()
                            .enumerate()
                            .map(|(kk, v)| {
                                let mut v = v.clone();
                                if kk == k {
                                    v[i] += delta;
                                }
                                t(&v, &[v.len()])
                            })
                            .collect();
                        vec1(&loss(&moved))[0]
                    };
                    (eval(h) - eval(-h)) / (2.0 * h)
                })
                .collect()
        })
        .collect()
}

/// candle's backward pass of `loss(inputs)` with the inputs in `dtype`, as f64 vectors.
fn backward_gradients(
    inputs: &[Vec<f64>],
    dtype: DType,
    loss: &impl Fn(&[Tensor]) -> Tensor,
) -> Vec<Vec<f64>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|v| Var::from_tensor(&t(v, &[v.len()]).to_dtype(dtype).unwrap()).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&tensors).backward().unwrap();
    vars.iter()
        .map(|var| vec1(grads.get(var).expect("every input gets a gradient")))
        .collect()
}

/// Gradients of `loss(inputs)` by candle's backward pass against central finite differences
/// in f64: relative error < 1e-6.
pub fn check_gradients(inputs: &[Vec<f64>], loss: impl Fn(&[Tensor]) -> Tensor) {
    compare(
        "f64",
        &backward_gradients(inputs, DType::F64, &loss),
        &numeric_gradients(inputs, &loss),
        1e-6,
    );
}

/// [`check_gradients`], and then the backward pass in f32 — the path training runs, through the
/// SIMD copies of the kernels where the CPU has them — against the same f64 finite differences.
/// `loss` must work in both dtypes. The f32 tolerance is derived from f32 rounding: each
/// gradient entry is a sum of at most a few dozen products, each from ~10 f32 operations
/// (ε = 6e-8) and the fast `exp` (relative error ≤ 2e-7), so its relative error stays below
/// ~50 · 10 · 2e-7 = 1e-4; a wrong lane, tail or formula errs by O(1).
pub fn check_gradients_f64_and_f32(inputs: &[Vec<f64>], loss: impl Fn(&[Tensor]) -> Tensor) {
    let numeric = numeric_gradients(inputs, &loss);
    compare(
        "f64",
        &backward_gradients(inputs, DType::F64, &loss),
        &numeric,
        1e-6,
    );
    compare(
        "f32",
        &backward_gradients(inputs, DType::F32, &loss),
        &numeric,
        1e-4,
    );
}

fn compare(what: &str, analytic: &[Vec<f64>], numeric: &[Vec<f64>], tol: f64) {
    for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert_eq!(a.len(), n.len());
        for (i, (a, n)) in a.iter().zip(n).enumerate() {
            let err = (n - a).abs() / n.abs().max(1.0);
            assert!(
                err < tol,
                "{what} input {k}[{i}]: backward {a} vs finite difference {n}"
            );
        }
    }
}
