//! Where a run's numbers come from: where the DDSSM's parameters started (its seed's
//! initialisation or a warm start). The commit of the code that ran is the caller's to give
//! ([`RunOptions::git_commit`]; `cargo xtask` records the one its binary was built from).

use std::path::PathBuf;

use super::RunOptions;
use crate::{Error, Result};

/// Where the DDSSM's parameters start: a run that resumes from its checkpoint started where that
/// checkpoint records ([`crate::warm_start_of`]; `--init-ddssm` is ignored then, with a warning if
/// it names another start), a fresh run from `--init-ddssm` if given (checked against the model
/// and the data's standardisation before anything is written) or its seed's initialisation.
pub(super) fn ddssm_start(
    options: &RunOptions,
    model: &ddssm_model::ModelConfig,
    standardization: &ddssm_model::Standardization,
) -> Result<Option<PathBuf>> {
    let checkpoint = options.out.join("ddssm.safetensors");
    if options.resume && checkpoint.exists() {
        let recorded = crate::warm_start_of(&checkpoint)?;
        if let Some(asked) = options
            .ddssm_init
            .as_ref()
            .filter(|a| Some(*a) != recorded.as_ref())
        {
            let from = recorded
                .as_ref()
                .map_or("its seed's initialisation".into(), |r| {
                    format!("the parameters of {}", r.display())
                });
            tracing::warn!(
                "--init-ddssm {} ignored: the DDSSM resumes from {}, which started from {from}",
                asked.display(),
                checkpoint.display()
            );
        }
        return Ok(recorded);
    }
    if let Some(init) = &options.ddssm_init {
        crate::check_init(init, model, Some(standardization))
            .map_err(|e| Error::State(format!("--init-ddssm: {e}")))?;
    }
    Ok(options.ddssm_init.clone())
}
