//! Logs fit for the journal: no colour codes when standard error is not a
//! terminal, and `LogFormat = "json"` writes one JSON object per line.

mod support;

use std::time::Duration;

use support::agent::AgentProc;
use support::{wait_until, with_timeout, TestDir};

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
