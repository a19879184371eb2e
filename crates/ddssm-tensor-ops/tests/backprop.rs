//! The vendored candle-core's backward pass (third_party/README.md): a tensor's first gradient is
//! stored as computed (made contiguous) instead of being added to zeros. Gradients must still
//! accumulate over every use, come out contiguous, and match the closed form.

use candle_core::{Device, Tensor, Var};

#[test]
fn gradients_accumulate_over_uses_and_views_and_come_out_contiguous() {
    let dev = Device::Cpu;
    let x = Var::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev).unwrap();
    let w = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25], [1.5, -0.5]], &dev).unwrap();
    // x is used four times: through a transposed view, elementwise twice, and broadcast after a
    // row sum. L = Σ 2·xᵀ + Σ x² + Σ (x·w)_{ij} + Σ_j rowsum(x)_i·1 (broadcast over 3 columns).
    let xt = x.as_tensor().t().unwrap();
    let a = (xt * 2.0).unwrap().sum_all().unwrap();
    let b = x.as_tensor().sqr().unwrap().sum_all().unwrap();
    let c = x.as_tensor().matmul(&w).unwrap().sum_all().unwrap();
    let d = x
        .as_tensor()
        .sum_keepdim(1)
        .unwrap()
        .broadcast_as((2, 3))
        .unwrap()
        .sum_all()
        .unwrap();
    let loss = (((a + b).unwrap() + c).unwrap() + d).unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(x.as_tensor()).unwrap();
    assert!(g.is_contiguous());
    let got = g.to_vec2::<f32>().unwrap();
    let xs = x.as_tensor().to_vec2::<f32>().unwrap();
    let ws = w.to_vec2::<f32>().unwrap();
    for i in 0..2 {
        for j in 0..3 {
            // ∂/∂x_ij: 2 + 2x_ij + Σ_k w_jk + 3.
            let expected = 2.0 + 2.0 * xs[i][j] + ws[j].iter().sum::<f32>() + 3.0;
            assert!(
                (got[i][j] - expected).abs() < 1e-5,
                "{i},{j}: {} vs {expected}",
                got[i][j]
            );
        }
    }
}
