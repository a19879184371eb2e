//! The vendored candle-core's backward pass (third_party/README.md): a tensor's first gradient is
//! stored as computed (made contiguous) instead of being added to zeros, and later ones are added
//! in place into a sum that no other tensor can see. Gradients must still accumulate over every
//! use, come out contiguous, match the closed form, and leave every other gradient alone.

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

/// A gradient that one op hands to two inputs (an addition's backward gives both the same tensor)
/// must not be changed in place when one of them gets more. Here `u = x + z` with
/// `z = x ⊙ m + w`: the backward pass reaches `u`'s addition first, which stores one tensor `G`
/// as the gradient of both `x` and `z`; `z`'s addition then hands that same `G` to `w`; only
/// after that does `x ⊙ m` add `G ⊙ m` to `x`'s gradient. Added in place, it would also change
/// `w`'s, which must stay exactly `k` (it came out `k + k ⊙ m` with the ownership check
/// removed). Small integers, so every sum is exact in any order.
#[test]
fn a_gradient_shared_by_two_inputs_is_not_changed_in_place() {
    let dev = Device::Cpu;
    let x = Var::new(&[1f32, -2.0, 3.0, 0.5], &dev).unwrap();
    let w = Var::new(&[4f32, 1.0, -1.0, 2.0], &dev).unwrap();
    let k = Tensor::new(&[2f32, -1.0, 3.0, 1.0], &dev).unwrap();
    let m = Tensor::new(&[1f32, 5.0, -2.0, 4.0], &dev).unwrap();
    let z = (x.as_tensor().mul(&m).unwrap() + w.as_tensor()).unwrap();
    let u = (x.as_tensor() + z).unwrap();
    let loss = u.mul(&k).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let gw = grads.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let (k, m) = (k.to_vec1::<f32>().unwrap(), m.to_vec1::<f32>().unwrap());
    for i in 0..4 {
        assert_eq!(gw[i], k[i], "w's gradient at {i}");
        assert_eq!(gx[i], k[i] + k[i] * m[i], "x's gradient at {i}");
    }
}

/// A tensor used many times gets each use's gradient added (the later ones in place): its
/// gradient has the bits of the same sum formed by hand in the backward pass's order, which for
/// `L = Σ_u Σ (x ⊙ c_u)` visits the uses from the last to the first.
#[test]
fn gradients_summed_in_place_have_the_bits_of_the_plain_sum() {
    let dev = Device::Cpu;
    let n = 1000;
    let values = |seed: u32| -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 37.0 - 13.0)
            .collect()
    };
    let x = Var::from_vec(values(1), n, &dev).unwrap();
    let cs: Vec<Tensor> = (0..6)
        .map(|u| Tensor::from_vec(values(100 + u), n, &dev).unwrap())
        .collect();
    let loss = cs
        .iter()
        .map(|c| x.as_tensor().mul(c).unwrap().sum_all().unwrap())
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    let got = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let cs: Vec<Vec<f32>> = cs.iter().map(|c| c.to_vec1::<f32>().unwrap()).collect();
    for i in 0..n {
        let want = cs.iter().rev().fold(None, |acc: Option<f32>, c| {
            Some(acc.map_or(c[i], |a| a + c[i]))
        });
        assert_eq!(got[i].to_bits(), want.unwrap().to_bits(), "element {i}");
    }
}
