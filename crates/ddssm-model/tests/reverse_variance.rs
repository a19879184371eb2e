//! The reverse kernel's variance of the diffusion transition's bound
//! (`transition.schedule.reverse_variance`, not in the paper): it reaches the model's transition
//! term, a checkpoint keeps it, and a bad schedule field is named with its full path.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_diffusion::ReverseVariance;
use ddssm_model::{ElboOptions, Model, ModelConfig, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;

fn with_schedule(edit: impl Fn(&mut ddssm_diffusion::NoiseScheduleConfig)) -> ModelConfig {
    let mut config = ModelConfig::paper_ddssm();
    match &mut config.transition {
        TransitionConfig::Diffusion(d) => edit(&mut d.schedule),
        TransitionConfig::Gaussian(_) => unreachable!(),
    }
    config
}

#[test]
fn the_reverse_variance_reaches_the_transition_term_and_the_checkpoint() -> Result<()> {
    let paper = ModelConfig::paper_ddssm();
    let tilde = with_schedule(|s| s.reverse_variance = ReverseVariance::BetaTilde);
    let data = common::batch(&paper, 4, 8, 2)?;
    let transition = |model: &Model| -> Result<Vec<f64>> {
        let terms = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(3))?;
        common::scalars(&terms.transition)
    };
    let dev = Device::Cpu;
    let model = Model::new(&tilde, 1, DType::F32, &dev)?;
    let tilde_terms = transition(&model)?;
    assert!(tilde_terms.iter().all(|v| v.is_finite()), "{tilde_terms:?}");
    // Same parameters (same seed), same draws: only the bound's weights and constant differ.
    assert_ne!(
        transition(&Model::new(&paper, 1, DType::F32, &dev)?)?,
        tilde_terms
    );

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-reverse-variance-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("model.safetensors");
    model.save(&path, &Default::default())?;
    let back = Model::load(&path, &dev)?;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(back.config(), &tilde);
    assert_eq!(transition(&back)?, tilde_terms);
    Ok(())
}

#[test]
fn a_bad_schedule_field_is_named_with_its_path() {
    let refusal = |config: &ModelConfig| match Model::new(config, 1, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let e = refusal(&with_schedule(|s| s.sigma_data = 0.0));
    assert!(e.contains("transition.schedule.sigma_data"), "{e}");
    let e = refusal(&with_schedule(|s| s.num_steps = 1));
    assert!(e.contains("transition.schedule.num_steps"), "{e}");
}
