//! The learned latent scale of the diffusion transition (`transition.latent_scale = "learned"`):
//! `p(z | c) = p̃(z / s | c / s) / s^M`. With `s = exp(log_scale)` set by hand, the scaled model's
//! bound, importance weights and draws must be the fixed-scale model's on `z / s`, shifted by the
//! change of variables `M·log s` (draws: multiplied by `s`), under the same noise.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{
    DiffusionTransitionConfig, Estimator, LatentScale, Model, ModelConfig, TransitionConfig,
    TransitionInput,
};
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};

use common::{general_config, randomise_zero_parameters, scalars};

fn config(latent_scale: LatentScale) -> ModelConfig {
    general_config(TransitionConfig::Diffusion(DiffusionTransitionConfig {
        latent_scale,
        ..DiffusionTransitionConfig::default()
    }))
}

/// Both models from one seed (parameters depend only on seed and name), the zero-initialised
/// ones randomised alike so the denoiser's output depends on its inputs.
fn models() -> Result<(Model, Model)> {
    let fixed = Model::new(&config(LatentScale::Fixed), 3, DType::F32, &Device::Cpu)?;
    let learned = Model::new(&config(LatentScale::Learned), 3, DType::F32, &Device::Cpu)?;
    randomise_zero_parameters(&fixed, 11)?;
    randomise_zero_parameters(&learned, 11)?;
    // That randomised the scale too (it starts at log s = 0): back to s = 1.
    log_scale(&learned).set(&Tensor::zeros(1, DType::F32, &Device::Cpu)?)?;
    Ok((fixed, learned))
}

fn log_scale(model: &Model) -> candle_core::Var {
    model
        .named_parameters()
        .into_iter()
        .find(|(name, _)| name == "transition.log_scale")
        .map(|(_, var)| var)
        .expect("a learned scale is a parameter named transition.log_scale")
}

/// `n` random transitions of the general config (`M = 2`, `j = 2`, two covariates).
fn transitions(n: usize) -> Result<(TransitionInput, Tensor)> {
    let dev = Device::Cpu;
    let mut noise = SeededNoise::new(5);
    let history = noise.randn((n, 2, 2), DType::F32, &dev)?.affine(4.0, 0.0)?;
    let times = Tensor::arange(0u32, (n * 3) as u32, &dev)?
        .to_dtype(DType::F32)?
        .reshape((n, 3))?;
    let covariates = Some(noise.randn((n, 3, 2), DType::F32, &dev)?);
    let target = noise.randn((n, 2), DType::F32, &dev)?.affine(4.0, 0.0)?;
    Ok((
        TransitionInput {
            history,
            times,
            covariates,
        },
        target,
    ))
}

fn scaled(input: &TransitionInput, s: f64) -> Result<TransitionInput> {
    Ok(TransitionInput {
        history: input.history.affine(1.0 / s, 0.0)?,
        ..input.clone()
    })
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} against {y}"
        );
    }
}

#[test]
fn a_learned_scale_is_a_change_of_variables() -> Result<()> {
    let (fixed, learned) = models()?;
    let s = 3.0f64;
    let var = log_scale(&learned);
    var.set(&Tensor::new(&[s.ln() as f32], &Device::Cpu)?)?;
    let (input, target) = transitions(6)?;
    let target_s = target.affine(1.0 / s, 0.0)?;
    let posterior = DiagGaussian::new(target.clone(), target.zeros_like()?)?;
    let m_log_s = 2.0 * s.ln();

    let objective = |model: &Model, input: &TransitionInput, target: &Tensor| -> Result<_> {
        let loss = model.transition().loss(
            input,
            target,
            &posterior,
            Estimator::Analytic,
            &mut SeededNoise::new(21),
        )?;
        Ok((scalars(&loss.objective)?, loss.constant))
    };
    let (ours, c_ours) = objective(&learned, &input, &target)?;
    let (theirs, c_theirs) = objective(&fixed, &scaled(&input, s)?, &target_s)?;
    let shifted: Vec<f64> = theirs.iter().map(|v| v + m_log_s).collect();
    close(&ours, &shifted, 1e-4, "bound");
    assert_eq!(c_ours, c_theirs);

    let weight = |model: &Model, input: &TransitionInput, target: &Tensor| {
        scalars(
            &model
                .transition()
                .log_weight(input, target, &mut SeededNoise::new(22))?,
        )
    };
    let ours = weight(&learned, &input, &target)?;
    let shifted: Vec<f64> = weight(&fixed, &scaled(&input, s)?, &target_s)?
        .iter()
        .map(|v| v - m_log_s)
        .collect();
    close(&ours, &shifted, 1e-4, "log weight");

    let draw = |model: &Model, input: &TransitionInput| {
        scalars(
            &model
                .transition()
                .sample(input, &mut SeededNoise::new(23))?,
        )
    };
    let ours = draw(&learned, &input)?;
    let times_s: Vec<f64> = draw(&fixed, &scaled(&input, s)?)?
        .iter()
        .map(|v| v * s)
        .collect();
    close(&ours, &times_s, 1e-4, "draws");
    Ok(())
}

#[test]
fn the_scale_is_trained_and_the_paper_model_has_none() -> Result<()> {
    let fresh = Model::new(&config(LatentScale::Learned), 3, DType::F32, &Device::Cpu)?;
    assert_eq!(
        scalars(log_scale(&fresh).as_tensor())?,
        vec![0.0],
        "initialised at s = 1"
    );
    let (fixed, learned) = models()?;
    assert!(fixed
        .named_parameters()
        .iter()
        .all(|(name, _)| name != "transition.log_scale"));
    // At s = 1 the two models are the same density.
    let (input, target) = transitions(5)?;
    let posterior = DiagGaussian::new(target.clone(), target.zeros_like()?)?;
    let loss = |model: &Model| {
        model.transition().loss(
            &input,
            &target,
            &posterior,
            Estimator::Analytic,
            &mut SeededNoise::new(4),
        )
    };
    let ours = loss(&learned)?.objective;
    close(
        &scalars(&ours)?,
        &scalars(&loss(&fixed)?.objective)?,
        1e-6,
        "at s = 1",
    );
    let grads = ours.sum_all()?.backward()?;
    let grad = grads
        .get(log_scale(&learned).as_tensor())
        .expect("the bound depends on the scale");
    assert!(scalars(grad)?[0].abs() > 1e-3, "{grad}");
    Ok(())
}

#[test]
fn the_setting_reads_and_writes() -> Result<()> {
    // The paper's fixed scale is not written, so configs and checkpoints without it read alike.
    let fixed = toml::to_string(&DiffusionTransitionConfig::default())?;
    assert!(!fixed.contains("latent_scale"), "{fixed}");
    let learned = DiffusionTransitionConfig {
        latent_scale: LatentScale::Learned,
        ..DiffusionTransitionConfig::default()
    };
    let text = toml::to_string(&learned)?;
    assert!(text.contains("latent_scale = \"learned\""), "{text}");
    assert_eq!(toml::from_str::<DiffusionTransitionConfig>(&text)?, learned);
    let err = toml::from_str::<DiffusionTransitionConfig>("latent_scale = \"auto\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fixed") && err.contains("learned"),
        "the error names the allowed values: {err}"
    );
    Ok(())
}

#[test]
fn a_checkpoint_keeps_the_scale_and_the_setting() -> Result<()> {
    let (_, learned) = models()?;
    log_scale(&learned).set(&Tensor::new(&[0.7f32], &Device::Cpu)?)?;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-latent-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("model.safetensors");
    learned.save(&path, &Default::default())?;
    let back = Model::load(&path, &Device::Cpu)?;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(back.config(), learned.config());
    assert_eq!(scalars(log_scale(&back).as_tensor())?, vec![0.7f32 as f64]);
    assert!((back.transition().latent_scale()? - 0.7f64.exp()).abs() < 1e-6);
    Ok(())
}
