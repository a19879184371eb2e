//! Warm starts (`TrainOptions::init`) and frozen parameter groups (a learning rate of 0): a run
//! that starts from another run's checkpoint with only the encoder training keeps every other
//! parameter bit for bit, and a file that cannot start the run is refused before anything trains.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Model, ModelConfig, Standardization};
use ddssm_train::{check_init, train, LearningRates, TrainConfig, TrainOptions};

use common::{no_validation, small_quiet, tmp};

/// Every parameter of `model` by name, with its values.
fn named_values(model: &Model) -> Vec<(String, Vec<f32>)> {
    model
        .named_parameters()
        .into_iter()
        .map(|(name, v)| {
            let values = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            (name, values)
        })
        .collect()
}

/// Options that write `checkpoint` and start from `init`.
fn options(checkpoint: &std::path::Path, init: Option<&std::path::Path>) -> TrainOptions {
    TrainOptions {
        checkpoint: Some(checkpoint.to_path_buf()),
        init: init.map(|p| p.to_path_buf()),
        label: "test".into(),
        ..TrainOptions::default()
    }
}

#[test]
fn a_warm_start_refits_the_encoder_and_leaves_the_frozen_groups_bit_for_bit() -> Result<()> {
    let (mc, tc, data) = small_quiet(3);
    let (first, second) = (
        tmp("warm-first.safetensors"),
        tmp("warm-second.safetensors"),
    );
    let mut a = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    train(
        &mut a,
        &data,
        &tc,
        &options(&first, None),
        &mut no_validation,
    )?;
    let trained = named_values(&a);

    // Another seed's initialisation, replaced by the first run's parameters; only the encoder
    // learns.
    let refit = TrainConfig {
        learning_rates: LearningRates {
            decoder: 0.0,
            transition: 0.0,
            zinit: 0.0,
            ..tc.learning_rates
        },
        ..tc
    };
    let mut b = Model::new(&mc, 7, DType::F32, &Device::Cpu)?;
    let fresh = named_values(&b);
    let report = train(
        &mut b,
        &data,
        &refit,
        &options(&second, Some(&first)),
        &mut no_validation,
    )?;
    assert_eq!(report.start_step, 0, "a warm start runs its whole schedule");
    let (mut frozen, mut moved) = (0, 0);
    for (((name, after), (_, before)), (_, seed7)) in
        named_values(&b).iter().zip(&trained).zip(&fresh)
    {
        assert_ne!(before, seed7, "{name}: the two initialisations coincide");
        if name.starts_with("encoder.") {
            moved += usize::from(after != before);
        } else {
            assert_eq!(after, before, "{name}: a frozen parameter changed");
            frozen += 1;
        }
    }
    assert!(frozen > 10, "only {frozen} frozen parameters");
    assert!(moved > 10, "only {moved} encoder parameters moved");
    Ok(())
}

#[test]
fn a_file_that_cannot_start_the_run_is_refused() -> Result<()> {
    let (mc, tc, data) = small_quiet(1);
    let path = tmp("warm-source.safetensors");
    let mut source = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    source.set_standardization(Some(Standardization {
        mean: vec![0.5],
        std: vec![2.0],
    }))?;
    train(
        &mut source,
        &data,
        &tc,
        &options(&path, None),
        &mut no_validation,
    )?;

    // Another model config: refused, naming the difference, and the model is left as it was.
    let other = ModelConfig::paper_ddssm();
    let mut m = Model::new(&other, 1, DType::F32, &Device::Cpu)?;
    let before = named_values(&m);
    let err = train(
        &mut m,
        &data,
        &TrainConfig {
            batch_size: 4,
            ..TrainConfig::paper_ddssm()
        },
        &options(&tmp("warm-refused.safetensors"), Some(&path)),
        &mut no_validation,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("another model config"), "{err}");
    assert_eq!(named_values(&m), before);
    assert!(!tmp("warm-refused.safetensors").exists());

    // Data standardised otherwise: refused, naming both.
    let err = check_init(
        &path,
        &mc,
        Some(&Standardization {
            mean: vec![0.0],
            std: vec![2.0],
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("standardised for other data"), "{err}");
    check_init(
        &path,
        &mc,
        Some(&Standardization {
            mean: vec![0.5],
            std: vec![2.0],
        }),
    )?;

    // Not a file at all.
    let err = check_init(&tmp("warm-missing.safetensors"), &mc, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("warm-missing"), "{err}");

    // Every group frozen trains nothing: refused by the config's validation.
    let none = TrainConfig {
        learning_rates: LearningRates {
            encoder: 0.0,
            decoder: 0.0,
            transition: 0.0,
            zinit: 0.0,
        },
        ..tc
    };
    let err = none.validate().unwrap_err().to_string();
    assert!(err.contains("learning_rates"), "{err}");
    Ok(())
}
