//! Tidy checks of the whole tree (rust-analyzer's `xtask/src/tidy.rs` is the model): the crate
//! layering of docs/ARCHITECTURE.md read from `cargo metadata`, a `//!` doc at the top of every
//! module, no source file past 600 lines, and a README (with a doctested example) and an
//! ARCHITECTURE section for every library crate. Vendored code (`third_party/`) is exempt.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The layer of each workspace crate, bottom up, as docs/ARCHITECTURE.md draws them: a normal
/// dependency may only point to a lower layer (so never sideways between `ddssm-nets` and
/// `ddssm-diffusion`, nor from `ddssm-data` to anything); a dev-dependency may point anywhere
/// (tests and examples may use the layers above).
const LAYERS: [(&str, usize); 9] = [
    ("ddssm-tensor-ops", 0),
    ("ddssm-data", 0),
    ("ddssm-nets", 1),
    ("ddssm-diffusion", 1),
    ("ddssm-model", 2),
    ("ddssm-eval", 3),
    ("ddssm-train", 4),
    ("ddssm-cli", 5),
    ("xtask", 5),
];

fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("xtask"), &mut files);
    files.sort();
    files
}

#[test]
fn crates_depend_only_downward() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut problems = Vec::new();
    let packages = meta["packages"].as_array().unwrap();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let Some(mine) = layer(name) else {
            problems.push(format!(
                "{name}: not in the layer table (docs/ARCHITECTURE.md)"
            ));
            continue;
        };
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            let Some(theirs) = layer(dep) else { continue };
            let dev = d["kind"].as_str() == Some("dev");
            if !dev && theirs >= mine {
                problems.push(format!(
                    "{name} (layer {mine}) depends on {dep} (layer {theirs}): arrows point \
                     downward only; a use in tests or examples only is a dev-dependency"
                ));
            }
        }
    }
    assert_eq!(
        packages.len(),
        LAYERS.len(),
        "every workspace crate has a layer"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_opens_with_its_doc() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` doc on their first line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_source_file_passes_600_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines): split it by concept", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn every_library_crate_has_a_readme_and_an_architecture_section() {
    let architecture = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    // The two binaries (the `ddssm` command, xtask) have no library to document this way.
    for (name, _) in LAYERS
        .iter()
        .filter(|(n, _)| *n != "xtask" && *n != "ddssm-cli")
    {
        let dir = root().join("crates").join(name);
        let readme = std::fs::read_to_string(dir.join("README.md"))
            .unwrap_or_else(|_| panic!("{name} has no README.md"));
        assert!(readme.contains("```rust"), "{name}'s README has no example");
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(
            lib.contains("include_str!(\"../README.md\")"),
            "{name}'s README example is not run as a doctest"
        );
        assert!(
            architecture.contains(&format!("### `crates/{name}`")),
            "docs/ARCHITECTURE.md has no section for {name}"
        );
    }
}
