//! Prints the gradient norm of a `bimodal-experiment` folder's DDSSM, whole and per parameter
//! group (encoder, decoder, transition, zinit), on a few training batches at the checkpoint's
//! step and λ: the numbers a `train.max_grad_norm` (or `max_group_grad_norms`) is set against,
//! for a run that was started before the trainer recorded them.
//!
//! ```text
//! cargo run --release -p ddssm-train --example group_norms -- RUN_DIR [BATCHES]
//! ```
//!
//! `RUN_DIR` holds `config.toml` and `ddssm.safetensors` (a finished run or a training
//! checkpoint); `BATCHES` (default 4) are the batches of the steps after the checkpoint's, as the
//! run would draw them.

use anyhow::{Context, Result};
use candle_core::Device;
use ddssm_model::checkpoint;
use ddssm_train::experiment::{RunFolder, Splits};
use ddssm_train::{accumulated_gradients, batch_indices, gradient_norms, keys};

mod common;

const USAGE: &str = "usage: group_norms RUN_DIR [BATCHES]";

fn main() -> Result<()> {
    let args = common::start(USAGE, 1..=2)?;
    let dir = std::path::Path::new(&args[0]);
    let batches: usize = common::arg_or(&args, 1, 4, "BATCHES")?;
    let dev = Device::Cpu;
    let mut folder = RunFolder::open(dir, &dev)?;
    let model = folder.take("ddssm", dir)?;
    let meta = checkpoint::read_metadata(&dir.join("ddssm.safetensors"))?;
    let done: usize = meta
        .get(keys::STEP)
        .map(|s| s.parse())
        .transpose()
        .context("the checkpoint's step")?
        .unwrap_or(folder.config.ddssm.train.steps);
    let train = &folder.config.ddssm.train;
    let data = Splits::new(&folder.config, &dev)?.train;
    let n = data.x.dim(0)?;
    println!("{}: step {done} of {}", dir.display(), train.steps);
    for step in done..done + batches {
        let lambda = train.lambda.at(step);
        let indices = batch_indices(train.seed, step, n, train.batch_size);
        let acc = accumulated_gradients(&model, &data, &indices, train, lambda, step)?;
        let (whole, g) = gradient_norms(&acc.grads, &model, step)?;
        println!(
            "step {step}: λ {lambda:.3}, ‖∇‖ {whole:.3}: encoder {:.3}, decoder {:.3}, transition \
             {:.3}, zinit {:.3}",
            g.encoder, g.decoder, g.transition, g.zinit
        );
    }
    Ok(())
}
