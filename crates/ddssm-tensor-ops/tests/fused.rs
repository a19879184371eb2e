//! The fused CPU ops against the plain candle compositions they replace, and their gradients
//! against finite differences.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{check_gradients_f64_and_f32, t, vec1};
use ddssm_tensor_ops::{
    axis_conv, gated_activation, gated_with_side, linear, linear_accumulate,
    linear_accumulate_scaled, linear_residual, residual_update, time_pool, SeededNoise,
};

fn plain_gated(y: &Tensor) -> Tensor {
    let c = y.dims()[y.rank() - 1] / 2;
    let gate = y.narrow(y.rank() - 1, 0, c).unwrap();
    let filter = y.narrow(y.rank() - 1, c, c).unwrap();
    (candle_nn_free_sigmoid(&gate) * filter.tanh().unwrap()).unwrap()
}

fn candle_nn_free_sigmoid(x: &Tensor) -> Tensor {
    x.neg()
        .unwrap()
        .exp()
        .unwrap()
        .affine(1.0, 1.0)
        .unwrap()
        .recip()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    vec1(&(a - b).unwrap().abs().unwrap())
        .into_iter()
        .fold(0.0, f64::max)
}

#[test]
fn linear_matches_matmul_plus_bias_in_both_dtypes() {
    let mut noise = SeededNoise::new(1);
    for dtype in [DType::F32, DType::F64] {
        let x = noise.randn((3, 5, 7), dtype, &Device::Cpu).unwrap();
        let w = noise.randn((4, 7), dtype, &Device::Cpu).unwrap();
        let b = noise.randn(4, dtype, &Device::Cpu).unwrap();
        let plain = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let fused = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(fused.dims(), [3, 5, 4]);
        assert!(max_abs_diff(&plain, &fused) < 1e-5);
        let no_bias = linear(&x, &w, None).unwrap();
        let plain = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        assert!(max_abs_diff(&plain, &no_bias) < 1e-5);
        // A non-contiguous input is handled.
        let xt = x.transpose(0, 1).unwrap();
        let plain = xt
            .contiguous()
            .unwrap()
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert!(max_abs_diff(&plain, &linear(&xt, &w, Some(&b)).unwrap()) < 1e-5);
    }
    let bad = linear(
        &Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
        &Tensor::zeros((4, 5), DType::F32, &Device::Cpu).unwrap(),
        None,
    );
    assert!(bad.is_err());
}

#[test]
fn linear_gradients_match_finite_differences() {
    let x: Vec<f64> = (0..24).map(|i| (i as f64 * 0.37).sin()).collect();
    let w: Vec<f64> = (0..8).map(|i| (i as f64 * 0.91).cos()).collect();
    let b = vec![0.3, -0.2];
    let weights = t(
        &[
            0.5, -1.0, 2.0, 0.25, 1.5, -0.75, 1.0, 0.1, -0.3, 0.7, 0.2, -0.9,
        ],
        &[6, 2],
    );
    check_gradients_f64_and_f32(&[x.clone(), w.clone(), b.clone()], |v| {
        let x = v[0].reshape((2, 3, 4)).unwrap();
        let w = v[1].reshape((2, 4)).unwrap();
        let y = linear(&x, &w, Some(&v[2]))
            .unwrap()
            .reshape((6, 2))
            .unwrap();
        // A non-uniform upstream gradient, so every output's gradient path is exercised.
        (y * weights.to_dtype(v[0].dtype()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .reshape(1)
            .unwrap()
    });
    check_gradients_f64_and_f32(&[x, w], |v| {
        let x = v[0].reshape((6, 4)).unwrap();
        let w = v[1].reshape((2, 4)).unwrap();
        let y = linear(&x, &w, None).unwrap().sqr().unwrap();
        y.sum_all().unwrap().reshape(1).unwrap()
    });
}

#[test]
fn gated_activation_matches_sigmoid_times_tanh() {
    let mut noise = SeededNoise::new(2);
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
        let y = (noise.randn((4, 3, 2, 16), dtype, &Device::Cpu).unwrap() * 4.0).unwrap();
        let fused = gated_activation(&y).unwrap();
        assert_eq!(fused.dims(), [4, 3, 2, 8]);
        let plain = plain_gated(&y.to_dtype(DType::F64).unwrap());
        assert!(max_abs_diff(&plain, &fused.to_dtype(DType::F64).unwrap()) < tol);
    }
    // Saturated inputs stay finite and reach the limits (σ(−10⁴) ≈ e^{−87}, the clamp of exp).
    let y = t(&[-1e4, 1e4, 1e4, -1e4], &[1, 4])
        .to_dtype(DType::F32)
        .unwrap();
    let out = vec1(&gated_activation(&y).unwrap());
    assert!(out[0].abs() < 1e-37 && out[1] == -1.0, "{out:?}");
    assert!(gated_activation(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err());
}

#[test]
fn gated_activation_gradients_match_finite_differences() {
    let y: Vec<f64> = (0..24).map(|i| 2.0 * (i as f64 * 0.53).sin()).collect();
    let weights: Vec<f64> = (0..12).map(|i| 1.0 + 0.1 * i as f64).collect();
    let weights = t(&weights, &[3, 4]);
    check_gradients_f64_and_f32(&[y], |v| {
        let y = v[0].reshape((3, 8)).unwrap();
        (gated_activation(&y).unwrap() * weights.to_dtype(v[0].dtype()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .reshape(1)
            .unwrap()
    });
    // f32 backward agrees with the f64 one.
    let y = t(
        &(0..16)
            .map(|i| (i as f64 * 0.7).cos() * 3.0)
            .collect::<Vec<_>>(),
        &[2, 8],
    );
    let grad_of = |dtype: DType| {
        let v = Var::from_tensor(&y.to_dtype(dtype).unwrap()).unwrap();
        let g = gated_activation(v.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        vec1(g.get(v.as_tensor()).unwrap())
    };
    for (a, b) in grad_of(DType::F32).iter().zip(grad_of(DType::F64)) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn time_pool_matches_broadcast_multiply_and_sum() {
    let mut noise = SeededNoise::new(4);
    for dtype in [DType::F32, DType::F64] {
        let y = noise.randn((3, 4, 2, 5), dtype, &Device::Cpu).unwrap();
        let w = noise.randn((4, 2, 5), dtype, &Device::Cpu).unwrap();
        let b = noise.randn((4, 5), dtype, &Device::Cpu).unwrap();
        let plain = y
            .broadcast_mul(&w)
            .unwrap()
            .sum(2)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let fused = time_pool(&y, &w, &b).unwrap();
        assert_eq!(fused.dims(), [3, 4, 5]);
        assert!(max_abs_diff(&plain, &fused) < 1e-5);
    }
    let bad = time_pool(
        &Tensor::zeros((1, 2, 3, 4), DType::F32, &Device::Cpu).unwrap(),
        &Tensor::zeros((2, 3, 5), DType::F32, &Device::Cpu).unwrap(),
        &Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(bad.is_err());
}

#[test]
fn time_pool_gradients_match_finite_differences() {
    let y: Vec<f64> = (0..24).map(|i| (i as f64 * 0.41).sin()).collect();
    let w: Vec<f64> = (0..12).map(|i| (i as f64 * 0.77).cos()).collect();
    let b: Vec<f64> = (0..6).map(|i| 0.1 * i as f64 - 0.2).collect();
    let weights: Vec<f64> = (0..12).map(|i| 1.0 - 0.15 * i as f64).collect();
    let weights = t(&weights, &[2, 2, 3]);
    check_gradients_f64_and_f32(&[y, w, b], |v| {
        let y = v[0].reshape((2, 2, 2, 3)).unwrap();
        let w = v[1].reshape((2, 2, 3)).unwrap();
        let b = v[2].reshape((2, 3)).unwrap();
        (time_pool(&y, &w, &b).unwrap() * weights.to_dtype(v[0].dtype()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .reshape(1)
            .unwrap()
    });
}

/// The convolution built from plain ops: pad, shifted copies, one matmul.
fn plain_conv(x: &Tensor, w: &Tensor, b: &Tensor, axis: usize, pad_before: usize) -> Tensor {
    let c = x.dims()[3];
    let k = w.dims()[1] / c;
    let n = x.dims()[axis];
    let padded = x
        .pad_with_zeros(axis, pad_before, k - 1 - pad_before)
        .unwrap();
    let shifted: Vec<Tensor> = (0..k).map(|i| padded.narrow(axis, i, n).unwrap()).collect();
    // `linear` is checked against matmul + bias above.
    linear(&Tensor::cat(&shifted, 3).unwrap(), w, Some(b)).unwrap()
}

#[test]
fn axis_conv_matches_the_padded_concatenation() {
    let mut noise = SeededNoise::new(6);
    for dtype in [DType::F32, DType::F64] {
        for (h, l, k, axis, pad) in [
            (4, 3, 2, 1, 0),
            (4, 3, 2, 2, 1),
            (1, 2, 2, 1, 0),
            (3, 1, 3, 2, 2),
            (5, 2, 3, 1, 1),
            (2, 6, 4, 2, 3),
        ] {
            let c = 3;
            let x = noise.randn((2, h, l, c), dtype, &Device::Cpu).unwrap();
            let w = noise.randn((c, k * c), dtype, &Device::Cpu).unwrap();
            let b = noise.randn(c, dtype, &Device::Cpu).unwrap();
            let fused = axis_conv(&x, &w, &b, axis, pad).unwrap();
            let plain = plain_conv(&x, &w, &b, axis, pad);
            assert_eq!(fused.dims(), x.dims());
            assert!(
                max_abs_diff(&plain, &fused) < 1e-5,
                "{h} {l} {k} {axis} {pad}"
            );
        }
    }
    let x = Tensor::zeros((1, 2, 2, 3), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((3, 6), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    assert!(axis_conv(&x, &w, &b, 3, 0).is_err());
    assert!(axis_conv(&x, &w, &b, 1, 2).is_err());
}

#[test]
fn axis_conv_gradients_match_finite_differences() {
    for (h, l, k, axis, pad) in [(3, 2, 2, 1, 0), (2, 3, 2, 2, 1), (2, 1, 3, 2, 2)] {
        let c = 2;
        let nx = 2 * h * l * c;
        let x: Vec<f64> = (0..nx).map(|i| (i as f64 * 0.43).sin()).collect();
        let w: Vec<f64> = (0..c * k * c).map(|i| (i as f64 * 0.61).cos()).collect();
        let b = vec![0.2, -0.1];
        let weights: Vec<f64> = (0..nx).map(|i| 1.0 + 0.05 * i as f64).collect();
        let weights = t(&weights, &[2, h, l, c]);
        check_gradients_f64_and_f32(&[x, w, b], |v| {
            let x = v[0].reshape((2, h, l, c)).unwrap();
            let w = v[1].reshape((c, k * c)).unwrap();
            (axis_conv(&x, &w, &v[2], axis, pad).unwrap() * weights.to_dtype(v[0].dtype()).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .reshape(1)
                .unwrap()
        });
    }
}

#[test]
fn gated_with_side_matches_broadcast_additions() {
    let mut noise = SeededNoise::new(8);
    for dtype in [DType::F32, DType::F64] {
        let y = noise.randn((2, 3, 4, 6), dtype, &Device::Cpu).unwrap();
        let t = noise.randn((2, 4, 6), dtype, &Device::Cpu).unwrap();
        let s = noise.randn((2, 3, 6), dtype, &Device::Cpu).unwrap();
        for (tt, ss) in [
            (Some(&t), Some(&s)),
            (Some(&t), None),
            (None, Some(&s)),
            (None, None),
        ] {
            let mut pre = y.clone();
            if let Some(t) = tt {
                pre = pre.broadcast_add(&t.unsqueeze(1).unwrap()).unwrap();
            }
            if let Some(s) = ss {
                pre = pre.broadcast_add(&s.unsqueeze(2).unwrap()).unwrap();
            }
            let plain = plain_gated(&pre.to_dtype(DType::F64).unwrap());
            let fused = gated_with_side(&y, tt, ss)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            assert!(max_abs_diff(&plain, &fused) < 1e-6);
        }
    }
    let y = Tensor::zeros((2, 3, 4, 6), DType::F32, &Device::Cpu).unwrap();
    let bad = Tensor::zeros((2, 5, 6), DType::F32, &Device::Cpu).unwrap();
    assert!(gated_with_side(&y, Some(&bad), None).is_err());
}

#[test]
fn gated_with_side_gradients_match_finite_differences() {
    let (b, h, l, c2) = (2, 3, 2, 4);
    let y: Vec<f64> = (0..b * h * l * c2)
        .map(|i| (i as f64 * 0.29).sin())
        .collect();
    let tv: Vec<f64> = (0..b * l * c2)
        .map(|i| 0.5 * (i as f64 * 0.83).cos())
        .collect();
    let sv: Vec<f64> = (0..b * h * c2)
        .map(|i| 0.3 * (i as f64 * 0.57).sin())
        .collect();
    let weights: Vec<f64> = (0..b * h * l * c2 / 2)
        .map(|i| 1.0 + 0.1 * i as f64)
        .collect();
    let weights = t(&weights, &[b, h, l, c2 / 2]);
    check_gradients_f64_and_f32(&[y.clone(), tv, sv], |v| {
        let y = v[0].reshape((b, h, l, c2)).unwrap();
        let tt = v[1].reshape((b, l, c2)).unwrap();
        let ss = v[2].reshape((b, h, c2)).unwrap();
        (gated_with_side(&y, Some(&tt), Some(&ss)).unwrap()
            * weights.to_dtype(v[0].dtype()).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .reshape(1)
        .unwrap()
    });
    // Only one side part: the missing one is a broadcast zero inside.
    let sv: Vec<f64> = (0..b * h * c2)
        .map(|i| 0.2 * (i as f64 * 0.37).cos())
        .collect();
    check_gradients_f64_and_f32(&[y, sv], |v| {
        let y = v[0].reshape((b, h, l, c2)).unwrap();
        let ss = v[1].reshape((b, h, c2)).unwrap();
        (gated_with_side(&y, None, Some(&ss)).unwrap() * weights.to_dtype(v[0].dtype()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .reshape(1)
            .unwrap()
    });
}

#[test]
fn residual_update_and_its_gradients() {
    let mut noise = SeededNoise::new(10);
    let x = noise.randn((3, 4), DType::F32, &Device::Cpu).unwrap();
    let r = noise.randn((3, 4), DType::F32, &Device::Cpu).unwrap();
    let plain = ((&x + &r).unwrap() * std::f64::consts::FRAC_1_SQRT_2).unwrap();
    assert!(max_abs_diff(&plain, &residual_update(&x, &r).unwrap()) < 1e-6);
    assert!(residual_update(&x, &r.narrow(1, 0, 2).unwrap()).is_err());
    let xv: Vec<f64> = (0..6).map(|i| i as f64 * 0.3 - 1.0).collect();
    let rv: Vec<f64> = (0..6).map(|i| (i as f64).sin()).collect();
    check_gradients_f64_and_f32(&[xv, rv], |v| {
        residual_update(&v[0], &v[1])
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .reshape(1)
            .unwrap()
    });
}

/// An input candle does not track (data fed to a first layer) gets no gradient from `linear` or
/// `axis_conv`, and the weights' and bias's gradients are bit for bit those computed when the
/// input is tracked: the backward passes skip only the work nobody reads.
#[test]
fn untracked_inputs_get_no_gradient_and_change_no_other() {
    let dev = Device::Cpu;
    let mut noise = SeededNoise::new(11);
    let x = noise.randn((3, 4, 5, 16), DType::F32, &dev).unwrap();
    let w_lin = Var::from_tensor(&noise.randn((16, 16), DType::F32, &dev).unwrap()).unwrap();
    let w_conv = Var::from_tensor(&noise.randn((16, 32), DType::F32, &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&noise.randn(16, DType::F32, &dev).unwrap()).unwrap();
    let upstream = noise.randn((3, 4, 5, 16), DType::F32, &dev).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|v| v.to_bits()).collect()
    };
    let run = |x: &Tensor, conv: bool| {
        let y = if conv {
            axis_conv(x, w_conv.as_tensor(), b.as_tensor(), 2, 1).unwrap()
        } else {
            linear(x, w_lin.as_tensor(), Some(b.as_tensor())).unwrap()
        };
        (y * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    };
    for conv in [false, true] {
        let w = if conv { &w_conv } else { &w_lin };
        let tracked = Var::from_tensor(&x).unwrap();
        let with = run(tracked.as_tensor(), conv);
        let without = run(&x, conv);
        assert!(with.get(tracked.as_tensor()).is_some(), "conv {conv}");
        assert!(without.get(&x).is_none(), "conv {conv}");
        for p in [w.as_tensor(), b.as_tensor()] {
            let (a, c) = (with.get(p).unwrap(), without.get(p).unwrap());
            assert_eq!(bits(a), bits(c), "conv {conv}");
        }
    }
}

/// `linear_residual`, `linear_accumulate` and `linear_accumulate_scaled` give, bit for bit, the
/// separate ops they replace — `residual_update(x, linear(y, w, b))`, `s + linear(y, w, b)` and
/// `(s + linear(y, w, b))·k` (the stack's `/√layers`) — forward and in every gradient, with the weight and bias read as row slices of a larger projection (as the residual
/// block reads them). Where the CPU has no kernel they are those compositions.
#[test]
fn linear_added_into_a_tensor_matches_the_separate_ops_bit_for_bit() {
    let dev = Device::Cpu;
    let mut noise = SeededNoise::new(12);
    let var = |shape: &[usize], noise: &mut SeededNoise| {
        Var::from_tensor(&noise.randn(shape, DType::F32, &dev).unwrap()).unwrap()
    };
    let y = var(&[2, 3, 5, 16], &mut noise);
    let w = var(&[32, 16], &mut noise);
    let b = var(&[32], &mut noise);
    let a = var(&[2, 3, 5, 16], &mut noise);
    let upstream = noise.randn((2, 3, 5, 16), DType::F32, &dev).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|v| v.to_bits()).collect()
    };
    let (ws, bs) = (
        w.as_tensor().narrow(0, 16, 16).unwrap(),
        b.as_tensor().narrow(0, 16, 16).unwrap(),
    );
    let scale = 1.0 / 3f64.sqrt();
    for kind in ["residual", "sum", "scaled sum"] {
        let (y_, a_) = (y.as_tensor(), a.as_tensor());
        let fused = match kind {
            "residual" => linear_residual(y_, &ws, Some(&bs), a_).unwrap(),
            "sum" => linear_accumulate(y_, &ws, Some(&bs), a_).unwrap(),
            _ => linear_accumulate_scaled(y_, &ws, Some(&bs), a_, scale).unwrap(),
        };
        let out = linear(y_, &ws, Some(&bs)).unwrap();
        let plain = match kind {
            "residual" => residual_update(a_, &out).unwrap(),
            "sum" => (a_ + out).unwrap(),
            _ => ((a_ + out).unwrap() / 3f64.sqrt()).unwrap(),
        };
        assert_eq!(bits(&fused), bits(&plain), "{kind}: forward");
        let grads = |t: &Tensor| {
            (t * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (gf, gp) = (grads(&fused), grads(&plain));
        for (name, p) in [("y", &y), ("w", &w), ("b", &b), ("addend", &a)] {
            let (f, q) = (
                gf.get(p.as_tensor()).unwrap(),
                gp.get(p.as_tensor()).unwrap(),
            );
            assert_eq!(bits(f), bits(q), "{kind}: ∂/∂{name}");
        }
    }
    let bad = linear_residual(
        y.as_tensor(),
        &ws,
        Some(&bs),
        &a.as_tensor().narrow(3, 0, 8).unwrap(),
    );
    assert!(bad.is_err());
}
