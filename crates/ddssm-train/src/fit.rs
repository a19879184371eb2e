//! The training run as one library call: a model config and its training config in, a trained,
//! validated and checkpointed model out.

use ddssm_model::{Batch, Model, ModelConfig, Standardization};
use serde::{Deserialize, Serialize};

use crate::{train, Result, TrainConfig, TrainOptions, TrainReport, Validator};

/// A model and how it is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRun {
    /// The model.
    pub model: ModelConfig,
    /// Its training.
    pub train: TrainConfig,
}

impl ModelRun {
    /// The same run with `batch` sequences per batch, capped at the `windows` training windows
    /// (as [`crate::series::series_run`] caps the paper's), and the micro-batch no larger.
    pub fn with_batch_size(mut self, batch: usize, windows: usize) -> Self {
        self.train.batch_size = batch.min(windows);
        self.train.micro_batch = self.train.micro_batch.min(self.train.batch_size);
        self
    }

    /// Checks both configs, naming a bad field by its path under `prefix` (`ddssm` →
    /// `ddssm.model.order`, `ddssm.train.steps`; `""` → `model.order`, as a run config file
    /// writes it).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let under = |part: &str| {
            if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}.{part}")
            }
        };
        self.model
            .validate()
            .map_err(|e| e.within(&under("model")))?;
        self.train.validate().map_err(|e| e.within(&under("train")))
    }
}

/// Builds `run`'s model (parameters initialised from `seed`, in the dtype and on the device of
/// `data`), gives it `standardization` (so that it takes the data's own units), and trains it on
/// `data` with `options` (checkpoint, resume, progress) and `validate`: the model and the
/// training report. A resumed run continues from the checkpoint's step (see
/// [`crate::resumable_step`]).
pub fn fit(
    run: &ModelRun,
    seed: u64,
    standardization: Option<Standardization>,
    data: &Batch,
    options: &TrainOptions,
    validate: &mut Validator<'_>,
) -> Result<(Model, TrainReport)> {
    let mut model = Model::new(&run.model, seed, data.x.dtype(), data.x.device())?;
    model.set_standardization(standardization)?;
    let report = train(&mut model, data, &run.train, options, validate)?;
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chosen batch is capped at the training windows and the micro-batch follows it down.
    #[test]
    fn with_batch_size_caps_the_batch_and_the_micro_batch() {
        let run = ModelRun {
            model: ModelConfig::paper_ddssm(),
            train: TrainConfig::paper_ddssm(),
        };
        let small = run.clone().with_batch_size(32, 100);
        assert_eq!((small.train.batch_size, small.train.micro_batch), (32, 32));
        let capped = run.with_batch_size(500, 100);
        assert_eq!(
            (capped.train.batch_size, capped.train.micro_batch),
            (100, 64)
        );
    }
}
