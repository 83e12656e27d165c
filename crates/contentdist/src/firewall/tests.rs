//! The firewall table: the ruleset for each P2PEnabled/scope combination, the
//! foreign-ruleset detection on captured `nft -j list ruleset` samples
//! (`testdata/`), the keeper's decisions against a fake nft, and (as root) the real
//! batch applied and restored inside a network namespace.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{FirewallScope, P2PEnabled};

fn net(s: &str) -> Network {
    let (a, p) = s.split_once('/').unwrap();
    Network::new(a.parse().unwrap(), p.parse().unwrap())
}

fn bound() -> BoundPorts {
    BoundPorts {
        http: Some(5080),
        https: Some(5443),
        smb: None,
        election: Some(1779),
    }
}

fn settings(p2p: u32, scope: FirewallScope) -> RulesetSettings {
    RulesetSettings {
        p2p_enabled: P2PEnabled(p2p),
        scope,
    }
}

fn ports(r: &Ruleset) -> Vec<String> {
    r.ports.iter().map(ToString::to_string).collect()
}

/// The batch's rules, each as (dport match, source match or Null).
fn rules(batch: &str) -> Vec<(Value, Value)> {
    let v: Value = serde_json::from_str(batch).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["add"].get("rule"))
        .map(|r| {
            let expr = r["expr"].as_array().unwrap();
            assert_eq!(expr.last().unwrap(), &json!({"accept": null}), "{r}");
            let source = if expr.len() == 3 {
                expr[1]["match"].clone()
            } else {
                Value::Null
            };
            (expr[0]["match"].clone(), source)
        })
        .collect()
}

#[test]
fn each_protocol_bit_opens_its_bound_port_and_elections_are_udp() {
    let lan = [net("10.1.2.0/24")];
    let cases: &[(u32, &[&str])] = &[
        // SMB only (the default 0x9): elections run, SMB has no port yet.
        (0x09, &["1779/udp"]),
        (0x28, &["5080/tcp", "1779/udp"]),
        (0x48, &["5443/tcp", "1779/udp"]),
        (0x68, &["5080/tcp", "5443/tcp", "1779/udp"]),
        (0x6F, &["5080/tcp", "5443/tcp", "1779/udp"]),
    ];
    for (p2p, want) in cases {
        for scope in [FirewallScope::Subnet, FirewallScope::Any] {
            let r = plan(&settings(*p2p, scope), &bound(), &lan);
            assert_eq!(ports(&r), *want, "P2PEnabled {p2p:#x} {scope}");
            let expected_sources = match scope {
                FirewallScope::Subnet => Sources::Networks(lan.to_vec()),
                FirewallScope::Any => Sources::Any,
            };
            assert_eq!(r.sources, expected_sources);
        }
    }
    // A bit set without a server bound opens nothing; a bound server whose bit is
    // off (cannot happen in an agent) neither.
    let r = plan(
        &settings(0x68, FirewallScope::Any),
        &BoundPorts {
            https: None,
            ..bound()
        },
        &[],
    );
    assert_eq!(ports(&r), ["5080/tcp", "1779/udp"]);
    let r = plan(&settings(0x20, FirewallScope::Any), &bound(), &[]);
    assert_eq!(ports(&r), ["5080/tcp", "1779/udp"]);
    // The SMB hook: once smbd listens, 0x01 opens its port.
    let with_smb = BoundPorts {
        smb: Some(445),
        ..bound()
    };
    let r = plan(&settings(0x69, FirewallScope::Any), &with_smb, &[]);
    assert_eq!(ports(&r), ["445/tcp", "5080/tcp", "5443/tcp", "1779/udp"]);
    let r = plan(&settings(0x68, FirewallScope::Any), &with_smb, &[]);
    assert_eq!(ports(&r), ["5080/tcp", "5443/tcp", "1779/udp"]);
    // No election socket (peer copy off): nothing at all.
    let r = plan(
        &settings(0x0, FirewallScope::Any),
        &BoundPorts::default(),
        &[],
    );
    assert!(r.ports.is_empty());
}

#[test]
fn the_ports_really_bound_are_opened_not_the_settings() {
    // P2PHttpPort = 0: the system chose 40123.
    let b = BoundPorts {
        http: Some(40123),
        https: None,
        smb: None,
        election: Some(11779),
    };
    let r = plan(&settings(0x28, FirewallScope::Any), &b, &[]);
    assert_eq!(ports(&r), ["40123/tcp", "11779/udp"]);
    let addrs = crate::control::AgentAddrs {
        peer_http: Some("0.0.0.0:40123".parse().unwrap()),
        election: Some("0.0.0.0:11779".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(BoundPorts::from_addrs(&addrs), b);
}

#[test]
fn the_batch_replaces_only_the_agents_table_with_an_input_filter_chain_that_accepts() {
    let r = plan(
        &settings(0x68, FirewallScope::Subnet),
        &bound(),
        &[net("10.1.2.0/24")],
    );
    let batch: Value = serde_json::from_str(&r.batch()).unwrap();
    let items = batch["nftables"].as_array().unwrap();
    assert_eq!(items[0], json!({"metainfo": {"json_schema_version": 1}}));
    let ours = json!({"family": "inet", "name": "contentdist"});
    assert_eq!(items[1], json!({"add": {"table": ours}}));
    assert_eq!(items[2], json!({"delete": {"table": ours}}));
    assert_eq!(items[3], json!({"add": {"table": ours}}));
    assert_eq!(
        items[4],
        json!({"add": {"chain": {"family": "inet", "table": "contentdist", "name": "input",
            "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}})
    );
    // Every object names the agent's table and nothing else.
    for item in &items[1..] {
        let (verb, obj) = item.as_object().unwrap().iter().next().unwrap();
        assert!(verb == "add" || verb == "delete", "{item}");
        let (_, o) = obj.as_object().unwrap().iter().next().unwrap();
        assert_eq!(o["family"], "inet", "{item}");
        let table = o.get("table").unwrap_or(&o["name"]);
        assert_eq!(table, "contentdist", "{item}");
    }
    let prefix = json!({"prefix": {"addr": "10.1.2.0", "len": 24}});
    let saddr = |right: &Value| json!({"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": right});
    let dport = |proto: &str, port: u16| json!({"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": port});
    assert_eq!(
        rules(&r.batch()),
        vec![
            (dport("tcp", 5080), saddr(&prefix)),
            (dport("tcp", 5443), saddr(&prefix)),
            (dport("udp", 1779), saddr(&prefix)),
        ]
    );
}

#[test]
fn scope_shapes_the_source_match_per_family() {
    let s = settings(0x28, FirewallScope::Subnet);
    // Two IPv4 networks: one rule per port, with a set.
    let r = plan(&s, &bound(), &[net("10.9.0.0/16"), net("10.1.2.0/24")]);
    let rs = rules(&r.batch());
    assert_eq!(rs.len(), 2);
    assert_eq!(
        rs[0].1["right"],
        json!({"set": [{"prefix": {"addr": "10.1.2.0", "len": 24}}, {"prefix": {"addr": "10.9.0.0", "len": 16}}]})
    );
    // IPv4 and IPv6: one rule per port and family.
    let r = plan(&s, &bound(), &[net("10.1.2.0/24"), net("fd00:1::/64")]);
    let rs = rules(&r.batch());
    assert_eq!(rs.len(), 4);
    assert_eq!(rs[1].1["left"]["payload"]["protocol"], "ip6");
    assert_eq!(
        rs[1].1["right"],
        json!({"prefix": {"addr": "fd00:1::", "len": 64}})
    );
    // Any source: no source match at all.
    let r = plan(
        &settings(0x28, FirewallScope::Any),
        &bound(),
        &[net("10.1.2.0/24")],
    );
    let rs = rules(&r.batch());
    assert_eq!(rs.len(), 2);
    assert!(rs.iter().all(|(_, s)| s.is_null()));
    // Subnet scope and no network found: the chain accepts nothing.
    let r = plan(&s, &bound(), &[]);
    assert_eq!(r.sources, Sources::Networks(vec![]));
    assert!(rules(&r.batch()).is_empty());
    // Host bits are cleared.
    assert_eq!(net("10.1.2.77/24").to_string(), "10.1.2.0/24");
    assert!(net("10.0.0.0/8").covers(&net("10.1.2.0/24")));
    assert!(!net("10.1.2.0/24").covers(&net("10.0.0.0/8")));
}

// ---- foreign rulesets ----

const UFW: &str = include_str!("testdata/ufw.json");
const FIREWALLD: &str = include_str!("testdata/firewalld.json");
const DEFAULT_DROP: &str = include_str!("testdata/default-drop.json");
const FINAL_REJECT: &str = include_str!("testdata/final-reject.json");
const HARMLESS: &str = include_str!("testdata/harmless.json");

const V4: Families = Families {
    v4: true,
    v6: false,
};

fn agent_ports() -> Vec<OpenPort> {
    plan(&settings(0x68, FirewallScope::Any), &bound(), &[]).ports
}

fn lan() -> Sources {
    Sources::Networks(vec![net("10.77.1.0/24")])
}

fn blocking(json: &str, families: Families, sources: &Sources) -> Vec<ForeignBlock> {
    Listing::parse(json)
        .unwrap()
        .blocking(&agent_ports(), families, sources)
}

#[test]
fn ufw_default_drop_is_found_with_the_ports_it_does_not_allow_yet() {
    let b = blocking(UFW, V4, &lan());
    assert_eq!(
        b,
        vec![ForeignBlock {
            tool: "ufw".into(),
            chain: "ip filter INPUT".into(),
            reason: "policy drop".into(),
            // 5443/tcp was allowed with `ufw allow 5443/tcp` (in ufw-user-input).
            ports: vec!["5080/tcp".into(), "1779/udp".into()],
            commands: vec!["ufw allow 5080/tcp".into(), "ufw allow 1779/udp".into()],
        }]
    );
    // With IPv6 traffic the ip6 table counts too.
    let both = Families { v4: true, v6: true };
    let b = blocking(UFW, both, &Sources::Any);
    let chains: Vec<&str> = b.iter().map(|b| b.chain.as_str()).collect();
    assert_eq!(chains, ["ip filter INPUT", "ip6 filter INPUT"]);
    assert!(b.iter().all(|b| b.tool == "ufw"));
}

#[test]
fn firewalld_final_reject_is_found_and_its_commands_given() {
    let b = blocking(FIREWALLD, V4, &lan());
    assert_eq!(
        b,
        vec![ForeignBlock {
            tool: "firewalld".into(),
            chain: "inet firewalld filter_INPUT".into(),
            reason: "ends with reject".into(),
            // 5443/tcp is allowed in filter_IN_public_allow, reached through a jump
            // and a goto.
            ports: vec!["5080/tcp".into(), "1779/udp".into()],
            commands: vec![
                "firewall-cmd --permanent --add-port=5080/tcp".into(),
                "firewall-cmd --permanent --add-port=1779/udp".into(),
                "firewall-cmd --reload".into(),
            ],
        }]
    );
}

#[test]
fn a_hand_written_default_drop_chain_gets_nft_add_rule_hints() {
    let b = blocking(DEFAULT_DROP, V4, &lan());
    assert_eq!(
        b,
        vec![ForeignBlock {
            tool: "nftables".into(),
            chain: "inet filter input".into(),
            reason: "policy drop".into(),
            // UDP { 53, 1779 } is accepted already.
            ports: vec!["5080/tcp".into(), "5443/tcp".into()],
            commands: vec![
                "nft add rule inet filter input tcp dport 5080 accept".into(),
                "nft add rule inet filter input tcp dport 5443 accept".into(),
            ],
        }]
    );
}

#[test]
fn a_final_reject_needs_an_inserted_rule_and_a_source_limit_must_cover_the_subnet() {
    let b = blocking(FINAL_REJECT, V4, &lan());
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].chain, "ip hostfw INPUT");
    assert_eq!(b[0].reason, "ends with reject");
    // TCP 5000-5100 is accepted from 192.0.2.0/24 only, which 10.77.1.0/24 is not.
    assert_eq!(b[0].ports, ["5080/tcp", "5443/tcp", "1779/udp"]);
    assert_eq!(
        b[0].commands[0],
        "nft insert rule ip hostfw INPUT tcp dport 5080 accept"
    );
    // Peers inside 192.0.2.0/24 do get through on 5080 (not on 5443, outside the range).
    let inside = Sources::Networks(vec![net("192.0.2.0/25")]);
    assert_eq!(
        blocking(FINAL_REJECT, V4, &inside)[0].ports,
        ["5443/tcp", "1779/udp"]
    );
    // From any source, a source-limited accept does not count.
    assert_eq!(
        blocking(FINAL_REJECT, V4, &Sources::Any)[0].ports,
        ["5080/tcp", "5443/tcp", "1779/udp"]
    );
}

#[test]
fn harmless_tables_are_not_reported() {
    // A forward chain with policy drop, nat chains, an IPv6-only default drop, an
    // input chain whose last drop is conditional, and the agent's own table.
    assert_eq!(blocking(HARMLESS, V4, &lan()), vec![]);
    // The IPv6-only table does drop IPv6 traffic.
    let b = blocking(HARMLESS, Families { v4: true, v6: true }, &lan());
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].chain, "ip6 v6only input");
    // No foreign table at all: nothing, and no table of ours either.
    let empty = r#"{"nftables": [{"metainfo": {"json_schema_version": 1}}]}"#;
    assert_eq!(blocking(empty, V4, &lan()), vec![]);
    assert!(Listing::parse(empty).unwrap().ours().is_none());
}

#[test]
fn the_agents_own_table_is_read_back_without_handles() {
    let l = Listing::parse(HARMLESS).unwrap();
    let ours = l.ours().expect("the sample holds the agent's table");
    // The table, its chain and its two rules.
    assert_eq!(ours.len(), 4, "{ours:?}");
    assert!(!Value::Array(ours.to_vec()).to_string().contains("handle"));
    assert!(Listing::parse(FIREWALLD).unwrap().ours().is_none());
    // The same table under other handles is the same table.
    let renumbered = HARMLESS.replace("\"handle\": 1,", "\"handle\": 91,");
    assert_eq!(Listing::parse(&renumbered).unwrap().ours(), Some(ours));
}

#[test]
fn an_unreadable_listing_is_an_error_with_the_firewall_code() {
    let e = Listing::parse("nft: command not found").unwrap_err();
    assert_eq!(e.code(), crate::codes::Code::FIREWALL_FAILED);
    assert_eq!(e.code().to_string(), "0xCD0E");
    // An object this code does not know is skipped, not fatal.
    let odd = r#"{"nftables": [{"flowtable": {"family": "inet", "name": "f"}}, {"chain": "?"}]}"#;
    assert!(Listing::parse(odd).is_ok());
}

// ---- the keeper, against a fake nft ----

/// A fake nft: holds a ruleset as a list of objects; a batch replaces the agent's
/// table with the objects it adds (as nft would, handles added).
#[derive(Debug, Default)]
struct FakeNft {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    /// Objects of other tables, listed first.
    foreign: Vec<Value>,
    /// The agent's table, as the last batch left it (or as a test put it).
    ours: Vec<Value>,
    batches: usize,
    fail: Option<String>,
    unavailable: Option<String>,
}

impl FakeNft {
    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

impl Nft for FakeNft {
    fn run(
        &self,
        step: &'static str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, FirewallError> {
        let mut s = self.state.lock().unwrap();
        if let Some(stderr) = &s.fail {
            return Err(FirewallError::Refused {
                step,
                command: format!("nft {}", args.join(" ")),
                status: "exit status: 1".into(),
                stderr: stderr.clone(),
            });
        }
        match args {
            ["-j", "list", "ruleset"] => {
                let mut all = vec![json!({"metainfo": {"json_schema_version": 1}})];
                all.extend(s.foreign.iter().cloned());
                all.extend(s.ours.iter().cloned());
                Ok(json!({ "nftables": all }).to_string())
            }
            ["-j", "-f", "-"] => {
                let batch: Value = serde_json::from_str(input.unwrap()).unwrap();
                let items = batch["nftables"].as_array().unwrap();
                let last_delete = items.iter().rposition(|i| i.get("delete").is_some());
                let mut ours = Vec::new();
                for (n, item) in items.iter().enumerate().skip(last_delete.unwrap_or(0)) {
                    if let Some(Value::Object(add)) = item.get("add") {
                        for (kind, obj) in add {
                            let mut obj = obj.clone();
                            obj["handle"] = json!(n);
                            ours.push(json!({ kind.clone(): obj }));
                        }
                    }
                }
                s.ours = ours;
                s.batches += 1;
                Ok(String::new())
            }
            other => panic!("unexpected nft {other:?}"),
        }
    }

    fn unavailable(&self) -> Option<String> {
        self.state.lock().unwrap().unavailable.clone()
    }
}

struct Rig {
    nft: Arc<FakeNft>,
    networks: Arc<Mutex<Vec<Network>>>,
    tasks: crate::tasks::Tasks,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            nft: Arc::new(FakeNft::default()),
            networks: Arc::new(Mutex::new(vec![net("10.77.1.0/24")])),
            tasks: crate::tasks::Tasks::new(CancellationToken::new()),
        }
    }

    fn options(&self, mode: FirewallMode, addr: &str) -> FirewallOptions {
        let networks = Arc::clone(&self.networks);
        let addr: IpAddr = addr.parse().unwrap();
        FirewallOptions {
            mode,
            settings: settings(0x28, FirewallScope::Subnet),
            bound: bound(),
            families: V4,
            check_period: None,
            local: Arc::new(move || LocalNetworks {
                addr,
                networks: networks.lock().unwrap().clone(),
            }),
            nft: Arc::clone(&self.nft) as Arc<dyn Nft>,
        }
    }

    fn manager(&self) -> Manager {
        Manager::new(self.options(FirewallMode::On, "10.77.1.2"))
    }
}

#[tokio::test]
async fn not_managed_settings_touch_nothing_and_say_why() {
    let rig = Rig::new();
    let s = start(rig.options(FirewallMode::Off, "10.77.1.2"), &rig.tasks)
        .await
        .status();
    assert_eq!(s.state, FirewallState::NotManaged);
    assert!(
        s.summary
            .starts_with("not managed (ManageFirewall = false)"),
        "{}",
        s.summary
    );
    assert!(
        s.summary.contains("peers need 5080/tcp, 1779/udp open"),
        "{}",
        s.summary
    );
    assert_eq!(s.ports, ["5080/tcp", "1779/udp"]);
    assert!(s.table.is_none());
    // auto on loopback, and auto when nft cannot be used: not managed either.
    let s = start(rig.options(FirewallMode::Auto, "127.0.0.1"), &rig.tasks)
        .await
        .status();
    assert_eq!(s.state, FirewallState::NotManaged);
    assert!(s.summary.contains("127.0.0.1 is loopback"), "{}", s.summary);
    rig.nft
        .with(|n| n.unavailable = Some("nft is not installed".into()));
    let s = start(rig.options(FirewallMode::Auto, "10.77.1.2"), &rig.tasks)
        .await
        .status();
    assert_eq!(s.state, FirewallState::NotManaged);
    assert!(s.summary.contains("nft is not installed"), "{}", s.summary);
    // true, and nft cannot be used: unavailable, said plainly.
    let s = start(rig.options(FirewallMode::On, "10.77.1.2"), &rig.tasks)
        .await
        .status();
    assert_eq!(s.state, FirewallState::Unavailable);
    assert!(
        s.summary
            .starts_with("unavailable: ManageFirewall = true, but nft is not installed"),
        "{}",
        s.summary
    );
    assert_eq!(rig.nft.with(|n| n.batches), 0);
    assert!(rig.tasks.live().is_empty());
}

#[tokio::test]
async fn start_applies_the_table_and_the_check_task_stops_with_the_agent() {
    let rig = Rig::new();
    let mut o = rig.options(FirewallMode::Auto, "10.77.1.2");
    o.check_period = Some(Duration::from_millis(20));
    let h = start(o, &rig.tasks).await;
    let s = h.status();
    assert_eq!(s.state, FirewallState::Managed, "{s:?}");
    assert_eq!(s.table.as_deref(), Some("inet contentdist"));
    assert_eq!(s.ports, ["5080/tcp", "1779/udp"]);
    assert_eq!(s.sources, ["10.77.1.0/24"]);
    assert_eq!(
        s.summary,
        "managed: table inet contentdist accepts 5080/tcp, 1779/udp from 10.77.1.0/24"
    );
    assert_eq!(rig.nft.with(|n| n.batches), 1);
    assert_eq!(rig.tasks.live(), ["firewall check"]);
    // Removed by hand: the task puts it back.
    rig.nft.with(|n| n.ours.clear());
    crate::test_util::wait_until(Duration::from_secs(10), "the table restored", || async {
        rig.nft.with(|n| !n.ours.is_empty())
    })
    .await;
    rig.tasks.shutdown();
    rig.tasks.join(Duration::from_secs(5)).await.unwrap();
}

#[test]
fn checks_restore_a_removed_or_changed_table_and_leave_a_good_one_alone() {
    let rig = Rig::new();
    let mut m = rig.manager();
    m.check(true);
    assert_eq!(rig.nft.with(|n| n.batches), 1);
    // Unchanged: nothing applied.
    let s = m.check(false);
    assert_eq!(s.state, FirewallState::Managed);
    assert_eq!(rig.nft.with(|n| n.batches), 1);
    // Removed: applied again.
    rig.nft.with(|n| n.ours.clear());
    m.check(false);
    assert_eq!(rig.nft.with(|n| (n.batches, n.ours.len())), (2, 4));
    // Changed (a rule's port edited by hand): applied again.
    rig.nft.with(|n| {
        let rule = n.ours.iter_mut().find(|o| o.get("rule").is_some()).unwrap();
        rule["rule"]["expr"][0]["match"]["right"] = json!(22);
    });
    m.check(false);
    assert_eq!(rig.nft.with(|n| n.batches), 3);
    assert!(!rig
        .nft
        .with(|n| n.ours.iter().any(|o| o.to_string().contains(":22}"))));
    // The subnet changed (DHCP): updated.
    *rig.networks.lock().unwrap() = vec![net("10.88.0.0/16")];
    let s = m.check(false);
    assert_eq!(rig.nft.with(|n| n.batches), 4);
    assert_eq!(s.sources, ["10.88.0.0/16"]);
    m.check(false);
    assert_eq!(rig.nft.with(|n| n.batches), 4);
    // At a start the table is applied even when it is already right.
    let mut again = rig.manager();
    again.check(true);
    assert_eq!(rig.nft.with(|n| n.batches), 5);
}

#[test]
fn a_foreign_drop_and_an_nft_failure_show_in_the_status() {
    let rig = Rig::new();
    let mut m = rig.manager();
    let foreign: Value = serde_json::from_str(DEFAULT_DROP).unwrap();
    rig.nft.with(|n| {
        n.foreign = foreign["nftables"].as_array().unwrap()[1..].to_vec();
    });
    let s = m.check(true);
    assert_eq!(s.state, FirewallState::Managed);
    assert_eq!(s.blocked_by.len(), 1, "{s:?}");
    assert_eq!(s.blocked_by[0].chain, "inet filter input");
    assert_eq!(s.blocked_by[0].ports, ["5080/tcp"]);
    assert!(
        s.summary
            .contains("but inet filter input (nftables, policy drop) drops 5080/tcp"),
        "{}",
        s.summary
    );
    // nft refuses: failed, with the code and nft's message; the last known
    // foreign drops are kept.
    rig.nft
        .with(|n| n.fail = Some("Error: Could not process rule: Operation not permitted".into()));
    let s = m.check(false);
    assert_eq!(s.state, FirewallState::Failed);
    let e = s.error.unwrap();
    assert!(
        e.starts_with("0xCD0E FIREWALL_FAILED: read the ruleset"),
        "{e}"
    );
    assert!(e.contains("Operation not permitted"), "{e}");
    assert_eq!(s.blocked_by.len(), 1);
    // nft works again, the foreign table is gone: managed, nothing blocked.
    rig.nft.with(|n| {
        n.fail = None;
        n.foreign.clear();
    });
    let s = m.check(false);
    assert_eq!(s.state, FirewallState::Managed);
    assert!(s.blocked_by.is_empty() && s.error.is_none(), "{s:?}");
}

#[test]
fn nothing_to_open_removes_the_agents_table() {
    let rig = Rig::new();
    let mut m = rig.manager();
    m.check(true);
    assert!(rig.nft.with(|n| !n.ours.is_empty()));
    // Peer copy off at the next start: no port, the old table goes.
    let mut o = rig.options(FirewallMode::On, "10.77.1.2");
    o.bound = BoundPorts::default();
    let mut m = Manager::new(o);
    let s = m.check(true);
    assert!(rig.nft.with(|n| n.ours.is_empty()));
    assert!(s.summary.contains("no port to open"), "{}", s.summary);
    let before = rig.nft.with(|n| n.batches);
    m.check(false);
    assert_eq!(rig.nft.with(|n| n.batches), before, "nothing more to do");
}

// ---- the real nft, in a network namespace (root only) ----

/// A network namespace of this test, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("cdfw-{}-{tag}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    fn nft(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn host_ruleset() -> String {
    std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn the_real_batch_applies_and_is_restored_inside_a_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root (network namespaces and nft)");
        return;
    }
    let host_before = host_ruleset();
    let ns = Netns::new("batch");
    let nft = Arc::new(NftCommand::in_netns(&ns.0));
    assert_eq!(
        nft.unavailable(),
        None,
        "nft must be installed (package nftables)"
    );
    let mut o = Rig::new().options(FirewallMode::On, "10.77.1.2");
    o.nft = nft;
    let mut m = Manager::new(o);
    let s = m.check(true);
    assert_eq!(s.state, FirewallState::Managed, "{s:?}");
    let text = ns.nft(&["list", "table", "inet", "contentdist"]);
    assert!(
        text.contains("type filter hook input priority filter; policy accept;"),
        "{text}"
    );
    assert!(
        text.contains("tcp dport 5080 ip saddr 10.77.1.0/24 accept"),
        "{text}"
    );
    assert!(
        text.contains("udp dport 1779 ip saddr 10.77.1.0/24 accept"),
        "{text}"
    );
    // The same batch again (a restart) is accepted and leaves the same table.
    m.check(true);
    assert_eq!(ns.nft(&["list", "table", "inet", "contentdist"]), text);
    m.check(false);
    // Removed by hand, restored by the next check.
    ns.nft(&["delete", "table", "inet", "contentdist"]);
    m.check(false);
    assert_eq!(ns.nft(&["list", "table", "inet", "contentdist"]), text);
    // Changed by hand (a rule added), restored.
    ns.nft(&[
        "add",
        "rule",
        "inet",
        "contentdist",
        "input",
        "tcp",
        "dport",
        "22",
        "accept",
    ]);
    m.check(false);
    assert_eq!(ns.nft(&["list", "table", "inet", "contentdist"]), text);
    // A foreign default-drop table is reported, and left alone.
    let file = std::env::temp_dir().join(format!("cdfw-{}.nft", std::process::id()));
    std::fs::write(&file, include_str!("testdata/default-drop.nft")).unwrap();
    ns.nft(&["-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let s = m.check(false);
    assert_eq!(s.blocked_by.len(), 1, "{s:?}");
    assert_eq!(s.blocked_by[0].ports, ["5080/tcp"]);
    assert!(ns.nft(&["list", "ruleset"]).contains("table inet filter"));
    drop(ns);
    assert_eq!(
        host_ruleset(),
        host_before,
        "the host's ruleset was touched"
    );
}
