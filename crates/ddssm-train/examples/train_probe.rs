//! Trains one paper model on the bimodal walk's training split for a few steps and prints the
//! ELBO terms every 10 steps: the quickest way to see whether a change lets training start.
//!
//! ```text
//! cargo run --release -p ddssm-train --example train_probe -- <ddssm|dkf> STEPS BATCH [LAMBDA_END]
//! ```
//!
//! Paper learning rates and λ schedule (Table 3); `LAMBDA_END` overrides λ's final value
//! (0 trains the reconstruction alone). Data and model seed 0, observations standardised.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_eval::BimodalRandomWalk;
use ddssm_model::{Batch, Model, ModelConfig, Standardization};
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::{train, Metrics, TrainConfig, TrainOptions};

mod common;

const USAGE: &str = "usage: train_probe <ddssm|dkf> STEPS BATCH [LAMBDA_END]";

fn main() -> Result<()> {
    let args = common::start(USAGE, 3..=4)?;
    let (model_config, mut train_config) = match args[0].as_str() {
        "ddssm" => (ModelConfig::paper_ddssm(), TrainConfig::paper_ddssm()),
        "dkf" => (ModelConfig::paper_dkf(), TrainConfig::paper_dkf()),
        other => bail!("model `{other}`: expected ddssm or dkf\n{USAGE}"),
    };
    train_config.steps = common::arg(&args, 1, "STEPS")?;
    train_config.batch_size = common::arg(&args, 2, "BATCH")?;
    let lambda_end = train_config.lambda.lambda_end;
    train_config.lambda.lambda_end = common::arg_or(&args, 3, lambda_end, "LAMBDA_END")?;
    train_config.validate_every = 0;
    train_config.checkpoint_every = 0;

    let dev = Device::Cpu;
    let walk = BimodalRandomWalk::default();
    let (_, xs) = walk.simulate(1024, &mut SeededNoise::new(0).fork("data/train"))?;
    let values: Vec<f32> = xs.values.iter().map(|&v| v as f32).collect();
    let raw = Tensor::from_vec(values, (xs.n, xs.t, 1), &dev)?;
    let standardization = Standardization::fit(&raw, None)?;
    let data = Batch::new(standardization.apply(&raw)?);
    let mut model = Model::new(&model_config, 0, DType::F32, &dev)?;
    let report = train(
        &mut model,
        &data,
        &train_config,
        &TrainOptions::default(),
        &mut |_, _| Ok(Metrics::new()),
    )?;
    let steps = train_config.steps;
    for r in report
        .history
        .iter()
        .filter(|r| r.step % 10 == 0 || r.step + 1 == steps)
    {
        let t = r.terms;
        println!(
            "step {:4}  λ {:.3}  recon {:7.2}  init_entropy {:6.2}  vhp {:6.2}  transition {:7.2}  \
             entropy {:7.2}  −ELBO {:7.2}",
            r.step, r.lambda, t.recon, t.init_entropy, t.vhp, t.transition, t.entropy, t.negative_elbo
        );
    }
    println!("{:.1} s", report.seconds);
    Ok(())
}
