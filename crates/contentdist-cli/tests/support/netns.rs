//! A branch office on one machine: Linux network namespaces on a bridge, with a
//! `tc`-shaped WAN link to an origin (root only).
//!
//! [`NetLab::create`] builds, with `ip` (iproute2) and `tc`:
//! - one "switch" namespace holding the bridge `br0` (the LAN switch);
//! - `hosts` namespaces, each with a veth `lan0` into the bridge and the address
//!   `10.77.N.(2+i)/24`, broadcast `10.77.N.255`;
//! - one "origin" namespace with `lan0` at `10.77.N.1/24`, whose egress has a `tbf`
//!   qdisc when `wan_rate_kbit` is set: downloads from the origin are shaped, traffic
//!   between hosts is not.
//!
//! Every namespace has loopback up and nothing else: no route leaves them, and the
//! root namespace is never touched. Namespace names are `cdl-PID-K-ROLE` (K counts the
//! labs of this process); [`NetLab`]'s `Drop` kills every process inside them and
//! deletes them, during a panic too, and `create` deletes those of dead processes
//! (a test binary killed before its `Drop` ran).
//!
//! Tests using this module must start with `if netns::skip_unless_root() { return; }`.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::nginx::{read_access_log, AccessEntry, LOG_FORMAT, NGINX_BIN};
use super::procs;

/// Start of every namespace name this module creates.
const NS_PREFIX: &str = "cdl-";
/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";
/// The interface every host and the origin have into the bridge.
pub const LAN_IF: &str = "lan0";
/// The port nginx listens on in the origin namespace.
pub const ORIGIN_PORT: u16 = 8080;
/// How long [`NetLab::nginx_in_origin`] waits for nginx to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Labs created by this process so far: part of every name, so parallel tests differ.
static LABS: AtomicU32 = AtomicU32::new(0);

/// Whether this process runs as root (namespaces, `tc` and bridges need it).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Prints "skipped: needs root" and returns true when not root: a test's first line.
pub fn skip_unless_root() -> bool {
    if running_as_root() {
        return false;
    }
    println!("skipped: needs root");
    true
}

/// How to build a [`NetLab`].
#[derive(Debug, Clone)]
pub struct NetLabOptions {
    /// Number of host namespaces (at most 200).
    pub hosts: usize,
    /// Rate of the origin's link (its egress, `tbf`), kbit/s; `None`: unshaped.
    pub wan_rate_kbit: Option<u64>,
}

impl Default for NetLabOptions {
    fn default() -> Self {
        NetLabOptions {
            hosts: 2,
            wan_rate_kbit: None,
        }
    }
}

/// A LAN of namespaces on a bridge plus an origin behind a slow link; dropped =
/// every process inside killed and every namespace deleted.
#[derive(Debug)]
pub struct NetLab {
    subnet: u8,
    switch: String,
    origin: String,
    hosts: Vec<String>,
}

impl NetLab {
    /// Builds the network (see the module doc). Panics, after deleting what it made,
    /// if a command fails.
    pub fn create(options: NetLabOptions) -> NetLab {
        assert!(
            options.hosts <= 200,
            "at most 200 hosts, not {}",
            options.hosts
        );
        remove_leftovers();
        let pid = std::process::id();
        let k = LABS.fetch_add(1, Ordering::Relaxed);
        let name = |role: &str| format!("{NS_PREFIX}{pid}-{k}-{role}");
        // The subnet only has to be unique inside our own namespaces; varying it with
        // the pid keeps captures and logs of parallel runs apart.
        let lab = NetLab {
            subnet: (20 + (pid + k) % 230) as u8,
            switch: name("sw"),
            origin: name("origin"),
            hosts: (0..options.hosts).map(|i| name(&format!("h{i}"))).collect(),
        };
        // From here on a panic drops `lab`, which deletes whatever exists already.
        for ns in lab.namespaces() {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &lab.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lab.switch, "link", "set", "br0", "up"]);
        lab.attach(&lab.origin, "porigin", lab.origin_addr());
        for i in 0..lab.hosts.len() {
            lab.attach(&lab.hosts[i], &format!("p{i}"), lab.host_addr(i));
        }
        if let Some(kbit) = options.wan_rate_kbit {
            // A burst of 50 ms at the rate (at least 32 KiB, so GSO segments fit).
            let burst = (kbit * 1000 / 8 / 20).max(32 * 1024).to_string();
            let rate = format!("{kbit}kbit");
            let mut tc = lab.command(&lab.origin, "tc");
            tc.args(["qdisc", "add", "dev", LAN_IF, "root", "tbf", "rate", &rate]);
            tc.args(["burst", &burst, "latency", "100ms"]);
            run(tc);
        }
        lab
    }

    /// Creates a veth pair: `port` on the bridge, `lan0` with `addr` in `ns`.
    fn attach(&self, ns: &str, port: &str, addr: Ipv4Addr) {
        let sw = self.switch.as_str();
        ip(&[
            "-n", sw, "link", "add", port, "type", "veth", "peer", "name", LAN_IF, "netns", ns,
        ]);
        ip(&["-n", sw, "link", "set", port, "master", "br0", "up"]);
        let cidr = format!("{addr}/24");
        let bcast = self.broadcast().to_string();
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &cidr,
            "broadcast",
            &bcast,
            "dev",
            LAN_IF,
        ]);
        ip(&["-n", ns, "link", "set", LAN_IF, "up"]);
    }

    /// Every namespace of this lab: switch, origin, hosts.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut all = vec![self.switch.as_str(), self.origin.as_str()];
        all.extend(self.hosts.iter().map(String::as_str));
        all
    }

    /// Name of host `i`'s namespace.
    pub fn host_ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address, `10.77.N.(2+i)`.
    pub fn host_addr(&self, i: usize) -> Ipv4Addr {
        assert!(i < self.hosts.len(), "no host {i}");
        Ipv4Addr::new(10, 77, self.subnet, 2 + i as u8)
    }

    /// Name of the origin's namespace.
    pub fn origin_ns(&self) -> &str {
        &self.origin
    }

    /// The origin's address, `10.77.N.1`.
    pub fn origin_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// The LAN's broadcast address, `10.77.N.255`.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 255)
    }

    /// `ip netns exec NS program`: add arguments, stdio, then run it.
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// Spawns a plain `cmd` (its stdio, environment and arguments kept) inside `ns`,
    /// tied to the test process (it gets SIGTERM when the test process ends). The
    /// child's pid is the program's own. `Drop` of the lab kills it if still running.
    pub fn spawn(&self, ns: &str, mut cmd: Command) -> Child {
        let handle = open_ns(ns);
        let fd = handle.as_raw_fd();
        // SAFETY: runs between fork and exec and only calls setns(2); `handle` stays
        // open until the spawn returned (its fd is close-on-exec, so the program
        // does not inherit it).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child =
            procs::spawn_tied(cmd).unwrap_or_else(|e| panic!("spawn {program} in {ns}: {e}"));
        drop(handle);
        child
    }

    /// Runs `f` on a new thread inside `ns` and returns its result: sockets it
    /// creates belong to `ns` (and may be used from any thread afterwards).
    pub fn run_in<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        in_netns(ns, f)
    }

    /// Starts nginx inside the origin namespace on `origin_addr:8080`, serving `root`,
    /// and waits until it accepts connections.
    pub fn nginx_in_origin(&self, root: &Path) -> NsNginx {
        NsNginx::start(self, root)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        let names: Vec<String> = self.namespaces().iter().map(|s| s.to_string()).collect();
        for ns in &names {
            kill_all_in(ns);
        }
        for ns in &names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Deletes namespaces left by processes of this module that died without `Drop`.
fn remove_leftovers() {
    for ns in list_namespaces() {
        let Some(pid) = ns
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(&ns);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

/// Names listed by `ip netns list` (each line is `NAME` or `NAME (id: N)`).
pub fn list_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// SIGKILLs every process in `ns` (never this process) and waits, briefly, for them
/// to be gone.
fn kill_all_in(ns: &str) {
    let me = std::process::id();
    let pids = || -> Vec<u32> {
        let out = Command::new("ip").args(["netns", "pids", ns]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let pids = text.unwrap_or_default();
        pids.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p != me)
            .collect()
    };
    for pid in pids() {
        // SAFETY: kill(2) on a pid that was inside our own namespace a moment ago.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    super::wait_until(Duration::from_secs(5), || pids().is_empty());
}

fn open_ns(ns: &str) -> File {
    let path = format!("{NETNS_DIR}/{ns}");
    File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"))
}

/// Runs `f` on a new thread that entered network namespace `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let handle = open_ns(ns);
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            // SAFETY: setns on this thread only, with an open namespace handle.
            if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                panic!("setns {ns}: {}", io::Error::last_os_error());
            }
            f()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `ip ARGS`; panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd);
}

fn run(mut cmd: Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nginx running in the origin namespace of a [`NetLab`]; dropped = stopped.
pub struct NsNginx {
    child: Child,
    addr: SocketAddrV4,
    prefix: tempfile::TempDir,
}

impl NsNginx {
    fn start(lab: &NetLab, root: &Path) -> NsNginx {
        let prefix = tempfile::Builder::new()
            .prefix("contentdist-nsnginx")
            .tempdir()
            .expect("create nginx prefix");
        let p = prefix.path().to_path_buf();
        let p = p.as_path();
        for dir in ["logs", "tmp"] {
            std::fs::create_dir_all(p.join(dir)).expect("create nginx dirs");
        }
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("nginx root {}: {e}", root.display()));
        let addr = SocketAddrV4::new(lab.origin_addr(), ORIGIN_PORT);
        let conf = p.join("nginx.conf");
        std::fs::write(&conf, config(p, &root, addr)).expect("write nginx.conf");
        let stderr = File::create(p.join("logs/stderr.log")).expect("create nginx stderr log");
        let mut cmd = Command::new(NGINX_BIN);
        cmd.arg("-p")
            .arg(p)
            .arg("-e")
            .arg(p.join("logs/error.log"))
            .arg("-c")
            .arg(&conf);
        cmd.args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut nginx = NsNginx {
            child: lab.spawn(lab.origin_ns(), cmd),
            addr,
            prefix,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}: {}", nginx.error_log());
            }
            // The pid file is written after the sockets are bound.
            let connect =
                || TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_millis(200));
            if p.join("nginx.pid").exists() && lab.run_in(lab.origin_ns(), connect).is_ok() {
                return nginx;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not ready within {START_TIMEOUT:?}: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://10.77.N.1:8080`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address nginx listens on (inside the origin namespace).
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// nginx's pid (the master process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// nginx's error log followed by its stderr.
    pub fn error_log(&self) -> String {
        let read =
            |f: &str| std::fs::read_to_string(self.prefix.path().join(f)).unwrap_or_default();
        read("logs/error.log") + &read("logs/stderr.log")
    }

    /// The requests logged so far, oldest first (nginx logs a request once its
    /// response is finished: see [`NsNginx::wait_access_log`]).
    pub fn access_log(&self) -> Vec<AccessEntry> {
        read_access_log(self.prefix.path())
    }

    /// Waits up to `timeout` for at least `count` access-log entries and returns them.
    pub fn wait_access_log(&self, count: usize, timeout: Duration) -> Vec<AccessEntry> {
        super::wait_until(timeout, || self.access_log().len() >= count);
        self.access_log()
    }

    /// Sum of `$body_bytes_sent` over the access log.
    pub fn bytes_sent_total(&self) -> u64 {
        self.access_log().iter().map(|e| e.bytes_sent).sum()
    }
}

impl Drop for NsNginx {
    fn drop(&mut self) {
        procs::terminate(&mut self.child, Duration::from_secs(5));
    }
}

fn config(prefix: &Path, root: &Path, addr: SocketAddrV4) -> String {
    let p = prefix.display();
    let mut c = String::new();
    if running_as_root() {
        // Workers would otherwise run as www-data, which cannot read our temp dirs.
        c.push_str("user root root;\n");
    }
    let _ = write!(
        c,
        "worker_processes 1;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20 default_type application/octet-stream;\n\
         \x20 types {{ application/json json; }}\n\
         \x20 sendfile on;\n\
         \x20 keepalive_requests 100000;\n\
         \x20 client_body_temp_path {p}/tmp/body;\n\
         \x20 proxy_temp_path {p}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {p}/tmp/fastcgi;\n\
         \x20 uwsgi_temp_path {p}/tmp/uwsgi;\n\
         \x20 scgi_temp_path {p}/tmp/scgi;\n\
         \x20 {LOG_FORMAT}\n\
         \x20 access_log {p}/logs/access.log contentdist;\n\
         \x20 server {{\n\
         \x20   listen {addr};\n\
         \x20   root {root};\n\
         \x20   autoindex off;\n\
         \x20 }}\n\
         }}\n",
        root = root.display()
    );
    c
}
