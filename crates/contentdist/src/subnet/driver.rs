//! The election driver: one task owning the UDP socket and the state machine.
//!
//! Every agent binds `0.0.0.0:P2P_Port` with address and port reuse, so several
//! agents on one host (the lab, tests on 127.0.0.x) all receive the broadcasts sent
//! to `ElectionAddress`. Datagrams that do not decode or authenticate are dropped
//! and counted, never fatal.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Role, Shared, SubnetError, SubnetHandle};
use crate::election::{
    decode, encode, Action, Elections, Event, Instant, LocalInfo, SiteKey, Timing,
};

/// What the driver needs.
pub struct SubnetOptions {
    /// This agent in elections (node id, address, weight, ports, protocols, key).
    pub local: LocalInfo,
    /// Election timers.
    pub timing: Timing,
    /// UDP port of elections (`P2P_Port`); every agent of the subnet uses the same.
    pub port: u16,
    /// Where broadcasts go (`ElectionAddress`).
    pub broadcast: IpAddr,
    /// Authenticates messages when set (`SiteKey`).
    pub site_key: Option<SiteKey>,
    /// Stops the driver.
    pub shutdown: CancellationToken,
}

fn bind(port: u16, broadcast: IpAddr) -> std::io::Result<UdpSocket> {
    let domain = if broadcast.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_broadcast(true)?;
    s.set_nonblocking(true)?;
    let any: IpAddr = if broadcast.is_ipv6() {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    s.bind(&SocketAddr::new(any, port).into())?;
    Ok(s.into())
}

/// Start the driver task; returns the handle jobs use.
pub fn start(opts: SubnetOptions) -> Result<SubnetHandle, SubnetError> {
    let sock_err = |source| SubnetError::Socket {
        port: opts.port,
        source,
    };
    let std_sock = bind(opts.port, opts.broadcast).map_err(sock_err)?;
    let sock = tokio::net::UdpSocket::from_std(std_sock).map_err(sock_err)?;
    let local_addr = sock.local_addr().map_err(sock_err)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        roles: Mutex::new(HashMap::new()),
        status: Mutex::new(Vec::new()),
        dropped: Default::default(),
    });
    let handle = SubnetHandle {
        events: tx,
        shared: Arc::clone(&shared),
        local_addr,
        advertised: opts.local.addr,
    };
    tracing::info!(
        socket = %local_addr,
        broadcast = %opts.broadcast,
        node = format_args!("{:016x}", opts.local.node_id),
        weight = opts.local.weight,
        authenticated = opts.site_key.is_some(),
        "election socket listening"
    );
    let target = SocketAddr::new(opts.broadcast, local_addr.port());
    let machine = Elections::new(opts.local, opts.timing);
    tokio::spawn(run(Driver {
        sock,
        target,
        key: opts.site_key,
        machine,
        shared,
        events: rx,
        stop: opts.shutdown,
    }));
    Ok(handle)
}

struct Driver {
    sock: tokio::net::UdpSocket,
    target: SocketAddr,
    key: Option<SiteKey>,
    machine: Elections,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
}

async fn run(mut d: Driver) {
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = d.machine.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            _ = d.stop.cancelled() => return,
            r = d.sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => match decode(&buf[..n], d.key.as_ref()) {
                    Ok(msg) => Event::Received { msg },
                    Err(e) => {
                        let dropped = d.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        // One line per 100 so a noisy neighbour cannot flood the log.
                        if dropped % 100 == 1 {
                            tracing::warn!(%from, error = %e, dropped, "election datagram dropped");
                        }
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "election socket receive failed");
                    continue;
                }
            },
            e = d.events.recv() => match e {
                Some(e) => e,
                None => return,
            },
            _ = sleep => Event::Tick,
        };
        let actions = d.machine.handle(Instant::now(), event);
        for action in actions {
            d.act(action).await;
        }
        *d.shared.status.lock().expect("status lock") = d.machine.status();
    }
}

impl Driver {
    async fn act(&mut self, action: Action) {
        match action {
            Action::Broadcast(msg) => match encode(&msg, self.key.as_ref()) {
                Ok(bytes) => {
                    if let Err(e) = self.sock.send_to(&bytes, self.target).await {
                        tracing::warn!(target = %self.target, error = %e, "election broadcast failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "election message not encodable"),
            },
            Action::BecomeMaster { key } => {
                tracing::info!(content = %key, "elected master: downloading from the origin");
                self.shared.role_sender(&key).send_replace(Role::Master);
            }
            Action::FollowMaster { key, master } => {
                tracing::info!(content = %key, master = %master.addr, share = master.share_permille, "following master");
                self.shared
                    .role_sender(&key)
                    .send_replace(Role::Follow(master));
            }
            Action::MasterLost { key } => {
                tracing::warn!(content = %key, "master lost: electing again");
                self.shared.role_sender(&key).send_replace(Role::Electing);
            }
            Action::StopMaster { key } => {
                tracing::info!(content = %key, "no longer master");
                self.shared.role_sender(&key).send_replace(Role::Electing);
            }
        }
    }
}
