//! The encoder's residual posterior (`encoder.residual`, not in the paper; SRNN's): at every
//! `t > j` the posterior mean is the transition's predicted mean on the same history plus the
//! head's output. Off it is not written and changes nothing; on, it adds no parameters, shifts
//! the teacher-forced means by exactly the transition's prediction (checked against the inputs
//! `Model::transition_pairs` builds independently: times, covariates, history), and lets the
//! ELBO's gradient reach the transition's parameters or not as configured — and the history the
//! prediction reads in both cases.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{
    Batch, ElboOptions, EncoderInputs, EncoderResidual, Model, ModelConfig, TransitionConfig,
};
use ddssm_tensor_ops::SeededNoise;

fn with(mut config: ModelConfig, residual: EncoderResidual) -> ModelConfig {
    config.encoder.residual = residual;
    config
}

/// A diffusion and a Gaussian transition, each with a time embedding (so that the times the
/// encoder hands the transition matter) and covariates.
fn configs() -> [ModelConfig; 2] {
    let mut diffusion = common::general_config(TransitionConfig::default());
    if let TransitionConfig::Diffusion(d) = &mut diffusion.transition {
        d.denoiser.side.time_embedding_dim = 4;
    }
    let mut gaussian = common::general_config(TransitionConfig::Gaussian(Default::default()));
    if let TransitionConfig::Gaussian(g) = &mut gaussian.transition {
        g.side.time_embedding_dim = 4;
    }
    [diffusion, gaussian]
}

/// The encoder's inputs for `data` (its covariates and statics, no mask).
fn inputs_of(model: &Model, data: &Batch) -> Result<EncoderInputs> {
    Ok(model.encoder().prepare(
        &data.x,
        None,
        data.covariates.as_ref(),
        data.statics.as_ref(),
    )?)
}

#[test]
fn the_option_is_written_only_when_on_and_a_bad_value_names_the_allowed_ones() -> Result<()> {
    let paper = ModelConfig::paper_ddssm();
    assert!(!paper.to_toml()?.contains("residual"));
    for kind in [
        EncoderResidual::Transition,
        EncoderResidual::TransitionDetached,
    ] {
        let on = with(paper.clone(), kind);
        let text = on.to_toml()?;
        assert!(
            text.contains(&format!("residual = \"{}\"", kind.name())),
            "{text}"
        );
        assert_eq!(ModelConfig::from_toml(&text)?, on);
    }
    let text = with(paper, EncoderResidual::Transition)
        .to_toml()?
        .replace("residual = \"transition\"", "residual = \"prior\"");
    let err = ModelConfig::from_toml(&text).unwrap_err().to_string();
    for word in ["prior", "none", "transition", "transition_detached"] {
        assert!(err.contains(word), "{err}");
    }
    Ok(())
}

#[test]
fn the_mean_is_shifted_by_the_transitions_prediction_from_step_j_plus_one() -> Result<()> {
    let dev = Device::Cpu;
    for plain_config in configs() {
        let config = with(plain_config.clone(), EncoderResidual::Transition);
        let (n, t_len, m, j) = (3, 6, config.latent_dim, config.order);
        let plain = Model::new(&plain_config, 5, DType::F64, &dev)?;
        let residual = Model::new(&config, 5, DType::F64, &dev)?;
        // No parameter added: the same names, shapes and (same seed) values.
        let names = |model: &Model| -> Vec<(String, Vec<usize>)> {
            model
                .named_parameters()
                .into_iter()
                .map(|(name, v)| (name, v.dims().to_vec()))
                .collect()
        };
        assert_eq!(names(&plain), names(&residual));
        common::jitter_transition(&residual, 6)?;

        let data = common::batch(&config, n, t_len, 4)?;
        let x = data.x.to_dtype(DType::F64)?;
        let u = data
            .covariates
            .as_ref()
            .map(|u| u.to_dtype(DType::F64))
            .transpose()?;
        let s = data
            .statics
            .as_ref()
            .map(|s| s.to_dtype(DType::F64))
            .transpose()?;
        let z = SeededNoise::new(8).randn((n, t_len, m), DType::F64, &dev)?;
        let q_of = |model: &Model| {
            let inputs = model.encoder().prepare(&x, None, u.as_ref(), s.as_ref())?;
            model
                .encoder()
                .posteriors(&inputs, &z, model.residual_prior())
        };
        let (q0, q1) = (q_of(&plain)?, q_of(&residual)?);
        assert_eq!(common::scalars(q0.logvar())?, common::scalars(q1.logvar())?);
        let (input, _) = residual.transition_pairs(&z, u.as_ref())?;
        let prediction = common::scalars(&residual.transition().predicted_mean(&input)?)?;
        let (before, after) = (common::scalars(q0.mean())?, common::scalars(q1.mean())?);
        for row in 0..n {
            for t in 0..t_len {
                for d in 0..m {
                    let i = (row * t_len + t) * m + d;
                    let shift = if t < j {
                        0.0
                    } else {
                        prediction[(row * (t_len - j) + t - j) * m + d]
                    };
                    assert!(
                        (after[i] - before[i] - shift).abs() < 1e-12,
                        "{}: sequence {row}, step {t}, dim {d}: {} → {}, prediction {shift}",
                        residual.transition().kind(),
                        before[i],
                        after[i]
                    );
                }
            }
        }
        // The prediction is not trivially zero.
        assert!(prediction.iter().any(|p| p.abs() > 1e-3), "{prediction:?}");
    }
    Ok(())
}

#[test]
fn the_gradient_reaches_the_transition_only_when_not_detached() -> Result<()> {
    for base in configs() {
        for kind in [
            EncoderResidual::Transition,
            EncoderResidual::TransitionDetached,
        ] {
            let config = with(base.clone(), kind);
            let model = Model::new(&config, 5, DType::F32, &Device::Cpu)?;
            let data = common::batch(&config, 3, 6, 4)?;
            let z =
                SeededNoise::new(8).randn((3, 6, config.latent_dim), DType::F32, &Device::Cpu)?;
            let inputs = inputs_of(&model, &data)?;
            let q = model
                .encoder()
                .posteriors(&inputs, &z, model.residual_prior())?;
            let grads = q.mean().sum_all()?.backward()?;
            let reached: f64 = model
                .named_parameters()
                .iter()
                .filter(|(name, _)| name.starts_with("transition."))
                .filter_map(|(_, v)| grads.get(v.as_tensor()))
                .map(|g| -> Result<f64> { Ok(common::scalars(g)?.iter().map(|x| x.abs()).sum()) })
                .sum::<Result<f64>>()?;
            match kind {
                EncoderResidual::Transition => assert!(reached > 0.0, "{kind:?}: {reached}"),
                _ => assert_eq!(reached, 0.0, "{kind:?}"),
            }
        }
    }
    Ok(())
}

/// Every parameter's gradient of the negative ELBO under `kind` (transition parameters
/// jittered, so that the prediction depends on the history), by name.
fn elbo_gradients(base: &ModelConfig, kind: EncoderResidual) -> Result<Vec<(String, Vec<f64>)>> {
    let config = with(base.clone(), kind);
    let model = Model::new(&config, 5, DType::F32, &Device::Cpu)?;
    common::jitter_transition(&model, 6)?;
    let data = common::batch(&config, 3, 6, 4)?;
    let terms = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(9))?;
    let grads = terms.negative_elbo()?.backward()?;
    model
        .named_parameters()
        .into_iter()
        .map(|(name, var)| {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => common::scalars(g)?,
                None => vec![0.0; var.elem_count()],
            };
            Ok((name, g))
        })
        .collect()
}

/// Under `"transition_detached"` the ELBO's gradient is SRNN's (`"transition"`) for every
/// parameter but the transition's: the prediction still passes the gradient on to the history
/// it reads (the encoder's earlier draws), and only the transition's parameters lose the
/// gradient that reaches them through the encoder. Cutting the prediction from the graph
/// altogether — what this option did before — changes the encoder's gradient too, and fails here.
#[test]
fn detaching_cuts_the_transitions_parameters_and_nothing_else() -> Result<()> {
    for base in configs() {
        let srnn = elbo_gradients(&base, EncoderResidual::Transition)?;
        let detached = elbo_gradients(&base, EncoderResidual::TransitionDetached)?;
        let mut transition_moved = 0.0f64;
        for ((name, a), (other, b)) in srnn.iter().zip(&detached) {
            assert_eq!(name, other);
            let diff = common::worst_relative(b, a);
            if name.starts_with("transition.") {
                transition_moved = transition_moved.max(diff);
            } else {
                // The same ops on the same values: f32 rounding at most.
                assert!(diff < 1e-5, "{name}: gradients differ by {diff:e}");
            }
        }
        // The gradient that reached the transition through the encoder is gone.
        assert!(transition_moved > 1e-3, "{transition_moved:e}");
    }
    Ok(())
}

#[test]
fn the_prior_must_match_the_config_and_the_elbo_runs() -> Result<()> {
    let config = with(
        common::general_config(TransitionConfig::default()),
        EncoderResidual::Transition,
    );
    let model = Model::new(&config, 5, DType::F32, &Device::Cpu)?;
    let plain = Model::new(
        &common::general_config(TransitionConfig::default()),
        5,
        DType::F32,
        &Device::Cpu,
    )?;
    let data = common::batch(&config, 2, 5, 4)?;
    let inputs = inputs_of(&model, &data)?;
    let mut noise = SeededNoise::new(1);
    let missing = model
        .encoder()
        .sample(&inputs, 2, &mut noise, None)
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("encoder.residual = \"transition\""),
        "{missing}"
    );
    let extra = plain
        .encoder()
        .sample(&inputs, 2, &mut noise, Some(model.transition()))
        .unwrap_err();
    assert!(
        extra.to_string().contains("encoder.residual = \"none\""),
        "{extra}"
    );
    // The model's own paths pass the right prior: the ELBO is finite.
    let terms = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(2))?;
    let value: Vec<f64> = common::scalars(&terms.negative_elbo()?)?;
    assert!(value.iter().all(|v| v.is_finite()), "{value:?}");
    Ok(())
}
