//! What the agent asks nftables for, as data: which ports to accept from where
//! ([`plan`], a pure function of the settings, the ports really bound and the local
//! networks), and the batch of nft JSON commands that puts that table in place in
//! one transaction ([`Ruleset::batch`]). The JSON is built from typed structs, never
//! from text assembled out of settings.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::config::{FirewallScope, P2PEnabled};
use crate::control::AgentAddrs;

/// The family of the agent's table: `inet` sees IPv4 and IPv6 alike.
pub const FAMILY: &str = "inet";
/// The agent's table; nothing else is ever changed.
pub const TABLE: &str = "contentdist";
/// The one chain of the table.
pub const CHAIN: &str = "input";
/// The chain's priority: 0, nft's `filter`, where filter chains of the input hook
/// conventionally sit (iptables-nft and ufw use it, firewalld `filter + 10`). The
/// chain only accepts and its policy is accept, and an accept ends a packet's walk
/// through this chain only, never through another table's: so its place among the
/// other chains changes no verdict of theirs, and the standard priority reorders
/// nothing (a chain at a raw or conntrack priority would run before connection
/// tracking and see packets differently).
pub const PRIORITY: i32 = 0;

/// `FAMILY TABLE`, as people and `nft` name the table.
pub fn table_name() -> String {
    format!("{FAMILY} {TABLE}")
}

/// A transport protocol of an opened port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (peer copy).
    Tcp,
    /// UDP (elections).
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as nft, firewalld and ufw write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port the table accepts, and what the agent uses it for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenPort {
    /// The protocol.
    pub proto: Proto,
    /// The port really bound.
    pub port: u16,
    /// What listens there, in words.
    pub purpose: &'static str,
}

impl fmt::Display for OpenPort {
    /// `5080/tcp`: the form of firewall-cmd and ufw.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// An IP network: an address with the host bits cleared, and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network of `addr` with a `prefix`-bit mask (clamped to the address size).
    pub fn new(addr: IpAddr, prefix: u8) -> Network {
        let prefix = prefix.min(bits(addr));
        Network {
            addr: mask(addr, prefix),
            prefix,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True for an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// True when `other` lies inside this network.
    pub fn covers(&self, other: &Network) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && other.prefix >= self.prefix
            && mask(other.addr, self.prefix) == self.addr
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// The ports the agent really bound (a setting of 0 gets a port the system chose),
/// as [`AgentAddrs`] reports them: `None` for what does not run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoundPorts {
    /// The HTTP peer-copy server (TCP).
    pub http: Option<u16>,
    /// The HTTPS peer-copy server (TCP).
    pub https: Option<u16>,
    /// The agent's own smbd peers copy from (TCP `P2PSmbPort`; P2PEnabled 0x01).
    pub smb: Option<u16>,
    /// The election socket (UDP `P2P_Port`).
    pub election: Option<u16>,
}

impl BoundPorts {
    /// The ports of a started agent.
    pub fn from_addrs(addrs: &AgentAddrs) -> BoundPorts {
        BoundPorts {
            http: addrs.peer_http.map(|a| a.port()),
            https: addrs.peer_https.map(|a| a.port()),
            smb: addrs.peer_smb.map(|a| a.port()),
            election: addrs.election.map(|a| a.port()),
        }
    }
}

/// Where the accepted traffic may come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sources {
    /// Any source (`FirewallScope = "any"`).
    Any,
    /// These networks only (`"subnet"`); empty when none was found, and then
    /// nothing is accepted.
    Networks(Vec<Network>),
}

impl Sources {
    /// `any`, or each network, for the status.
    pub fn describe(&self) -> Vec<String> {
        match self {
            Sources::Any => vec!["any".to_string()],
            Sources::Networks(n) => n.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The settings the table depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulesetSettings {
    /// `P2PEnabled`: which peer-copy protocols have a port.
    pub p2p_enabled: P2PEnabled,
    /// `FirewallScope`.
    pub scope: FirewallScope,
}

/// The content of the agent's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// The ports accepted, TCP first, in port order.
    pub ports: Vec<OpenPort>,
    /// From where.
    pub sources: Sources,
}

/// The table for `settings`, the ports really `bound` and the agent's `networks`
/// (the subnets of the interface it announces itself on). A protocol's port is
/// opened when its P2PEnabled bit is set and its server really listens: HTTP 0x20,
/// HTTPS 0x40, SMB 0x01 (the agent's smbd); the election port (UDP) whenever the
/// agent takes part in elections.
pub fn plan(settings: &RulesetSettings, bound: &BoundPorts, networks: &[Network]) -> Ruleset {
    let p = settings.p2p_enabled;
    let candidates = [
        (p.has_http(), bound.http, Proto::Tcp, "peer copy over HTTP"),
        (
            p.has_https(),
            bound.https,
            Proto::Tcp,
            "peer copy over HTTPS",
        ),
        (p.has_smb(), bound.smb, Proto::Tcp, "peer copy over SMB"),
        (true, bound.election, Proto::Udp, "elections"),
    ];
    let mut ports: Vec<OpenPort> = candidates
        .into_iter()
        .filter_map(|(enabled, port, proto, purpose)| {
            let port = port.filter(|_| enabled)?;
            Some(OpenPort {
                proto,
                port,
                purpose,
            })
        })
        .collect();
    ports.sort();
    ports.dedup_by(|a, b| a.proto == b.proto && a.port == b.port);
    let sources = match settings.scope {
        FirewallScope::Any => Sources::Any,
        FirewallScope::Subnet => {
            let mut n = networks.to_vec();
            n.sort();
            n.dedup();
            Sources::Networks(n)
        }
    };
    Ruleset { ports, sources }
}

impl Ruleset {
    /// The nft JSON batch that replaces the agent's table with this one in one
    /// transaction: add the table (so the delete cannot fail), delete it with
    /// everything in it, add it again with its chain and rules. Running it twice
    /// gives the same table; no other table is named.
    pub fn batch(&self) -> String {
        let mut items = vec![
            Item::Metainfo(Metainfo {
                json_schema_version: 1,
            }),
            Item::Add(Object::Table(Table::ours())),
            Item::Delete(Object::Table(Table::ours())),
            Item::Add(Object::Table(Table::ours())),
            Item::Add(Object::Chain(Chain {
                family: FAMILY,
                table: TABLE,
                name: CHAIN,
                kind: "filter",
                hook: "input",
                prio: PRIORITY,
                policy: "accept",
            })),
        ];
        for port in &self.ports {
            for (family_proto, source) in self.source_matches() {
                let mut expr = vec![Statement::Match(Match {
                    op: "==",
                    left: Expr::Payload(Payload {
                        protocol: port.proto.as_str(),
                        field: "dport",
                    }),
                    right: Expr::Number(port.port),
                })];
                if let Some(source) = source {
                    expr.push(Statement::Match(Match {
                        op: "==",
                        left: Expr::Payload(Payload {
                            protocol: family_proto,
                            field: "saddr",
                        }),
                        right: source,
                    }));
                }
                expr.push(Statement::Accept(()));
                items.push(Item::Add(Object::Rule(Rule {
                    family: FAMILY,
                    table: TABLE,
                    chain: CHAIN,
                    comment: format!("contentdist: {}", port.purpose),
                    expr,
                })));
            }
        }
        serde_json::to_string(&Batch { nftables: items }).expect("the batch serialises")
    }

    /// The batch that removes the agent's table (and does not fail when it is absent).
    pub fn delete_batch() -> String {
        let items = vec![
            Item::Metainfo(Metainfo {
                json_schema_version: 1,
            }),
            Item::Add(Object::Table(Table::ours())),
            Item::Delete(Object::Table(Table::ours())),
        ];
        serde_json::to_string(&Batch { nftables: items }).expect("the batch serialises")
    }

    /// One source match per address family: `(ip|ip6, the prefix or set of
    /// prefixes)`, or a single `None` for any source. No network, no rule.
    fn source_matches(&self) -> Vec<(&'static str, Option<Expr>)> {
        let Sources::Networks(networks) = &self.sources else {
            return vec![("", None)];
        };
        let mut out = Vec::new();
        for (proto, v4) in [("ip", true), ("ip6", false)] {
            let mut prefixes: Vec<Expr> = networks
                .iter()
                .filter(|n| n.is_ipv4() == v4)
                .map(|n| {
                    Expr::Prefix(Prefix {
                        addr: n.addr().to_string(),
                        len: n.prefix(),
                    })
                })
                .collect();
            match prefixes.len() {
                0 => {}
                1 => out.push((proto, prefixes.pop())),
                _ => out.push((proto, Some(Expr::Set(prefixes)))),
            }
        }
        out
    }
}

// ---- nft's JSON schema (libnftables-json(5)), the part the agent writes ----

#[derive(Serialize)]
struct Batch {
    nftables: Vec<Item>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Item {
    Metainfo(Metainfo),
    Add(Object),
    Delete(Object),
}

#[derive(Serialize)]
struct Metainfo {
    json_schema_version: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Object {
    Table(Table),
    Chain(Chain),
    Rule(Rule),
}

#[derive(Serialize)]
struct Table {
    family: &'static str,
    name: &'static str,
}

impl Table {
    fn ours() -> Table {
        Table {
            family: FAMILY,
            name: TABLE,
        }
    }
}

#[derive(Serialize)]
struct Chain {
    family: &'static str,
    table: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    hook: &'static str,
    prio: i32,
    policy: &'static str,
}

#[derive(Serialize)]
struct Rule {
    family: &'static str,
    table: &'static str,
    chain: &'static str,
    comment: String,
    expr: Vec<Statement>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Statement {
    Match(Match),
    /// `{"accept": null}`.
    Accept(()),
}

#[derive(Serialize)]
struct Match {
    op: &'static str,
    left: Expr,
    right: Expr,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Expr {
    Payload(Payload),
    Prefix(Prefix),
    Set(Vec<Expr>),
    #[serde(untagged)]
    Number(u16),
}

#[derive(Serialize)]
struct Payload {
    protocol: &'static str,
    field: &'static str,
}

#[derive(Serialize)]
struct Prefix {
    addr: String,
    len: u8,
}
