//! Shapes, causality, sensitivity, gradients and parameter counts of the App. H blocks.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ddssm_nets::*;
use ddssm_tensor_ops::SeededNoise;

mod common;

fn builder(seed: u64) -> (VarMap, VarBuilder<'static>) {
    SeededVarMap::builder(seed, DType::F32, &Device::Cpu)
}

fn randn(noise: &mut SeededNoise, shape: &[usize]) -> Tensor {
    noise.randn(shape, DType::F32, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    common::max_abs(&(a - b).unwrap())
}

/// The paper's future summary with a 4-wide time embedding switched on.
fn summary_with_time_embedding(obs_dim: usize, static_dim: usize, vb: VarBuilder) -> FutureSummary {
    let config = FutureSummaryConfig {
        time_embedding_dim: 4,
        ..Default::default()
    };
    FutureSummary::new(&config, obs_dim, static_dim, vb).unwrap()
}

fn ctx_config(
    layers: usize,
    channels: usize,
    time: TimeMixerConfig,
    feature: FeatureMixerConfig,
) -> ContextProducerConfig {
    ContextProducerConfig {
        stack: ResidualStackConfig {
            layers,
            channels,
            time_mixer: time,
            feature_mixer: feature,
        },
    }
}

#[test]
fn context_producer_shapes_with_and_without_side_information() {
    let mut noise = SeededNoise::new(1);
    let mixers = [
        (
            TimeMixerConfig::Conv { kernel: 2 },
            FeatureMixerConfig::Conv { kernel: 2 },
        ),
        (TimeMixerConfig::Gru, FeatureMixerConfig::Identity),
        (
            TimeMixerConfig::Identity,
            FeatureMixerConfig::Conv { kernel: 3 },
        ),
    ];
    for (b, h, l, c) in [(1, 1, 1, 4), (3, 5, 2, 8), (2, 16, 4, 16), (4, 2, 5, 3)] {
        for (time, feature) in mixers {
            for (temporal_dim, static_dim) in [(0, 0), (6, 0), (0, 3), (6, 3)] {
                let (_, vb) = builder(2);
                let cp = ContextProducer::new(
                    &ctx_config(2, c, time, feature),
                    h,
                    l,
                    temporal_dim,
                    static_dim,
                    vb,
                )
                .unwrap();
                let side = SideInfo {
                    temporal: (temporal_dim > 0).then(|| randn(&mut noise, &[b, l, temporal_dim])),
                    static_: (static_dim > 0).then(|| randn(&mut noise, &[b, h, static_dim])),
                };
                let out = cp.forward(&randn(&mut noise, &[b, h, l]), &side).unwrap();
                assert_eq!(out.dims(), &[b, h * c], "b={b} h={h} l={l} c={c} {time:?} {feature:?} side=({temporal_dim},{static_dim})");
                assert_eq!(cp.output_dim(), h * c);
            }
        }
    }
    let (_, vb) = builder(2);
    let cp = ContextProducer::new(&ContextProducerConfig::default(), 4, 3, 0, 0, vb).unwrap();
    assert!(
        cp.forward(&randn(&mut noise, &[2, 4, 2]), &SideInfo::none())
            .is_err(),
        "wrong length must be an error"
    );
}

#[test]
fn denoiser_shapes_for_several_orders_dimensions_and_covariates() {
    let mut noise = SeededNoise::new(3);
    for j in [1, 2, 4] {
        for m in [1, 3] {
            for v in [0, 2] {
                for time_dim in [0, 8] {
                    let config = CsdiDenoiserConfig {
                        side: TemporalSideConfig {
                            time_embedding_dim: time_dim,
                            mask_dim: 8,
                        },
                        ..Default::default()
                    };
                    let (_, vb) = builder(4);
                    let net = CsdiDenoiser::new(&config, m, j, v, vb).unwrap();
                    let b = 5;
                    let u = (v > 0).then(|| randn(&mut noise, &[b, j + 1, v]));
                    let times = (time_dim > 0).then(|| {
                        Tensor::arange(0f32, (j + 1) as f32, &Device::Cpu)
                            .unwrap()
                            .unsqueeze(0)
                            .unwrap()
                            .broadcast_as((b, j + 1))
                            .unwrap()
                            .contiguous()
                            .unwrap()
                    });
                    let out = net
                        .forward(
                            &randn(&mut noise, &[b, j, m]),
                            &randn(&mut noise, &[b, m]),
                            &randn(&mut noise, &[b]),
                            times.as_ref(),
                            u.as_ref(),
                        )
                        .unwrap();
                    assert_eq!(out.dims(), &[b, m], "j={j} m={m} v={v}");
                    // Zero-initialised last layer: exactly zero at initialisation, as in CSDI.
                    assert_eq!(max_abs_diff(&out, &out.zeros_like().unwrap()), 0.0);
                }
            }
        }
    }
}

#[test]
fn summary_and_head_shapes() {
    let mut noise = SeededNoise::new(5);
    for (d, s) in [(1, 0), (3, 2)] {
        let (_, vb) = builder(6);
        let fs = summary_with_time_embedding(d, s, vb);
        let statics = (s > 0).then(|| randn(&mut noise, &[2, s]));
        let h = fs
            .forward(&randn(&mut noise, &[2, 7, d]), None, statics.as_ref())
            .unwrap();
        assert_eq!(h.dims(), &[2, 7, 16]);
    }
    let (_, vb) = builder(7);
    let head = GaussianHead::new(&GaussianHeadConfig::default(), 32, 3, vb).unwrap();
    let g = head.forward(&randn(&mut noise, &[4, 6, 32])).unwrap();
    assert_eq!(g.mean().dims(), &[4, 6, 3]);
    assert_eq!(g.logvar().dims(), &[4, 6, 3]);
}

#[test]
fn future_summary_is_causal_backwards_in_time() {
    let (_, vb) = builder(8);
    let fs = FutureSummary::new(&FutureSummaryConfig::default(), 2, 0, vb).unwrap();
    let mut noise = SeededNoise::new(9);
    let x = randn(&mut noise, &[3, 10, 2]);
    let h = fs.forward(&x, None, None).unwrap();
    let t = 6; // 0-based
               // Change x_{1:t−1}: h_t … h_T must not move.
    let past = randn(&mut noise, &[3, t, 2]);
    let x_past = Tensor::cat(&[past, x.narrow(1, t, 10 - t).unwrap()], 1).unwrap();
    let h_past = fs.forward(&x_past, None, None).unwrap();
    assert!(
        max_abs_diff(
            &h.narrow(1, t, 10 - t).unwrap(),
            &h_past.narrow(1, t, 10 - t).unwrap()
        ) < 1e-6
    );
    assert!(
        max_abs_diff(
            &h.narrow(1, 0, t).unwrap(),
            &h_past.narrow(1, 0, t).unwrap()
        ) > 1e-4
    );
    // Change x_t: h_t must move.
    let bump = Tensor::zeros((3, 10, 2), DType::F32, &Device::Cpu)
        .unwrap()
        .slice_assign(
            &[0..3, t..t + 1, 0..2],
            &Tensor::ones((3, 1, 2), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
    let h_now = fs.forward(&(&x + bump).unwrap(), None, None).unwrap();
    assert!(max_abs_diff(&h.narrow(1, t, 1).unwrap(), &h_now.narrow(1, t, 1).unwrap()) > 1e-4);
    // A missing observation is invisible apart from its mask: its value does not matter.
    let mut mask = vec![1f32; 3 * 10 * 2];
    mask[t * 2] = 0.0;
    let mask = Tensor::from_vec(mask, (3, 10, 2), &Device::Cpu).unwrap();
    let a = fs.forward(&x, Some(&mask), None).unwrap();
    let x2 = x
        .slice_assign(
            &[0..1, t..t + 1, 0..1],
            &Tensor::full(100f32, (1, 1, 1), &Device::Cpu).unwrap(),
        )
        .unwrap();
    let b = fs.forward(&x2, Some(&mask), None).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-6);
}

/// Sets every parameter of `varmap` whose name contains `part` to seeded random values.
fn randomise(varmap: &VarMap, part: &str, seed: u64) {
    let mut noise = SeededNoise::new(seed);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().filter(|k| k.contains(part)).collect();
    names.sort();
    assert!(!names.is_empty(), "no parameter matches {part}");
    for name in names {
        let var = &data[name];
        var.set(
            &(noise
                .randn(var.shape().clone(), DType::F32, &Device::Cpu)
                .unwrap()
                * 0.5)
                .unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn denoiser_output_depends_on_target_history_and_noise_level() {
    let (varmap, vb) = builder(10);
    let net = CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 2, 2, 0, vb).unwrap();
    randomise(&varmap, "output_projection2", 11);
    let mut noise = SeededNoise::new(12);
    let (hist, target, c_noise) = (
        randn(&mut noise, &[4, 2, 2]),
        randn(&mut noise, &[4, 2]),
        randn(&mut noise, &[4]),
    );
    let base = net.forward(&hist, &target, &c_noise, None, None).unwrap();
    let moved = |h: &Tensor, t: &Tensor, c: &Tensor| {
        max_abs_diff(&base, &net.forward(h, t, c, None, None).unwrap())
    };
    assert!(
        moved(&(&hist + 0.5).unwrap(), &target, &c_noise) > 1e-4,
        "history"
    );
    assert!(
        moved(&hist, &(&target + 0.5).unwrap(), &c_noise) > 1e-4,
        "noisy target"
    );
    assert!(
        moved(&hist, &target, &(&c_noise + 0.2).unwrap()) > 1e-4,
        "noise level"
    );
    assert_eq!(moved(&hist, &target, &c_noise), 0.0);
}

/// Backward from `loss` must reach every parameter of `varmap` with a finite, non-zero gradient.
fn assert_all_parameters_learn(varmap: &VarMap, loss: &Tensor) {
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let g = grads
            .get(&data[name])
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            norm.is_finite() && norm > 0.0,
            "{name}: gradient norm {norm}"
        );
    }
}

#[test]
fn every_parameter_gets_a_gradient() {
    let mut noise = SeededNoise::new(13);
    // Context producer + head, with both side-information parts and each mixer.
    for (time, feature) in [
        (
            TimeMixerConfig::Conv { kernel: 2 },
            FeatureMixerConfig::Conv { kernel: 2 },
        ),
        (TimeMixerConfig::Gru, FeatureMixerConfig::Conv { kernel: 2 }),
    ] {
        let (varmap, vb) = builder(14);
        let side_builder = TemporalSide::new(
            &TemporalSideConfig {
                time_embedding_dim: 4,
                mask_dim: 8,
            },
            2,
            2,
            vb.pp("side"),
        )
        .unwrap();
        let cp = ContextProducer::new(
            &ctx_config(2, 8, time, feature),
            3,
            4,
            side_builder.dim(),
            5,
            vb.pp("context"),
        )
        .unwrap();
        let head = GaussianHead::new(
            &GaussianHeadConfig::default(),
            cp.output_dim(),
            2,
            vb.pp("head"),
        )
        .unwrap();
        let b = 6;
        let times = Tensor::arange(0f32, 4.0, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .broadcast_as((b, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        let masks = Tensor::from_vec(
            (0..b * 4 * 2)
                .map(|i| (i % 3 == 0) as u8 as f32)
                .collect::<Vec<_>>(),
            (b, 4, 2),
            &Device::Cpu,
        )
        .unwrap();
        let side = SideInfo {
            temporal: side_builder
                .build(
                    b,
                    4,
                    Some(&times),
                    Some(&randn(&mut noise, &[b, 4, 2])),
                    Some(&masks),
                )
                .unwrap(),
            static_: Some(randn(&mut noise, &[b, 3, 5])),
        };
        let g = head
            .forward(&cp.forward(&randn(&mut noise, &[b, 3, 4]), &side).unwrap())
            .unwrap();
        let loss = (g
            .log_prob(&randn(&mut noise, &[b, 2]))
            .unwrap()
            .sum_all()
            .unwrap()
            + g.mean().sin().unwrap().sum_all().unwrap())
        .unwrap();
        assert_all_parameters_learn(&varmap, &loss);
    }
    // Future summary with statics and time embedding.
    let (varmap, vb) = builder(15);
    let fs = summary_with_time_embedding(2, 3, vb);
    let h = fs
        .forward(
            &randn(&mut noise, &[4, 6, 2]),
            None,
            Some(&randn(&mut noise, &[4, 3])),
        )
        .unwrap();
    assert_all_parameters_learn(&varmap, &h.sin().unwrap().sum_all().unwrap());
    // Denoiser, once its zero-initialised last layer has moved (at exactly zero it blocks every
    // gradient but its own, as in CSDI).
    let (varmap, vb) = builder(16);
    let net = CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 2, 2, 1, vb).unwrap();
    randomise(&varmap, "output_projection2", 17);
    let out = net
        .forward(
            &randn(&mut noise, &[5, 2, 2]),
            &randn(&mut noise, &[5, 2]),
            &randn(&mut noise, &[5]),
            None,
            Some(&randn(&mut noise, &[5, 3, 1])),
        )
        .unwrap();
    assert_all_parameters_learn(&varmap, &out.sin().unwrap().sum_all().unwrap());
}

#[test]
fn axis_convolutions_match_a_direct_loop() {
    // Includes axes shorter than the kernel, where taps fall wholly into the padding.
    for (h, l, k) in [(3, 5, 2), (1, 1, 2), (2, 1, 3), (1, 3, 3), (4, 2, 5)] {
        check_axis_conv(h, l, k);
    }
}

fn check_axis_conv(h: usize, l: usize, k: usize) {
    let (varmap, vb) = builder(18);
    let (b, c) = (2, 2);
    let time = AxisConv::new(2, k, k - 1, c, vb.pp("time")).unwrap();
    let feat = AxisConv::new(1, k, (k - 1) / 2, c, vb.pp("feat")).unwrap();
    let x = randn(&mut SeededNoise::new(19), &[b, h, l, c]);
    let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let at = |bb: usize, hh: i64, ll: i64, cc: usize| -> f32 {
        if hh < 0 || hh >= h as i64 || ll < 0 || ll >= l as i64 {
            0.0
        } else {
            xv[((bb * h + hh as usize) * l + ll as usize) * c + cc]
        }
    };
    let data = varmap.data().lock().unwrap();
    for (conv, name, axis) in [(&time, "time", 2), (&feat, "feat", 1)] {
        let w = data[&format!("{name}.proj.weight")]
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap(); // [C, k·C]
        let bias = data[&format!("{name}.proj.bias")]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        let pad_before = if axis == 2 { k - 1 } else { (k - 1) / 2 } as i64;
        let out: Vec<f32> = conv
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for bb in 0..b {
            for hh in 0..h {
                for ll in 0..l {
                    for o in 0..c {
                        let mut acc = bias[o];
                        for i in 0..k {
                            for cc in 0..c {
                                let (dh, dl) = if axis == 2 {
                                    (0, i as i64 - pad_before)
                                } else {
                                    (i as i64 - pad_before, 0)
                                };
                                acc +=
                                    w[o][i * c + cc] * at(bb, hh as i64 + dh, ll as i64 + dl, cc);
                            }
                        }
                        let got = out[((bb * h + hh) * l + ll) * c + o];
                        assert!(
                            (got - acc).abs() < 1e-5,
                            "{name} b{bb} h{hh} l{ll} o{o}: {got} vs {acc}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn initialisation_depends_only_on_seed_and_name() {
    let build = |seed: u64, extra_first: bool| {
        let (varmap, vb) = builder(seed);
        if extra_first {
            Dense::new(3, 3, vb.pp("something_else")).unwrap();
        }
        Dense::new(4, 2, vb.pp("layer")).unwrap();
        let w = varmap.data().lock().unwrap()["layer.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        w
    };
    assert_eq!(
        build(1, false),
        build(1, true),
        "creation order must not matter"
    );
    assert_ne!(build(1, false), build(2, false));
}

#[test]
fn denoiser_side_information_built_once_gives_the_same_output() {
    let (varmap, vb) = builder(20);
    let net = CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 2, 3, 1, vb).unwrap();
    randomise(&varmap, "output_projection2", 21);
    let mut noise = SeededNoise::new(22);
    let u = randn(&mut noise, &[4, 4, 1]);
    let side = net.side_info(4, None, Some(&u)).unwrap();
    for _ in 0..2 {
        let (hist, target, c_noise) = (
            randn(&mut noise, &[4, 3, 2]),
            randn(&mut noise, &[4, 2]),
            randn(&mut noise, &[4]),
        );
        let fresh = net
            .forward(&hist, &target, &c_noise, None, Some(&u))
            .unwrap();
        let reused = net
            .forward_with_side(&hist, &target, &c_noise, &side)
            .unwrap();
        assert_eq!(max_abs_diff(&fresh, &reused), 0.0);
    }
}

/// Rows that share a diffusion level share one embedding computation (a table and an index):
/// outputs and parameter gradients must equal those of running every row on its own.
#[test]
fn shared_levels_give_the_per_row_outputs_and_gradients() {
    let (varmap, vb) = builder(30);
    let net = CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 2, 1, 0, vb).unwrap();
    randomise(&varmap, "output_projection2", 31);
    let mut noise = SeededNoise::new(32);
    let b = 6;
    let (hist, target) = (randn(&mut noise, &[b, 1, 2]), randn(&mut noise, &[b, 2]));
    // Levels 0.3, −1.2, 0.3, 0.3, −1.2, 2.0: three distinct values over six rows.
    let c_noise = Tensor::new(&[0.3f32, -1.2, 0.3, 0.3, -1.2, 2.0], &Device::Cpu).unwrap();
    let together = net.forward(&hist, &target, &c_noise, None, None).unwrap();
    let weights = randn(&mut noise, &[b, 2]);
    let loss = (&together * &weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let vars = varmap.all_vars();
    let mut expected: Vec<Option<Tensor>> = vec![None; vars.len()];
    for r in 0..b {
        let row = |t: &Tensor| t.narrow(0, r, 1).unwrap();
        let alone = net
            .forward(&row(&hist), &row(&target), &row(&c_noise), None, None)
            .unwrap();
        assert!(max_abs_diff(&alone, &row(&together)) < 1e-6, "row {r}");
        let g = (&alone * &row(&weights))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (e, v) in expected.iter_mut().zip(&vars) {
            if let Some(gv) = g.get(v.as_tensor()) {
                *e = Some(match e.take() {
                    Some(acc) => (acc + gv).unwrap(),
                    None => gv.clone(),
                });
            }
        }
    }
    let mut checked = 0;
    for (e, v) in expected.iter().zip(&vars) {
        if let (Some(e), Some(g)) = (e, grads.get(v.as_tensor())) {
            let scale = e
                .abs()
                .unwrap()
                .max_keepdim(0)
                .unwrap()
                .flatten_all()
                .unwrap();
            let scale = scale.max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
            assert!(max_abs_diff(e, g) < 1e-5 * scale, "{:?}", v.shape());
            checked += 1;
        }
    }
    // The diffusion-embedding projections are among the checked parameters.
    assert!(checked >= 10, "only {checked} parameters had gradients");
}
