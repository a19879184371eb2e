//! Where a run starts and what it leaves behind: the training checkpoint (model, optimiser state,
//! step and config) and the history beside it, the checks that let a run continue from one
//! (`--resume`) or start from another run's parameters (a warm start,
//! [`crate::TrainOptions::init`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ddssm_model::checkpoint::{self, write_atomic};
use ddssm_model::Model;
use serde::{Deserialize, Serialize};

use crate::{AdamW, Error, Result, TrainConfig, TrainReport};

/// Metadata keys a training checkpoint adds to the model's.
pub mod keys {
    /// Steps completed.
    pub const STEP: &str = "train.step";
    /// The [`crate::TrainConfig`] as JSON.
    pub const CONFIG: &str = "train.config";
    /// The file a warm-started run took its first parameters from ([`crate::TrainOptions::init`]),
    /// as given; absent for a run from its seed's initialisation.
    pub const INIT: &str = "train.init";
}

/// Writes the training checkpoint of `model` at `step` to `path`, with the run's warm start
/// `init` recorded if it had one.
pub(super) fn save(
    model: &Model,
    opt: &AdamW,
    config: &TrainConfig,
    path: &Path,
    step: usize,
    init: Option<&Path>,
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert(keys::STEP.to_string(), step.to_string());
    if let Some(init) = init {
        meta.insert(keys::INIT.to_string(), init.display().to_string());
    }
    meta.insert(
        keys::CONFIG.to_string(),
        serde_json::to_string(config).map_err(|e| Error::State(e.to_string()))?,
    );
    let bytes = model.checkpoint_bytes_with_state(&meta, &opt.state_tensors())?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// The step of the training checkpoint at `path` if a run of `model` with `config` can continue
/// from it: `None` when there is no file; an error naming the first differing field when the file
/// was written for another model or training config, or when it is already past `config.steps`
/// (training never goes back). Only `steps` may change, `lr_decay` where the new decay gives
/// every step already taken the rate the checkpoint's did ([`crate::LrDecay::agrees_before`]): a
/// finished run can be extended with a decay tail that starts at or after its last step, and the
/// encoder's mask and the alternation likewise ([`TrainConfig::mask_agrees_before`],
/// [`TrainConfig::alternation_agrees_before`]). Reads
/// only the metadata, so a command can check every checkpoint before it writes anything.
pub fn resumable_step(
    path: &Path,
    model: &ddssm_model::ModelConfig,
    config: &TrainConfig,
) -> Result<Option<usize>> {
    if !path.exists() {
        return Ok(None);
    }
    let meta = checkpoint::read_metadata(path)?;
    let bad = |reason: String| Error::State(format!("{}: {reason}", path.display()));
    let step: usize = meta
        .get(keys::STEP)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not a training checkpoint (no step)".into()))?;
    same_model(path, &meta, model, "use another output folder")?;
    let theirs: TrainConfig = meta
        .get(keys::CONFIG)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("no readable training config".into()))?;
    if let Some(diff) =
        ddssm_model::config_difference(config, &theirs.continued_under(config, step))
    {
        return Err(bad(format!(
            "written with another training config ({diff}); only `steps` may change on resume, \
             and `lr_decay`, the encoder's mask and the alternation where they give the {step} \
             steps already taken the same rates"
        )));
    }
    if step > config.steps {
        return Err(bad(format!(
            "the checkpoint is at step {step}, past the {} steps asked for: a run never trains \
             backwards (ask for ≥ {step} steps, or use another output folder)",
            config.steps
        )));
    }
    Ok(Some(step))
}

/// Refuses a checkpoint (`path`, its metadata `meta`) written for another model config than
/// `model`, naming the first difference and then `remedy`.
fn same_model(
    path: &Path,
    meta: &HashMap<String, String>,
    model: &ddssm_model::ModelConfig,
    remedy: &str,
) -> Result<()> {
    let bad = |reason: String| Error::State(format!("{}: {reason}", path.display()));
    let theirs = meta
        .get(checkpoint::keys::CONFIG)
        .and_then(|s| ddssm_model::ModelConfig::from_json(s).ok())
        .ok_or_else(|| bad("no readable model config".into()))?;
    match ddssm_model::config_difference(model, &theirs) {
        Some(diff) => Err(bad(format!(
            "written for another model config, {diff}; {remedy}"
        ))),
        None => Ok(()),
    }
}

/// Checks that `path` can start a run of `model` whose data are standardised by
/// `standardization` ([`crate::TrainOptions::init`]): a checkpoint or saved model of the same
/// model config, standardised the same way (or the file has no standardisation). Reads only the
/// metadata, so a command can check it before it writes anything.
pub fn check_init(
    path: &Path,
    model: &ddssm_model::ModelConfig,
    standardization: Option<&ddssm_model::Standardization>,
) -> Result<()> {
    let bad = |reason: String| Error::State(format!("{}: {reason}", path.display()));
    let meta = checkpoint::read_metadata(path)?;
    same_model(path, &meta, model, "a warm start needs the same model")?;
    let theirs: Option<ddssm_model::Standardization> = meta
        .get(checkpoint::keys::STANDARDIZATION)
        .map(|s| serde_json::from_str(s))
        .transpose()
        .map_err(|e| bad(format!("unreadable standardization ({e})")))?;
    match (theirs, standardization) {
        (Some(theirs), Some(ours)) if &theirs != ours => Err(bad(format!(
            "standardised for other data ({theirs:?}, these data: {ours:?}): its parameters \
             would see the data in other units"
        ))),
        _ => Ok(()),
    }
}

/// The file the run that wrote the training checkpoint at `path` was warm-started from
/// ([`crate::TrainOptions::init`], recorded in every checkpoint of such a run), or `None` for a run
/// from its seed's initialisation: what a resumed run reports as its start, whatever its command
/// line says.
pub fn warm_start_of(path: &Path) -> Result<Option<std::path::PathBuf>> {
    let meta = checkpoint::read_metadata(path)?;
    Ok(meta.get(keys::INIT).map(std::path::PathBuf::from))
}

/// The file beside the training checkpoint `checkpoint` that keeps the run's report so far (every
/// step's record, the validations, the wall time): `ddssm.safetensors` → `ddssm.history.json`.
/// Written after each checkpoint, so a resumed run's report covers every step from 0, not only
/// those of its last process.
pub fn history_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("history.json")
}

/// The content of [`history_path`]: the report as it stood when the checkpoint of `step` was
/// written.
#[derive(Serialize, Deserialize)]
struct SavedHistory {
    step: usize,
    report: TrainReport,
}

/// Writes `report`, as it stands at the checkpoint of `step`, beside `checkpoint` (atomically).
pub(super) fn save_history(checkpoint: &Path, step: usize, report: &TrainReport) -> Result<()> {
    let text = serde_json::to_string(&SavedHistory {
        step,
        report: report.clone(),
    })
    .map_err(|e| Error::State(e.to_string()))?;
    write_atomic(&history_path(checkpoint), text.as_bytes())?;
    Ok(())
}

/// The report saved beside `checkpoint` when its checkpoint of `step` was written, or why it
/// cannot be used: missing (a checkpoint written before histories were kept), unreadable, or
/// written at another step (a process stopped between the two writes). The run goes on without
/// it; the caller says so.
pub(super) fn restore_history(
    checkpoint: &Path,
    step: usize,
) -> std::result::Result<TrainReport, String> {
    let path = history_path(checkpoint);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let saved: SavedHistory = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a training history ({e})", path.display()))?;
    if saved.step != step {
        return Err(format!(
            "{} was written at step {}, the checkpoint at step {step}",
            path.display(),
            saved.step
        ));
    }
    Ok(saved.report)
}

/// Restores model, optimizer and step from a training checkpoint; returns the step. The model
/// is changed only when everything in the file fits.
pub(super) fn restore(
    model: &mut Model,
    opt: &mut AdamW,
    config: &TrainConfig,
    path: &Path,
) -> Result<usize> {
    let step = resumable_step(path, model.config(), config)?
        .ok_or_else(|| Error::State(format!("{}: no such checkpoint", path.display())))?;
    let (_, state) = checkpoint::read_state(path)?;
    opt.load_state(&state, step)?;
    model.load_weights(path)?;
    Ok(step)
}
