//! The commit a binary was built from, recorded at build time (`build.rs` includes this file and
//! sets `DDSSM_BUILD_COMMIT`): the code that ran, whatever the checkout holds when it runs. A
//! binary built before a commit, or from another checkout, then says so in every `results.json`
//! and benchmark file it writes.

use std::path::Path;

/// The paths whose contents make the binary: a change to one of them marks the build `-dirty`,
/// and `build.rs` asks cargo to rerun it when one changes (documentation and configs do not).
pub const CODE_PATHS: [&str; 6] = [
    "crates",
    "xtask",
    "third_party",
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
];

/// The short hash of the commit checked out at `dir`, with `-dirty` when a tracked file under
/// [`CODE_PATHS`] differs from it (`unknown` outside a git checkout or without `git`).
pub fn describe(dir: &Path) -> String {
    let Some(head) = git(dir, &["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(CODE_PATHS);
    match git(dir, &status) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}

/// The files git changes when the checked-out commit moves (`HEAD`, the branch heads), under the
/// checkout's git directory; empty outside a checkout.
pub fn head_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let git_dir = git(dir, &["rev-parse", "--absolute-git-dir"]).map(std::path::PathBuf::from);
    git_dir.map_or_else(Vec::new, |g| {
        ["HEAD", "refs/heads", "packed-refs"]
            .iter()
            .map(|f| g.join(f))
            .filter(|p| p.exists())
            .collect()
    })
}

/// `git ARGS` run in `dir`: its trimmed output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean checkout gives its commit's short hash; a changed tracked file under the code
    /// paths adds `-dirty`; an untracked file or a changed document does not. The files watched for
    /// a moved commit exist.
    #[test]
    fn the_commit_is_marked_dirty_when_tracked_code_changed() {
        let dir = std::env::temp_dir().join(format!("ddssm-git-commit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("crates")).unwrap();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(&dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        std::fs::write(dir.join("crates/a.rs"), "one").unwrap();
        std::fs::write(dir.join("docs/b.md"), "one").unwrap();
        git(&["add", "crates/a.rs", "docs/b.md"]);
        git(&["commit", "-q", "-m", "one"]);
        let head = git(&["rev-parse", "--short", "HEAD"]);
        assert_eq!(describe(&dir), head);
        // What build.rs watches: HEAD and the branch heads, as they exist.
        let watched = head_files(&dir);
        assert!(
            watched.iter().any(|p| p.ends_with(".git/HEAD")),
            "{watched:?}"
        );
        assert!(watched.iter().all(|p| p.exists()), "{watched:?}");
        std::fs::write(dir.join("crates/untracked.rs"), "x").unwrap();
        std::fs::write(dir.join("docs/b.md"), "two").unwrap();
        assert_eq!(describe(&dir), head);
        std::fs::write(dir.join("crates/a.rs"), "two").unwrap();
        assert_eq!(describe(&dir), format!("{head}-dirty"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(describe(&dir.join("gone")), "unknown");
        assert!(head_files(&dir.join("gone")).is_empty());
    }

    /// The binary under test was built from this checkout's code as it is now (tests are always
    /// built fresh), so the build's record agrees with the checkout.
    #[test]
    fn the_build_records_the_checkout_it_was_built_from() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(crate::BUILD_COMMIT, describe(&root));
    }
}
