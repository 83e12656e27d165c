//! Firewall exceptions: the product adds its ports to the Windows firewall at every
//! start and puts them back if they were removed. Here the agent keeps one nftables
//! table of its own, `inet contentdist`, whose input chain accepts the ports it
//! really bound: TCP for peer copy over HTTP (P2PEnabled 0x20) and HTTPS (0x40), the
//! agent's smbd for SMB (0x01), and UDP `P2P_Port` for elections; from the
//! agent's subnet(s) only (`FirewallScope = "subnet"`, the default) or from any
//! source.
//!
//! # Layout
//!
//! - [`ruleset`]: [`plan`] (settings + bound ports + local networks -> the table,
//!   pure) and the nft JSON batch that applies it in one transaction.
//! - [`foreign`]: reading `nft -j list ruleset`: the agent's table as it is, and
//!   other tables whose input chain drops the agent's traffic anyway.
//! - [`nft`]: running `nft` (the system's, or inside a network namespace).
//! - `net`: the networks of the interface the agent announces itself on.
//! - this file: the start hook, the periodic check task and the status.
//!
//! # Choices
//!
//! - The batch is nft's JSON (`nft -j -f -`) serialised from typed structs, not the
//!   `nftables` crate: the agent writes four kinds of objects, and reads foreign
//!   rulesets loosely (see [`foreign`]), where a strictly typed schema would have to
//!   know every expression any other tool ever writes.
//! - The batch adds, deletes and adds the table again: one transaction, so peers
//!   never see the ports closed, and the result is the same however the table was
//!   left. No other table is ever named.
//! - At every start the table is applied; then every `FirewallCheckSecs` it is read
//!   back and applied again if it was removed or changed (compared with what nft
//!   listed right after the agent applied it, so nft's own normal form of the rules
//!   does not count as a change).
//! - At shutdown the table stays: a restart (an upgrade, `systemctl restart`) must
//!   not close the ports peers are copying through, and the next start replaces it
//!   anyway. Its rules accept only the agent's ports, which nothing else listens on
//!   while the agent is stopped. Remove it by hand with
//!   `nft delete table inet contentdist` when uninstalling.
//! - `ManageFirewall = "auto"` does nothing on loopback (the lab, tests and
//!   benchmarks run many agents on 127.0.0.x as root: they need no exception, and
//!   one table per host cannot hold the ports of several agents).

pub mod foreign;
mod net;
pub mod nft;
pub mod ruleset;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::codes::Code;
use crate::config::{Config, FirewallMode};
use crate::control::AgentAddrs;
use crate::tasks::Tasks;

pub use foreign::{Families, ForeignBlock, Listing};
pub use net::networks_of;
pub use nft::{Nft, NftCommand};
pub use ruleset::{plan, BoundPorts, Network, OpenPort, Proto, Ruleset, RulesetSettings, Sources};

/// Why a firewall step failed. Every variant is code 0xCD0E (FIREWALL_FAILED).
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not be started.
    #[error("{step}: cannot run {program}: {source}")]
    Spawn {
        /// What the run was for.
        step: &'static str,
        /// The program started.
        program: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// `nft` did not finish in time and was killed.
    #[error("{step}: `{command}` did not finish within {secs} s")]
    Timeout {
        /// What the run was for.
        step: &'static str,
        /// The command, without its input.
        command: String,
        /// The time allowed.
        secs: u64,
    },
    /// `nft` refused (its message is kept).
    #[error("{step}: `{command}` failed ({status}): {stderr}")]
    Refused {
        /// What the run was for.
        step: &'static str,
        /// The command, without its input.
        command: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// `nft -j list ruleset` did not print the JSON expected.
    #[error("reading the ruleset: nft's JSON does not parse: {0}")]
    Listing(#[source] serde_json::Error),
}

impl FirewallError {
    /// The catalogue code.
    pub fn code(&self) -> Code {
        Code::FIREWALL_FAILED
    }
}

/// Where the agent's firewall table stands.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FirewallState {
    /// The agent keeps its table.
    Managed,
    /// Nothing is touched: `ManageFirewall = false`, or `"auto"` and the agent is
    /// not root, `nft` is missing or the agent is on loopback.
    #[default]
    NotManaged,
    /// `ManageFirewall = true`, but the agent is not root or `nft` is missing.
    Unavailable,
    /// The last check failed (nft refused or could not run).
    Failed,
}

/// The firewall part of `contentdist status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FirewallStatus {
    /// Where the table stands.
    pub state: FirewallState,
    /// The same in words, with what the administrator may have to do.
    pub summary: String,
    /// `ManageFirewall` as set: `auto`, `true` or `false`.
    pub manage_firewall: String,
    /// `inet contentdist` while managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The ports peers must reach (`5080/tcp`, `1779/udp`): those the table
    /// accepts, or, when not managed, those to open by hand.
    pub ports: Vec<String>,
    /// Where from: `any`, or the subnets (empty while not managed).
    pub sources: Vec<String>,
    /// Other tables' input chains that drop the agent's traffic anyway, each with
    /// the ports and the commands that open them there.
    #[serde(default)]
    pub blocked_by: Vec<ForeignBlock>,
    /// The last error (`0xCD0E FIREWALL_FAILED: ...`), while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The agent's address towards its peers and the networks of its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNetworks {
    /// The address the agent announces.
    pub addr: IpAddr,
    /// The networks of the interface holding it.
    pub networks: Vec<Network>,
}

/// Finds the agent's [`LocalNetworks`]; asked again at every check, as interfaces
/// and addresses may change while the agent runs.
pub type LocalFn = Arc<dyn Fn() -> LocalNetworks + Send + Sync>;

/// How to start the firewall management.
#[derive(Clone)]
pub struct FirewallOptions {
    /// `ManageFirewall`.
    pub mode: FirewallMode,
    /// What the table depends on.
    pub settings: RulesetSettings,
    /// The ports really bound.
    pub bound: BoundPorts,
    /// The families the agent's traffic uses.
    pub families: Families,
    /// `FirewallCheckSecs`: `None` = applied at start only.
    pub check_period: Option<Duration>,
    /// The agent's address and networks.
    pub local: LocalFn,
    /// How `nft` is run.
    pub nft: Arc<dyn Nft>,
}

impl FirewallOptions {
    /// The options of an agent with `config` that bound `addrs`: the system's nft,
    /// the networks of the interface of [`crate::agent::advertised_address`].
    pub fn for_agent(config: &Config, addrs: &AgentAddrs) -> FirewallOptions {
        let c = config.clone();
        let local: LocalFn = Arc::new(move || {
            let addr = crate::agent::advertised_address(&c);
            LocalNetworks {
                addr,
                networks: networks_of(addr),
            }
        });
        let listen = config.listen_address;
        FirewallOptions {
            mode: config.manage_firewall,
            settings: RulesetSettings {
                p2p_enabled: config.p2p_enabled,
                scope: config.firewall_scope,
            },
            bound: BoundPorts::from_addrs(addrs),
            families: Families {
                v4: listen.is_ipv4() || listen.is_unspecified(),
                v6: listen.is_ipv6(),
            },
            check_period: config.firewall_check(),
            local,
            nft: Arc::new(NftCommand::system()),
        }
    }
}

/// Whether an agent with `config` may manage its firewall table, decided as
/// [`start`] decides it (`auto`: root, `nft` present, an address off loopback).
/// The binary asks before its threads exist, to drop `CAP_NET_ADMIN` for the whole
/// process when the answer is no.
pub fn may_manage(config: &Config) -> bool {
    match config.manage_firewall {
        FirewallMode::Off => false,
        FirewallMode::On => true,
        FirewallMode::Auto => {
            NftCommand::system().unavailable().is_none()
                && !crate::agent::advertised_address(config).is_loopback()
        }
    }
}

/// The running firewall management: its status. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct FirewallHandle {
    status: Arc<Mutex<FirewallStatus>>,
}

impl FirewallHandle {
    /// The status as of the last check.
    pub fn status(&self) -> FirewallStatus {
        lock(&self.status).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The start hook: decide whether the table is managed; if so apply it now (the
/// agent starts with its ports open) and start the named, cancellable task
/// `firewall check` that restores it every `check_period`.
pub async fn start(options: FirewallOptions, tasks: &Tasks) -> FirewallHandle {
    let setting = options.mode.to_string();
    let local = (options.local)();
    let wanted = plan(&options.settings, &options.bound, &local.networks);
    let unmanaged = |state, why: String| {
        let ports = port_list(&wanted.ports);
        FirewallHandle {
            status: Arc::new(Mutex::new(FirewallStatus {
                state,
                summary: format!("{why}{}", need_open(&ports)),
                manage_firewall: setting.clone(),
                ports,
                ..FirewallStatus::default()
            })),
        }
    };
    match options.mode {
        FirewallMode::Off => {
            tracing::info!("firewall not managed (ManageFirewall = false)");
            return unmanaged(
                FirewallState::NotManaged,
                "not managed (ManageFirewall = false): the firewall is not touched".into(),
            );
        }
        FirewallMode::Auto => {
            let why = options.nft.unavailable().or_else(|| {
                local.addr.is_loopback().then(|| {
                    format!(
                        "the agent's address {} is loopback, where peers need no exception",
                        local.addr
                    )
                })
            });
            if let Some(why) = why {
                tracing::info!(reason = %why, "firewall not managed (ManageFirewall = \"auto\")");
                return unmanaged(
                    FirewallState::NotManaged,
                    format!("not managed (ManageFirewall = \"auto\"): {why}"),
                );
            }
        }
        FirewallMode::On => {
            if let Some(why) = options.nft.unavailable() {
                tracing::warn!(
                    code = %Code::FIREWALL_FAILED,
                    reason = %why,
                    "ManageFirewall = true, but the firewall cannot be managed; the agent goes on without it"
                );
                return unmanaged(
                    FirewallState::Unavailable,
                    format!("unavailable: ManageFirewall = true, but {why}"),
                );
            }
        }
    }
    let check_period = options.check_period;
    let manager = Arc::new(Mutex::new(Manager::new(options)));
    let handle = FirewallHandle::default();
    let m = Arc::clone(&manager);
    match tasks
        .spawn_blocking("firewall apply", move || lock(&m).check(true))
        .await
    {
        Ok(s) => *lock(&handle.status) = s,
        Err(e) => tracing::warn!(error = %e, "applying the firewall table panicked"),
    }
    if let Some(period) = check_period {
        let (t, h) = (tasks.clone(), handle.clone());
        tasks.spawn("firewall check", move |stop| {
            check_loop(manager, h, period, t, stop)
        });
    }
    handle
}

async fn check_loop(
    manager: Arc<Mutex<Manager>>,
    handle: FirewallHandle,
    period: Duration,
    tasks: Tasks,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let m = Arc::clone(&manager);
        match tasks
            .spawn_blocking("firewall check run", move || lock(&m).check(false))
            .await
        {
            Ok(s) => *lock(&handle.status) = s,
            Err(e) => tracing::warn!(error = %e, "the firewall check panicked"),
        }
    }
}

/// What a check did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Applied at start where there was none.
    Added,
    /// Applied at start over the table a previous run left.
    Replaced,
    /// Applied because the ports or the networks changed.
    Updated,
    /// Applied again: someone had removed it.
    RestoredRemoved,
    /// Applied again: someone had changed it.
    RestoredChanged,
    /// Removed: there is nothing to open (peer copy off, subnet inhibited).
    Removed,
    /// Nothing to do.
    Unchanged,
}

/// The table's keeper: what it applied and what nft listed right after.
struct Manager {
    o: FirewallOptions,
    applied: Option<Ruleset>,
    fingerprint: Option<Vec<serde_json::Value>>,
    blocked: Vec<ForeignBlock>,
    error: Option<String>,
    no_subnet_warned: bool,
}

impl Manager {
    fn new(o: FirewallOptions) -> Manager {
        Manager {
            o,
            applied: None,
            fingerprint: None,
            blocked: Vec::new(),
            error: None,
            no_subnet_warned: false,
        }
    }

    /// One check (`first`: at start, where the table is always applied), logged,
    /// and the status it leaves.
    fn check(&mut self, first: bool) -> FirewallStatus {
        let local = (self.o.local)();
        let wanted = plan(&self.o.settings, &self.o.bound, &local.networks);
        let mut status = FirewallStatus {
            manage_firewall: self.o.mode.to_string(),
            table: Some(ruleset::table_name()),
            ports: port_list(&wanted.ports),
            sources: wanted.sources.describe(),
            ..FirewallStatus::default()
        };
        match self.sync(&wanted, first) {
            Ok((action, listing)) => {
                if let Some(e) = self.error.take() {
                    tracing::info!(was = %e, "firewall table managed again");
                }
                self.log_action(action, &wanted);
                self.warn_no_subnet(&wanted, &local);
                let blocked = listing.blocking(&wanted.ports, self.o.families, &wanted.sources);
                self.report_blocked(&blocked);
                status.state = FirewallState::Managed;
                status.summary = summary(&wanted, &blocked, &local);
                status.blocked_by = blocked;
            }
            Err(e) => {
                let text = format!("{} {}: {e}", e.code(), e.code().name());
                if self.error.as_deref() != Some(&text) {
                    tracing::warn!(code = %e.code(), error = %e, "firewall table not applied; the agent goes on without it");
                }
                status.state = FirewallState::Failed;
                status.summary = format!(
                    "failed: the table could not be checked or applied{}",
                    need_open(&status.ports)
                );
                status.blocked_by = self.blocked.clone();
                status.error = Some(text.clone());
                self.error = Some(text);
            }
        }
        status
    }

    /// Brings the table to `wanted` if it is not there; the listing afterwards.
    fn sync(&mut self, wanted: &Ruleset, first: bool) -> Result<(Action, Listing), FirewallError> {
        let listing = self.list()?;
        let present = listing.ours().is_some();
        let action = if wanted.ports.is_empty() {
            if !present {
                self.applied = Some(wanted.clone());
                return Ok((Action::Unchanged, listing));
            }
            Action::Removed
        } else if first {
            if present {
                Action::Replaced
            } else {
                Action::Added
            }
        } else if self.applied.as_ref() != Some(wanted) {
            Action::Updated
        } else if !present {
            Action::RestoredRemoved
        } else if listing.ours() != self.fingerprint.as_deref() {
            Action::RestoredChanged
        } else {
            return Ok((Action::Unchanged, listing));
        };
        let batch = if wanted.ports.is_empty() {
            Ruleset::delete_batch()
        } else {
            wanted.batch()
        };
        self.o
            .nft
            .run("apply the table", &["-j", "-f", "-"], Some(&batch))?;
        let listing = self.list()?;
        self.applied = Some(wanted.clone());
        self.fingerprint = listing.ours().map(<[_]>::to_vec);
        Ok((action, listing))
    }

    fn list(&self) -> Result<Listing, FirewallError> {
        let json = self
            .o
            .nft
            .run("read the ruleset", &["-j", "list", "ruleset"], None)?;
        Listing::parse(&json)
    }

    fn log_action(&self, action: Action, wanted: &Ruleset) {
        let table = ruleset::table_name();
        let ports = port_list(&wanted.ports).join(", ");
        let from = wanted.sources.describe().join(", ");
        match action {
            Action::Added => {
                tracing::info!(%table, %ports, %from, "firewall table added")
            }
            Action::Replaced => {
                tracing::info!(%table, %ports, %from, "firewall table applied (replacing the one found)")
            }
            Action::Updated => {
                tracing::info!(%table, %ports, %from, "firewall table updated (ports or subnets changed)")
            }
            Action::RestoredRemoved => {
                tracing::warn!(%table, %ports, %from, "firewall table restored: it had been removed")
            }
            Action::RestoredChanged => {
                tracing::warn!(%table, %ports, %from, "firewall table restored: it had been changed")
            }
            Action::Removed => {
                tracing::info!(%table, "firewall table removed: the agent has no port to open")
            }
            Action::Unchanged => tracing::debug!(%table, "firewall table unchanged"),
        }
    }

    fn warn_no_subnet(&mut self, wanted: &Ruleset, local: &LocalNetworks) {
        let none = matches!(&wanted.sources, Sources::Networks(n) if n.is_empty())
            && !wanted.ports.is_empty();
        if none && !self.no_subnet_warned {
            tracing::warn!(
                addr = %local.addr,
                "FirewallScope = \"subnet\", but no interface holds the agent's address: the firewall table accepts nothing (check ListenAddress / ElectionAddress, or set FirewallScope = \"any\")"
            );
        }
        self.no_subnet_warned = none;
    }

    /// Logs the foreign chains that drop the agent's traffic, once per change.
    fn report_blocked(&mut self, blocked: &[ForeignBlock]) {
        if blocked == self.blocked.as_slice() {
            return;
        }
        for b in blocked {
            tracing::warn!(
                chain = %b.chain,
                tool = %b.tool,
                reason = %b.reason,
                ports = %b.ports.join(", "),
                commands = %b.commands.join("; "),
                "another firewall table drops the agent's traffic (an accept in table inet contentdist cannot pass it): open the ports there"
            );
        }
        if blocked.is_empty() {
            tracing::info!("no other firewall table drops the agent's traffic any more");
        }
        self.blocked = blocked.to_vec();
    }
}

/// `; peers need 5080/tcp, 1779/udp open`, or nothing without ports.
fn need_open(ports: &[String]) -> String {
    if ports.is_empty() {
        String::new()
    } else {
        format!("; peers need {} open", ports.join(", "))
    }
}

fn port_list(ports: &[OpenPort]) -> Vec<String> {
    ports.iter().map(ToString::to_string).collect()
}

fn summary(wanted: &Ruleset, blocked: &[ForeignBlock], local: &LocalNetworks) -> String {
    let table = ruleset::table_name();
    if wanted.ports.is_empty() {
        return format!(
            "managed: no port to open (peer copy off or subnet inhibited), so no table {table}"
        );
    }
    let ports = port_list(&wanted.ports).join(", ");
    let mut s = match &wanted.sources {
        Sources::Networks(n) if n.is_empty() => format!(
            "managed: table {table} accepts nothing: no interface holds the agent's address {} (FirewallScope = \"subnet\")",
            local.addr
        ),
        sources => format!(
            "managed: table {table} accepts {ports} from {}",
            sources.describe().join(", ")
        ),
    };
    for b in blocked {
        s.push_str(&format!(
            "; but {} ({}, {}) drops {}: open them there (blocked_by.commands)",
            b.chain,
            b.tool,
            b.reason,
            b.ports.join(", ")
        ));
    }
    s
}
