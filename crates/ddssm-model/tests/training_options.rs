//! Two training-only options of the ELBO evaluation (not in the paper, off by default):
//! `ElboOptions::encoder_input_noise` reaches the encoder's view of the observations and nothing
//! else, drawn first from the ELBO's noise stream; `ElboOptions::encoder_mask_rate` hides entries
//! from the encoder's view and from nothing else; `ElboOptions::transition_draw_scale` changes the
//! transition term and nothing else; `ElboOptions::split_transition_gradient` gives the
//! transition's parameters the pulled term's gradient and everything else the ELBO's; the options
//! that change the ELBO's value are named for the training log.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{ElboOptions, Estimator, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;

/// With the noise on, the ELBO equals the ELBO of the noisy observations in every term that
/// depends on `x` only through the encoder (entropies, VHP, transition), bit for bit, while the
/// reconstruction still scores the clean observations (so it differs). If the noise reached the
/// reconstruction too, `recon` would agree; if it did not reach the encoder, the other terms would
/// differ.
#[test]
fn the_noise_reaches_the_encoder_only() -> Result<()> {
    for config in [ModelConfig::paper_ddssm(), ModelConfig::paper_dkf()] {
        let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
        assert!(model.standardization().is_none());
        let data = common::batch(&config, 3, 6, 2)?;
        let sd = 0.3;
        let options = ElboOptions {
            encoder_input_noise: sd,
            ..ElboOptions::default()
        };
        let noisy_terms = model.elbo(&data, &options, &mut SeededNoise::new(11))?;

        // The same draws by hand: the observation noise first, then the rest of the stream.
        let mut noise = SeededNoise::new(11);
        let mut seen = data.clone();
        seen.x = (&data.x + (noise.randn_like(&data.x)? * sd)?)?;
        let seen_terms = model.elbo(&seen, &ElboOptions::default(), &mut noise)?;
        for (what, a, b) in [
            (
                "init_entropy",
                &noisy_terms.init_entropy,
                &seen_terms.init_entropy,
            ),
            ("entropy", &noisy_terms.entropy, &seen_terms.entropy),
            ("vhp", &noisy_terms.vhp, &seen_terms.vhp),
            (
                "transition",
                &noisy_terms.transition,
                &seen_terms.transition,
            ),
        ] {
            assert_eq!(common::scalars(a)?, common::scalars(b)?, "{what}");
        }
        assert_ne!(
            common::scalars(&noisy_terms.recon)?,
            common::scalars(&seen_terms.recon)?
        );

        // Off by default: the clean ELBO, and different from the noisy one.
        let clean = model.elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(11))?;
        let zero = ElboOptions {
            encoder_input_noise: 0.0,
            ..ElboOptions::default()
        };
        let zero = model.elbo(&data, &zero, &mut SeededNoise::new(11))?;
        assert_eq!(
            common::scalars(&clean.negative_elbo()?)?,
            common::scalars(&zero.negative_elbo()?)?
        );
        assert_ne!(
            common::scalars(&clean.entropy)?,
            common::scalars(&noisy_terms.entropy)?
        );
    }
    Ok(())
}

/// With the mask rate on, the ELBO equals, in every term that sees `x` only through the encoder,
/// bit for bit, the ELBO of the same batch with the hidden entries marked missing (the uniform
/// draws first from the stream, an entry seen where its draw is at least the rate and the batch
/// observes it), while the reconstruction still scores every observed entry (so it differs). If
/// the mask reached the reconstruction, `recon` would agree; if it did not reach the encoder, or
/// revealed an entry the batch lacks, the other terms would differ.
#[test]
fn the_mask_rate_hides_entries_from_the_encoder_only() -> Result<()> {
    for config in [ModelConfig::paper_ddssm(), ModelConfig::paper_dkf()] {
        let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
        let mut data = common::batch(&config, 3, 6, 2)?;
        // The batch's own mask: every third entry missing.
        let own: Vec<f32> = (0..data.x.elem_count())
            .map(|i| if i % 3 == 2 { 0.0 } else { 1.0 })
            .collect();
        data.mask = Some(candle_core::Tensor::from_vec(
            own,
            data.x.shape().clone(),
            &Device::Cpu,
        )?);
        let rate = 0.4;
        let options = ElboOptions {
            encoder_mask_rate: rate,
            ..ElboOptions::default()
        };
        let masked = model.elbo(&data, &options, &mut SeededNoise::new(11))?;

        let mut noise = SeededNoise::new(11);
        let keep = noise
            .rand_uniform(data.x.shape().clone(), DType::F32, &Device::Cpu)?
            .ge(rate)?
            .to_dtype(DType::F32)?;
        let seen = (data.mask.as_ref().unwrap() * &keep)?;
        let observed = common::scalars(data.mask.as_ref().unwrap())?
            .iter()
            .sum::<f64>();
        let shown = common::scalars(&seen)?.iter().sum::<f64>();
        assert!(shown > 0.0 && shown < observed, "{shown} of {observed}");
        let mut hidden = data.clone();
        hidden.mask = Some(seen);
        let by_hand = model.elbo(&hidden, &ElboOptions::default(), &mut noise)?;
        for (what, a, b) in [
            ("init_entropy", &masked.init_entropy, &by_hand.init_entropy),
            ("entropy", &masked.entropy, &by_hand.entropy),
            ("vhp", &masked.vhp, &by_hand.vhp),
            ("transition", &masked.transition, &by_hand.transition),
        ] {
            assert_eq!(common::scalars(a)?, common::scalars(b)?, "{what}");
        }
        assert_ne!(
            common::scalars(&masked.recon)?,
            common::scalars(&by_hand.recon)?
        );
        // At 0 the stream is untouched: the ELBO of the batch as given.
        let zero = ElboOptions {
            encoder_mask_rate: 0.0,
            ..ElboOptions::default()
        };
        assert_eq!(
            common::scalars(
                &model
                    .elbo(&data, &zero, &mut SeededNoise::new(11))?
                    .negative_elbo()?
            )?,
            common::scalars(
                &model
                    .elbo(&data, &ElboOptions::default(), &mut SeededNoise::new(11))?
                    .negative_elbo()?
            )?
        );
    }
    Ok(())
}

/// With the hidden entries unscored as well, the ELBO is, in every term and bit for bit, the
/// ELBO of the batch with those entries marked missing: the reconstruction leaves them out too.
#[test]
fn unscored_hidden_entries_give_the_elbo_of_the_entries_kept() -> Result<()> {
    for config in [ModelConfig::paper_ddssm(), ModelConfig::paper_dkf()] {
        let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
        let data = common::batch(&config, 3, 6, 2)?;
        let rate = 0.4;
        let options = ElboOptions {
            encoder_mask_rate: rate,
            encoder_mask_unscored: true,
            ..ElboOptions::default()
        };
        let thinned = model.elbo(&data, &options, &mut SeededNoise::new(5))?;
        let mut noise = SeededNoise::new(5);
        let keep = noise
            .rand_uniform(data.x.shape().clone(), DType::F32, &Device::Cpu)?
            .ge(rate)?
            .to_dtype(DType::F32)?;
        let mut kept = data.clone();
        kept.mask = Some(keep);
        let by_hand = model.elbo(&kept, &ElboOptions::default(), &mut noise)?;
        for (what, a, b) in [
            ("recon", &thinned.recon, &by_hand.recon),
            ("init_entropy", &thinned.init_entropy, &by_hand.init_entropy),
            ("entropy", &thinned.entropy, &by_hand.entropy),
            ("vhp", &thinned.vhp, &by_hand.vhp),
            ("transition", &thinned.transition, &by_hand.transition),
        ] {
            assert_eq!(common::scalars(a)?, common::scalars(b)?, "{what}");
        }
        // Scored, the hidden entries count: the reconstruction differs.
        let scored = ElboOptions {
            encoder_mask_unscored: false,
            ..options
        };
        let scored = model.elbo(&data, &scored, &mut SeededNoise::new(5))?;
        assert_ne!(
            common::scalars(&scored.recon)?,
            common::scalars(&thinned.recon)?
        );
    }
    Ok(())
}

/// `transition_draw_scale = 1` is the default ELBO bit for bit; below 1 it changes the transition
/// term and leaves every other term bit-equal, for a diffusion and a Gaussian transition (closed
/// form and sampled).
#[test]
fn the_draw_scale_changes_the_transition_term_only() -> Result<()> {
    use ddssm_model::Estimator;
    for (config, estimator) in [
        (ModelConfig::paper_ddssm(), Estimator::Analytic),
        (ModelConfig::paper_dkf(), Estimator::Analytic),
        (ModelConfig::paper_dkf(), Estimator::Sample),
    ] {
        let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
        let data = common::batch(&config, 3, 6, 2)?;
        let terms = |alpha: f64| {
            let options = ElboOptions {
                estimator,
                transition_draw_scale: alpha,
                ..ElboOptions::default()
            };
            model.elbo(&data, &options, &mut SeededNoise::new(5))
        };
        let (one, half) = (terms(1.0)?, terms(0.5)?);
        let default = model.elbo(
            &data,
            &ElboOptions {
                estimator,
                ..ElboOptions::default()
            },
            &mut SeededNoise::new(5),
        )?;
        assert_eq!(
            common::scalars(&one.negative_elbo()?)?,
            common::scalars(&default.negative_elbo()?)?
        );
        for (what, a, b) in [
            ("recon", &one.recon, &half.recon),
            ("init_entropy", &one.init_entropy, &half.init_entropy),
            ("entropy", &one.entropy, &half.entropy),
            ("vhp", &one.vhp, &half.vhp),
        ] {
            assert_eq!(common::scalars(a)?, common::scalars(b)?, "{what}");
        }
        assert_ne!(
            common::scalars(&one.transition)?,
            common::scalars(&half.transition)?
        );
    }
    Ok(())
}

/// Each parameter's name and gradient.
type Gradients = Vec<(String, Vec<f32>)>;

/// The terms' values and every parameter's gradient of the objective at λ = 1.
fn gradients(
    model: &Model,
    data: &ddssm_model::Batch,
    options: &ElboOptions,
) -> Result<(Vec<f64>, Gradients)> {
    let terms = model.elbo(data, options, &mut SeededNoise::new(5))?;
    let grads = terms.objective(1.0)?.backward()?;
    let mut out = Vec::new();
    for (name, var) in model.named_parameters() {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; var.elem_count()],
        };
        out.push((name, g));
    }
    Ok((common::term_values(&terms)?, out))
}

/// Whether two gradients agree within f32 rounding of sums taken in another order: every entry
/// within 1e-4 of the larger one's largest magnitude (the split path adds the transition's
/// gradient into the draws through one more product).
fn close(a: &[f32], b: &[f32]) -> bool {
    let scale = a
        .iter()
        .chain(b)
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale)
}

/// The split gradient: the terms' values are the ELBO's bit for bit; the encoder's, decoder's
/// and VHP's gradients are the ELBO's (α = 1), and the transition's are those of the pulled term
/// (α = 0.5 without the split), each within rounding — and each differs from the other
/// option's, so the test sees which side got which. At α = 1 the split is the ELBO's gradient.
#[test]
fn the_split_gives_the_transition_the_pulled_gradient_and_the_rest_the_elbos() -> Result<()> {
    use ddssm_model::Estimator;
    for (config, estimator) in [
        (ModelConfig::paper_ddssm(), Estimator::Analytic),
        (ModelConfig::paper_dkf(), Estimator::Analytic),
        (ModelConfig::paper_dkf(), Estimator::Sample),
    ] {
        let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
        common::randomise_zero_parameters(&model, 9)?;
        let data = common::batch(&config, 3, 6, 2)?;
        let options = |alpha: f64, split: bool| ElboOptions {
            estimator,
            transition_draw_scale: alpha,
            split_transition_gradient: split,
            ..ElboOptions::default()
        };
        let (elbo_values, elbo) = gradients(&model, &data, &options(1.0, false))?;
        let (_, pulled) = gradients(&model, &data, &options(0.5, false))?;
        let (split_values, split) = gradients(&model, &data, &options(0.5, true))?;
        let (one_values, one) = gradients(&model, &data, &options(1.0, true))?;
        assert_eq!(split_values, elbo_values);
        assert_eq!(one_values, elbo_values);
        let mut seen = [false; 2];
        for (((name, e), (_, p)), ((_, s), (_, o))) in
            elbo.iter().zip(&pulled).zip(split.iter().zip(&one))
        {
            assert!(close(o, e), "{name}: split at α = 1 vs the ELBO");
            if name.starts_with("transition.") {
                assert!(close(s, p), "{name}: split vs pulled");
                seen[0] |= !close(s, e);
            } else {
                assert!(close(s, e), "{name}: split vs the ELBO");
                seen[1] |= name.starts_with("encoder.") && !close(s, p);
            }
        }
        assert_eq!(seen, [true, true], "{estimator:?}: both sides moved");
    }
    Ok(())
}

/// With the mask, `encoder_mask_transition_kept` keeps the terms' values and every gradient but
/// the transition's (within rounding) of the masked ELBO, and changes the transition's, which
/// is not zero (some pairs are kept); when nothing is hidden it is the masked ELBO's gradient
/// everywhere. If the hidden steps' pairs still reached the transition, its gradient would
/// agree; if the encoder lost them, the encoder's would differ.
#[test]
fn the_transition_learns_only_from_the_pairs_the_encoder_saw() -> Result<()> {
    for config in [ModelConfig::paper_ddssm(), ModelConfig::paper_dkf()] {
        let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
        common::randomise_zero_parameters(&model, 9)?;
        let data = common::batch(&config, 3, 6, 2)?;
        let options = |rate: f64, kept: bool| ElboOptions {
            encoder_mask_rate: rate,
            encoder_mask_transition_kept: kept,
            ..ElboOptions::default()
        };
        let (masked_values, masked) = gradients(&model, &data, &options(0.3, false))?;
        let (kept_values, kept) = gradients(&model, &data, &options(0.3, true))?;
        assert_eq!(kept_values, masked_values);
        let mut transition_moved = false;
        for ((name, m), (_, k)) in masked.iter().zip(&kept) {
            if name.starts_with("transition.") {
                transition_moved |= !close(m, k);
                assert!(
                    k.iter().any(|v| *v != 0.0) || m.iter().all(|v| *v == 0.0),
                    "{name}"
                );
            } else {
                assert!(close(m, k), "{name}: kept vs the masked ELBO");
            }
        }
        assert!(transition_moved, "the transition's gradient changed");
        // Its values are the ELBO's, its gradient is not the importance-weighted objective's.
        let terms = model.elbo(&data, &options(0.3, true), &mut SeededNoise::new(5))?;
        assert!(terms.effective_sample_size(1.0).is_ok());
        let err = terms
            .importance_weighted_objective(1.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("encoder_mask_transition_kept"), "{err}");
        // Nothing hidden (every uniform draw is ≥ 1e-12): the masked ELBO's gradient throughout.
        let (_, none_hidden) = gradients(&model, &data, &options(1e-12, true))?;
        let (_, plain) = gradients(&model, &data, &options(1e-12, false))?;
        for ((name, a), (_, b)) in none_hidden.iter().zip(&plain) {
            assert!(close(a, b), "{name}: nothing hidden");
        }
    }
    Ok(())
}

/// Each option's bad values are refused naming the option and what it allows.
#[test]
fn bad_option_values_name_the_field() -> Result<()> {
    let config = ModelConfig::paper_ddssm();
    let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
    let data = common::batch(&config, 2, 6, 2)?;
    let noise = |v| ElboOptions {
        encoder_input_noise: v,
        ..ElboOptions::default()
    };
    let scale = |v| ElboOptions {
        transition_draw_scale: v,
        ..ElboOptions::default()
    };
    let hide = |v| ElboOptions {
        encoder_mask_rate: v,
        ..ElboOptions::default()
    };
    let cases = [
        (noise(-0.1), "encoder_input_noise", "≥ 0"),
        (noise(f64::NAN), "encoder_input_noise", "≥ 0"),
        (noise(f64::INFINITY), "encoder_input_noise", "≥ 0"),
        (hide(-0.1), "encoder_mask_rate", "[0, 1)"),
        (hide(1.0), "encoder_mask_rate", "[0, 1)"),
        (hide(f64::NAN), "encoder_mask_rate", "[0, 1)"),
        (scale(0.0), "transition_draw_scale", "(0, 1]"),
        (scale(1.5), "transition_draw_scale", "(0, 1]"),
        (scale(f64::NAN), "transition_draw_scale", "(0, 1]"),
    ];
    for (options, field, allowed) in cases {
        let e = model
            .elbo(&data, &options, &mut SeededNoise::new(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(allowed), "{e}");
    }
    Ok(())
}

/// Importance weights need the ELBO's own draws: with `α < 1` the objective built on them is
/// refused, naming the option; the split keeps the ELBO's values, so its effective sample size
/// stands, but not its IWAE objective (the gradient is not the IWAE's).
#[test]
fn the_weights_refuse_pulled_draws() -> Result<()> {
    use ddssm_model::Estimator;
    let config = ModelConfig::paper_dkf();
    let model = Model::new(&config, 1, DType::F32, &Device::Cpu)?;
    let data = common::batch(&config, 2, 6, 2)?;
    let terms = |alpha: f64, split: bool| {
        let options = ElboOptions {
            estimator: Estimator::Sample,
            transition_draw_scale: alpha,
            split_transition_gradient: split,
            ..ElboOptions::default()
        };
        model.elbo(&data, &options, &mut SeededNoise::new(3))
    };
    let (one, pulled, split) = (terms(1.0, false)?, terms(0.5, false)?, terms(0.5, true)?);
    assert!(one.importance_weighted_objective(1.0).is_ok());
    assert!(one.effective_sample_size(1.0).is_ok());
    assert!(split.effective_sample_size(1.0).is_ok());
    for e in [
        pulled.importance_weighted_objective(1.0).unwrap_err(),
        pulled.effective_sample_size(1.0).unwrap_err(),
        split.importance_weighted_objective(1.0).unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(
            e.contains("transition_draw_scale") && e.contains("0.5"),
            "{e}"
        );
    }
    Ok(())
}

/// The training log labels a step's ELBO that is not the model's: every option that changes the
/// value is named, the ones that change only the gradient or its estimate are not.
#[test]
fn options_that_change_the_elbo_value_are_named() {
    let paper = ElboOptions::default();
    assert_eq!(paper.objective_differs(), None);
    let unchanged = [
        ElboOptions {
            samples: 4,
            estimator: Estimator::Sample,
            ..paper
        },
        ElboOptions {
            split_transition_gradient: true,
            transition_draw_scale: 0.5,
            ..paper
        },
        ElboOptions {
            encoder_mask_unscored: true,
            ..paper
        },
    ];
    for options in unchanged {
        assert_eq!(options.objective_differs(), None, "{options:?}");
    }
    let named = [
        (
            ElboOptions {
                encoder_input_noise: 0.1,
                ..paper
            },
            "encoder input noised (σ 0.1)",
        ),
        (
            ElboOptions {
                encoder_mask_rate: 0.25,
                ..paper
            },
            "0.25 of entries hidden from the encoder",
        ),
        (
            ElboOptions {
                encoder_mask_rate: 0.25,
                encoder_mask_unscored: true,
                ..paper
            },
            "0.25 of entries hidden from the encoder and unscored",
        ),
        (
            ElboOptions {
                transition_draw_scale: 0.5,
                ..paper
            },
            "transition draws scaled by 0.5",
        ),
        (
            ElboOptions {
                encoder_input_noise: 0.1,
                transition_draw_scale: 0.5,
                ..paper
            },
            "encoder input noised (σ 0.1), transition draws scaled by 0.5",
        ),
    ];
    for (options, words) in named {
        assert_eq!(options.objective_differs().as_deref(), Some(words));
    }
}
