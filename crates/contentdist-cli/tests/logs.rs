//! Logs fit for the journal: no colour codes when standard error is not a
//! terminal, and `LogFormat = "json"` writes one JSON object per line.

mod support;

use std::time::Duration;

use support::agent::AgentProc;
use support::nginx::{Nginx, NginxOptions};
use support::{publish, random_file, wait_until, with_timeout, TestDir};

/// An origin nobody answers on: starting needs none.
const NO_ORIGIN: &str = "http://127.0.0.1:9";

#[test]
fn logs_to_a_file_have_no_colour_codes_and_json_lines_parse() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        // The harness sends the agent's standard error to a file, as the journal
        // takes it from a pipe.
        let text = AgentProc::start(&t.join("text"), NO_ORIGIN, "");
        assert!(wait_until(Duration::from_secs(20), || text
            .log()
            .contains("agent started")));
        let log = text.log();
        assert!(!log.contains('\x1b'), "escape codes in:\n{log}");

        let json = AgentProc::start(&t.join("json"), NO_ORIGIN, "LogFormat = \"json\"");
        assert!(wait_until(Duration::from_secs(20), || json
            .log()
            .contains("agent started")));
        let log = json.log();
        let mut lines = 0;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            assert!(v["fields"]["message"].is_string(), "{line}");
            lines += 1;
        }
        assert!(lines >= 2, "{log}");
        assert!(log.contains(r#""message":"agent started""#), "{log}");
        assert!(!log.contains('\x1b'), "escape codes in:\n{log}");
    });
}

/// The JSON lines of `log` that parse.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn job_lines_carry_the_job_and_content_and_end_with_final_stats() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let src = t.subdir("src");
        random_file(src.join("image.bin"), 3 << 20, 7);
        publish(&src, &t.subdir("origin"), "LOGS0001", 2);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(
            &t.join("agent"),
            &nginx.url(),
            // (The harness runs its agents at LogLevel debug.)
            "LogFormat = \"json\"",
        );
        let r = agent.get("LOGS0001", 2, &t.join("dest"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", agent.log());
        let id = r.json["id"].as_u64().unwrap();
        assert!(wait_until(Duration::from_secs(10), || agent
            .log()
            .contains("FinalStats")));
        let lines = json_lines(&agent.log());
        let in_job = |v: &serde_json::Value| {
            v["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == "job" && s["id"] == id && s["content"] == "LOGS0001/2")
            })
        };
        let message =
            |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
        // The job's record: one line, with its fields.
        let stats: Vec<_> = lines
            .iter()
            .filter(|v| message(v) == "FinalStats")
            .collect();
        assert_eq!(stats.len(), 1, "{}", agent.log());
        let f = &stats[0]["fields"];
        assert_eq!(f["job"], id);
        assert_eq!(f["content"], "LOGS0001/2");
        assert_eq!(
            (f["outcome"].as_str(), f["code"].as_str()),
            (Some("done"), Some("0x0"))
        );
        assert_eq!(f["from_origin"].as_u64(), Some(3 << 20), "{f}");
        assert_eq!(f["from_peers_http"].as_u64(), Some(0), "{f}");
        assert!(
            f["duration_ms"].as_u64().is_some() && f["master"] == "none",
            "{f}"
        );
        // Kept in the job list too.
        let job = &agent.jobs()[0];
        assert_eq!(
            job["final_stats"]["bytes_from_origin"].as_u64(),
            Some(3 << 20)
        );
        // Every line the job wrote carries its id and content: the range
        // requests (debug), their ends, the record.
        let requests: Vec<_> = lines
            .iter()
            .filter(|v| message(v) == "range request answered")
            .collect();
        assert!(
            !requests.is_empty(),
            "no request lines at debug:\n{}",
            agent.log()
        );
        for v in requests.iter().chain(stats.iter()) {
            assert!(in_job(v), "not in the job's span: {v}");
        }
        let r0 = &requests[0]["fields"];
        assert_eq!(r0["remote"], "origin");
        assert!(
            r0["range"].as_str().is_some_and(|r| r.contains('-')),
            "{r0}"
        );
        assert_eq!(r0["status"], 206, "{r0}");
        assert!(lines.iter().any(|v| message(v) == "range transfer ended"
            && in_job(v)
            && v["fields"]["result"] == "done"));
        // Who asked: the control socket's caller, by uid.
        let uid = nix_uid();
        let submit = lines
            .iter()
            .find(|v| message(v) == "job submit requested")
            .unwrap_or_else(|| panic!("no submit line:\n{}", agent.log()));
        assert_eq!(submit["fields"]["uid"].as_u64(), Some(uid), "{submit}");
        assert_eq!(submit["fields"]["job"], id, "{submit}");
        assert_eq!(submit["fields"]["content"], "LOGS0001/2", "{submit}");
        // And a cancel of a finished job: refused (409), still logged with who asked.
        let out = agent.cli(&["jobs", "cancel", &id.to_string()]);
        assert!(!out.status.success());
        assert!(wait_until(Duration::from_secs(10), || agent
            .log()
            .contains("job cancel requested")));
        let cancel = json_lines(&agent.log())
            .into_iter()
            .find(|v| message(v) == "job cancel requested")
            .unwrap();
        assert_eq!(cancel["fields"]["uid"].as_u64(), Some(uid), "{cancel}");
        assert_eq!(cancel["fields"]["status"], 409, "{cancel}");
    });
}

/// This process's uid (`id -u`), as the agent sees its callers.
fn nix_uid() -> u64 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn an_agent_left_at_the_products_default_copies_over_smb_without_a_warning() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let port = support::free_udp_port();
        let extra = format!("P2PEnabled = 0x9\nP2P_Port = {port}\nListenAddress = \"127.0.0.1\"");
        let smb_only = AgentProc::start(&t.join("smb"), NO_ORIGIN, &extra);
        assert!(wait_until(Duration::from_secs(20), || smb_only
            .log()
            .contains("agent started")));
        // SMB is implemented: no "copies from no peer" warning any more; its smbd
        // serves, or the log says once that samba is missing.
        let warning = "enables no peer-copy protocol this agent implements";
        assert!(!smb_only.log().contains(warning), "{}", smb_only.log());
        assert!(
            wait_until(Duration::from_secs(20), || {
                let log = smb_only.log();
                log.contains("SMB share serving the cache")
                    || log.contains("stopped serving")
                    || log.contains("is not installed")
            }),
            "{}",
            smb_only.log()
        );
        let extra = format!("P2PEnabled = 0x69\nP2P_Port = {port}\nListenAddress = \"127.0.0.2\"\nP2PHttpPort = 0\nP2PHttpsPort = 0");
        let working = AgentProc::start(&t.join("http"), NO_ORIGIN, &extra);
        assert!(wait_until(Duration::from_secs(20), || working
            .log()
            .contains("agent started")));
        assert!(!working.log().contains(warning), "{}", working.log());
    });
}
