//! Alternating training (`train.alternation`): each encoder phase moves the encoder alone, each
//! model phase everything but the encoder, a run resumed across phases is the uninterrupted run
//! bit for bit, and a resume under another alternation is refused.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::Model;
use ddssm_train::{train, Alternation, Phase, TrainConfig};

use common::{no_validation, parameter_values, quiet_parameters, resuming, small_quiet, tmp};

/// Which parameters changed from `before` to `after`: (encoder ones, the others), counted.
fn moved(model: &Model, before: &[Vec<f32>], after: &[Vec<f32>]) -> (usize, usize) {
    let names = model.named_parameters();
    assert_eq!(names.len(), before.len());
    let (mut encoder, mut rest) = (0, 0);
    for (((name, _), b), a) in names.iter().zip(before).zip(after) {
        if a != b {
            if name.starts_with("encoder.") {
                encoder += 1;
            } else {
                rest += 1;
            }
        }
    }
    (encoder, rest)
}

#[test]
fn each_phase_moves_its_own_block_and_a_resume_across_phases_is_exact() -> Result<()> {
    let (mc, tc, data) = small_quiet(5);
    let alternating = TrainConfig {
        alternation: Some(Alternation {
            start: 0,
            end: None,
            encoder_steps: 2,
            model_steps: 2,
            encoder_rate_factor: 4.0,
        }),
        ..tc
    };
    alternating.validate()?;
    let phases: Vec<Phase> = (0..5)
        .map(|s| alternating.alternation.unwrap().phase(s))
        .collect();
    assert_eq!(
        phases,
        [
            Phase::Encoder,
            Phase::Encoder,
            Phase::Model,
            Phase::Model,
            Phase::Encoder
        ]
    );
    let whole = quiet_parameters(&mc, &data, &alternating)?;

    // The same run in three pieces, one checkpoint carried across: 2 encoder steps, 2 model
    // steps, 1 encoder step.
    let path = tmp("alternation.safetensors");
    let mut m = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let mut before = parameter_values(&m);
    let (mut encoder_total, mut rest_total) = (0, 0);
    for (steps, phase) in [(2, Phase::Encoder), (4, Phase::Model), (5, Phase::Encoder)] {
        let piece = TrainConfig {
            steps,
            ..alternating
        };
        train(&mut m, &data, &piece, &resuming(&path), &mut no_validation)?;
        let after = parameter_values(&m);
        let (encoder, rest) = moved(&m, &before, &after);
        match phase {
            Phase::Encoder => assert!(encoder > 10 && rest == 0, "{encoder} / {rest}"),
            _ => assert!(encoder == 0 && rest > 10, "{encoder} / {rest}"),
        }
        (encoder_total, rest_total) = (encoder_total + encoder, rest_total + rest);
        before = after;
    }
    assert!(encoder_total > 0 && rest_total > 0);
    assert_eq!(
        before, whole,
        "the resumed pieces differ from the whole run"
    );

    // Without the alternation the same steps move both blocks at once: the phases, not the data,
    // froze them.
    let joint = quiet_parameters(&mc, &data, &TrainConfig { steps: 2, ..tc })?;
    let fresh = parameter_values(&Model::new(&mc, 1, DType::F32, &Device::Cpu)?);
    let (encoder, rest) = moved(&m, &fresh, &joint);
    assert!(encoder > 10 && rest > 10, "{encoder} / {rest}");

    // A resume under another alternation is refused, naming it.
    let other = TrainConfig {
        steps: 6,
        alternation: Some(Alternation {
            encoder_steps: 3,
            ..alternating.alternation.unwrap()
        }),
        ..alternating
    };
    let err = train(&mut m, &data, &other, &resuming(&path), &mut no_validation)
        .unwrap_err()
        .to_string();
    assert!(err.contains("alternation"), "{err}");
    Ok(())
}
