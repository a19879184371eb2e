//! Where a run's numbers come from: the commit of the code that ran, and where the DDSSM's
//! parameters started (its seed's initialisation or a warm start).

use std::path::{Path, PathBuf};

use super::RunOptions;
use crate::{Error, Result};

/// The short hash of the commit checked out in the working directory, with `-dirty` when tracked
/// files differ from it (`unknown` outside a git checkout or without `git`): what
/// [`RunOptions::git_commit`] records.
pub fn git_commit() -> String {
    git_commit_in(Path::new("."))
}

/// [`git_commit`] of the checkout at `dir`.
fn git_commit_in(dir: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    // Tracked files changed since that commit: the code that runs may not be the commit's.
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean checkout gives its commit's short hash; a changed tracked file adds `-dirty`; an
    /// untracked file does not (results folders live in the checkout).
    #[test]
    fn the_commit_is_marked_dirty_when_tracked_files_changed() {
        let dir = std::env::temp_dir().join(format!("ddssm-git-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        std::fs::write(dir.join("a.txt"), "one").unwrap();
        git(&["add", "a.txt"]);
        git(&["commit", "-q", "-m", "one"]);
        let head = git(&["rev-parse", "--short", "HEAD"]);
        assert_eq!(git_commit_in(&dir), head);
        std::fs::write(dir.join("untracked.txt"), "x").unwrap();
        assert_eq!(git_commit_in(&dir), head);
        std::fs::write(dir.join("a.txt"), "two").unwrap();
        assert_eq!(git_commit_in(&dir), format!("{head}-dirty"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(git_commit_in(&dir.join("gone")), "unknown");
    }
}
