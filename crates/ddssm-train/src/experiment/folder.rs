//! A finished `bimodal-experiment` folder opened for more work on its models: its
//! `config.toml` and whichever of `ddssm.safetensors` and `dkf.safetensors` it holds.

use std::path::Path;

use candle_core::Device;
use ddssm_model::Model;

use super::ExperimentConfig;
use crate::{Error, Result};

/// The config and the trained models of one experiment folder.
#[derive(Debug)]
pub struct RunFolder {
    /// The experiment config the folder was run with.
    pub config: ExperimentConfig,
    /// The models it holds, by name (`ddssm`, then `dkf`), at least one.
    pub models: Vec<(&'static str, Model)>,
}

impl RunFolder {
    /// Reads `dir/config.toml` and loads every checkpoint `dir` holds onto `device`; an error
    /// names the file that is missing or unreadable, or the folder when it holds no model.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let config = ExperimentConfig::load(Some(&dir.join("config.toml")))?;
        let mut models = Vec::new();
        for name in ["ddssm", "dkf"] {
            let checkpoint = dir.join(format!("{name}.safetensors"));
            if checkpoint.exists() {
                let model = Model::load(&checkpoint, device)
                    .map_err(|e| Error::State(format!("loading {}: {e}", checkpoint.display())))?;
                models.push((name, model));
            }
        }
        if models.is_empty() {
            return Err(Error::State(format!(
                "{} holds no ddssm.safetensors or dkf.safetensors",
                dir.display()
            )));
        }
        Ok(Self { config, models })
    }

    /// Takes the model called `name` out of the folder; an error names the checkpoint when the
    /// folder does not hold it.
    pub fn take(&mut self, name: &str, dir: &Path) -> Result<Model> {
        let at = self
            .models
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| {
                Error::State(format!("{} holds no {name}.safetensors", dir.display()))
            })?;
        Ok(self.models.remove(at).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_config_or_models_is_named() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let err = RunFolder::open(dir, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        let text = toml::to_string(&ExperimentConfig::paper()).unwrap();
        std::fs::write(dir.join("config.toml"), text).unwrap();
        let err = RunFolder::open(dir, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("holds no ddssm.safetensors"), "{err}");
    }
}
