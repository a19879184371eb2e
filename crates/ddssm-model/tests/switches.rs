//! The estimator choices of a built diffusion model that leave its parameters alone: the
//! sampler of its predictives and the noise-level sampling of its Eq. 52 term, each switchable on
//! a loaded model, recorded in its config and refused for a Gaussian transition.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{ElboOptions, Model, ModelConfig, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;

fn dev() -> Device {
    Device::Cpu
}

#[test]
fn the_sampler_can_be_switched_on_a_diffusion_model_only() -> Result<()> {
    use ddssm_diffusion::Sampler;
    let mut dkf = Model::new(&ModelConfig::paper_dkf(), 1, DType::F32, &dev())?;
    let e = dkf
        .set_sampler(Sampler::Ddim { steps: 10 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("transition.sampler"), "{e}");

    let mut model = Model::new(&ModelConfig::paper_ddssm(), 1, DType::F32, &dev())?;
    let data = common::batch(model.config(), 3, 6, 2)?;
    let before =
        common::scalars(&model.one_step_predictive(&data, 4, &mut SeededNoise::new(5))?)?;
    model.set_sampler(Sampler::Ddim { steps: 10 })?;
    let after = common::scalars(&model.one_step_predictive(&data, 4, &mut SeededNoise::new(5))?)?;
    assert_ne!(before, after);
    match &model.config().transition {
        TransitionConfig::Diffusion(d) => assert_eq!(d.sampler, Sampler::Ddim { steps: 10 }),
        TransitionConfig::Gaussian(_) => unreachable!(),
    }
    let e = model
        .set_sampler(Sampler::DpmSolver2M { steps: 0 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("between 1 and K = 128"), "{e}");
    Ok(())
}

/// The level sampling of Eq. 52 (`transition.loss.levels`, not in the paper) reaches the model's
/// transition term, can be switched on a built model, and is validated with the field's full path.
#[test]
fn the_level_sampling_option_reaches_the_transition_term() -> Result<()> {
    use ddssm_diffusion::{LevelProposal, LevelSampling};
    let paper = ModelConfig::paper_ddssm();
    let with_levels = |levels: LevelSampling| {
        let mut config = paper.clone();
        match &mut config.transition {
            TransitionConfig::Diffusion(d) => d.loss.levels = levels,
            TransitionConfig::Gaussian(_) => unreachable!(),
        }
        config
    };
    let weighted = LevelSampling {
        proposal: LevelProposal::ElboWeight,
        stratified: true,
        ..Default::default()
    };
    let data = common::batch(&paper, 4, 8, 2)?;
    let transition = |config: &ModelConfig| -> Result<Vec<f64>> {
        let model = Model::new(config, 1, DType::F32, &dev())?;
        let terms = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(3))?;
        common::scalars(&terms.transition)
    };
    let weighted_terms = transition(&with_levels(weighted))?;
    assert!(
        weighted_terms.iter().all(|v| v.is_finite()),
        "{weighted_terms:?}"
    );
    assert_ne!(transition(&paper)?, weighted_terms);
    // Switched on a built model, it gives the same terms and the config records it.
    let mut model = Model::new(&paper, 1, DType::F32, &dev())?;
    model.set_level_sampling(weighted)?;
    assert_eq!(model.config(), &with_levels(weighted));
    let terms = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(3))?;
    assert_eq!(common::scalars(&terms.transition)?, weighted_terms);
    let mut dkf = Model::new(&ModelConfig::paper_dkf(), 1, DType::F32, &dev())?;
    let e = dkf.set_level_sampling(weighted).unwrap_err().to_string();
    assert!(e.contains("transition.loss.levels"), "{e}");
    let bad = with_levels(LevelSampling {
        uniform_fraction: 1.5,
        ..weighted
    });
    let e = Model::new(&bad, 1, DType::F32, &dev())
        .unwrap_err()
        .to_string();
    assert!(e.contains("transition.loss.levels.uniform_fraction"), "{e}");
    Ok(())
}
