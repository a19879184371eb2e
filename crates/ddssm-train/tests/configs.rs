//! Every experiment config the repository ships (`configs/*.toml` but the real-data job's,
//! `configs/ablations/`, `configs/tuned/`) reads and validates, so a config whose fields drift
//! from the code fails here rather than at the start of an hour-long run. The ablations and the
//! sharp config are written as overlays (`base = "…"`, `ddssm_train::read_toml`) on the config
//! they change, so each states its change in a few lines.

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

/// A key of the file itself (not of its resolved config).
fn own_key(path: &Path, key: &str) -> Result<Option<toml::Value>> {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(path)?)?;
    Ok(table.get(key).cloned())
}

#[test]
fn the_ablations_and_the_sharp_config_are_overlays_on_a_shipped_config() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut paths = tomls(&root.join("ablations"))?;
    paths.push(root.join("bimodal-sharp.toml"));
    let paper = toml::Value::String("bimodal.toml".into());
    assert_eq!(
        own_key(&root.join("bimodal-sharp.toml"), "base")?,
        Some(paper)
    );
    for path in &paths {
        let Some(toml::Value::String(base)) = own_key(path, "base")? else {
            anyhow::bail!(
                "{}: an ablation names its base config (`base = \"…\"`)",
                path.display()
            );
        };
        let base = path.parent().unwrap().join(base);
        // The overlay changes the config it names (an overlay with no effect is a stale file).
        let (own, of_base) = (
            ExperimentConfig::load(Some(path))?,
            ExperimentConfig::load(Some(&base))?,
        );
        assert_ne!(
            own,
            of_base,
            "{} changes nothing in {}",
            path.display(),
            base.display()
        );
    }
    Ok(())
}
