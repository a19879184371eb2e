//! The encoder's history skip (`encoder.history_skip`, not in the paper): a linear map of
//! `z_{t−j:t−1}` added to the posterior mean, starting at zero. Off it is not written and changes
//! nothing; on, the model starts as the paper's encoder and the map shifts the mean by exactly
//! `W·z_{t−j:t−1}` and learns.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{ElboOptions, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;

fn with_skip(mut config: ModelConfig) -> ModelConfig {
    config.encoder.history_skip = true;
    config
}

#[test]
fn the_option_is_written_only_when_on() -> Result<()> {
    let paper = ModelConfig::paper_ddssm();
    assert!(!paper.to_toml()?.contains("history_skip"));
    let on = with_skip(paper);
    let text = on.to_toml()?;
    assert!(text.contains("history_skip = true"), "{text}");
    assert_eq!(ModelConfig::from_toml(&text)?, on);
    Ok(())
}

#[test]
fn the_skip_starts_at_zero_and_shifts_the_mean_by_its_map() -> Result<()> {
    for paper in [ModelConfig::paper_ddssm(), ModelConfig::paper_dkf()] {
        let config = with_skip(paper.clone());
        let data = common::batch(&config, 3, 7, 4)?;
        let terms = |model: &Model| -> Result<Vec<f64>> {
            let t = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(2))?;
            common::term_values(&t)
        };
        let plain = Model::new(&paper, 5, DType::F32, &Device::Cpu)?;
        let skip = Model::new(&config, 5, DType::F32, &Device::Cpu)?;
        // The paper's parameters, plus one zero `[M, j·M]` map: the same ELBO terms.
        let extra: Vec<_> = skip
            .named_parameters()
            .into_iter()
            .filter(|(name, _)| !plain.named_parameters().iter().any(|(n, _)| n == name))
            .collect();
        assert_eq!(extra.len(), 1);
        let (name, weight) = &extra[0];
        assert_eq!(name, "encoder.history_skip.weight");
        assert_eq!(weight.dims(), [1, 1]);
        assert_eq!(common::scalars(weight.as_tensor())?, vec![0.0]);
        assert_eq!(terms(&skip)?, terms(&plain)?);

        // With the map set to a, the teacher-forced posterior means move by a·z_{t−1} (and not
        // at t = 1, whose history is padding).
        let z = SeededNoise::new(8).randn((3, 7, 1), DType::F32, &Device::Cpu)?;
        let means = |model: &Model| -> Result<Vec<f64>> {
            let inputs = model.encoder().prepare(&data.x, None, None, None)?;
            common::scalars(
                model
                    .encoder()
                    .posteriors(&inputs, &z, model.residual_prior())?
                    .mean(),
            )
        };
        let before = means(&skip)?;
        let a = 0.75f32;
        weight.set(&Tensor::new(&[[a]], &Device::Cpu)?)?;
        let after = means(&skip)?;
        let zs = common::scalars(&z)?;
        for (i, (b, f)) in before.iter().zip(&after).enumerate() {
            let shift = if i % 7 == 0 {
                0.0
            } else {
                a as f64 * zs[i - 1]
            };
            assert!(
                (f - b - shift).abs() < 1e-5,
                "step {i}: {b} → {f}, shift {shift}"
            );
        }
        // …and it learns: the ELBO has a non-zero gradient for it.
        let t = skip.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(2))?;
        let grads = t.negative_elbo()?.mean_all()?.backward()?;
        let g = common::scalars(grads.get(weight.as_tensor()).expect("a gradient"))?;
        assert!(g[0].is_finite() && g[0] != 0.0, "{g:?}");
    }
    Ok(())
}
