//! The optimizer against its formula, and the loop: determinism, exact resume, a clean stop on a
//! non-finite loss.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use ddssm_model::{Batch, Estimator, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;
mod common;

use common::{no_validation, parameter_values, resuming, small, tmp};
use ddssm_train::{
    batch_indices, history_path, train, AdamW, AdamWConfig, Error, Metrics, Objective, ParamGroup,
    TrainConfig, TrainOptions,
};

#[test]
fn adamw_follows_its_formula() -> Result<()> {
    let theta = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
    let cfg = AdamWConfig::default();
    let lr = 0.1;
    let mut opt = AdamW::new(
        vec![ParamGroup {
            name: "g".into(),
            lr,
            params: vec![("theta".into(), theta.clone())],
        }],
        cfg,
    )?;
    // Reference in plain f64 for loss = Σ θ², g = 2θ.
    let (mut p, mut m, mut v) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
    for t in 1..=3 {
        let loss = theta.as_tensor().sqr()?.sum_all()?;
        opt.step(&loss.backward()?)?;
        for i in 0..2 {
            let g = 2.0 * p[i];
            p[i] *= 1.0 - lr * cfg.weight_decay;
            m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g;
            v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g * g;
            let mh = m[i] / (1.0 - cfg.beta1.powi(t));
            let vh = v[i] / (1.0 - cfg.beta2.powi(t));
            p[i] -= lr * mh / (vh.sqrt() + cfg.eps);
        }
    }
    // The optimizer keeps no autograd history: otherwise each step's whole graph would stay
    // alive in the moments (a leak of about 0.3 GB per second in a real run).
    for (name, t) in opt.state_tensors() {
        assert!(!t.track_op(), "{name} carries a graph");
    }
    let got = theta.as_tensor().to_vec1::<f64>()?;
    for (a, b) in got.iter().zip(p) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert_eq!(opt.steps_taken(), 3);
    Ok(())
}

/// A clipped step is the step on the scaled gradient: `step_clipped(∇L, 1, c)` moves the
/// parameters exactly as `step(∇(c·L))`, with a different `c` at each step (so Adam's
/// invariance to one constant scale cannot hide a factor that is ignored).
#[test]
fn a_clipped_adamw_step_is_the_step_on_the_scaled_gradient() -> Result<()> {
    let make = |theta: &Var| {
        AdamW::new(
            vec![ParamGroup {
                name: "g".into(),
                lr: 0.1,
                params: vec![("theta".into(), theta.clone())],
            }],
            AdamWConfig::default(),
        )
    };
    let (a, b) = (
        Var::new(&[1.0f64, -2.0], &Device::Cpu)?,
        Var::new(&[1.0f64, -2.0], &Device::Cpu)?,
    );
    let (mut clipped, mut scaled) = (make(&a)?, make(&b)?);
    for c in [0.5, 0.01, 1.0] {
        let loss = a.as_tensor().sqr()?.sum_all()?;
        clipped.step_clipped(&loss.backward()?, 1.0, c)?;
        let loss = (b.as_tensor().sqr()?.sum_all()? * c)?;
        scaled.step(&loss.backward()?)?;
    }
    let (got, want) = (
        a.as_tensor().to_vec1::<f64>()?,
        b.as_tensor().to_vec1::<f64>()?,
    );
    for (x, y) in got.iter().zip(&want) {
        assert!((x - y).abs() < 1e-12, "{got:?} vs {want:?}");
    }
    // And the factors matter: unscaled steps end elsewhere.
    let c = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
    let mut plain = make(&c)?;
    for _ in 0..3 {
        plain.step(&c.as_tensor().sqr()?.sum_all()?.backward()?)?;
    }
    let plain = c.as_tensor().to_vec1::<f64>()?;
    assert!((plain[0] - got[0]).abs() > 1e-6, "{plain:?} vs {got:?}");

    // One factor per group: each group steps on its own scaled gradient.
    let two = |x: &Var, y: &Var| {
        AdamW::new(
            ["x", "y"]
                .iter()
                .zip([x, y])
                .map(|(name, var)| ParamGroup {
                    name: name.to_string(),
                    lr: 0.1,
                    params: vec![(name.to_string(), var.clone())],
                })
                .collect(),
            AdamWConfig::default(),
        )
    };
    let vars = || -> Result<Vec<Var>> {
        (0..4)
            .map(|_| Ok(Var::new(&[1.0f64, -2.0], &Device::Cpu)?))
            .collect()
    };
    let v = vars()?;
    let (mut grouped, mut separate) = (two(&v[0], &v[1])?, two(&v[2], &v[3])?);
    let loss = |x: &Var, y: &Var, cx: f64, cy: f64| -> Result<_> {
        let lx = (x.as_tensor().sqr()?.sum_all()? * cx)?;
        let ly = (y.as_tensor().sqr()?.sum_all()? * cy)?;
        Ok((lx + ly)?.backward()?)
    };
    for (cx, cy) in [(0.5, 1.0), (0.01, 0.2)] {
        grouped.step_group_clipped(&loss(&v[0], &v[1], 1.0, 1.0)?, 1.0, &[cx, cy])?;
        separate.step(&loss(&v[2], &v[3], cx, cy)?)?;
    }
    for (a, b) in [(&v[0], &v[2]), (&v[1], &v[3])] {
        let (got, want) = (
            a.as_tensor().to_vec1::<f64>()?,
            b.as_tensor().to_vec1::<f64>()?,
        );
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }
    assert!(grouped
        .step_group_clipped(&loss(&v[0], &v[1], 1.0, 1.0)?, 1.0, &[1.0])
        .is_err());
    Ok(())
}

#[test]
fn batches_are_seeded_permutations() {
    let n = 10;
    let epoch: Vec<u32> = (0..5).flat_map(|s| batch_indices(3, s, n, 2)).collect();
    let mut sorted = epoch.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
    assert_eq!(batch_indices(3, 7, n, 2), batch_indices(3, 7, n, 2));
    assert_ne!(batch_indices(3, 0, n, 2), batch_indices(3, 5, n, 2));
    assert_ne!(batch_indices(3, 0, n, 2), batch_indices(4, 0, n, 2));
}

fn params(model: &Model) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for (_, v) in model.named_parameters() {
        out.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

#[test]
fn an_interrupted_and_resumed_run_ends_with_the_same_numbers() -> Result<()> {
    let (mc, tc, data) = small();
    // Uninterrupted.
    let mut a = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let path_a = tmp("a.safetensors");
    let opts = resuming;
    let ra = train(&mut a, &data, &tc, &opts(&path_a), &mut no_validation)?;
    assert_eq!(ra.history.len(), 6);
    assert_eq!(ra.validations.len(), 3);

    // Interrupted after 3 steps, then resumed by a fresh process-like model.
    let path_b = tmp("b.safetensors");
    let mut b = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let short = TrainConfig { steps: 3, ..tc };
    train(&mut b, &data, &short, &opts(&path_b), &mut no_validation)?;
    let mut b2 = Model::new(&mc, 99, DType::F32, &Device::Cpu)?;
    let rb = train(&mut b2, &data, &tc, &opts(&path_b), &mut no_validation)?;
    assert_eq!(rb.start_step, 3);
    assert_eq!(params(&a)?, params(&b2)?);
    // The short run's history, left beside its checkpoint, is carried: the whole run's records.
    assert_eq!(rb.history, ra.history);
    // The finished checkpoint loads as a plain model.
    let loaded = Model::load(&path_a, &Device::Cpu)?;
    assert_eq!(params(&loaded)?, params(&a)?);
    Ok(())
}

/// A run killed between checkpoints resumes with its whole report: the history beside the
/// checkpoint (`history_path`) carries the steps and validations before it, so the resumed
/// report is the uninterrupted one's, record for record. Without that file, or with one written
/// at another step, the run still resumes, its history beginning at the checkpoint.
#[test]
fn a_killed_run_resumes_with_its_whole_history() -> Result<()> {
    let (mc, tc, data) = small();
    // Uninterrupted (checkpoints at steps 3 and 6, validations at 2, 4, 6); at the validation
    // of step 4 its files are copied: what a `kill -9` during step 4 or 5 would leave.
    let path_a = tmp("whole-a.safetensors");
    let path_k = tmp("whole-k.safetensors");
    let mut copy_at_4 = |_: &Model, step: usize| -> ddssm_train::Result<Metrics> {
        if step == 4 {
            std::fs::copy(&path_a, &path_k).unwrap();
            std::fs::copy(history_path(&path_a), history_path(&path_k)).unwrap();
        }
        Ok(Metrics::from([("step".to_string(), step as f64)]))
    };
    let mut a = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let ra = train(&mut a, &data, &tc, &resuming(&path_a), &mut copy_at_4)?;
    assert_eq!(history_path(&path_k), tmp("whole-k.history.json"));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(history_path(&path_k))?)?;
    assert_eq!(saved["step"], 3);

    let mut validate = |_: &Model, step: usize| -> ddssm_train::Result<Metrics> {
        Ok(Metrics::from([("step".to_string(), step as f64)]))
    };
    let mut k = Model::new(&mc, 99, DType::F32, &Device::Cpu)?;
    let rk = train(&mut k, &data, &tc, &resuming(&path_k), &mut validate)?;
    assert_eq!(rk.start_step, 3);
    assert_eq!(rk.history, ra.history);
    assert_eq!(rk.validations, ra.validations);
    let steps: Vec<usize> = rk.validations.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [2, 4, 6]);
    assert!(rk.seconds > saved["report"]["seconds"].as_f64().unwrap());
    assert_eq!(params(&k)?, params(&a)?);

    // A finished run resumed again keeps its last validation once.
    let again = train(&mut k, &data, &tc, &resuming(&path_k), &mut validate)?;
    assert_eq!(again.history, ra.history);
    assert_eq!(again.validations, ra.validations);

    // No history beside the checkpoint, or one written at another step: resumed, with the
    // history from step 3.
    for case in ["missing", "another step"] {
        let path = tmp(&format!("whole-{}.safetensors", case.replace(' ', "-")));
        let mut m = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
        let short = TrainConfig { steps: 3, ..tc };
        train(&mut m, &data, &short, &resuming(&path), &mut validate)?;
        let history = history_path(&path);
        if case == "missing" {
            std::fs::remove_file(&history)?;
        } else {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&history)?)?;
            v["step"] = 2.into();
            std::fs::write(&history, v.to_string())?;
        }
        let r = train(&mut m, &data, &tc, &resuming(&path), &mut validate)?;
        assert_eq!(r.start_step, 3);
        assert_eq!(r.history, ra.history[3..]);
        assert_eq!(
            r.validations.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [4, 6]
        );
    }
    Ok(())
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() -> Result<()> {
    let (mc, tc, data) = small();
    let path = tmp("nan.safetensors");
    let mut model = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let short = TrainConfig { steps: 3, ..tc };
    let opts = resuming(&path);
    train(&mut model, &data, &short, &opts, &mut no_validation)?;
    let before = std::fs::read(&path)?;

    let mut x = data.x.to_vec3::<f32>()?;
    for seq in &mut x {
        seq[2][0] = f32::INFINITY;
    }
    let bad = Batch::new(Tensor::new(x, &Device::Cpu)?);
    let err = train(&mut model, &bad, &tc, &opts, &mut no_validation).unwrap_err();
    match &err {
        Error::NonFinite { step, what } => {
            // Resumed after 3 steps: the first step run here is the 4th, as the progress line
            // counts.
            assert_eq!(*step, 4);
            assert_eq!(what, "reconstruction");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("step 4"));
    assert_eq!(std::fs::read(&path)?, before);
    Ok(())
}

/// `--resume` with fewer steps than the checkpoint holds is refused before anything changes
/// (it used to train nothing and rewrite the checkpoint as the earlier step); another training
/// config is refused naming the field that differs.
#[test]
fn a_resume_never_goes_backwards_or_onto_another_config() -> Result<()> {
    let (mc, tc, data) = small();
    let path = tmp("backwards.safetensors");
    let mut model = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let opts = resuming(&path);
    let four = TrainConfig { steps: 4, ..tc };
    train(&mut model, &data, &four, &opts, &mut no_validation)?;
    let before = std::fs::read(&path)?;
    let weights = parameter_values(&model);
    let two = TrainConfig { steps: 2, ..tc };
    let err = train(&mut model, &data, &two, &opts, &mut no_validation)
        .unwrap_err()
        .to_string();
    assert!(err.contains("step 4") && err.contains("2 steps"), "{err}");
    assert_eq!(ddssm_train::resumable_step(&path, &mc, &four)?, Some(4));
    let mut other = four;
    other.learning_rates.encoder *= 2.0;
    let err = ddssm_train::resumable_step(&path, &mc, &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`learning_rates.encoder`"), "{err}");
    let err = train(&mut model, &data, &other, &opts, &mut no_validation)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`learning_rates.encoder`"), "{err}");
    assert_eq!(std::fs::read(&path)?, before);
    assert_eq!(parameter_values(&model), weights);
    assert_eq!(
        ddssm_train::resumable_step(&tmp("absent"), &mc, &four)?,
        None
    );
    Ok(())
}

/// A training checkpoint whose optimiser state does not fit (a moment of the wrong shape, or
/// missing) is refused on resume, and the model keeps its parameters.
#[test]
fn a_checkpoint_with_corrupt_optimizer_state_is_refused() -> Result<()> {
    let (mc, tc, data) = small();
    let path = tmp("corrupt-state.safetensors");
    let mut model = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let opts = resuming(&path);
    let two = TrainConfig { steps: 2, ..tc };
    train(&mut model, &data, &two, &opts, &mut no_validation)?;
    let (meta, state) = ddssm_model::checkpoint::read_state(&path)?;
    let params: Vec<(String, Tensor)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let mut names: Vec<&String> = state.keys().collect();
    names.sort();
    let victim = names[0].clone();
    for (what, replacement) in [
        (
            "flattened",
            Some(state[&victim].flatten_all()?.unsqueeze(0)?),
        ),
        ("missing", None),
    ] {
        let mut tensors = params.clone();
        for (n, t) in &state {
            let t = if *n == victim {
                match &replacement {
                    Some(r) => r.clone(),
                    None => continue,
                }
            } else {
                t.clone()
            };
            tensors.push((format!("{}{n}", ddssm_model::checkpoint::STATE_PREFIX), t));
        }
        std::fs::write(
            &path,
            ddssm_model::checkpoint::seal(&tensors, meta.clone())?,
        )?;
        let mut fresh = Model::new(&mc, 9, DType::F32, &Device::Cpu)?;
        let before = parameter_values(&fresh);
        let err = train(&mut fresh, &data, &tc, &opts, &mut no_validation)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&victim), "{what}: {err}");
        assert_eq!(
            before,
            parameter_values(&fresh),
            "{what}: the model changed"
        );
    }
    Ok(())
}

/// Inputs given as non-contiguous views (a transposed covariate tensor) train like their
/// contiguous copies (they used to fail deep inside with "index-select only supports contiguous
/// tensors").
#[test]
fn non_contiguous_inputs_train_like_contiguous_ones() -> Result<()> {
    let mc = ModelConfig {
        covariate_dim: 2,
        ..ModelConfig::paper_dkf()
    };
    let tc = TrainConfig {
        steps: 2,
        batch_size: 4,
        samples: 1,
        validate_every: 0,
        checkpoint_every: 0,
        ..TrainConfig::paper_dkf()
    };
    let mut noise = SeededNoise::new(3);
    let x = noise.randn((6, 5, 1), DType::F32, &Device::Cpu)?;
    let u_t = noise.randn((6, 2, 5), DType::F32, &Device::Cpu)?;
    let view = u_t.transpose(1, 2)?; // [6, 5, 2], not contiguous
    assert!(!view.is_contiguous());
    let run = |u: Tensor| -> Result<Vec<f64>> {
        let mut model = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
        let data = Batch {
            covariates: Some(u),
            ..Batch::new(x.clone())
        };
        let report = train(
            &mut model,
            &data,
            &tc,
            &TrainOptions::default(),
            &mut no_validation,
        )?;
        Ok(report.history.iter().map(|r| r.objective).collect())
    };
    assert_eq!(run(view.clone())?, run(view.contiguous()?)?);
    Ok(())
}

/// `fit` is the model built from the run's config, given the standardisation, and trained: the
/// same history as doing those steps by hand; a bad field of a `ModelRun` is named by its path.
#[test]
fn fit_is_build_standardise_and_train_in_one_call() -> Result<()> {
    let (mc, tc, data) = small();
    let tc = TrainConfig { steps: 2, ..tc };
    let s = ddssm_model::Standardization {
        mean: vec![0.3],
        std: vec![1.7],
    };
    let run = ddssm_train::ModelRun {
        model: mc.clone(),
        train: tc,
    };
    let (model, report) = ddssm_train::fit(
        &run,
        5,
        Some(s.clone()),
        &data,
        &TrainOptions::default(),
        &mut no_validation,
    )?;
    let mut by_hand = Model::new(&mc, 5, DType::F32, &Device::Cpu)?;
    by_hand.set_standardization(Some(s))?;
    let expected = train(
        &mut by_hand,
        &data,
        &tc,
        &TrainOptions::default(),
        &mut no_validation,
    )?;
    assert_eq!(report.history, expected.history);
    assert_eq!(parameter_values(&model), parameter_values(&by_hand));
    let mut bad = run.clone();
    bad.model.order = 0;
    let err = bad.validate("dkf").unwrap_err().to_string();
    assert!(err.contains("dkf.model.order"), "{err}");
    bad = run;
    bad.train.samples = 0;
    let err = bad.validate("dkf").unwrap_err().to_string();
    assert!(err.contains("dkf.train.samples"), "{err}");
    Ok(())
}

#[test]
fn bad_training_configs_name_their_field() {
    let bad = TrainConfig {
        samples: 0,
        ..TrainConfig::paper_ddssm()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("samples"));
    let mut bad = TrainConfig::paper_dkf();
    bad.learning_rates.decoder = -1.0;
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("learning_rates.decoder"));
    for gamma in [0.0, 1.5, f64::NAN] {
        let bad = TrainConfig {
            entropy_weight: gamma,
            ..TrainConfig::paper_ddssm()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("entropy_weight") && err.contains("(0, 1]"),
            "{err}"
        );
    }
    let pinned_at_one = TrainConfig {
        pin_latent_scale: true,
        ..TrainConfig::paper_ddssm()
    };
    let err = pinned_at_one.validate().unwrap_err().to_string();
    assert!(
        err.contains("pin_latent_scale") && err.contains("entropy_weight < 1"),
        "{err}"
    );
    let iwae = TrainConfig {
        objective: Objective::Iwae,
        estimator: Estimator::Sample,
        ..TrainConfig::paper_ddssm()
    };
    iwae.validate().unwrap();
    for (bad, field, allowed) in [
        (
            TrainConfig {
                estimator: Estimator::Analytic,
                ..iwae
            },
            "estimator",
            "\"sample\"",
        ),
        (TrainConfig { samples: 1, ..iwae }, "samples", "≥ 2"),
        (
            TrainConfig {
                entropy_weight: 0.5,
                ..iwae
            },
            "entropy_weight",
            "1 with objective",
        ),
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(allowed), "{err}");
    }
}
