//! Firewall exceptions for real: an agent in a network namespace keeps its own
//! nftables table (`inet contentdist`) for the ports it bound, puts it back when it
//! is deleted, lets a peer on the bridge through, and, when another table's input
//! chain drops that traffic anyway, says in `status` which ports to open there and
//! how. The host's own ruleset is never touched. Root only (CI runs as root);
//! elsewhere each test says it skipped.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use support::agent::AgentProc;
use support::netns::{skip_unless_root, NetLab, NetLabOptions};
use support::{wait_until, with_timeout, TestDir};

/// Nothing listens on the origin: these tests run no job.
const NO_ORIGIN: &str = "http://127.0.0.1:9";

/// `nft list ruleset` of the root namespace (empty when nft is missing).
fn host_ruleset() -> String {
    let out = Command::new("nft").args(["list", "ruleset"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `nft ARGS` inside `ns`.
fn nft(lab: &NetLab, ns: &str, args: &[&str]) -> Output {
    lab.command(ns, "nft").args(args).output().expect("run nft")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(agent: &AgentProc) -> Value {
    let out = agent.cli(&["status", "--json"]);
    serde_json::from_slice(&ok(out, "status --json").into_bytes()).expect("status is JSON")
}

/// The HTTP status code curl got from `url` in `ns`, `000` when nothing answered
/// within `secs`.
fn http_code(lab: &NetLab, ns: &str, url: &str, secs: u32) -> String {
    let out = lab
        .command(ns, "curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", &secs.to_string(), url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The rules of the agent's table, as `nft -j list table inet contentdist` in
/// `ns` shows them: (protocol, port, source prefix).
fn table_rules(lab: &NetLab, ns: &str) -> (Value, Vec<(String, u64, String)>) {
    let text = ok(
        nft(lab, ns, &["-j", "list", "table", "inet", "contentdist"]),
        "nft -j list table inet contentdist",
    );
    let listing: Value = serde_json::from_str(&text).unwrap();
    let items = listing["nftables"].as_array().unwrap();
    let chain = items
        .iter()
        .find_map(|i| i.get("chain"))
        .cloned()
        .expect("a chain");
    let rules = items
        .iter()
        .filter_map(|i| i.get("rule"))
        .map(|r| {
            let expr = r["expr"].as_array().unwrap();
            let dport = &expr[0]["match"];
            let saddr = &expr[1]["match"];
            assert_eq!(saddr["left"]["payload"]["field"], "saddr", "{r}");
            assert_eq!(expr[2], json!({"accept": null}), "{r}");
            let prefix = &saddr["right"]["prefix"];
            (
                dport["left"]["payload"]["protocol"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                dport["right"].as_u64().unwrap(),
                format!("{}/{}", prefix["addr"].as_str().unwrap(), prefix["len"]),
            )
        })
        .collect();
    (chain, rules)
}

#[test]
fn the_agent_keeps_its_table_restores_it_and_names_the_ports_a_foreign_drop_blocks() {
    if skip_unless_root() {
        return;
    }
    with_timeout(Duration::from_secs(180), || {
        let host_before = host_ruleset();
        {
            let t = TestDir::new();
            let lab = NetLab::create(NetLabOptions {
                hosts: 2,
                wan_rate_kbit: None,
            });
            let (h0, h1) = (lab.host_ns(0), lab.host_ns(1));
            // ManageFirewall is left at "auto" (root, nft, not loopback). P2PHttpPort
            // = 0: the table must hold the port the system chose.
            let extra = format!(
                "P2PEnabled = 0x28\nP2PHttpPort = 0\nP2P_Port = 1779\nElectionAddress = \"{}\"\n\
                 CertStoreDir = \"{}\"\nFirewallCheckSecs = 1",
                lab.broadcast(),
                t.join("store").display()
            );
            let mut agent = AgentProc::start_in(Some(h0), &t.join("h0"), NO_ORIGIN, &extra);
            let s = status(&agent);
            let port: u16 = s["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|l| {
                    let l = l.as_str()?.strip_prefix("http://0.0.0.0:")?;
                    l.strip_suffix("/content/")?.parse().ok()
                })
                .unwrap_or_else(|| panic!("no HTTP listener: {s}"));
            assert_ne!(port, 0);
            let o = lab.host_addr(0).octets();
            let subnet = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
            let fw = &s["firewall"];
            assert_eq!(fw["state"], "managed", "{s}");
            assert_eq!(fw["manage_firewall"], "auto", "{s}");
            assert_eq!(fw["table"], "inet contentdist", "{s}");
            assert_eq!(
                fw["ports"],
                json!([format!("{port}/tcp"), "1779/udp"]),
                "{s}"
            );
            assert_eq!(fw["sources"], json!([subnet]), "{s}");
            assert_eq!(fw["blocked_by"], json!([]), "{s}");

            // The table holds an input filter chain accepting the bound ports from
            // the LAN's subnet.
            let (chain, rules) = table_rules(&lab, h0);
            for (key, want) in [
                ("type", json!("filter")),
                ("hook", json!("input")),
                ("prio", json!(0)),
                ("policy", json!("accept")),
            ] {
                assert_eq!(chain[key], want, "{chain}");
            }
            assert_eq!(
                rules,
                [
                    ("tcp".to_string(), u64::from(port), subnet.clone()),
                    ("udp".to_string(), 1779, subnet.clone()),
                ]
            );
            let url = format!("http://{}:{port}/content/NOPE/1/have", lab.host_addr(0));
            let code = http_code(&lab, h1, &url, 10);
            assert!(
                ["401", "403", "404"].contains(&code.as_str()),
                "a peer on the bridge gets an HTTP answer, not {code}"
            );

            // Deleted by hand: back within the check period (1 s).
            ok(
                nft(&lab, h0, &["delete", "table", "inet", "contentdist"]),
                "delete the table",
            );
            let back = wait_until(Duration::from_secs(10), || {
                nft(&lab, h0, &["list", "table", "inet", "contentdist"])
                    .status
                    .success()
            });
            assert!(back, "the table did not come back:\n{}", agent.log());
            assert_eq!(table_rules(&lab, h0).1, rules);
            assert!(wait_until(Duration::from_secs(5), || agent
                .log()
                .contains("firewall table restored: it had been removed")));

            // Another table's input chain with policy drop: our accept does not get
            // the peer through.
            let foreign = "table inet hostfw {\n\
                 \tchain input {\n\
                 \t\ttype filter hook input priority filter; policy drop;\n\
                 \t\tiif \"lo\" accept\n\
                 \t\ttcp dport 22 accept\n\
                 \t}\n\
                 }\n";
            let file = t.write("hostfw.nft", foreign);
            ok(
                nft(&lab, h0, &["-f", file.to_str().unwrap()]),
                "load the foreign table",
            );
            assert_eq!(
                http_code(&lab, h1, &url, 3),
                "000",
                "the foreign drop let the peer through"
            );
            let mut s = Value::Null;
            let reported = wait_until(Duration::from_secs(10), || {
                s = status(&agent);
                s["firewall"]["blocked_by"]
                    .as_array()
                    .is_some_and(|b| !b.is_empty())
            });
            assert!(reported, "{s}\n{}", agent.log());
            let b = &s["firewall"]["blocked_by"][0];
            assert_eq!(b["chain"], "inet hostfw input", "{s}");
            assert_eq!(b["tool"], "nftables", "{s}");
            assert_eq!(b["reason"], "policy drop", "{s}");
            assert_eq!(
                b["ports"],
                json!([format!("{port}/tcp"), "1779/udp"]),
                "{s}"
            );
            let commands: Vec<String> = b["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                commands,
                [
                    format!("nft add rule inet hostfw input tcp dport {port} accept"),
                    "nft add rule inet hostfw input udp dport 1779 accept".to_string(),
                ]
            );
            assert!(
                s["firewall"]["summary"]
                    .as_str()
                    .unwrap()
                    .contains("but inet hostfw input (nftables, policy drop) drops"),
                "{s}"
            );
            assert!(agent
                .log()
                .contains("another firewall table drops the agent's traffic"));
            // The text view shows each command on a line of its own.
            let text = ok(agent.cli(&["status"]), "status");
            assert!(
                text.lines().any(|l| l.trim() == commands[0]),
                "status:\n{text}"
            );

            // The commands given do open the ports: the peer gets through again,
            // and the report clears.
            for c in &commands {
                let args: Vec<&str> = c.split_whitespace().skip(1).collect();
                ok(nft(&lab, h0, &args), c);
            }
            let code = http_code(&lab, h1, &url, 10);
            assert!(["401", "403", "404"].contains(&code.as_str()), "{code}");
            assert!(wait_until(Duration::from_secs(10), || status(&agent)
                ["firewall"]["blocked_by"]
                == json!([])));
            // The foreign table is as we left it: the agent did not touch it.
            let hostfw = ok(
                nft(&lab, h0, &["list", "table", "inet", "hostfw"]),
                "list hostfw",
            );
            assert_eq!(hostfw.matches("accept").count(), 4, "{hostfw}");

            // At shutdown the table stays (a restart must not close the ports).
            agent.stop();
            assert!(nft(&lab, h0, &["list", "table", "inet", "contentdist"])
                .status
                .success());
        }
        assert_eq!(
            host_ruleset(),
            host_before,
            "the root namespace's ruleset changed"
        );
    });
}

#[test]
fn manage_firewall_false_touches_nothing_and_status_says_not_managed() {
    if skip_unless_root() {
        return;
    }
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let lab = NetLab::create(NetLabOptions {
            hosts: 1,
            wan_rate_kbit: None,
        });
        let h0 = lab.host_ns(0);
        let extra = format!(
            "P2PEnabled = 0x28\nElectionAddress = \"{}\"\nCertStoreDir = \"{}\"\n\
             ManageFirewall = false\nFirewallCheckSecs = 1",
            lab.broadcast(),
            t.join("store").display()
        );
        let agent = AgentProc::start_in(Some(h0), &t.join("h0"), NO_ORIGIN, &extra);
        let s = status(&agent);
        let fw = &s["firewall"];
        assert_eq!(fw["state"], "not_managed", "{s}");
        assert_eq!(fw["manage_firewall"], "false", "{s}");
        assert_eq!(fw["ports"], json!(["5080/tcp", "1779/udp"]), "{s}");
        assert!(
            fw["summary"].as_str().unwrap().starts_with(
                "not managed (ManageFirewall = false): the firewall is not touched; peers need 5080/tcp, 1779/udp open"
            ),
            "{s}"
        );
        // The agent answers once started, and a table is applied during start: the
        // namespace has no ruleset at all. No check task runs to add one later.
        assert_eq!(ok(nft(&lab, h0, &["list", "ruleset"]), "list ruleset"), "");
        assert!(agent
            .log()
            .contains("firewall not managed (ManageFirewall = false)"));
    });
}
