//! A context producer continued after a prefix (`ContextProducer::prefix` and
//! `forward_with_prefix`, what the encoder uses to share each step's summary slot among a
//! sequence's chains) gives the whole-input forward pass: the same bits through the fused ops,
//! the same values within f32 rounding through the plain candle ops, and the same parameter
//! gradients up to the order of their sums.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ddssm_nets::*;
use ddssm_tensor_ops::{repeat_rows, set_fused_ops, SeededNoise};

mod common;
use common::{bits, max_abs};

fn randn(noise: &mut SeededNoise, shape: &[usize]) -> Tensor {
    noise.randn(shape, DType::F32, &Device::Cpu).unwrap()
}

/// One case: a producer over `l` slots whose first `p` are the prefix, `b` prefix rows each
/// continued by `repeat` rows.
struct Case {
    h: usize,
    l: usize,
    p: usize,
    c: usize,
    time: TimeMixerConfig,
    temporal_dim: usize,
    static_dim: usize,
    repeat: usize,
}

/// The whole-input output and the continued one, and the largest relative difference between
/// their parameter gradients under the same random weighting of the outputs.
fn run(case: &Case, seed: u64) -> (Tensor, Tensor, f32) {
    let Case {
        h,
        l,
        p,
        c,
        time,
        temporal_dim,
        static_dim,
        repeat,
    } = *case;
    let b = 3;
    let config = ContextProducerConfig {
        stack: ResidualStackConfig {
            layers: 2,
            channels: c,
            time_mixer: time,
            feature_mixer: FeatureMixerConfig::Conv { kernel: 2 },
        },
    };
    let (varmap, vb): (VarMap, _) = SeededVarMap::builder(seed, DType::F32, &Device::Cpu);
    let cp = ContextProducer::new(&config, h, l, temporal_dim, static_dim, vb).unwrap();
    assert!(cp.supports_prefix());
    let mut noise = SeededNoise::new(seed + 1);
    let head = randn(&mut noise, &[b, h, p]);
    let tail = randn(&mut noise, &[repeat * b, h, l - p]);
    let temporal = (temporal_dim > 0).then(|| randn(&mut noise, &[b, l, temporal_dim]));
    let statics = (static_dim > 0).then(|| randn(&mut noise, &[b, h, static_dim]));
    let weights = randn(&mut noise, &[repeat * b, h * c]);

    let full_input = Tensor::cat(&[&repeat_rows(&head, repeat).unwrap(), &tail], 2).unwrap();
    let full_side = SideInfo {
        temporal: temporal.as_ref().map(|t| repeat_rows(t, repeat).unwrap()),
        static_: statics.as_ref().map(|s| repeat_rows(s, repeat).unwrap()),
    };
    let full = cp.forward(&full_input, &full_side).unwrap();

    let prefix_side = SideInfo {
        temporal: temporal.as_ref().map(|t| t.narrow(1, 0, p).unwrap()),
        static_: statics.clone(),
    };
    let tail_side = SideInfo {
        temporal: full_side
            .temporal
            .as_ref()
            .map(|t| t.narrow(1, p, l - p).unwrap()),
        static_: full_side.static_.clone(),
    };
    let cut = cp.weights().unwrap();
    let prefix = cp.prefix(&cut, &head, &prefix_side).unwrap();
    let continued = cp
        .forward_with_prefix(&cut, &prefix, repeat, &tail, &tail_side)
        .unwrap();

    let grads = |out: &Tensor| {
        (out * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    };
    let (g_full, g_cont) = (grads(&full), grads(&continued));
    let mut worst = 0f32;
    for var in varmap.all_vars() {
        let (a, e) = (
            g_cont.get(var.as_tensor()).expect("a gradient"),
            g_full.get(var.as_tensor()).expect("a gradient"),
        );
        let scale = max_abs(e).max(1e-3);
        worst = worst.max(max_abs(&(a - e).unwrap()) / scale);
    }
    (full, continued, worst)
}

fn cases() -> Vec<Case> {
    let conv = |kernel| TimeMixerConfig::Conv { kernel };
    vec![
        // The encoder's case: order 1, the paper's kernel 2 (the past tap on the prefix rows).
        Case {
            h: 16,
            l: 2,
            p: 1,
            c: 16,
            time: conv(2),
            temporal_dim: 10,
            static_dim: 0,
            repeat: 2,
        },
        Case {
            h: 5,
            l: 2,
            p: 1,
            c: 16,
            time: conv(2),
            temporal_dim: 10,
            static_dim: 1,
            repeat: 7,
        },
        Case {
            h: 4,
            l: 2,
            p: 1,
            c: 8,
            time: conv(2),
            temporal_dim: 0,
            static_dim: 0,
            repeat: 1,
        },
        // Longer continuations and kernels (the joined slots, convolved and cut).
        Case {
            h: 6,
            l: 3,
            p: 1,
            c: 16,
            time: conv(2),
            temporal_dim: 10,
            static_dim: 1,
            repeat: 3,
        },
        Case {
            h: 6,
            l: 4,
            p: 2,
            c: 16,
            time: conv(3),
            temporal_dim: 4,
            static_dim: 0,
            repeat: 2,
        },
        Case {
            h: 6,
            l: 3,
            p: 1,
            c: 16,
            time: TimeMixerConfig::Identity,
            temporal_dim: 4,
            static_dim: 2,
            repeat: 2,
        },
    ]
}

/// Through the fused ops with their own matmul kernels (the CPU path on AVX-512) the continued
/// forward pass has the whole pass's bits; without those kernels gemm rounds the separately
/// computed past tap its own way, and through the plain candle ops (other devices) the taps are
/// one product, so there the outputs agree to f32 rounding: 1e-5 relative, for sums of a few
/// dozen terms per layer (unit roundoff 6e-8). The gradients' sums run in another order (the
/// prefix rows' contributions are summed over the repeats first), so they agree to 1e-5 of each
/// gradient's largest entry, for sums of a few hundred terms.
#[test]
fn a_continued_prefix_gives_the_whole_forward_pass() {
    for (i, case) in cases().iter().enumerate() {
        let (full, continued, grad_diff) = run(case, 40 + i as u64);
        assert_eq!(full.dims(), continued.dims());
        if ddssm_tensor_ops::matmul_kernels() {
            assert!(bits(&full) == bits(&continued), "case {i}: the bits differ");
        } else {
            let diff = max_abs(&(&full - &continued).unwrap()) / max_abs(&full).max(1.0);
            assert!(diff < 1e-5, "case {i}: outputs differ by {diff}");
        }
        assert!(
            grad_diff < 1e-5,
            "case {i}: gradients differ by {grad_diff}"
        );
    }
    set_fused_ops(false);
    for (i, case) in cases().iter().enumerate() {
        let (full, continued, grad_diff) = run(case, 40 + i as u64);
        let diff = max_abs(&(&full - &continued).unwrap()) / max_abs(&full).max(1.0);
        assert!(diff < 1e-5, "plain ops, case {i}: outputs differ by {diff}");
        assert!(
            grad_diff < 1e-5,
            "plain ops, case {i}: gradients differ by {grad_diff}"
        );
    }
    set_fused_ops(true);
}

/// A GRU time mixer carries state along time, so a prefix cannot be continued: refused.
#[test]
fn a_gru_time_mixer_refuses_a_prefix() {
    let config = ContextProducerConfig {
        stack: ResidualStackConfig {
            time_mixer: TimeMixerConfig::Gru,
            ..ResidualStackConfig::paper(2)
        },
    };
    let (_, vb) = SeededVarMap::builder(50, DType::F32, &Device::Cpu);
    let cp = ContextProducer::new(&config, 4, 2, 0, 0, vb).unwrap();
    assert!(!cp.supports_prefix());
    let head = randn(&mut SeededNoise::new(51), &[2, 4, 1]);
    let cut = cp.weights().unwrap();
    assert!(cp.prefix(&cut, &head, &SideInfo::none()).is_err());
}

/// Weights cut once and passed to several calls (the encoder's `T` steps, each a prefix and its
/// continuation, the next step's input depending on the last one's output) give what cutting
/// them at every call gives: the same outputs bit for bit, and the same parameter gradients up
/// to the order of their sums (each cut's gradients are summed over the calls before being
/// padded back into the whole weight, instead of padded per call and then summed), so to 1e-6
/// of each gradient's largest entry for sums of a few terms (unit roundoff 6e-8).
#[test]
fn weights_cut_once_serve_many_calls() {
    let (h, l, c, b, repeat, steps) = (3, 2, 16, 2, 3, 4);
    let config = ContextProducerConfig {
        stack: ResidualStackConfig::paper(2),
    };
    let (varmap, vb): (VarMap, _) = SeededVarMap::builder(60, DType::F32, &Device::Cpu);
    let cp = ContextProducer::new(&config, h, l, 5, 0, vb).unwrap();
    let mut noise = SeededNoise::new(61);
    let heads: Vec<Tensor> = (0..steps).map(|_| randn(&mut noise, &[b, h, 1])).collect();
    let temporal = randn(&mut noise, &[repeat * b, l, 5]);
    let start = randn(&mut noise, &[repeat * b, h, 1]);
    let mixing = randn(&mut noise, &[h * c, h]);
    let chain = |once: bool| {
        let shared = cp.weights().unwrap();
        let side = |slots: usize, rows: usize| SideInfo {
            temporal: Some(
                temporal
                    .narrow(0, 0, rows)
                    .unwrap()
                    .narrow(1, l - slots, slots)
                    .unwrap(),
            ),
            static_: None,
        };
        let mut tail = start.clone();
        let mut outputs = Vec::new();
        for head in &heads {
            let fresh;
            let cut = if once {
                &shared
            } else {
                fresh = cp.weights().unwrap();
                &fresh
            };
            let prefix = cp
                .prefix(
                    cut,
                    head,
                    &SideInfo {
                        temporal: Some(temporal.narrow(0, 0, b).unwrap().narrow(1, 0, 1).unwrap()),
                        static_: None,
                    },
                )
                .unwrap();
            let out = cp
                .forward_with_prefix(cut, &prefix, repeat, &tail, &side(1, repeat * b))
                .unwrap();
            tail = out
                .matmul(&mixing)
                .unwrap()
                .tanh()
                .unwrap()
                .unsqueeze(2)
                .unwrap();
            outputs.push(out);
        }
        let all = Tensor::cat(&outputs, 1).unwrap();
        let grads = all.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        (all, grads)
    };
    let (once, g_once) = chain(true);
    let (each, g_each) = chain(false);
    assert!(bits(&once) == bits(&each), "the outputs' bits differ");
    for var in varmap.all_vars() {
        let (a, e) = (
            g_once.get(var.as_tensor()).expect("a gradient"),
            g_each.get(var.as_tensor()).expect("a gradient"),
        );
        let diff = max_abs(&(a - e).unwrap()) / max_abs(e).max(1e-3);
        assert!(diff < 1e-6, "a gradient differs by {diff}");
    }
}
