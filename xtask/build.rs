//! Records the commit the binary is built from as `DDSSM_BUILD_COMMIT` (src/commit.rs), and asks
//! cargo to rerun when the checked-out commit or any code changes.

#[path = "src/commit.rs"]
mod commit;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Only paths that exist: cargo reruns a build script on every build for a missing one.
    for path in commit::head_files(&root) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for path in commit::CODE_PATHS {
        if root.join(path).exists() {
            println!("cargo:rerun-if-changed=../{path}");
        }
    }
    println!(
        "cargo:rustc-env=DDSSM_BUILD_COMMIT={}",
        commit::describe(&root)
    );
}
