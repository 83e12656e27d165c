//! The commands through the real binary: what an administrator sees for good and
//! bad settings, codes, arguments and publishing, and `jobs watch` against a real
//! agent and nginx.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::agent::AgentProc;
use support::nginx::{Nginx, NginxOptions};
use support::{contentdist_bin, TestDir};

const MIB: u64 = 1024 * 1024;

fn run(args: &[&str]) -> Output {
    Command::new(contentdist_bin())
        .args(args)
        .env_remove("CONTENTDIST_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn config_show_decodes_masks_and_bad_settings_name_file_and_key() {
    let t = TestDir::new();
    let good = t.write("good.toml", "P2PEnabled = 0x61\nP2PSslSettings = 0x3\n");
    let o = run(&["config", "show", "--config", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("HTTPS + HTTP + SMB"), "{}", text(&o));

    let bad = t.write("bad.toml", "P2PHttpPort = 5080\nP2PEnabld = 0x20\n");
    let o = run(&["config", "show", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let msg = text(&o);
    assert!(
        msg.contains("bad.toml") && msg.contains("P2PEnabld") && msg.contains("P2PEnabled"),
        "{msg}"
    );

    let wrong = t.write("wrong.toml", "BlockSize = 1000\n");
    let msg = text(&run(&[
        "config",
        "show",
        "--config",
        wrong.to_str().unwrap(),
    ]));
    assert!(
        msg.contains("wrong.toml") && msg.contains("BlockSize"),
        "{msg}"
    );

    let missing = run(&[
        "config",
        "show",
        "--config",
        "/nonexistent/contentdist.toml",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing).contains("/nonexistent/contentdist.toml"));
}

#[test]
fn config_show_prints_a_settings_file_the_agent_reads_back_the_same() {
    let t = TestDir::new();
    let first = t.write(
        "first.toml",
        "P2PEnabled = 0x61\nOriginUrl = \"http://origin.example/c\"\nCacheDir = \"cache\"\n\
         NomadInhibitedSubnets = \"10.1.2.7/24\"\nMetricsAddress = \"\"\nCertIssuer = \"A, B\"\n",
    );
    let o = run(&["config", "show", "--config", first.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8(o.stdout).unwrap();
    // Valid TOML: no "(not set)" or other bare words; unset keys are comments.
    shown
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert!(!shown.contains("(not set)"), "{shown}");
    assert!(shown.contains("\n# HostName = "), "{shown}");
    // Written to a file, the agent's own check accepts it and shows the same values.
    let second = t.write("second.toml", &shown);
    let o = run(&["config", "show", "--config", second.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let again = String::from_utf8(o.stdout).unwrap();
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&shown));
    assert!(again.contains(&format!("CacheDir = \"{}\"", t.join("cache").display())));

    let o = run(&[
        "config",
        "show",
        "--json",
        "--config",
        first.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["file"], first.to_str().unwrap());
    assert_eq!(j["settings"]["P2PEnabled"]["value"], 0x61);
    assert_eq!(
        j["settings"]["NomadInhibitedSubnets"]["value"],
        "10.1.2.0/24"
    );
    assert_eq!(j["settings"]["HostName"]["value"], serde_json::Value::Null);
}

#[test]
fn explain_json_parses_for_one_code_and_for_the_catalogue() {
    let o = run(&["explain", "0x205D", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["name"], "ORIGIN_NOT_FOUND");
    assert_eq!(j["decimal"], 8285);
    assert_eq!(j["in_success_codes"], true);
    let o = run(&["explain", "--all", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(all.iter().any(|e| e["code"] == "0x2EFD"), "{all:?}");
    let o = run(&["explain", "0xBEEF", "--json"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_settings_path_that_is_no_regular_file_or_too_large_is_refused_at_once() {
    let t = TestDir::new();
    let fifo = t.join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let big = t.write("big.toml", format!("# {}\n", "x".repeat(2 << 20)));
    let cases = [
        ("/dev/zero".to_string(), "character device"),
        (fifo.display().to_string(), "FIFO"),
        (t.path().display().to_string(), "directory"),
        (big.display().to_string(), "too large"),
    ];
    for (path, says) in cases {
        // A FIFO without a writer or /dev/zero used to hang or fill memory: the
        // refusal must come at once, with the code and the file's name.
        let started = std::time::Instant::now();
        let o = run(&["config", "show", "--config", &path]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(o.status.code(), Some(1), "{path}: {}", text(&o));
        let msg = text(&o);
        assert!(msg.contains(&path) && msg.contains(says), "{msg}");
        assert!(msg.contains("0xCD05"), "{msg}");
    }
}

#[test]
fn explain_prints_meaning_fix_and_success_code_membership() {
    let o = run(&["explain", "0x205D"]);
    assert!(o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("ORIGIN_NOT_FOUND") && msg.contains("8285"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("successcodes"), "{msg}");
    let o = run(&["explain", "12029"]);
    assert!(text(&o).contains("CANNOT_CONNECT"), "{}", text(&o));
    let o = run(&["explain", "0xBEEF"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!text(&o).is_empty());
    let all = text(&run(&["explain", "--all"]));
    for name in [
        "CLIENT_CERT_MISSING",
        "SECURE_FAILURE",
        "PROTOCOL_MISMATCH",
        "DISK_FULL",
    ] {
        assert!(all.contains(name), "{name} missing from explain --all");
    }
}

#[test]
fn publish_refuses_bad_input_with_a_clear_message_and_writes_nothing() {
    let t = TestDir::new();
    let src = t.subdir("src");
    t.write("src/a.txt", "hello");
    let out = t.join("origin");
    let o = run(&[
        "publish",
        src.to_str().unwrap(),
        "--id",
        "../evil",
        "--version",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("../evil"), "{}", text(&o));
    assert!(!out.join("evil").exists());
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    let o = run(&[
        "publish",
        src.to_str().unwrap(),
        "--id",
        "PKG1",
        "--version",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("link"), "{}", text(&o));
    assert!(!out.join("PKG1/1").exists());
    std::fs::remove_file(src.join("link")).unwrap();
    let ok = run(&[
        "publish",
        src.to_str().unwrap(),
        "--id",
        "PKG1",
        "--version",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let again = run(&[
        "publish",
        src.to_str().unwrap(),
        "--id",
        "PKG1",
        "--version",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("force"), "{}", text(&again));
}

#[test]
fn get_without_an_agent_says_so_and_exits_4() {
    let t = TestDir::new();
    let cfg = t.write(
        "c.toml",
        format!("ControlSocket = \"{}\"\n", t.join("none.sock").display()),
    );
    let o = run(&[
        "get",
        "PKG1",
        "--version",
        "1",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("0xCD06") || text(&o).contains("AGENT_UNREACHABLE"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_get_arguments_are_usage_errors_found_without_asking_the_agent() {
    // No agent listens on the socket: asking it would exit 4 (unreachable).
    let t = TestDir::new();
    let cfg = t.write(
        "c.toml",
        format!("ControlSocket = \"{}\"\n", t.join("none.sock").display()),
    );
    let cfg = cfg.to_str().unwrap();
    let hash = "ab".repeat(32);
    let cases: [(&[&str], &str); 4] = [
        (
            &["get", "a/b", "--version", "1"],
            "invalid content id \"a/b\"",
        ),
        (
            &["get", "..", "--version", "1"],
            "invalid content id \"..\"",
        ),
        (
            &["get", "PKG1", "--version", "1", "--hash", "abc"],
            "'abc' is not a content hash",
        ),
        (
            &["get", "PKG1", "--version", "1", "--hash", &hash[1..]],
            "is not a content hash (64 hexadecimal digits",
        ),
    ];
    for (args, says) in cases {
        let o = run(&[args, &["--config", cfg]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("unreachable"), "{}", text(&o));
    }
    // A good hash gets as far as the (absent) agent.
    let o = run(&[
        "get",
        "PKG1",
        "--version",
        "1",
        "--hash",
        &hash,
        "--config",
        cfg,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
}

#[test]
fn lab_arguments_out_of_range_are_usage_errors_with_the_limits() {
    let cases: [(&[&str], &str); 4] = [
        (&["lab", "--agents", "0"], "1..=200"),
        (&["lab", "--agents", "201"], "1..=200"),
        (&["lab", "--size", "2T"], "at most 1T"),
        (&["lab", "--wan-rate", "1Tbit"], "is not a rate"),
    ];
    for (args, says) in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
}

#[test]
fn an_agent_whose_log_cannot_be_written_keeps_running() {
    let t = TestDir::new();
    let config = t.write(
        "c.toml",
        format!(
            "CacheDir = \"{}\"\nControlSocket = \"{}\"\nP2PEnabled = 0\nLogLevel = \"debug\"\n",
            t.join("cache").display(),
            t.join("c.sock").display()
        ),
    );
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut agent = Command::new(contentdist_bin())
        .args(["agent", "--config"])
        .arg(&config)
        .stdout(full())
        .stderr(full())
        .spawn()
        .unwrap();
    let answered = support::wait_until(std::time::Duration::from_secs(20), || {
        run(&["jobs", "--config", config.to_str().unwrap()])
            .status
            .success()
    });
    let alive = agent.try_wait().unwrap().is_none();
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(answered && alive, "the agent died: {status:?}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn jobs_watch_follows_a_job_whose_get_was_killed_to_its_end() {
    support::with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let src = t.subdir("src");
        support::random_file(src.join("image.bin"), 8 * MIB, 1);
        support::publish(&src, &t.subdir("origin"), "PKG00001", 3);
        // 8 MiB at 2 MiB/s: the job runs for about 4 s.
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            rate_limit_bytes_per_sec: Some(2 * MIB),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let dest = t.join("dest");
        let mut get = Command::new(contentdist_bin())
            .args(["get", "PKG00001", "--version", "3", "--dest"])
            .arg(&dest)
            .arg("--config")
            .arg(agent.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let job = || agent.jobs().first().cloned().unwrap_or_default();
        assert!(support::wait_until(Duration::from_secs(30), || {
            job()["bytes_verified"].as_u64().unwrap_or(0) > 0
        }));
        let id = job()["id"].as_u64().unwrap().to_string();

        // A refusal names the state as the JSON does, not as Rust does.
        let o = agent.cli(&["jobs", "resume", &id]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("job {id} is downloading, not paused")),
            "{}",
            text(&o)
        );

        get.kill().unwrap();
        get.wait().unwrap();
        assert_eq!(job()["state"], "downloading", "the job outlives its get");

        let o = agent.cli(&["jobs", "watch", &id]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with(&format!("done: PKG00001 3 into {}", dest.display())),
            "{out}"
        );
        // Not a terminal: plain progress lines with bytes.
        let progress = String::from_utf8_lossy(&o.stderr);
        assert!(
            progress
                .lines()
                .any(|l| l.starts_with("PKG00001 3: ") && l.contains(" MiB/8.0 MiB")),
            "{progress}"
        );
        assert_eq!(job()["state"], "done");
        support::assert_trees_equal(&src, &dest);

        // A finished job is reported at once, by `jobs watch` and `get --attach`.
        let started = Instant::now();
        let o = agent.cli(&["jobs", "watch", &id]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("done: "));
        let o = agent.cli(&["get", "--attach", &id, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["state"], "done");
        assert!(started.elapsed() < Duration::from_secs(5));
        let o = agent.cli(&["jobs", "cancel", &id]);
        assert!(
            text(&o).contains(&format!("job {id} has already finished (done)")),
            "{}",
            text(&o)
        );

        // A failed job: the status `get` gave (0x205D is in SuccessCodes: 3).
        let failed = agent.get("NOTPUBLISHED", 1, &t.join("none"), &[]);
        assert_eq!(failed.status, 3, "{failed:?}");
        let failed_id = failed.json["id"].to_string();
        let o = agent.cli(&["jobs", "watch", &failed_id]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(
            text(&o).contains("failed: 0x205D ORIGIN_NOT_FOUND"),
            "{}",
            text(&o)
        );

        // An id the agent does not know is a usage error.
        let o = agent.cli(&["jobs", "watch", "999"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("the agent has no job 999"),
            "{}",
            text(&o)
        );
    });
}
