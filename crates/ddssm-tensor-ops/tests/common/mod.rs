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

/// Gradients of `loss(inputs)` by candle's backward pass against central finite differences
/// in f64 (step 1e-6; the truncation error is O(h²) ≈ 1e-12, round-off ≈ 1e-10).
pub fn check_gradients(inputs: &[Vec<f64>], loss: impl Fn(&[Tensor]) -> Tensor) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|v| Var::from_tensor(&t(v, &[v.len()])).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&tensors).backward().unwrap();
    let h = 1e-6;
    for (k, var) in vars.iter().enumerate() {
        let analytic = vec1(grads.get(var).expect("every input gets a gradient"));
        for i in 0..inputs[k].len() {
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
            let numeric = (eval(h) - eval(-h)) / (2.0 * h);
            let err = (numeric - analytic[i]).abs() / numeric.abs().max(1.0);
            assert!(
                err < 1e-6,
                "input {k}[{i}]: backward {} vs finite difference {numeric}",
                analytic[i]
            );
        }
    }
}
