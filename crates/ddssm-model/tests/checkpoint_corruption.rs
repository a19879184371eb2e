//! A damaged checkpoint is always an `Err`, never a panic, and changes nothing: seeded random
//! truncations, single-byte flips in the header and in the tensor data, and files (correctly
//! sealed, so only the content is wrong) with a tensor of the wrong shape or dtype — for a
//! model parameter and for a training-state tensor — or a wrong declared dtype.
//!
//! Each damaged file goes through the readers: `Model::load`, `Model::load_weights` into a live
//! model (whose parameters must stay bit for bit as they were), and for flips, truncations and
//! self-contradicting dtypes also `checkpoint::read_state` and `checkpoint::read_metadata`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ddssm_model::{checkpoint, Model, ModelConfig, Standardization};
use ddssm_tensor_ops::SeededNoise;

type Result<T> = anyhow::Result<T>;
/// Named tensors of a checkpoint file.
type Tensors = Vec<(String, Tensor)>;
/// Its metadata.
type Meta = HashMap<String, String>;

fn tmp(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ddssm-corruption-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn values(model: &Model) -> Vec<Vec<f32>> {
    model
        .named_parameters()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

/// A small model with a standardisation, and the tensors and metadata of a training checkpoint
/// of it (one optimiser moment per parameter under `state.`).
fn fixture(name: &str) -> Result<(Model, Tensors, Meta)> {
    let mut config = ModelConfig::paper_dkf();
    config.h_seq = 4;
    let mut model = Model::new(&config, 3, DType::F32, &Device::Cpu)?;
    model.set_standardization(Some(Standardization {
        mean: vec![0.5],
        std: vec![2.0],
    }))?;
    let state: Vec<(String, Tensor)> = model
        .named_parameters()
        .iter()
        .map(|(n, v)| (format!("m.{n}"), v.as_tensor().affine(0.5, 0.0).unwrap()))
        .collect();
    let bytes = model.checkpoint_bytes_with_state(&Default::default(), &state)?;
    let path = tmp(&format!("fixture-{name}.safetensors"));
    std::fs::write(&path, &bytes)?;
    let (meta, _) = checkpoint::read_state(&path)?;
    let mut tensors: Vec<(String, Tensor)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    tensors.extend(
        state
            .into_iter()
            .map(|(n, t)| (format!("{}{n}", checkpoint::STATE_PREFIX), t)),
    );
    Ok((model, tensors, meta))
}

/// Every reader refuses the file at `path`; none panics; `live` is unchanged.
fn refused_by_every_reader(what: &str, path: &Path, live: &mut Model) {
    let before = values(live);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        (
            Model::load(path, &Device::Cpu).map(|_| ()),
            live.load_weights(path),
            checkpoint::read_state(path).map(|_| ()),
        )
    }));
    let (load, weights, state) = outcome.unwrap_or_else(|_| panic!("{what}: a reader panicked"));
    assert!(load.is_err(), "{what}: Model::load accepted it");
    assert!(weights.is_err(), "{what}: load_weights accepted it");
    assert!(state.is_err(), "{what}: read_state accepted it");
    assert_eq!(values(live), before, "{what}: the live model changed");
}

#[test]
fn the_intact_file_loads() -> Result<()> {
    let (model, tensors, meta) = fixture("intact")?;
    let path = tmp("intact.safetensors");
    std::fs::write(&path, checkpoint::seal(&tensors, meta)?)?;
    let loaded = Model::load(&path, &Device::Cpu)?;
    assert_eq!(values(&loaded), values(&model));
    assert_eq!(loaded.standardization(), model.standardization());
    let (_, state) = checkpoint::read_state(&path)?;
    assert_eq!(state.len(), model.named_parameters().len());
    Ok(())
}

/// Sealing is a function of the content: the same tensors and metadata give the same bytes
/// however the metadata map iterates (each `HashMap` below has its own random order; the fixture's
/// metadata has enough keys that two unsorted writes agreeing by chance is negligible), and the
/// sorted header is what safetensors itself reads back.
#[test]
fn equal_checkpoints_are_equal_bytes() -> Result<()> {
    let (_, tensors, meta) = fixture("bytes")?;
    assert!(meta.len() >= 5, "{} metadata keys", meta.len());
    let first = checkpoint::seal(&tensors, meta.clone())?;
    for _ in 0..4 {
        let reordered: Meta = meta.clone().into_iter().collect();
        assert!(checkpoint::seal(&tensors, reordered)? == first);
    }
    let (header_len, header) = safetensors::SafeTensors::read_metadata(&first)?;
    assert_eq!(header_len % 8, 0);
    let read = header.metadata().clone().unwrap_or_default();
    assert!(
        read.contains_key("checksum") && read.len() >= meta.len(),
        "{read:?}"
    );
    Ok(())
}

#[test]
fn truncations_and_flipped_bytes_are_errors() -> Result<()> {
    let (mut live, tensors, meta) = fixture("flips")?;
    let good = checkpoint::seal(&tensors, meta)?;
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into()?) as usize;
    let mut noise = SeededNoise::new(2024);
    let path = tmp("damaged.safetensors");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Truncations: the edges, and 40 random lengths.
    let mut lengths = vec![0, 1, 7, 8, 9, header_end - 1, header_end, good.len() - 1];
    lengths.extend(
        noise
            .uniform_ints(40, 0, good.len() as u32 - 1)?
            .into_iter()
            .map(|l| l as usize),
    );
    for len in lengths {
        cases.push((format!("truncated to {len} bytes"), good[..len].to_vec()));
    }
    // One flipped byte (a random non-zero XOR mask): 150 in the header, 150 in the data.
    for (region, lo, hi) in [("header", 0, header_end), ("data", header_end, good.len())] {
        let at = noise.uniform_ints(150, lo as u32, hi as u32 - 1)?;
        let masks = noise.uniform_ints(150, 1, 255)?;
        for (&i, &m) in at.iter().zip(&masks) {
            let mut bad = good.clone();
            bad[i as usize] ^= m as u8;
            cases.push((format!("{region} byte {i} ^ {m:#04x}"), bad));
        }
    }
    let n = cases.len();
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes)?;
        refused_by_every_reader(&what, &path, &mut live);
        assert!(
            checkpoint::read_metadata(&path).is_err(),
            "{what}: read_metadata accepted it"
        );
    }
    assert_eq!(n, 348);
    Ok(())
}

#[test]
fn wrong_shapes_and_dtypes_of_every_tensor_kind_are_errors() -> Result<()> {
    let (mut live, tensors, meta) = fixture("wrong")?;
    let path = tmp("wrong.safetensors");
    let param = tensors
        .iter()
        .position(|(n, t)| !n.starts_with(checkpoint::STATE_PREFIX) && t.rank() == 2)
        .expect("a matrix parameter");
    let moment = tensors
        .iter()
        .position(|(n, _)| n.starts_with(checkpoint::STATE_PREFIX))
        .expect("a state tensor");
    let mut cases: Vec<(String, Tensors, Meta)> = Vec::new();
    for (kind, i) in [("parameter", param), ("state tensor", moment)] {
        let (name, t) = &tensors[i];
        let changes: [(&str, Tensor); 4] = [
            ("flattened", t.flatten_all()?),
            ("one more row", Tensor::cat(&[t, &t.narrow(0, 0, 1)?], 0)?),
            ("stored as f64", t.to_dtype(DType::F64)?),
            ("stored as u32", t.to_dtype(DType::U32)?),
        ];
        for (change, replacement) in changes {
            let mut bad = tensors.clone();
            bad[i] = (name.clone(), replacement);
            cases.push((format!("{kind} {name} {change}"), bad, meta.clone()));
        }
        let mut without = tensors.clone();
        without.remove(i);
        cases.push((format!("{kind} {name} missing"), without, meta.clone()));
    }
    let mut extra = tensors.clone();
    extra.push(("encoder.unknown".into(), tensors[param].1.clone()));
    cases.push(("an unknown parameter".into(), extra, meta.clone()));
    let mut declared = meta.clone();
    declared.insert(checkpoint::keys::DTYPE.into(), "f64".into());
    cases.push(("f32 tensors declared f64".into(), tensors.clone(), declared));
    let mut bad_std = meta.clone();
    bad_std.insert(
        checkpoint::keys::STANDARDIZATION.into(),
        r#"{"mean":[0.0],"std":[-1.0]}"#.into(),
    );
    cases.push((
        "a negative standard deviation".into(),
        tensors.clone(),
        bad_std,
    ));
    let mut other = meta.clone();
    let mut config = ModelConfig::paper_dkf();
    config.h_seq = 8;
    other.insert(checkpoint::keys::CONFIG.into(), config.to_json()?);
    cases.push(("another model config".into(), tensors.clone(), other));
    for (what, tensors, meta) in cases {
        std::fs::write(&path, checkpoint::seal(&tensors, meta)?)?;
        let before = values(&live);
        if what.contains("stored as") || what.contains("declared") {
            // The file contradicts itself: every reader refuses it.
            refused_by_every_reader(&what, &path, &mut live);
        } else if what.starts_with("state tensor") {
            // A model reads no optimiser state: only the trainer's restore can see a moment of
            // the wrong shape or a missing one (ddssm-train's corrupt-state test); the
            // parameters still load, unchanged.
            live.load_weights(&path)?;
        } else {
            // Wrong for this model (read_state reads tensors and metadata, not the model).
            let load = catch_unwind(|| Model::load(&path, &Device::Cpu).map(|_| ()))
                .unwrap_or_else(|_| panic!("{what}: Model::load panicked"));
            assert!(load.is_err(), "{what}: Model::load accepted it");
            let weights = catch_unwind(AssertUnwindSafe(|| live.load_weights(&path)))
                .unwrap_or_else(|_| panic!("{what}: load_weights panicked"));
            assert!(weights.is_err(), "{what}: load_weights accepted it");
        }
        assert_eq!(values(&live), before, "{what}: the live model changed");
    }
    Ok(())
}

/// The temporary files of killed writers are removed; a running writer's (here: this process's)
/// and every other file are kept.
#[test]
fn stale_temporary_files_are_removed_and_live_ones_kept() -> Result<()> {
    let dir = tmp("stale");
    std::fs::create_dir_all(&dir)?;
    let dead = dir.join(".model.safetensors.tmp4294967294");
    let live = dir.join(format!(".model.safetensors.tmp{}", std::process::id()));
    let other = dir.join("model.safetensors");
    let odd = dir.join(".notes.tmpfile");
    for f in [&dead, &live, &other, &odd] {
        std::fs::write(f, b"x")?;
    }
    let removed = checkpoint::remove_stale_temp_files(&dir)?;
    assert_eq!(removed, vec![dead.clone()]);
    assert!(!dead.exists() && live.exists() && other.exists() && odd.exists());
    assert!(checkpoint::remove_stale_temp_files(&dir.join("absent"))?.is_empty());
    Ok(())
}
