//! Continuing and changing a run over its steps: a learning-rate decay, a finished run extended
//! with a decay tail or continued under the encoder's mask or an alternation, and the rules that
//! say which changes a checkpoint accepts.

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::Model;
mod common;

use common::{no_validation, parameter_values, quiet_parameters, resuming, small, tmp};
use ddssm_train::{train, Alternation, TrainConfig};

/// The decay is wired into the loop: a cosine that starts after step 1 and ends at 0 makes the
/// third step a no-op (learning rate and weight decay both 0), so three decayed steps end
/// exactly where two constant steps do, and not where three constant steps do.
#[test]
fn a_decay_to_zero_freezes_the_last_step() -> Result<()> {
    let (mc, tc, data) = small();
    let run = |config: &TrainConfig| quiet_parameters(&mc, &data, config);
    let base = TrainConfig {
        validate_every: 0,
        checkpoint_every: 0,
        ..tc
    };
    let decayed = TrainConfig {
        steps: 3,
        lr_decay: ddssm_train::LrDecay::Cosine {
            floor: 0.0,
            start: 1,
        },
        ..base
    };
    let two = run(&TrainConfig { steps: 2, ..base })?;
    let three = run(&TrainConfig { steps: 3, ..base })?;
    let got = run(&decayed)?;
    assert_eq!(got, two);
    assert_ne!(got, three);
    Ok(())
}

/// Trains `tc` for 3 steps into a checkpoint named `name`; checks that each of `refused` is
/// refused for it with an error containing its needle and "3 steps", leaving the checkpoint
/// alone; continues it under `later` and checks that it ends exactly where `later` trained in one
/// go does. Returns those parameters.
fn continues_a_finished_run(
    name: &str,
    refused: &[(TrainConfig, &str)],
    later: &TrainConfig,
) -> Result<Vec<Vec<f32>>> {
    let (mc, tc, data) = small();
    let path = tmp(name);
    let mut first = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    train(
        &mut first,
        &data,
        &TrainConfig { steps: 3, ..tc },
        &resuming(&path),
        &mut no_validation,
    )?;
    let before = std::fs::read(&path)?;
    for (config, needle) in refused {
        let err = ddssm_train::resumable_step(&path, &mc, config)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle) && err.contains("3 steps"), "{err}");
    }
    assert_eq!(std::fs::read(&path)?, before);

    let mut resumed = Model::new(&mc, 99, DType::F32, &Device::Cpu)?;
    let report = train(
        &mut resumed,
        &data,
        later,
        &resuming(&path),
        &mut no_validation,
    )?;
    assert_eq!(report.start_step, 3);
    let whole = quiet_parameters(&mc, &data, later)?;
    assert_eq!(parameter_values(&resumed), whole);
    Ok(whole)
}

/// A finished constant-rate run extended with a decay tail that starts at its last step ends
/// exactly where the tailed run trained in one go does; a tail that would have changed a step
/// already taken is refused, naming `lr_decay`, and leaves the checkpoint alone.
#[test]
fn a_finished_run_can_be_extended_with_a_decay_tail() -> Result<()> {
    let (mc, tc, data) = small();
    let tail = |start| TrainConfig {
        lr_decay: ddssm_train::LrDecay::Cosine { floor: 0.1, start },
        ..tc
    };
    let whole = continues_a_finished_run("tail.safetensors", &[(tail(1), "`lr_decay")], &tail(3))?;
    // The tail changed the last steps: the constant run's six steps end elsewhere.
    assert_ne!(quiet_parameters(&mc, &data, &tc)?, whole);
    Ok(())
}

/// The encoder's mask is wired into the loop from `encoder_mask_start` on, and a finished run can
/// be continued under a mask that starts at its last step, ending exactly where the masked run
/// trained in one go does; a mask that would have changed a step already taken is refused, naming
/// the mask's field, and leaves the checkpoint alone.
#[test]
fn a_finished_run_can_be_continued_under_a_later_mask() -> Result<()> {
    let (mc, tc, data) = small();
    let masked = |start| TrainConfig {
        encoder_mask_rate: 0.5,
        encoder_mask_start: start,
        ..tc
    };
    let whole = continues_a_finished_run(
        "mask.safetensors",
        &[(masked(0), "encoder_mask"), (masked(2), "encoder_mask")],
        &masked(3),
    )?;
    // The mask changed the last steps, and only them: unmasked, the six steps end elsewhere, and
    // a mask from the first step ends elsewhere again.
    assert_ne!(quiet_parameters(&mc, &data, &tc)?, whole);
    assert_ne!(quiet_parameters(&mc, &data, &masked(0))?, whole);
    Ok(())
}

/// A finished joint run can be continued under an alternation that starts at its last step,
/// ending exactly where the alternating run trained in one go does; an alternation that would
/// have frozen a group at a step already taken is refused, naming it, and leaves the checkpoint
/// alone.
#[test]
fn a_finished_run_can_be_continued_under_a_later_alternation() -> Result<()> {
    let (mc, tc, data) = small();
    let alternating = |start| TrainConfig {
        alternation: Some(Alternation {
            start,
            end: None,
            encoder_steps: 1,
            model_steps: 1,
            encoder_rate_factor: 2.0,
        }),
        ..tc
    };
    let whole = continues_a_finished_run(
        "alternation-later.safetensors",
        &[(alternating(2), "alternation")],
        &alternating(3),
    )?;
    assert_ne!(quiet_parameters(&mc, &data, &tc)?, whole);
    Ok(())
}

/// Two alternations agree before a step when they give every earlier step the same factors:
/// none before the step on either side, or the same phases with an `end` that lies ahead.
#[test]
fn alternations_agree_before_a_step_only_when_no_step_before_it_differs() {
    let tc = TrainConfig::paper_ddssm();
    let alternating = |start, end, encoder_steps, factor| TrainConfig {
        alternation: Some(Alternation {
            start,
            end,
            encoder_steps,
            model_steps: 5,
            encoder_rate_factor: factor,
        }),
        ..tc
    };
    for (a, b, step, agree) in [
        (tc, alternating(10, None, 5, 4.0), 10, true),
        (tc, alternating(9, None, 5, 4.0), 10, false),
        (
            alternating(0, None, 5, 4.0),
            alternating(0, Some(40), 5, 4.0),
            30,
            true,
        ),
        (
            alternating(0, Some(20), 5, 4.0),
            alternating(0, Some(40), 5, 4.0),
            30,
            false,
        ),
        (
            alternating(0, None, 5, 4.0),
            alternating(0, None, 6, 4.0),
            5,
            true,
        ),
        (
            alternating(0, None, 5, 4.0),
            alternating(0, None, 6, 4.0),
            6,
            false,
        ),
        (
            alternating(0, None, 5, 4.0),
            alternating(0, None, 5, 2.0),
            1,
            false,
        ),
        (
            alternating(10, Some(20), 5, 4.0),
            alternating(10, Some(20), 5, 4.0),
            30,
            true,
        ),
    ] {
        assert_eq!(
            a.alternation_agrees_before(&b, step),
            agree,
            "{:?} / {:?} at {step}",
            a.alternation,
            b.alternation
        );
        assert_eq!(b.alternation_agrees_before(&a, step), agree, "symmetric");
    }
}

/// The mask's start is refused without a rate, or at or past the run's last step; leaving hidden
/// entries unscored or the transition on kept pairs only is refused without a rate, and the
/// latter with the importance-weighted objective.
#[test]
fn a_mask_start_needs_a_rate_and_a_step_inside_the_run() {
    let tc = TrainConfig::paper_ddssm();
    for bad in [
        TrainConfig {
            encoder_mask_start: 10,
            ..tc
        },
        TrainConfig {
            encoder_mask_rate: 0.1,
            encoder_mask_start: tc.steps,
            ..tc
        },
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("encoder_mask_start") && err.contains("steps = 3000"),
            "{err}"
        );
    }
    let fine = TrainConfig {
        encoder_mask_rate: 0.1,
        encoder_mask_start: tc.steps - 1,
        encoder_mask_unscored: true,
        ..tc
    };
    assert!(fine.validate().is_ok());
    let unscored = TrainConfig {
        encoder_mask_unscored: true,
        ..tc
    };
    let kept = TrainConfig {
        encoder_mask_transition_kept: true,
        ..tc
    };
    for (bad, field) in [
        (unscored, "encoder_mask_unscored"),
        (kept, "encoder_mask_transition_kept"),
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains(field) && err.contains("encoder_mask_rate > 0"),
            "{err}"
        );
    }
    let iwae = TrainConfig {
        encoder_mask_rate: 0.1,
        encoder_mask_transition_kept: true,
        objective: ddssm_train::Objective::Iwae,
        estimator: ddssm_model::Estimator::Sample,
        ..tc
    };
    let err = iwae.validate().unwrap_err().to_string();
    assert!(
        err.contains("encoder_mask_transition_kept") && err.contains("iwae"),
        "{err}"
    );
}

/// Two masks agree before a step when neither hides anything before it, or when both hide at
/// the same rate, scored alike, from the same step (counted up to that step).
#[test]
fn masks_agree_before_a_step_only_when_no_step_before_it_differs() {
    let tc = TrainConfig::paper_ddssm();
    let mask = |rate, start, unscored| TrainConfig {
        encoder_mask_rate: rate,
        encoder_mask_start: start,
        encoder_mask_unscored: unscored,
        ..tc
    };
    for (a, b, step, agree) in [
        (mask(0.0, 0, false), mask(0.3, 10, true), 10, true),
        (mask(0.0, 0, false), mask(0.3, 9, false), 10, false),
        (mask(0.3, 0, false), mask(0.3, 0, false), 10, true),
        (mask(0.3, 0, false), mask(0.3, 0, true), 10, false),
        (mask(0.3, 0, false), mask(0.2, 0, false), 10, false),
        (mask(0.3, 4, false), mask(0.3, 5, false), 10, false),
        (mask(0.3, 12, false), mask(0.3, 15, false), 10, true),
        (mask(0.3, 0, false), mask(0.0, 0, false), 1, false),
    ] {
        assert_eq!(
            a.mask_agrees_before(&b, step),
            agree,
            "{a:?} / {b:?} at {step}"
        );
        assert_eq!(b.mask_agrees_before(&a, step), agree, "symmetric");
    }
}
