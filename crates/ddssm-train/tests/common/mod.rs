//! Helpers shared by the training tests: a small DKF problem and quiet training runs.

#![allow(dead_code)]

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Batch, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::{train, TrainConfig, TrainOptions, TrainReport};

/// A six-step DKF run on twelve random sequences of five steps.
pub fn small() -> (ModelConfig, TrainConfig, Batch) {
    let model = ModelConfig::paper_dkf();
    let train = TrainConfig {
        steps: 6,
        batch_size: 4,
        samples: 1,
        validate_every: 2,
        checkpoint_every: 3,
        ..TrainConfig::paper_dkf()
    };
    let x = SeededNoise::new(1)
        .randn((12, 5, 1), DType::F32, &Device::Cpu)
        .unwrap();
    (model, train, Batch::new(x))
}

/// Every parameter's values, in name order.
pub fn parameter_values(model: &Model) -> Vec<Vec<f32>> {
    model
        .named_parameters()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

/// A validation callback that records nothing.
pub fn no_validation(_: &Model, _: usize) -> ddssm_train::Result<BTreeMap<String, f64>> {
    Ok(BTreeMap::new())
}

/// The report of a quiet training run of `config` on `data` from `mc` (model seed 1), and the
/// trained model's parameters.
pub fn quiet_run(
    mc: &ModelConfig,
    data: &Batch,
    config: &TrainConfig,
) -> Result<(TrainReport, Vec<Vec<f32>>)> {
    let quiet = TrainOptions {
        checkpoint: None,
        resume: false,
        progress: false,
        label: "test".into(),
        init: None,
    };
    let mut m = Model::new(mc, 1, DType::F32, &Device::Cpu)?;
    let report = train(&mut m, data, config, &quiet, &mut no_validation)?;
    Ok((report, parameter_values(&m)))
}

/// The parameters of `mc` (model seed 1) after a quiet training run of `config` on `data`.
pub fn quiet_parameters(
    mc: &ModelConfig,
    data: &Batch,
    config: &TrainConfig,
) -> Result<Vec<Vec<f32>>> {
    Ok(quiet_run(mc, data, config)?.1)
}

/// [`small`]'s problem with `steps` steps and neither validation nor checkpoints.
pub fn small_quiet(steps: usize) -> (ModelConfig, TrainConfig, Batch) {
    let (mc, tc, data) = small();
    let tc = TrainConfig {
        steps,
        validate_every: 0,
        checkpoint_every: 0,
        ..tc
    };
    (mc, tc, data)
}

/// A path named `name` in this test process's scratch folder (under the target directory).
pub fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-train-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Options that checkpoint to `path` and resume from it.
pub fn resuming(path: &std::path::Path) -> TrainOptions {
    TrainOptions {
        checkpoint: Some(path.to_path_buf()),
        resume: true,
        progress: false,
        label: "test".into(),
        init: None,
    }
}

/// Every file directly in `dir` with its bytes, sorted: what a test compares to show that a
/// refused or repeated call left a folder alone.
pub fn snapshot(dir: &std::path::Path) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_file() {
            files.push((p.clone(), std::fs::read(&p)?));
        }
    }
    files.sort();
    Ok(files)
}
