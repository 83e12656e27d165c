//! What the Debian package relies on: `--version` names the commit built.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::{contentdist_bin, with_timeout};

const TIMEOUT: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> Output {
    Command::new(contentdist_bin()).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_names_the_release_and_the_commit_of_head() {
    with_timeout(TIMEOUT, || {
        let o = run(&["--version"]);
        assert!(o.status.success());
        let version = stdout(&o);
        let release = format!("contentdist {} (", env!("CARGO_PKG_VERSION"));
        assert!(version.starts_with(&release), "{version}");

        if option_env!("CONTENTDIST_COMMIT").is_some() {
            return; // a packager named the commit: not ours to check
        }
        let commit = git(&["rev-parse", "--short", "HEAD"])
            .expect("the tests run from a git checkout of the workspace");
        let date = git(&["log", "-1", "--format=%cs", "HEAD"]).unwrap();
        assert_eq!(version.trim(), format!("{release}{commit} {date})"));
    })
}
