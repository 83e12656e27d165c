//! SIGHUP reloads the settings of a running agent: a changed log level takes
//! effect, settings that need a restart are named and keep their old values, a
//! broken file changes nothing, and the job in progress completes. A settings file
//! that does not load at start exits with 78 (RestartPreventExitStatus).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::agent::AgentProc;
use support::nginx::{Nginx, NginxOptions};
use support::{contentdist_bin, publish, random_file, wait_until, with_timeout, TestDir};

const MIB: u64 = 1024 * 1024;

#[test]
fn sighup_reloads_what_it_can_and_the_job_in_progress_completes() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let src = t.subdir("src");
        random_file(src.join("image.bin"), 6 * MIB, 3);
        publish(&src, &t.subdir("origin"), "HUP00001", 1);
        // 2 MiB/s: the job runs for about 3 s.
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            rate_limit_bytes_per_sec: Some(2 * MIB),
            ..Default::default()
        })
        .unwrap();
        let mut agent = AgentProc::start(&t.join("agent"), &nginx.url(), "LogLevel = \"warn\"");
        let settings = std::fs::read_to_string(agent.config()).unwrap();
        let get = Command::new(contentdist_bin())
            .args(["get", "HUP00001", "--version", "1", "--json", "--config"])
            .arg(agent.config())
            .arg("--dest")
            .arg(t.join("dest"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(wait_until(Duration::from_secs(20), || {
            agent
                .jobs()
                .first()
                .is_some_and(|j| j["bytes_verified"].as_u64() > Some(0))
        }));
        let before = agent.log();
        assert!(
            !before.contains("range request answered"),
            "debug lines at warn"
        );
        // A live setting and one that needs a restart.
        let changed = settings.replace("LogLevel = \"warn\"", "LogLevel = \"debug\"")
            + "MaxCacheDays = 3\nP2PHttpPort = 6080\n";
        std::fs::write(agent.config(), &changed).unwrap();
        agent.signal(libc::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(10), || agent
                .log()
                .contains("settings reloaded")),
            "{}",
            agent.log()
        );
        let log = agent.log();
        let reloaded = log
            .lines()
            .find(|l| l.contains("settings reloaded"))
            .unwrap();
        assert!(
            reloaded.contains("applied=[\"LogLevel\", \"MaxCacheDays\"]"),
            "{reloaded}"
        );
        assert!(
            reloaded.contains("needs_restart=[\"P2PHttpPort\"]"),
            "{reloaded}"
        );
        assert!(log.contains("setting changed: needs a restart"), "{log}");
        // The new level is in force: `get`'s polling shows at debug now.
        assert!(wait_until(Duration::from_secs(10), || agent
            .log()
            .contains("control request")));
        // A file that does not load changes nothing.
        std::fs::write(agent.config(), format!("{changed}\nNoSuchSetting = 1\n")).unwrap();
        agent.signal(libc::SIGHUP);
        assert!(wait_until(Duration::from_secs(10), || agent
            .log()
            .contains("settings not reloaded")));
        assert!(agent.running(), "{}", agent.log());
        // The job completes, delivered in full (the test's timeout bounds the wait).
        let out = get.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", agent.log());
        assert_eq!(
            std::fs::read(t.join("dest/image.bin")).unwrap(),
            std::fs::read(src.join("image.bin")).unwrap()
        );
        assert!(agent.running());
    });
}

#[test]
fn a_settings_file_that_does_not_load_exits_78() {
    with_timeout(Duration::from_secs(30), || {
        let t = TestDir::new();
        let config = t.write("bad.toml", "P2PHttpPort = \"many\"\n");
        let out = Command::new(contentdist_bin())
            .arg("agent")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("P2PHttpPort"), "{stderr}");
    });
}
