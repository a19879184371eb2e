//! `cargo xtask figures --run DIR`: the bimodal experiment's figures drawn again from a finished
//! run's `results.json` (the drawing is `ddssm_train::figures`).

use std::path::Path;

use anyhow::Result;
use ddssm_train::experiment::Results;
use ddssm_train::figures::write_all;

/// `cargo xtask figures --run DIR`: draws the figures of the finished run in `dir` from its
/// `results.json` again (into `dir`).
pub fn redraw(dir: &Path) -> Result<()> {
    let written = write_all(&Results::read(dir)?, dir)?;
    println!("wrote {} into {}", written.join(", "), dir.display());
    Ok(())
}
