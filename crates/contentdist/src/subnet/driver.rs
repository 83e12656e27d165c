//! The election driver: one task owning the UDP socket and the state machine.
//!
//! Every agent binds `0.0.0.0:P2P_Port` with address and port reuse, so several
//! agents on one host (the lab, tests on 127.0.0.x) all receive the broadcasts sent
//! to `ElectionAddress`. Datagrams that do not decode or authenticate are dropped
//! and counted, never fatal; so are authenticated messages seen before or out of
//! time (replays), and the datagrams the kernel dropped (see `recv.rs`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::holders::{HolderAds, ServesNow, AD_PERIOD};
use super::recv::{self, DropCount};
use super::{Role, RolePolicy, Shared, SubnetError, SubnetHandle};
use crate::election::{
    decode_stamped, encode, unix_ms, Action, Body, Elections, Event, Instant, LocalInfo, Message,
    ReplayGuard, SiteKey, Stamper, Timing,
};
use crate::manifest::ContentKey;
use crate::peer::swarm::HeardHolders;
use crate::tasks::Tasks;

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
    /// The master policy jobs follow (fallback, grace, linger).
    pub policy: RolePolicy,
    /// The cache directory, whose free space the election ranks by; measured at
    /// every new election and every [`FREE_SPACE_PERIOD`]. `None`: `local.free_bytes`
    /// stays as given.
    pub cache_dir: Option<PathBuf>,
    /// Where the driver task runs (it stops with the agent).
    pub tasks: Tasks,
    /// Told every host name heard in election messages, each once (at most
    /// [`MAX_HEARD_HOSTS`]; not this agent's own): the SMB server registers their
    /// machine accounts before they log on (see [`crate::smb`]). `None`: not told.
    pub heard_hosts: Option<mpsc::UnboundedSender<String>>,
    /// FanOut over SMB (see `holders.rs`): where the holder messages heard are
    /// noted (`None`: ignored).
    pub heard_holders: Option<HeardHolders>,
    /// Whether this agent sends holder messages while it follows a master, when
    /// the check says its share serves: it runs its own smbd (with
    /// `local.p2p_key`'s account) and copies with FanOut. `None`: it never does.
    pub advertise_holding: Option<ServesNow>,
}

/// How many host names the driver passes on to `heard_hosts`: a subnet's worth,
/// and a bound on what forged messages can make a master register.
pub const MAX_HEARD_HOSTS: usize = 4096;

/// How the election socket is set up (kept apart from [`SubnetOptions`] so that
/// callers building those need not change).
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// The receive buffer to ask the kernel for, in bytes (1 MiB). Room for about
    /// 1,500 election datagrams (the kernel counts about 700 bytes per datagram):
    /// seconds of a busy subnet, so that a burst waits in the queue instead of
    /// being dropped. [`SubnetHandle::recv_buffer`] says what the kernel granted.
    pub recv_buffer: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            recv_buffer: 1 << 20,
        }
    }
}

/// How often the free cache space is measured again while nothing else asks.
const FREE_SPACE_PERIOD: Duration = Duration::from_secs(60);

/// At most this many queued datagrams are read before the timers due fire (a
/// full 1 MiB queue holds about 1,500), so that a flood cannot hold them off.
const DRAIN_MAX: usize = 2048;

/// Bind the election socket; returns it with the receive buffer the kernel granted.
fn bind(port: u16, broadcast: IpAddr, opts: &SocketOptions) -> std::io::Result<(UdpSocket, usize)> {
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
    recv::enable_drop_count(&s)?;
    let granted = recv::size_recv_buffer(&s, opts.recv_buffer)?;
    let any: IpAddr = if broadcast.is_ipv6() {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    s.bind(&SocketAddr::new(any, port).into())?;
    Ok((s.into(), granted))
}

/// Start the driver task with the default [`SocketOptions`]; returns the handle
/// jobs use.
pub fn start(opts: SubnetOptions) -> Result<SubnetHandle, SubnetError> {
    start_with(opts, SocketOptions::default())
}

/// Start the driver task on a socket set up as `socket` says.
pub fn start_with(opts: SubnetOptions, socket: SocketOptions) -> Result<SubnetHandle, SubnetError> {
    let sock_err = |source| SubnetError::Socket {
        port: opts.port,
        source,
    };
    let (std_sock, recv_buffer) = bind(opts.port, opts.broadcast, &socket).map_err(sock_err)?;
    let sock = tokio::net::UdpSocket::from_std(std_sock).map_err(sock_err)?;
    let local_addr = sock.local_addr().map_err(sock_err)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        roles: Mutex::new(HashMap::new()),
        status: Mutex::new(Vec::new()),
        received: Default::default(),
        dropped: Default::default(),
        replayed: Default::default(),
        overflowed: Default::default(),
        free_bytes: opts.local.free_bytes.into(),
        masterships: Default::default(),
        outcomes: Default::default(),
    });
    let handle = SubnetHandle {
        events: tx,
        shared: Arc::clone(&shared),
        local_addr,
        advertised: opts.local.addr,
        policy: Arc::new(opts.policy),
        recv_buffer,
    };
    tracing::info!(
        socket = %local_addr,
        broadcast = %opts.broadcast,
        node = format_args!("{:016x}", opts.local.node_id),
        weight = opts.local.weight,
        authenticated = opts.site_key.is_some(),
        recv_buffer,
        "election socket listening"
    );
    if recv_buffer < socket.recv_buffer.saturating_mul(2) {
        tracing::warn!(
            asked = socket.recv_buffer,
            granted = recv_buffer,
            "election socket receive buffer is smaller than asked: raise net.core.rmem_max"
        );
    }
    // Counting up from the wall clock in µs: a restart with the same node id still
    // counts above what it sent before.
    let start_count = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let target = SocketAddr::new(opts.broadcast, local_addr.port());
    let heard = HeardHosts {
        tx: opts.heard_hosts,
        seen: HashSet::new(),
        own: opts.local.node_id,
    };
    let ads = HolderAds::new(
        opts.heard_holders,
        opts.advertise_holding
            .map(|serves| (opts.local.p2p_key, serves)),
    );
    let machine = Elections::new(opts.local, opts.timing);
    let cache_dir = opts.cache_dir;
    opts.tasks.spawn("election driver", move |stop| {
        run(Driver {
            sock,
            target,
            key: opts.site_key,
            machine,
            shared,
            events: rx,
            stop,
            cache_dir,
            stamper: Stamper::new(start_count),
            guard: ReplayGuard::default(),
            drops: DropCount::default(),
            heard,
            ads,
            to_say: Vec::new(),
        })
    });
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
    cache_dir: Option<PathBuf>,
    /// Stamps what we send (site key only).
    stamper: Stamper,
    /// Refuses replayed or stale authenticated messages.
    guard: ReplayGuard,
    /// The kernel's drops seen so far.
    drops: DropCount,
    /// Host names heard, passed on once each.
    heard: HeardHosts,
    /// Holder messages and queries (FanOut over SMB), heard and sent.
    ads: HolderAds,
    /// Answers to holder queries read, sent once the queue is drained.
    to_say: Vec<(ContentKey, Body)>,
}

/// The host names passed on to [`SubnetOptions::heard_hosts`].
struct HeardHosts {
    tx: Option<mpsc::UnboundedSender<String>>,
    /// Lower case: host names compare without regard to case.
    seen: HashSet<String>,
    /// This agent's own node id: its own messages come back by broadcast.
    own: u64,
}

impl HeardHosts {
    fn heard(&mut self, msg: &Message) {
        let (Some(tx), Some(host)) = (&self.tx, &msg.host) else {
            return;
        };
        if msg.node_id == self.own || self.seen.len() >= MAX_HEARD_HOSTS {
            return;
        }
        if self.seen.insert(host.to_ascii_lowercase()) {
            if self.seen.len() == MAX_HEARD_HOSTS {
                tracing::warn!(
                    max = MAX_HEARD_HOSTS,
                    "election: host names heard reach the limit; later ones get no SMB machine account"
                );
            }
            // The receiver is gone only when the agent stops.
            let _ = tx.send(host.clone());
        }
    }
}

async fn run(mut d: Driver) {
    let mut buf = vec![0u8; 2048];
    let mut measure = tokio::time::interval(FREE_SPACE_PERIOD);
    measure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Holder queries (FanOut over SMB) are looked at this often.
    let mut asks = tokio::time::interval(AD_PERIOD);
    asks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            r = recv::recv(&d.sock, &mut buf) => match r {
                Ok(dg) => match d.open(&buf[..dg.len], &dg) {
                    Some(msg) => Event::Received { msg },
                    None => Event::Tick,
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
            _ = measure.tick() => {
                d.measure_free_space();
                continue;
            }
            _ = asks.tick() => {
                d.ask_who_holds().await;
                continue;
            }
            _ = sleep => Event::Tick,
        };
        if matches!(event, Event::Want { .. }) {
            // A new election ranks by free space: measure it now, not at start.
            d.measure_free_space();
        }
        let forgotten = match &event {
            Event::Forget { key } => Some(key.clone()),
            _ => None,
        };
        let holding = d.holding(&event);
        // Every datagram already queued is handled before any timer fires: it
        // arrived before now, so the window or silence that ends now must count it
        // (a loaded host reads its queue late; deciding first elects a second
        // master while the first one's announcement waits in the queue).
        let after = if let Event::Received { .. } = event {
            d.handle(event).await;
            Event::Tick
        } else {
            event
        };
        d.drain(&mut buf).await;
        d.handle(after).await;
        if let Some(body) = holding {
            d.say_holding(body).await;
        }
        for answer in std::mem::take(&mut d.to_say) {
            d.say_holding(answer).await;
        }
        if let Some(key) = forgotten {
            d.shared.drop_role(&key);
        }
        *d.shared.status.lock().expect("status lock") = d.machine.status();
    }
}

impl Driver {
    /// Hand `event` to the state machine and carry out what it says.
    async fn handle(&mut self, event: Event) {
        if matches!(event, Event::Tick)
            && self
                .machine
                .next_deadline()
                .is_none_or(|t| t > Instant::now())
        {
            return;
        }
        let actions = self.machine.handle(Instant::now(), event);
        for action in actions {
            self.act(action).await;
        }
    }

    /// What a job's event means for this agent's holder messages: the one to send
    /// after the state machine had the event (the role it reads is the one before).
    fn holding(&mut self, event: &Event) -> Option<(ContentKey, Body)> {
        let (key, body) = match event {
            Event::Want {
                key,
                share_permille,
            }
            | Event::Progress {
                key,
                share_permille,
            } => {
                if !self.ads.in_play() {
                    return None;
                }
                let following = self.shared.role_of(key) == Some(true);
                let now = Instant::now();
                (key, self.ads.progress(key, *share_permille, following, now))
            }
            Event::Complete { key } => (key, self.ads.complete(key)),
            Event::Forget { key } => {
                self.ads.forget(key);
                return None;
            }
            _ => return None,
        };
        Some((key.clone(), body?))
    }

    /// FanOut over SMB: answer the holder queries owed, and ask, about every
    /// content copied here and not asked about for a while, who holds more of it.
    async fn ask_who_holds(&mut self) {
        let shared = Arc::clone(&self.shared);
        let due = self
            .ads
            .due(Instant::now(), |key| shared.role_of(key) == Some(true));
        for ask in due {
            self.say_holding(ask).await;
        }
    }

    /// Broadcast a holder message or query about `key`.
    async fn say_holding(&mut self, (key, body): (ContentKey, Body)) {
        let local = self.machine.local();
        let msg = Message {
            node_id: local.node_id,
            addr: local.addr,
            key,
            body,
            host: local.host.clone(),
        };
        self.broadcast(&msg).await;
    }

    /// Encode `msg` (stamped and tagged with a site key) and broadcast it.
    async fn broadcast(&mut self, msg: &Message) {
        let now = unix_ms(SystemTime::now());
        let auth = match &self.key {
            Some(k) => Some((k, self.stamper.next(now))),
            None => None,
        };
        match encode(msg, auth) {
            Ok(bytes) => {
                if let Err(e) = self.sock.send_to(&bytes, self.target).await {
                    tracing::warn!(target = %self.target, error = %e, "election broadcast failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "election message not encodable"),
        }
    }

    /// Handle the datagrams already queued on the socket (at most [`DRAIN_MAX`]).
    async fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..DRAIN_MAX {
            let dg = match recv::try_recv(&self.sock, buf) {
                Ok(dg) => dg,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "election socket receive failed");
                    return;
                }
            };
            if let Some(msg) = self.open(&buf[..dg.len], &dg) {
                self.handle(Event::Received { msg }).await;
            }
        }
    }

    /// Count a datagram read and decode it; `None` if it is dropped (counted and
    /// logged, one line per 100 so that a noisy neighbour cannot flood the log).
    fn open(&mut self, bytes: &[u8], dg: &recv::Datagram) -> Option<Message> {
        let s = &self.shared;
        s.received.fetch_add(1, Ordering::Relaxed);
        let lost = self.drops.update(dg.drops);
        if lost > 0 {
            let total = s.overflowed.fetch_add(lost, Ordering::Relaxed) + lost;
            // At most one line per 100 drops, at the first one.
            if (total - lost) / 100 != total / 100 || total == lost {
                tracing::warn!(
                    lost,
                    total,
                    "election datagrams dropped by the kernel: receive queue full"
                );
            }
        }
        let from = dg.from.map(|a| a.to_string()).unwrap_or_default();
        let (msg, stamp) = match decode_stamped(bytes, self.key.as_ref()) {
            Ok(m) => m,
            Err(e) => {
                let dropped = s.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped % 100 == 1 {
                    tracing::warn!(%from, error = %e, dropped, "election datagram dropped");
                }
                return None;
            }
        };
        if let Some(stamp) = stamp {
            let now = unix_ms(SystemTime::now());
            if let Err(e) = self.guard.check(msg.node_id, stamp, now) {
                let replayed = s.replayed.fetch_add(1, Ordering::Relaxed) + 1;
                if replayed % 100 == 1 {
                    tracing::warn!(%from, error = %e, replayed, "election message dropped: replayed or stale");
                }
                return None;
            }
        }
        self.heard.heard(&msg);
        match msg.body {
            Body::Holder(_) => {
                let wanted = self.shared.role_of(&msg.key).is_some();
                self.ads.hear(&msg, self.heard.own, wanted);
            }
            Body::WhoHolds { above_permille } if msg.node_id != self.heard.own => {
                // Answered unless a job here is master or electing for it.
                let may = self.shared.role_of(&msg.key) != Some(false);
                if let Some(note) = self
                    .ads
                    .answer(&msg.key, above_permille, may, Instant::now())
                {
                    self.to_say.push((msg.key.clone(), note));
                }
            }
            _ => {}
        }
        Some(msg)
    }

    fn measure_free_space(&mut self) {
        let Some(dir) = &self.cache_dir else { return };
        match crate::cache::clean::disk_space(dir) {
            Ok((free, _)) => {
                self.machine.set_free_bytes(free);
                self.shared.free_bytes.store(free, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "free space not measured"),
        }
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Broadcast(msg) => self.broadcast(&msg).await,
            Action::BecomeMaster { key } => {
                tracing::info!(content = %key, "elected master: downloading from the origin");
                self.shared
                    .masterships
                    .lock()
                    .expect("masterships lock")
                    .begin(&key, std::time::Instant::now());
                let before = self.shared.set_role(&key, Role::Master);
                let mut outcomes = self.shared.outcomes.lock().expect("outcomes lock");
                outcomes.elected(&key, None, &before);
                // Master before it: only a head start sets that (every end of a
                // mastership sets electing).
                if before == Role::Master {
                    outcomes.head_starts.kept += 1;
                }
            }
            Action::HeadStart { key } => {
                tracing::info!(content = %key, "best candidate so far: downloading from the origin before the election window ends (head start)");
                self.shared
                    .outcomes
                    .lock()
                    .expect("outcomes lock")
                    .head_starts
                    .taken += 1;
                self.shared.set_role(&key, Role::Master);
            }
            Action::HeadStartEnded { key } => {
                tracing::info!(content = %key, "head start ended: a better candidate or a master answered, or the job left");
                self.shared
                    .outcomes
                    .lock()
                    .expect("outcomes lock")
                    .head_starts
                    .ended += 1;
                self.shared.set_role(&key, Role::Electing);
            }
            Action::FollowMaster { key, master } => {
                tracing::info!(content = %key, master = %master.addr, share = master.share_permille, "following master");
                for body in self.ads.following(&key, Instant::now()) {
                    self.say_holding((key.clone(), body)).await;
                }
                let addr = Some(master.addr);
                let before = self
                    .shared
                    .role_sender(&key)
                    .send_replace(Role::Follow(master));
                self.shared
                    .outcomes
                    .lock()
                    .expect("outcomes lock")
                    .elected(&key, addr, &before);
            }
            Action::MasterLost { key } => {
                tracing::warn!(content = %key, "master lost: electing again");
                self.shared.role_sender(&key).send_replace(Role::Electing);
            }
            Action::StopMaster { key } => {
                tracing::info!(content = %key, "no longer master");
                self.shared
                    .masterships
                    .lock()
                    .expect("masterships lock")
                    .end(&key, std::time::Instant::now());
                self.shared.role_sender(&key).send_replace(Role::Electing);
            }
        }
    }
}
