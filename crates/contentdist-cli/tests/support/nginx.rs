//! A real nginx serving a directory: the origin (distribution point) of the tests.
//!
//! Each [`Nginx`] runs its own master process (`nginx -p PREFIX -c CONF -g 'daemon
//! off;'`) with everything (config, pid file, logs, temp dirs) in its own temporary
//! prefix, so tests can run many of them in parallel, as root or not.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::procs;

/// The nginx binary (Debian package `nginx`).
pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// How long [`Nginx::start`] waits for nginx to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many ports [`Nginx::start`] tries when another process took the chosen one.
const PORT_ATTEMPTS: u32 = 5;

/// A certificate and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (leaf first), PEM.
    pub cert: PathBuf,
    /// Private key of the leaf, PEM, unencrypted.
    pub key: PathBuf,
}

/// Whether an HTTPS nginx asks clients for a certificate.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// CA certificate (PEM) client certificates must chain to.
    pub ca_cert: PathBuf,
    /// true: `ssl_verify_client on` (no certificate → 400); false: `optional`.
    pub required: bool,
}

/// How to start an [`Nginx`].
#[derive(Debug, Clone, Default)]
pub struct NginxOptions {
    /// Directory served at `/`.
    pub root: PathBuf,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// With `tls`: ask clients for a certificate.
    pub client_auth: Option<ClientAuth>,
    /// With `tls`: also offer HTTP/2 through ALPN.
    pub http2: bool,
    /// nginx `limit_rate`: bytes per second per connection (simulates a slow WAN).
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// Worker processes; 0 means 1.
    pub workers: usize,
    /// Extra directives placed inside the `server { }` block, verbatim.
    pub extra_server_config: String,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Decoded, normalised path (`$uri`), e.g. `/pkg/file.bin`.
    pub path: String,
    /// The raw request line, e.g. `GET /pkg/file.bin HTTP/1.1`.
    pub request: String,
    /// Response status.
    pub status: u16,
    /// Body bytes sent to the client (`$body_bytes_sent`).
    pub bytes_sent: u64,
    /// The request's `Range` header, if any.
    pub range: Option<String>,
}

/// A running nginx; dropped = stopped (SIGTERM, then SIGKILL) and reaped.
pub struct Nginx {
    child: Child,
    port: u16,
    https: bool,
    prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on a free 127.0.0.1 port and waits until it accepts TCP
    /// connections. The error says why, with nginx's error log.
    pub fn start(options: NginxOptions) -> std::io::Result<Nginx> {
        Nginx::start_inner(options).map_err(std::io::Error::other)
    }

    fn start_inner(options: NginxOptions) -> Result<Nginx, String> {
        let prefix = tempfile::Builder::new()
            .prefix("contentdist-nginx")
            .tempdir()
            .map_err(|e| format!("create nginx prefix dir: {e}"))?;
        for dir in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.path().join(dir))
                .map_err(|e| format!("create nginx {dir} dir: {e}"))?;
        }
        let root = options
            .root
            .canonicalize()
            .map_err(|e| format!("nginx root {}: {e}", options.root.display()))?;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = super::free_port();
            let mut child = spawn(&options, &root, prefix.path(), port)?;
            match wait_ready(&mut child, port, prefix.path()) {
                Ok(()) => {
                    return Ok(Nginx {
                        child,
                        port,
                        https: options.tls.is_some(),
                        prefix,
                    })
                }
                Err(e) => {
                    procs::terminate(&mut child, Duration::from_secs(2));
                    let in_use = read_error_log(prefix.path()).contains("Address already in use");
                    last_error = e;
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The TCP port nginx listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The prefix directory (config, logs, pid file).
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// Contents of nginx's error log (startup problems, TLS handshake failures, ...).
    pub fn error_log(&self) -> String {
        read_error_log(self.prefix.path())
    }

    /// The requests logged so far, oldest first. nginx writes a line once the
    /// response is finished, which can be a moment after the client saw the last
    /// byte: use [`Nginx::wait_access_log`] right after a request.
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

    /// Sum of `$body_bytes_sent` over requests whose path starts with `prefix`.
    pub fn bytes_sent_for_prefix(&self, prefix: &str) -> u64 {
        self.access_log()
            .iter()
            .filter(|e| e.path.starts_with(prefix))
            .map(|e| e.bytes_sent)
            .sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        procs::terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Writes the config for `port` and spawns the master process.
fn spawn(options: &NginxOptions, root: &Path, prefix: &Path, port: u16) -> Result<Child, String> {
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, config(options, root, prefix, port))
        .map_err(|e| format!("write {}: {e}", conf_path.display()))?;
    // Start each attempt with empty logs and no pid file, so the diagnosis and the
    // readiness check see only this attempt.
    let error_log = prefix.join("logs/error.log");
    std::fs::write(&error_log, b"")
        .map_err(|e| format!("truncate {}: {e}", error_log.display()))?;
    let _ = std::fs::remove_file(prefix.join("nginx.pid"));
    let stderr = std::fs::File::create(prefix.join("logs/stderr.log"))
        .map_err(|e| format!("create nginx stderr log: {e}"))?;
    let mut cmd = Command::new(NGINX_BIN);
    cmd.arg("-p")
        .arg(prefix)
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    procs::spawn_tied(cmd).map_err(|e| format!("spawn {NGINX_BIN}: {e}"))
}

/// Waits until `port` accepts connections, failing early if nginx exits.
fn wait_ready(child: &mut Child, port: u16, prefix: &Path) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "nginx exited with {status} before accepting connections: {}",
                read_error_log(prefix)
            ));
        }
        // nginx writes its pid file after binding its sockets: with a successful
        // connect it means this nginx (not a process that took the port) is ready.
        if prefix.join("nginx.pid").exists()
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nginx did not accept connections within {START_TIMEOUT:?}: {}",
                read_error_log(prefix)
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// nginx's error log followed by its stderr.
fn read_error_log(prefix: &Path) -> String {
    let mut log = std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
    if let Ok(stderr) = std::fs::read_to_string(prefix.join("logs/stderr.log")) {
        log.push_str(&stderr);
    }
    log
}

/// Whether this process runs as root: nginx's master then switches workers to the
/// `user` directive's account (www-data by default), which cannot read our temp dirs.
fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn config(options: &NginxOptions, root: &Path, prefix: &Path, port: u16) -> String {
    let p = prefix.display();
    let mut c = String::new();
    if running_as_root() {
        c.push_str("user root root;\n");
    }
    let workers = options.workers.max(1);
    let _ = write!(
        c,
        "worker_processes {workers};\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20 default_type application/octet-stream;\n\
         \x20 types {{ application/json json; text/plain txt; }}\n\
         \x20 sendfile on;\n\
         \x20 tcp_nopush on;\n\
         \x20 keepalive_timeout 65;\n\
         \x20 keepalive_requests 100000;\n\
         \x20 server_tokens off;\n\
         \x20 client_body_temp_path {p}/tmp/body;\n\
         \x20 proxy_temp_path {p}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {p}/tmp/fastcgi;\n\
         \x20 uwsgi_temp_path {p}/tmp/uwsgi;\n\
         \x20 scgi_temp_path {p}/tmp/scgi;\n\
         \x20 {LOG_FORMAT}\n\
         \x20 access_log {p}/logs/access.log contentdist;\n\
         \x20 server {{\n"
    );
    let listen_extra = match (&options.tls, options.http2) {
        (Some(_), true) => " ssl http2",
        (Some(_), false) => " ssl",
        (None, _) => "",
    };
    let _ = writeln!(c, "    listen 127.0.0.1:{port}{listen_extra};");
    let _ = writeln!(c, "    server_name localhost;");
    let _ = writeln!(c, "    root {};", root.display());
    c.push_str("    autoindex off;\n");
    if let Some(tls) = &options.tls {
        let _ = writeln!(c, "    ssl_certificate {};", tls.cert.display());
        let _ = writeln!(c, "    ssl_certificate_key {};", tls.key.display());
        c.push_str("    ssl_protocols TLSv1.2 TLSv1.3;\n");
        if let Some(auth) = &options.client_auth {
            let _ = writeln!(c, "    ssl_client_certificate {};", auth.ca_cert.display());
            let mode = if auth.required { "on" } else { "optional" };
            let _ = writeln!(c, "    ssl_verify_client {mode};");
            c.push_str("    ssl_verify_depth 3;\n");
        }
    }
    if let Some(rate) = options.rate_limit_bytes_per_sec {
        let _ = writeln!(c, "    limit_rate {rate};");
    }
    if !options.extra_server_config.is_empty() {
        c.push_str(&options.extra_server_config);
        c.push('\n');
    }
    c.push_str("  }\n}\n");
    c
}

/// The `log_format` line every test nginx uses: one JSON object per request, read
/// back by [`read_access_log`].
pub(super) const LOG_FORMAT: &str = r#"log_format contentdist escape=json '{"method":"$request_method","path":"$uri","request":"$request","status":$status,"bytes":$body_bytes_sent,"range":"$http_range"}';"#;

/// The requests logged so far in `prefix/logs/access.log`, oldest first.
pub(super) fn read_access_log(prefix: &Path) -> Vec<AccessEntry> {
    let text = std::fs::read_to_string(prefix.join("logs/access.log")).unwrap_or_default();
    text.lines()
        .filter(|line| line.ends_with('}'))
        .map(|line| {
            parse_access_line(line).unwrap_or_else(|e| panic!("access log line {line:?}: {e}"))
        })
        .collect()
}

fn parse_access_line(line: &str) -> Result<AccessEntry, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let text = |key: &str| {
        v[key]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("no {key}"))
    };
    let number = |key: &str| v[key].as_u64().ok_or(format!("no {key}"));
    let range = text("range")?;
    Ok(AccessEntry {
        method: text("method")?,
        path: text("path")?,
        request: text("request")?,
        status: number("status")? as u16,
        bytes_sent: number("bytes")?,
        range: (!range.is_empty()).then_some(range),
    })
}
