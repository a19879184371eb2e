//! Every experiment config the repository ships (`configs/*.toml` but the real-data job's,
//! `configs/ablations/`, `configs/tuned/`) reads and validates, so a config whose fields drift
//! from the code fails here rather than at the start of an hour-long run.

use std::path::{Path, PathBuf};

use anyhow::Result;
use ddssm_train::experiment::ExperimentConfig;

fn tomls(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    Ok(paths)
}

#[test]
fn every_shipped_experiment_config_loads_and_validates() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut paths = tomls(&root)?;
    paths.retain(|p| p.file_name().is_some_and(|n| n != "real-data.toml"));
    paths.extend(tomls(&root.join("ablations"))?);
    paths.extend(tomls(&root.join("tuned"))?);
    assert!(paths.len() >= 20, "{paths:?}");
    for path in &paths {
        let config = ExperimentConfig::load(Some(path))
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    }
    Ok(())
}
