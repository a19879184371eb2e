//! Prints the paper's model config as TOML: `cargo run -p ddssm-model --example print_config --
//! [ddssm|dkf]` (how `configs/models/*.toml` were written).

use anyhow::Result;
use ddssm_model::ModelConfig;

fn main() -> Result<()> {
    let config = match std::env::args().nth(1).as_deref() {
        Some("dkf") => ModelConfig::paper_dkf(),
        _ => ModelConfig::paper_ddssm(),
    };
    print!("{}", config.to_toml()?);
    Ok(())
}
