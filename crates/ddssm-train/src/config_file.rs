//! Reading config files with errors that name the offending key, and config files that build on
//! another (`base = "…"`).
//!
//! A config file may start with `base = "PATH"` (relative to the file's own directory). It then
//! means its base with its own keys written over it: tables merge key by key, at any depth, and
//! every other value — a number, a string, an array, an array of tables (`[[dataset]]`) — replaces
//! the base's, and so does a table that names another `kind` than the base's (another variant:
//! its fields are given in full). A base may have a base of its own; a cycle is an error. An
//! ablation is thereby written as the few lines in which it differs from the config it ablates.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The top-level key that names the config file a config file builds on.
pub const BASE_KEY: &str = "base";

/// At most this many files in one chain of bases (a guard against runaway chains).
const MAX_BASE_DEPTH: usize = 16;

/// Reads the TOML file `path` as a `what` (e.g. "experiment config"), on top of its base if it
/// names one (module docs). A value that does not fit is named by its full key path
/// (`` `data.train` ``), the file that sets it and the line and column where that file sets it
/// (in an overlay, the file's own line: the merged value has none).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    read_layered(path, what, None)
}

/// Reads the TOML file `path` as a `what` written over `under` (called `under_name` in errors):
/// the keys the file sets replace `under`'s, tables merging key by key at any depth as over a
/// base (module docs), so a file holds only what it changes. The file may name a `base` of its
/// own, which then sits between `under` and the file. Errors as [`read_toml`]'s.
pub fn read_toml_over<T: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    under: &T,
    under_name: &str,
) -> Result<T> {
    let table = toml::Table::try_from(under)
        .map_err(|e| Error::State(format!("{under_name} as TOML: {e}")))?;
    let under = Layer {
        source: PathBuf::from(under_name),
        text: None,
        table,
    };
    read_layered(path, what, Some(under))
}

/// [`read_toml`] with an optional layer beneath the file and its bases.
fn read_layered<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    under: Option<Layer>,
) -> Result<T> {
    let text = read_text(path)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(path, what, "", e))?;
    if under.is_none() && !table.contains_key(BASE_KEY) {
        // No base: deserialise from the text itself, so errors carry line and column.
        let de = toml::Deserializer::parse(&text).map_err(|e| invalid(path, what, "", e))?;
        return serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(path, what, &e.path().to_string(), e.into_inner()));
    }
    let mut chain = vec![canonical(path)?];
    let mut layers = layers(path, text, table, what, &mut chain)?;
    layers.splice(0..0, under);
    let merged = layers.iter().fold(toml::Table::new(), |mut acc, layer| {
        merge(&mut acc, layer.table.clone());
        acc
    });
    serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        // Name the file that sets the key (the last layer that has it), else the file read.
        let layer = layers.iter().rev().find(|l| defines(&l.table, &key));
        let file = layer.map_or(path, |l| l.source.as_path());
        let read = if file == path {
            String::new()
        } else {
            format!(" (a base of {})", path.display())
        };
        // Point at the key in that file's text (the merged value has no positions of its own).
        let place = layer
            .and_then(|l| l.text.as_deref())
            .and_then(|text| locate(text, &key).map(|span| excerpt(text, span)))
            .unwrap_or_default();
        invalid(file, what, &key, format!("{place}{}{read}", e.into_inner()))
    })
}

/// One layer of a merged config: a file of a chain of bases, or the settings a file is read
/// over.
struct Layer {
    /// The file (or, for given settings, their name).
    source: PathBuf,
    /// The file's text (none for given settings), where an error's key is looked up.
    text: Option<String>,
    /// Its keys, without `base`.
    table: toml::Table,
}

/// Where `text` writes the key at `path` (serde_path_to_error's `a.b[0].c`): the span of
/// `key = value` when the value is not a table, else of the key; for a path that leaves the file
/// (a key the file does not set), the deepest part of it that the file does set. `None` when the
/// file does not parse or sets none of it.
fn locate(text: &str, path: &str) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let mut parts = segment.split('[');
        let name = parts.next().unwrap_or(segment);
        let Some((key, mut value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            break;
        };
        found = Some(key.span());
        for index in parts {
            let item = index
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .and_then(|i| match value.get_ref() {
                    DeValue::Array(items) => items.get(i),
                    _ => None,
                });
            match item {
                Some(item) => value = item,
                None => return found,
            }
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return Some(key.span().start..value.span().end),
        }
    }
    found
}

/// `line L, column C` of `span` in `text` and the line itself with the span marked, in the
/// layout of the TOML parser's own errors; ends with a newline.
fn excerpt(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim_end_matches('\r');
    let number = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let width = text[start..span.end.clamp(start, line_end)]
        .chars()
        .count()
        .max(1);
    let gutter = " ".repeat(number.to_string().len());
    format!(
        "line {number}, column {column}\n{gutter} |\n{number} | {line}\n{gutter} | {}{}\n",
        " ".repeat(column - 1),
        "^".repeat(width)
    )
}

/// The file's text, or an error naming it.
fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::State(format!("reading {}: {e}", path.display())))
}

/// The file's canonical path (to recognise a cycle however the bases spell it).
fn canonical(path: &Path) -> Result<PathBuf> {
    path.canonicalize()
        .map_err(|e| Error::State(format!("reading {}: {e}", path.display())))
}

/// The error for a `what` in `path` that does not parse or fit, at `key` when one is known.
fn invalid(path: &Path, what: &str, key: &str, e: impl std::fmt::Display) -> Error {
    let key = if key.is_empty() || key == "." {
        String::new()
    } else {
        format!(" at `{key}`")
    };
    Error::State(format!("{}: not a valid {what}{key}: {e}", path.display()))
}

/// The file `path` (its `text` already parsed as `table`) and its chain of bases, base-most
/// first, each layer without its `base` key. `chain` holds the canonical paths read so far.
fn layers(
    path: &Path,
    text: String,
    mut table: toml::Table,
    what: &str,
    chain: &mut Vec<PathBuf>,
) -> Result<Vec<Layer>> {
    let this = |table| Layer {
        source: path.to_path_buf(),
        text: Some(text),
        table,
    };
    let Some(base) = table.remove(BASE_KEY) else {
        return Ok(vec![this(table)]);
    };
    let toml::Value::String(base) = base else {
        return Err(invalid(
            path,
            what,
            BASE_KEY,
            format!("expected a path (a string, relative to this file), found {base}"),
        ));
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(&base);
    if !base_path.is_file() {
        return Err(invalid(
            path,
            what,
            BASE_KEY,
            format!("no such file: {}", base_path.display()),
        ));
    }
    let canonical_base = canonical(&base_path)?;
    if chain.contains(&canonical_base) {
        return Err(invalid(
            path,
            what,
            BASE_KEY,
            format!(
                "{} is already in this file's chain of bases (a cycle)",
                base_path.display()
            ),
        ));
    }
    if chain.len() >= MAX_BASE_DEPTH {
        return Err(invalid(
            path,
            what,
            BASE_KEY,
            format!("more than {MAX_BASE_DEPTH} files in one chain of bases"),
        ));
    }
    chain.push(canonical_base);
    let base_text = read_text(&base_path)?;
    let base_table: toml::Table =
        toml::from_str(&base_text).map_err(|e| invalid(&base_path, what, "", e))?;
    let mut out = layers(&base_path, base_text, base_table, what, chain)?;
    out.push(this(table));
    Ok(out)
}

/// The key that names a table's variant (`#[serde(tag = "kind")]`).
const KIND_KEY: &str = "kind";

/// Writes `over` onto `into`: tables merge key by key, every other value replaces — and so does a
/// table that names another `kind` than the one beneath it (the fields of one variant mean
/// nothing to another: a cosine schedule written over a linear one keeps none of its fields).
fn merge(into: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new))
                if !changes_kind(old, &new) =>
            {
                merge(old, new)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Whether `over` names a `kind` and `under` another one.
fn changes_kind(under: &toml::Table, over: &toml::Table) -> bool {
    match (under.get(KIND_KEY), over.get(KIND_KEY)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// Whether `table` sets the key at `path` (serde_path_to_error's `a.b[0].c`; indices are
/// skipped, so an array of tables counts as set by the layer that holds it).
fn defines(table: &toml::Table, path: &str) -> bool {
    let mut current = table;
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.split('[').next().unwrap_or(segment);
        match current.get(name) {
            None => return false,
            Some(toml::Value::Table(inner)) if i + 1 < segments.len() => current = inner,
            Some(_) => return true,
        }
    }
    !segments.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: String,
    }

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        top: f64,
        inner: Inner,
        list: Vec<u32>,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A fresh scratch folder, removed when the returned guard is dropped.
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// The error of reading `text`, written to `dir/name`, as a [`Doc`].
    fn error_of(dir: &Path, name: &str, text: &str) -> String {
        let path = write(dir, name, text);
        read_toml::<Doc>(&path, "doc").unwrap_err().to_string()
    }

    const BASE: &str = "top = 1.5\nlist = [1, 2, 3]\n[inner]\na = 7\nb = \"base\"\n";

    #[test]
    fn a_file_writes_its_keys_over_its_base_tables_merge_and_arrays_replace() {
        let scratch = scratch();
        let dir = scratch.path();
        write(dir, "base.toml", BASE);
        // The base is found relative to the file, not to the working directory.
        let child = write(
            dir,
            "sub/child.toml",
            "base = \"../base.toml\"\nlist = [9]\n[inner]\nb = \"child\"\n",
        );
        let doc: Doc = read_toml(&child, "doc").unwrap();
        assert_eq!(
            doc,
            Doc {
                top: 1.5,
                inner: Inner {
                    a: 7,
                    b: "child".into()
                },
                list: vec![9],
            }
        );
        // A chain: the grandchild sees both layers beneath it.
        let grandchild = write(
            dir,
            "sub/grandchild.toml",
            "base = \"child.toml\"\ntop = -2.0\n",
        );
        let doc: Doc = read_toml(&grandchild, "doc").unwrap();
        assert_eq!(
            (doc.top, doc.inner.b.as_str(), doc.list),
            (-2.0, "child", vec![9])
        );
        // Without a base the file reads as it is.
        let doc: Doc = read_toml(&dir.join("base.toml"), "doc").unwrap();
        assert_eq!(doc.inner.b, "base");
    }

    #[test]
    fn a_bad_key_is_named_with_the_file_that_sets_it() {
        let scratch = scratch();
        let dir = scratch.path();
        write(dir, "base.toml", BASE);
        let err = error_of(dir, "child.toml", "base = \"base.toml\"\n[inner]\nc = 1\n");
        assert!(
            err.contains("child.toml") && err.contains("`inner`"),
            "{err}"
        );
        assert!(err.contains("unknown field `c`"), "{err}");
        // The key's line in the file that sets it, marked as the parser marks its own errors.
        assert!(
            err.contains("line 3, column 1\n  |\n3 | c = 1\n  | ^^^^^\n"),
            "{err}"
        );
        // A bad value set in the base is laid at the base's door, with the file that was read.
        let base = write(dir, "bad-base.toml", &BASE.replace("a = 7", "a = -7"));
        let err = error_of(dir, "child2.toml", "base = \"bad-base.toml\"\n");
        assert!(err.starts_with(&base.display().to_string()), "{err}");
        assert!(
            err.contains("`inner.a`") && err.contains("a base of"),
            "{err}"
        );
        assert!(err.contains("line 4, column 1\n  |\n4 | a = -7\n"), "{err}");
        // An unknown key in a table that both files write is laid at the door of the one that
        // has the key.
        let base = write(dir, "unknown-base.toml", &format!("{BASE}d = 1\n"));
        let err = error_of(
            dir,
            "child3.toml",
            "base = \"unknown-base.toml\"\n[inner]\nb = \"child\"\n",
        );
        assert!(err.starts_with(&base.display().to_string()), "{err}");
        assert!(err.contains("line 6, column 1\n  |\n6 | d = 1\n"), "{err}");
    }

    #[test]
    fn a_file_over_given_settings_changes_only_what_it_sets() {
        let scratch = scratch();
        let dir = scratch.path();
        let under = Doc {
            top: 1.5,
            inner: Inner {
                a: 7,
                b: "under".into(),
            },
            list: vec![1, 2, 3],
        };
        let file = write(dir, "file.toml", "[inner]\nb = \"file\"\n");
        let doc = read_toml_over(&file, "doc", &under, "the defaults").unwrap();
        assert_eq!(
            doc.inner,
            Inner {
                a: 7,
                b: "file".into()
            }
        );
        assert_eq!((doc.top, doc.list), (1.5, vec![1, 2, 3]));
        // A base of the file's own sits between the given settings and the file.
        write(dir, "base.toml", "top = -1.0\n[inner]\na = 9\n");
        let file = write(dir, "on-base.toml", "base = \"base.toml\"\nlist = [4]\n");
        let doc = read_toml_over(&file, "doc", &under, "the defaults").unwrap();
        assert_eq!(
            (doc.top, doc.inner.a, doc.inner.b.as_str(), doc.list),
            (-1.0, 9, "under", vec![4])
        );
        // An empty file gives the settings back.
        let file = write(dir, "empty.toml", "");
        assert_eq!(
            read_toml_over(&file, "doc", &under, "the defaults").unwrap(),
            under
        );
        // A bad key is named with the file and its line, as without given settings.
        let file = write(dir, "bad.toml", "top = 2.0\n[inner]\nc = 1\n");
        let err = read_toml_over(&file, "doc", &under, "the defaults")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&file.display().to_string()), "{err}");
        assert!(
            err.contains("`inner.c`") && err.contains("line 3, column 1"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_cyclic_or_malformed_base_is_an_error_naming_the_base_key() {
        let scratch = scratch();
        let dir = scratch.path();
        let err = error_of(dir, "missing.toml", "base = \"nowhere.toml\"\ntop = 1.0\n");
        assert!(
            err.contains("`base`") && err.contains("no such file"),
            "{err}"
        );
        write(dir, "a.toml", "base = \"b.toml\"\n");
        let err = error_of(dir, "b.toml", "base = \"a.toml\"\n");
        assert!(err.contains("cycle"), "{err}");
        let err = error_of(dir, "self.toml", "base = \"self.toml\"\n");
        assert!(err.contains("cycle"), "{err}");
        let err = error_of(dir, "number.toml", "base = 3\n");
        assert!(
            err.contains("`base`") && err.contains("expected a path"),
            "{err}"
        );
        write(dir, "broken.toml", "top = \n");
        let err = error_of(dir, "on-broken.toml", "base = \"broken.toml\"\n");
        assert!(err.contains("broken.toml: not a valid doc"), "{err}");
    }

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    enum Shape {
        Square { side: f64 },
        Circle { radius: f64 },
    }

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Drawing {
        shape: Shape,
        n: u32,
    }

    #[test]
    fn a_table_that_names_another_kind_replaces_the_one_beneath() {
        let scratch = scratch();
        let dir = scratch.path();
        let under = Drawing {
            shape: Shape::Square { side: 2.0 },
            n: 3,
        };
        // Another kind keeps none of the fields beneath it (the square's side would be unknown
        // to a circle) ...
        let file = write(
            dir,
            "circle.toml",
            "[shape]\nkind = \"circle\"\nradius = 1.0\n",
        );
        let doc = read_toml_over(&file, "drawing", &under, "the defaults").unwrap();
        assert_eq!(
            doc,
            Drawing {
                shape: Shape::Circle { radius: 1.0 },
                n: 3
            }
        );
        // ... so the new kind's own fields must be given in full.
        let file = write(dir, "bare.toml", "[shape]\nkind = \"circle\"\n");
        let err = read_toml_over(&file, "drawing", &under, "the defaults")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `radius`"), "{err}");
        // The same kind, or none named, merges key by key as every table does.
        let file = write(
            dir,
            "square.toml",
            "[shape]\nkind = \"square\"\nside = 5.0\n",
        );
        let doc = read_toml_over(&file, "drawing", &under, "the defaults").unwrap();
        assert_eq!(doc.shape, Shape::Square { side: 5.0 });
        let file = write(dir, "side.toml", "[shape]\nside = 6.0\n");
        let doc = read_toml_over(&file, "drawing", &under, "the defaults").unwrap();
        assert_eq!(doc.shape, Shape::Square { side: 6.0 });
    }
}
