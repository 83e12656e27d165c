//! Names the commit the binary was built from, for `contentdist --version`:
//! `contentdist 0.1.0 (abc1234 2026-11-30)`.
//!
//! Packagers building from a source tarball (no git checkout) set
//! `CONTENTDIST_COMMIT` (and optionally `CONTENTDIST_COMMIT_DATE`); without either
//! the commit reads "unknown". Only git is asked: the clap definition is not needed
//! here (the man pages and completions come from `contentdist generate`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CONTENTDIST_COMMIT");
    println!("cargo:rerun-if-env-changed=CONTENTDIST_COMMIT_DATE");

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let from_env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let (commit, date) = match from_env("CONTENTDIST_COMMIT") {
        Some(commit) => (commit, from_env("CONTENTDIST_COMMIT_DATE")),
        None => match git_commit(&manifest_dir) {
            Some((commit, date)) => (commit, Some(date)),
            None => ("unknown".to_owned(), None),
        },
    };
    let info = match date {
        Some(date) => format!("{commit} {date}"),
        None => commit,
    };
    println!("cargo:rustc-env=CONTENTDIST_COMMIT_INFO={info}");
}

/// The short hash and the commit date (YYYY-MM-DD) of HEAD, when this crate is part
/// of a git checkout of the contentdist workspace itself. A source tarball unpacked
/// inside some other repository must not take that repository's commit.
fn git_commit(manifest_dir: &Path) -> Option<(String, String)> {
    let toplevel = git(manifest_dir, &["rev-parse", "--show-toplevel"])?;
    let workspace = manifest_dir.join("../..").canonicalize().ok()?;
    if Path::new(&toplevel).canonicalize().ok()? != workspace {
        return None;
    }
    let commit = git(manifest_dir, &["rev-parse", "--short", "HEAD"])?;
    let date = git(manifest_dir, &["log", "-1", "--format=%cs", "HEAD"])?;

    // Build again when HEAD moves: HEAD itself (a checkout), the branch it points
    // to (a commit), and packed-refs (where `git gc` moves the branch). Only files
    // that exist: cargo treats a missing one as always changed.
    let mut watched = vec![git(manifest_dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(manifest_dir, &["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(
        manifest_dir,
        &["rev-parse", "--git-path", "packed-refs"],
    ));
    for path in watched {
        let path = manifest_dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some((commit, date))
}

/// One line of git's output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}
