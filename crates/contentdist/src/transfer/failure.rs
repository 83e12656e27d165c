//! One HTTP failure type for every remote we fetch from, built in one place.
//!
//! The origin and a master fail in the same ways (no connection, a rejected
//! certificate, silence, a status we did not want, a malformed answer); what differs
//! is the catalogue code a status maps to and how the message reads, and both follow
//! from who is at the other end ([`Remote`]). So [`classify`] and [`check_status`]
//! take the remote and settle, once, the two facts a caller decides from: the code
//! and whether trying again can help (pingora's error has the same shape).

use std::fmt;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::codes::Code;

/// Who answers at the other end of a transfer. It fixes which catalogue code a
/// status means and how a failure reads to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    /// The origin: any web server serving what `contentdist publish` wrote.
    Origin,
    /// An elected master, speaking the peer-copy protocol (see [`crate::peer`]).
    Master,
}

impl Remote {
    /// In a log line: `origin` or `peer`.
    pub fn name(self) -> &'static str {
        match self {
            Remote::Origin => "origin",
            Remote::Master => "peer",
        }
    }
}

/// What kind of failure, independent of the code it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No usable connection: refused, unreachable, name unknown, timed out, or broken
    /// before an answer came. The code says which.
    Unreachable {
        /// The cause, in words.
        detail: String,
    },
    /// The TLS handshake failed or the certificate was rejected.
    Tls {
        /// The cause, in words.
        detail: String,
    },
    /// Nothing arrived for the stall timeout.
    Stalled {
        /// The timeout, in seconds.
        secs: u64,
    },
    /// The remote answered with a status the exchange does not accept.
    Status(u16),
    /// The answer was malformed or cut short.
    BadResponse {
        /// What was wrong.
        detail: String,
    },
    /// An SMB server answered with a status the exchange does not accept.
    SmbStatus {
        /// The NTSTATUS, as smb2 words it.
        status: String,
        /// The HTTP status of the same meaning (403 refused, 404 not there, 500
        /// anything else), which callers decide on as for HTTP.
        like: u16,
    },
}

/// One failed HTTP exchange: what was asked, what happened, the catalogue code and
/// whether a retry can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFailure {
    /// Who was asked.
    pub remote: Remote,
    /// What was asked for.
    pub url: String,
    /// What happened.
    pub kind: FailureKind,
    /// The catalogue code.
    pub code: Code,
    /// True when trying again (the same remote, later) may help.
    pub retryable: bool,
}

impl HttpFailure {
    fn new(remote: Remote, url: &Url, kind: FailureKind, code: Code) -> HttpFailure {
        // A status is retryable only as a server error (see `check_status`); every
        // other kind is the path or the server misbehaving, which may recover. TLS
        // failures are settings, which do not.
        let retryable = match &kind {
            FailureKind::Unreachable { .. }
            | FailureKind::Stalled { .. }
            | FailureKind::BadResponse { .. } => true,
            FailureKind::Tls { .. } => false,
            FailureKind::Status(s) | FailureKind::SmbStatus { like: s, .. } => {
                (500..=599).contains(s)
            }
        };
        HttpFailure {
            remote,
            url: url.to_string(),
            kind,
            code,
            retryable,
        }
    }

    /// A failure of a master's SMB share at `url` (`smb://…`): the SMB client
    /// settles `kind` and `code` from the server's status or the transport error.
    pub fn smb(url: &str, kind: FailureKind, code: Code) -> HttpFailure {
        let mut f = HttpFailure::new(
            Remote::Master,
            &Url::parse("smb://placeholder/").expect("a valid URL"),
            kind,
            code,
        );
        f.url = url.to_string();
        f
    }

    /// The answer was malformed or cut short (`INVALID_SERVER_RESPONSE`, retryable).
    pub fn bad_response(remote: Remote, url: &Url, detail: String) -> HttpFailure {
        HttpFailure::new(
            remote,
            url,
            FailureKind::BadResponse { detail },
            Code::INVALID_SERVER_RESPONSE,
        )
    }

    /// A web server that finished the TLS handshake and then refused this agent's
    /// client certificate in an HTTP answer (nginx with `ssl_verify_client on`
    /// answers 400 "No required SSL certificate was sent" instead of a TLS alert):
    /// 0x209A when this agent `presented` none, 0x2F8F when it was refused. `said`
    /// is the server's own words.
    pub fn client_cert_refused(
        remote: Remote,
        url: &Url,
        presented: bool,
        said: &str,
    ) -> HttpFailure {
        let (code, what) = if presented {
            (
                Code::SECURE_FAILURE,
                "the server refused this agent's client certificate",
            )
        } else {
            (
                Code::CLIENT_CERT_MISSING,
                "the server requires a client certificate and this agent has none (see contentdist certs)",
            )
        };
        let detail = format!("{what}; it answered: {}", said.trim());
        HttpFailure::new(remote, url, FailureKind::Tls { detail }, code)
    }

    /// Nothing arrived for `timeout` (`TIMEOUT`, retryable).
    pub fn stalled(remote: Remote, url: &Url, timeout: Duration) -> HttpFailure {
        let secs = timeout.as_secs();
        HttpFailure::new(remote, url, FailureKind::Stalled { secs }, Code::TIMEOUT)
    }

    /// The HTTP status, when the failure is one.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            FailureKind::Status(s) | FailureKind::SmbStatus { like: s, .. } => Some(s),
            _ => None,
        }
    }

    /// The remote went silent or away (no connection, stall): as opposed to an
    /// answer we did not like.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Unreachable { .. } | FailureKind::Stalled { .. }
        )
    }
}

impl fmt::Display for HttpFailure {
    // The texts predate this type and users (and tests) know them: keep them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.url;
        match (&self.kind, self.remote) {
            (FailureKind::Unreachable { detail }, Remote::Origin) => write!(f, "{url}: {detail}"),
            (FailureKind::Unreachable { detail }, Remote::Master) => {
                write!(f, "master {url} is unreachable: {detail}")
            }
            (FailureKind::Tls { detail }, _) => {
                write!(f, "{url}: secure channel failure: {detail}")
            }
            (FailureKind::Stalled { secs }, _) => write!(f, "{url}: no data for {secs} s"),
            (FailureKind::BadResponse { detail }, _) => write!(f, "{url}: {detail}"),
            (FailureKind::Status(s @ (404 | 410)), Remote::Origin) => {
                write!(f, "{url}: not found on the origin (HTTP {s})")
            }
            (FailureKind::Status(s @ 500..=599), Remote::Origin) => {
                write!(f, "{url}: origin server error (HTTP {s})")
            }
            (FailureKind::Status(s), Remote::Origin) => {
                write!(f, "{url}: refused by the origin (HTTP {s})")
            }
            (FailureKind::Status(s @ (401 | 403)), Remote::Master) => write!(
                f,
                "master refused {url} (HTTP {s}): check AuthenticatedUsers on the master, the peer's SpecialNetShare 0x80 (machine account) and that both have the same machine key"
            ),
            (FailureKind::Status(404), Remote::Master) => {
                write!(f, "{url}: the master does not hold this content (HTTP 404)")
            }
            (FailureKind::Status(s), Remote::Master) => write!(f, "{url}: unexpected HTTP {s}"),
            (FailureKind::SmbStatus { status, like: 401 | 403 }, _) => write!(
                f,
                "master refused {url} ({status}): check that the master serves SMB with the P2P account (its log, contentdist status: smb) and that P2PSmbPort is the same on every agent"
            ),
            (FailureKind::SmbStatus { status, like: 404 }, _) => {
                write!(f, "{url}: the master does not hold this content ({status})")
            }
            (FailureKind::SmbStatus { status, .. }, _) => write!(f, "{url}: unexpected SMB answer {status}"),
        }
    }
}

impl std::error::Error for HttpFailure {}

/// 2xx is fine; anything else is a failure whose code depends on who answered.
///
/// Origin: 404 and 410 not found, 5xx a server error (retryable), any other status a
/// refusal. Master: 401 and 403 a refusal (reported as `ORIGIN_REFUSED`, the nearest
/// meaning in the catalogue), everything else a status the protocol does not use.
pub fn check_status(remote: Remote, url: &Url, status: StatusCode) -> Result<(), HttpFailure> {
    let s = status.as_u16();
    if status.is_success() {
        return Ok(());
    }
    let code = match (remote, s) {
        (Remote::Origin, 404 | 410) => Code::ORIGIN_NOT_FOUND,
        (Remote::Origin, 500..=599) => Code::ORIGIN_SERVER_ERROR,
        (Remote::Origin, _) => Code::ORIGIN_REFUSED,
        (Remote::Master, 401 | 403) => Code::ORIGIN_REFUSED,
        (Remote::Master, _) => Code::INVALID_SERVER_RESPONSE,
    };
    Err(HttpFailure::new(remote, url, FailureKind::Status(s), code))
}

/// A rustls error with the reason in words where the certificate was refused (the
/// page: "the logging does not identify the cause": ours does).
fn tls_words(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => {
                "its issuer is not a trusted CA (CertStoreDir/trusted/ for peers, OriginCaFile for the origin)"
            }
            C::Expired | C::ExpiredContext { .. } => "it has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet",
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "it does not carry the server's name (for a master: its host name or FQDN; P2PEnabled 0x08 ignores names)"
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "it is not for server authentication"
            }
            C::Revoked => "it is revoked",
            _ => "",
        },
        // TLS 1.3 reports a refused client certificate as an alert after the
        // handshake seemed done: say that it was ours that was refused.
        rustls::Error::AlertReceived(a) => {
            use rustls::AlertDescription as A;
            match a {
                A::CertificateRequired => {
                    "the server requires a client certificate and this agent has none (P2PSslSettings 0x2: see contentdist certs)"
                }
                A::UnknownCA => {
                    "the server refused this agent's client certificate: not issued by a CA it trusts, or self-signed"
                }
                A::CertificateExpired => {
                    "the server refused this agent's client certificate: expired or not valid yet"
                }
                A::UnsupportedCertificate => {
                    "the server refused this agent's client certificate: not for client authentication"
                }
                A::BadCertificate | A::CertificateUnknown | A::AccessDenied => {
                    "the server refused this agent's client certificate"
                }
                _ => "",
            }
        }
        _ => "",
    };
    match e {
        _ if why.is_empty() => e.to_string(),
        rustls::Error::AlertReceived(_) => format!("{e}: {why}"),
        _ => format!("{e}: the certificate was refused because {why}"),
    }
}

/// Turn a reqwest error into an [`HttpFailure`]: walk the cause chain for the I/O or
/// TLS error underneath, since reqwest's own kinds do not say refused from
/// unreachable.
pub fn classify(remote: Remote, url: &Url, e: &reqwest::Error) -> HttpFailure {
    let unreachable = |code, detail: String| {
        HttpFailure::new(remote, url, FailureKind::Unreachable { detail }, code)
    };
    let tls = |detail: String| {
        HttpFailure::new(
            remote,
            url,
            FailureKind::Tls { detail },
            Code::SECURE_FAILURE,
        )
    };
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = Vec::new();
    while let Some(s) = src {
        let rustls_error = s.downcast_ref::<rustls::Error>().or_else(|| {
            s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(t) = rustls_error {
            let code = match t {
                // The server asked for a client certificate and this agent had none.
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
                    Code::CLIENT_CERT_MISSING
                }
                _ => Code::SECURE_FAILURE,
            };
            return HttpFailure::new(
                remote,
                url,
                FailureKind::Tls {
                    detail: tls_words(t),
                },
                code,
            );
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let code = match (io.kind(), io.raw_os_error()) {
                (std::io::ErrorKind::ConnectionRefused, _) => Some(Code::CANNOT_CONNECT),
                (_, Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
                    Some(Code::NETWORK_UNREACHABLE)
                }
                (std::io::ErrorKind::TimedOut, _) if e.is_connect() => Some(Code::CANNOT_CONNECT),
                (std::io::ErrorKind::TimedOut, _) => {
                    // A read timeout (the peer client's stall timeout).
                    let detail = match remote {
                        Remote::Master => "no data from the master".to_string(),
                        Remote::Origin => io.to_string(),
                    };
                    return unreachable(Code::TIMEOUT, detail);
                }
                _ => None,
            };
            if let Some(code) = code {
                return unreachable(code, io.to_string());
            }
        }
        text.push(s.to_string());
        src = s.source();
    }
    let detail = text.join(": ");
    // Some connectors box the rustls error in their own type, so the downcasts above
    // miss it; its text is stable and specific.
    if [
        "invalid peer certificate",
        "received fatal alert",
        "tls handshake",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|m| detail.contains(m))
    {
        if detail.contains("CertificateRequired") {
            return HttpFailure::new(
                remote,
                url,
                FailureKind::Tls { detail },
                Code::CLIENT_CERT_MISSING,
            );
        }
        return tls(detail);
    }
    if e.is_connect() {
        let code = if detail.contains("dns error") || detail.contains("failed to lookup") {
            Code::NAME_NOT_RESOLVED
        } else {
            Code::CANNOT_CONNECT
        };
        return unreachable(code, detail);
    }
    if e.is_timeout() {
        return unreachable(Code::TIMEOUT, format!("no answer in time: {detail}"));
    }
    match remote {
        // The connection broke before an answer came: a master that did so went
        // away (elect again); an origin's is a bad answer, worth retrying.
        Remote::Master if !(e.is_body() || e.is_decode()) => {
            unreachable(Code::CANNOT_CONNECT, detail)
        }
        _ => HttpFailure::bad_response(remote, url, format!("transfer failed: {detail}")),
    }
}

/// Await a reqwest step, abandoning it when nothing happens for `timeout`.
pub async fn stall_guard<T>(
    remote: Remote,
    url: &Url,
    timeout: Duration,
    step: impl std::future::Future<Output = Result<T, reqwest::Error>>,
) -> Result<T, HttpFailure> {
    match tokio::time::timeout(timeout, step).await {
        Ok(r) => r.map_err(|e| classify(remote, url, &e)),
        Err(_) => Err(HttpFailure::stalled(remote, url, timeout)),
    }
}
