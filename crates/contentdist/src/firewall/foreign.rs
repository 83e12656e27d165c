//! Reading `nft -j list ruleset`: the agent's own table as it really is (to see it
//! removed or changed), and the other tables' input chains that would drop the
//! agent's traffic whatever its table says.
//!
//! Every base chain of a hook sees the packet in turn and a drop in any of them is
//! final, while an accept only ends the walk through its own chain: so the agent's
//! accept does not get a packet past firewalld, ufw, or a hand-written table whose
//! input chain has policy drop or ends with a drop or reject. Those chains are found
//! here, with the agent's ports they do not already accept (followed through
//! `jump`/`goto` into the chains they call), and the commands that open them there.
//!
//! The listing is read loosely (`serde_json::Value` under a few typed objects): a
//! foreign ruleset may hold any expression nft knows, and one this code has never
//! seen must not make the whole listing unreadable. A rule this code cannot judge
//! counts as not accepting the agent's traffic: a warning too many is cheaper than
//! a silent drop.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ruleset::{Network, OpenPort, Sources, FAMILY, TABLE};
use super::FirewallError;

/// Which address families the agent's traffic uses (from its listen address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    /// IPv4 traffic reaches the agent.
    pub v4: bool,
    /// IPv6 traffic reaches the agent.
    pub v6: bool,
}

impl Families {
    /// Whether a table of nft family `family` sees the agent's traffic.
    fn sees(&self, family: &str) -> bool {
        match family {
            "inet" => true,
            "ip" => self.v4,
            "ip6" => self.v6,
            _ => false,
        }
    }
}

/// A foreign input chain that drops the agent's traffic, as `status` reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForeignBlock {
    /// Who manages it, as far as can be told: `firewalld`, `ufw`, `iptables` or
    /// `nftables` (a table written by hand or by another tool).
    pub tool: String,
    /// `FAMILY TABLE CHAIN`, e.g. `inet filter input`.
    pub chain: String,
    /// Why it drops: `policy drop`, or `ends with drop` / `ends with reject`.
    pub reason: String,
    /// The agent's ports it drops (`5080/tcp`).
    pub ports: Vec<String>,
    /// The commands that open them there, one per line.
    pub commands: Vec<String>,
}

/// `nft -j list ruleset`, parsed.
#[derive(Debug, Default)]
pub struct Listing {
    chains: Vec<ChainObj>,
    rules: Vec<RuleObj>,
    sets: Vec<SetObj>,
    /// The agent's table's objects (table, chains, rules, ...), handles removed.
    ours: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct ChainObj {
    family: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    hook: Option<String>,
    policy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RuleObj {
    family: String,
    table: String,
    chain: String,
    #[serde(default)]
    expr: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct SetObj {
    family: String,
    table: String,
    name: String,
    #[serde(default)]
    elem: Vec<Value>,
}

impl Listing {
    /// Parse the output of `nft -j list ruleset`.
    pub fn parse(json: &str) -> Result<Listing, FirewallError> {
        #[derive(Deserialize)]
        struct Root {
            #[serde(default)]
            nftables: Vec<serde_json::Map<String, Value>>,
        }
        let root: Root = serde_json::from_str(json).map_err(FirewallError::Listing)?;
        let mut listing = Listing::default();
        for item in root.nftables {
            for (kind, value) in item {
                if is_ours(&value) {
                    let mut v = value.clone();
                    strip_handles(&mut v);
                    listing.ours.push(serde_json::json!({ kind.clone(): v }));
                }
                // An object this code cannot read is skipped, not fatal.
                match kind.as_str() {
                    "chain" => listing.chains.extend(serde_json::from_value(value).ok()),
                    "rule" => listing.rules.extend(serde_json::from_value(value).ok()),
                    "set" => listing.sets.extend(serde_json::from_value(value).ok()),
                    _ => {}
                }
            }
        }
        Ok(listing)
    }

    /// The agent's table as listed, without handles (which change at every
    /// apply); `None` when the table does not exist.
    pub fn ours(&self) -> Option<&[Value]> {
        (!self.ours.is_empty()).then_some(self.ours.as_slice())
    }

    /// The foreign input chains that would drop traffic to some of `ports` from
    /// `sources`, in listing order.
    pub fn blocking(
        &self,
        ports: &[OpenPort],
        families: Families,
        sources: &Sources,
    ) -> Vec<ForeignBlock> {
        let mut out = Vec::new();
        for chain in &self.chains {
            let base = chain.hook.as_deref() == Some("input")
                && chain.kind.as_deref().unwrap_or("filter") == "filter";
            if !base || !families.sees(&chain.family) || is_our_table(&chain.family, &chain.table) {
                continue;
            }
            let Some(reason) = self.drop_reason(chain) else {
                continue;
            };
            let ctx = Judge {
                families,
                sources,
                listing: self,
                family: &chain.family,
                table: &chain.table,
            };
            let reachable = self.reachable(chain);
            let blocked: Vec<&OpenPort> = ports
                .iter()
                .filter(|p| {
                    !reachable
                        .iter()
                        .any(|c| self.rules_of(chain, c).any(|r| ctx.accepts(r, p)))
                })
                .collect();
            if blocked.is_empty() {
                continue;
            }
            let tool = self.tool(chain);
            let insert = reason != "policy drop";
            out.push(ForeignBlock {
                commands: commands(tool, chain, &blocked, insert),
                tool: tool.to_string(),
                chain: format!("{} {} {}", chain.family, chain.table, chain.name),
                reason,
                ports: blocked.iter().map(ToString::to_string).collect(),
            });
        }
        out
    }

    /// Why `chain` drops what it does not accept: its policy, or a last rule that
    /// drops or rejects unconditionally; `None` when it lets the rest through.
    fn drop_reason(&self, chain: &ChainObj) -> Option<String> {
        if chain.policy.as_deref() == Some("drop") {
            return Some("policy drop".into());
        }
        let last = self.rules_of(chain, &chain.name).last()?;
        let conditional = last.expr.iter().any(|s| s.get("match").is_some());
        if conditional {
            return None;
        }
        ["drop", "reject"]
            .into_iter()
            .find(|v| last.expr.iter().any(|s| s.get(*v).is_some()))
            .map(|v| format!("ends with {v}"))
    }

    fn rules_of<'a>(
        &'a self,
        base: &'a ChainObj,
        chain: &'a str,
    ) -> impl Iterator<Item = &'a RuleObj> {
        self.rules
            .iter()
            .filter(move |r| r.family == base.family && r.table == base.table && r.chain == chain)
    }

    /// The chain and every chain of its table it jumps or goes to, transitively.
    fn reachable(&self, base: &ChainObj) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![base.name.clone()];
        let mut order = Vec::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            for rule in self.rules_of(base, &name) {
                for s in &rule.expr {
                    for verdict in ["jump", "goto"] {
                        if let Some(t) = s.get(verdict).and_then(|j| j["target"].as_str()) {
                            todo.push(t.to_string());
                        }
                    }
                }
            }
            order.push(name);
        }
        order
    }

    /// Who manages the chain's table, as far as its names tell.
    fn tool(&self, chain: &ChainObj) -> &'static str {
        let family = chain.family.as_str();
        if family == "inet" && chain.table == "firewalld" {
            return "firewalld";
        }
        let ufw = self.chains.iter().any(|c| {
            c.family == chain.family
                && c.table == chain.table
                && (c.name.starts_with("ufw-") || c.name.starts_with("ufw6-"))
        });
        if ufw {
            "ufw"
        } else if matches!(family, "ip" | "ip6") && chain.table == "filter" && chain.name == "INPUT"
        {
            "iptables"
        } else {
            "nftables"
        }
    }

    /// The elements of the named set `@name` of a table.
    fn set_elements(&self, family: &str, table: &str, name: &str) -> Option<&[Value]> {
        self.sets
            .iter()
            .find(|s| s.family == family && s.table == table && s.name == name)
            .map(|s| s.elem.as_slice())
    }
}

/// The commands that open `ports` in a foreign chain, by the tool that owns it.
/// `insert`: the chain ends with a drop, so a rule must go before it, not after.
fn commands(tool: &str, chain: &ChainObj, ports: &[&OpenPort], insert: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match tool {
        "firewalld" => {
            out.extend(
                ports
                    .iter()
                    .map(|p| format!("firewall-cmd --permanent --add-port={p}")),
            );
            out.push("firewall-cmd --reload".into());
        }
        "ufw" => out.extend(ports.iter().map(|p| format!("ufw allow {p}"))),
        "iptables" => {
            let cmd = if chain.family == "ip6" {
                "ip6tables"
            } else {
                "iptables"
            };
            out.extend(ports.iter().map(|p| {
                format!(
                    "{cmd} -I {} -p {} --dport {} -j ACCEPT",
                    chain.name,
                    p.proto.as_str(),
                    p.port
                )
            }));
        }
        _ => {
            let verb = if insert { "insert" } else { "add" };
            out.extend(ports.iter().map(|p| {
                format!(
                    "nft {verb} rule {} {} {} {} dport {} accept",
                    chain.family,
                    chain.table,
                    chain.name,
                    p.proto.as_str(),
                    p.port
                )
            }));
        }
    }
    out
}

fn is_our_table(family: &str, table: &str) -> bool {
    family == FAMILY && table == TABLE
}

/// An object of the agent's own table (the table itself, its chains and rules).
fn is_ours(v: &Value) -> bool {
    let family = v["family"].as_str().unwrap_or_default();
    let table = v["table"].as_str().or_else(|| {
        // The table object names itself in "name".
        v.get("table")
            .is_none()
            .then(|| v["name"].as_str())
            .flatten()
    });
    is_our_table(family, table.unwrap_or_default())
}

fn strip_handles(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("handle");
            map.values_mut().for_each(strip_handles);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_handles),
        _ => {}
    }
}

/// Judges whether a foreign rule accepts the agent's traffic to a port.
struct Judge<'a> {
    families: Families,
    sources: &'a Sources,
    listing: &'a Listing,
    family: &'a str,
    table: &'a str,
}

impl Judge<'_> {
    /// True when `rule` accepts new traffic to `port` from every source the agent
    /// expects: it ends with accept, names the port, and each of its other matches
    /// is one known not to exclude that traffic.
    fn accepts(&self, rule: &RuleObj, port: &OpenPort) -> bool {
        if !rule.expr.iter().any(|s| s.get("accept").is_some()) {
            return false;
        }
        let mut names_port = false;
        for s in &rule.expr {
            let Some(m) = s.get("match") else {
                continue;
            };
            match self.judge(m, port) {
                Verdict::Port => names_port = true,
                Verdict::Neutral => {}
                Verdict::Excludes => return false,
            }
        }
        names_port
    }

    fn judge(&self, m: &Value, port: &OpenPort) -> Verdict {
        let op = m["op"].as_str().unwrap_or("==");
        let positive = matches!(op, "==" | "in");
        let left = &m["left"];
        let right = &m["right"];
        if let Some(p) = left.get("payload") {
            let protocol = p["protocol"].as_str().unwrap_or_default();
            let field = p["field"].as_str().unwrap_or_default();
            return match (protocol, field) {
                ("tcp" | "udp" | "th", "dport") => {
                    let proto_ok = protocol == "th" || protocol == port.proto.as_str();
                    if positive && proto_ok && self.contains_port(right, port.port) {
                        Verdict::Port
                    } else {
                        Verdict::Excludes
                    }
                }
                ("ip" | "ip6", _) if !self.families.sees(protocol) => Verdict::Excludes,
                ("ip" | "ip6", "saddr") if positive && self.covers_sources(right, protocol) => {
                    Verdict::Neutral
                }
                ("ip" | "ip6", "daddr") => Verdict::Neutral,
                _ => Verdict::Excludes,
            };
        }
        if let Some(key) = left.get("meta").and_then(|m| m["key"].as_str()) {
            return match key {
                "iif" | "iifname" | "iiftype" => Verdict::Neutral,
                "l4proto" if positive && self.contains_str(right, port.proto.as_str()) => {
                    Verdict::Neutral
                }
                "nfproto"
                    if positive
                        && ((self.families.v4 && self.contains_str(right, "ipv4"))
                            || (self.families.v6 && self.contains_str(right, "ipv6"))) =>
                {
                    Verdict::Neutral
                }
                _ => Verdict::Excludes,
            };
        }
        // Connection state: firewalld accepts ports for `ct state new,untracked`.
        if left.get("ct").is_some() {
            return Verdict::Neutral;
        }
        Verdict::Excludes
    }

    /// The elements a match's right side stands for: a value, a set, or `@set`.
    fn elements<'v>(&'v self, right: &'v Value) -> Vec<&'v Value> {
        match right {
            Value::String(s) if s.starts_with('@') => self
                .listing
                .set_elements(self.family, self.table, &s[1..])
                .map(|e| e.iter().collect())
                .unwrap_or_default(),
            Value::Array(items) => items.iter().collect(),
            v => match v.get("set") {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => vec![v],
            },
        }
    }

    fn contains_port(&self, right: &Value, port: u16) -> bool {
        let port = u64::from(port);
        self.elements(right).into_iter().any(|e| match e {
            Value::Number(n) => n.as_u64() == Some(port),
            v => v["range"]
                .as_array()
                .and_then(|r| Some((r.first()?.as_u64()?, r.get(1)?.as_u64()?)))
                .is_some_and(|(lo, hi)| lo <= port && port <= hi),
        })
    }

    fn contains_str(&self, right: &Value, name: &str) -> bool {
        self.elements(right)
            .into_iter()
            .any(|e| e.as_str() == Some(name))
    }

    /// True when every network the agent accepts from (of `protocol`'s family) is
    /// inside the match's addresses; "any source" is never covered by one.
    fn covers_sources(&self, right: &Value, protocol: &str) -> bool {
        let Sources::Networks(ours) = self.sources else {
            return false;
        };
        let v4 = protocol == "ip";
        let theirs: Vec<Network> = self
            .elements(right)
            .into_iter()
            .filter_map(network_of)
            .collect();
        ours.iter()
            .filter(|n| n.is_ipv4() == v4)
            .all(|n| theirs.iter().any(|t| t.covers(n)))
    }
}

/// An address (`"10.0.0.1"`) or prefix (`{"prefix": {"addr", "len"}}`) element.
fn network_of(e: &Value) -> Option<Network> {
    if let Some(s) = e.as_str() {
        let addr: std::net::IpAddr = s.parse().ok()?;
        return Some(Network::new(addr, if addr.is_ipv4() { 32 } else { 128 }));
    }
    let p = e.get("prefix")?;
    let addr = p["addr"].as_str()?.parse().ok()?;
    let len = u8::try_from(p["len"].as_u64()?).ok()?;
    Some(Network::new(addr, len))
}

enum Verdict {
    /// The match selects traffic to the port.
    Port,
    /// The match does not exclude the agent's traffic.
    Neutral,
    /// The match excludes it, or cannot be judged.
    Excludes,
}
