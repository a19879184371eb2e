//! Writes a freshly initialised paper model as a checkpoint, to inspect the format with other
//! tools: `cargo run --release -p ddssm-model --example save_checkpoint -- out.safetensors [dkf]`,
//! then in Python `safetensors.safe_open("out.safetensors", "np").metadata()["config"]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use ddssm_model::{Model, ModelConfig};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .context("usage: save_checkpoint OUT [dkf|ddssm]")?,
    );
    let config = match args.next().as_deref() {
        Some("dkf") => ModelConfig::paper_dkf(),
        _ => ModelConfig::paper_ddssm(),
    };
    let model = Model::new(&config, 0, DType::F32, &Device::Cpu)?;
    model.save(&path, &BTreeMap::new())?;
    println!(
        "{}: {} parameters in {} tensors",
        path.display(),
        model.parameter_count(),
        model.named_parameters().len()
    );
    Ok(())
}
