//! What the Debian package relies on: `--version` names the commit built, and
//! `contentdist generate` writes the manual pages and shell completions the package
//! ships. `packaging/check-deb.sh` checks the package itself.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::{contentdist_bin, with_timeout, TestDir};

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

#[test]
fn generate_writes_a_page_per_command_and_completions_for_three_shells() {
    with_timeout(TIMEOUT, || {
        let t = TestDir::new();
        let man = t.path().join("man");
        let o = run(&["generate", "man", man.to_str().unwrap()]);
        assert!(o.status.success(), "{o:?}");
        for page in [
            "contentdist.1",
            "contentdist-agent.1",
            "contentdist-get.1",
            "contentdist-jobs-watch.1",
            "contentdist-cache-clean.1",
        ] {
            let text = std::fs::read_to_string(man.join(page)).unwrap();
            assert!(text.contains(".TH"), "{page}");
        }
        let top = std::fs::read_to_string(man.join("contentdist.1")).unwrap();
        // The exit statuses and the commit are in the main page.
        assert!(top.contains("Exit status"), "{top}");
        assert!(top.contains(&commit_of_binary()), "{top}");

        let completions = t.path().join("completions");
        let o = run(&["generate", "completions", completions.to_str().unwrap()]);
        assert!(o.status.success(), "{o:?}");
        for (file, marker) in [
            ("contentdist.bash", "complete -F _contentdist"),
            ("_contentdist", "#compdef contentdist"),
            ("contentdist.fish", "complete -c contentdist"),
        ] {
            let text = std::fs::read_to_string(completions.join(file)).unwrap();
            assert!(text.contains(marker), "{file}");
            assert!(text.contains("watch"), "{file}: subcommands completed");
            // `generate` is for packaging: no help, page or completion offers it.
            assert!(!text.contains("'generate'"), "{file}");
            assert!(!text.contains("contentdist,generate"), "{file}");
            assert!(!text.contains("\"generate\""), "{file}");
        }
        assert!(!stdout(&run(&["--help"])).contains("generate"));
        assert!(!std::fs::exists(man.join("contentdist-generate.1")).unwrap());
    })
}

/// The commit `--version` names (`abc1234` in `contentdist 0.1.0 (abc1234 ...)`).
fn commit_of_binary() -> String {
    let line = stdout(&run(&["--version"]));
    let (_, commit) = line.split_once('(').unwrap();
    commit.split([' ', ')']).next().unwrap().to_owned()
}
