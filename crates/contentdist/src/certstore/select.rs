//! Choosing the server-authentication certificate, by the product page's
//! "Server authentication certificate selection": usage Server Authentication;
//! subject or DNS name equal to the host name or the FQDN; valid now; issuer in
//! `CertIssuer` when set. Among several: host name and FQDN both, then host name,
//! then FQDN; then the longest validity (the latest NotAfter). Every certificate not
//! chosen gets the rule that rejected it, for the log and `contentdist certs`.

use super::CertInfo;

/// The names certificates are matched against: from the system, or the settings
/// `HostName` and `Fqdn`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostIdentity {
    /// The short host name (`dp01`).
    pub host_name: String,
    /// The fully qualified name (`dp01.branch.example`); may equal the host name.
    pub fqdn: String,
}

/// `CertIssuer`: each entry is a CA name or a part common to the CA names wanted,
/// compared without case against the issuer; empty: any issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerFilter(pub Vec<String>);

impl IssuerFilter {
    /// True when `issuer` is allowed.
    pub fn allows(&self, issuer: &str) -> bool {
        let issuer = issuer.to_lowercase();
        self.0.is_empty()
            || self
                .0
                .iter()
                .map(|p| p.trim().to_lowercase())
                .any(|p| !p.is_empty() && issuer.contains(&p))
    }
}

/// Which of the host's names a certificate carries, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameMatch {
    /// Both the host name and the FQDN.
    Both,
    /// The host name only.
    HostName,
    /// The FQDN only.
    Fqdn,
}

/// Why a certificate was not chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Its extended key usage excludes server authentication.
    NoServerUsage,
    /// Neither its subject nor its DNS names are the host name or the FQDN.
    NameMismatch,
    /// NotBefore is in the future.
    NotYetValid,
    /// NotAfter is in the past.
    Expired,
    /// Its issuer is not in `CertIssuer`.
    IssuerNotAllowed,
    /// It meets every criterion, but the chosen one ranks higher (names, then
    /// validity).
    Outranked {
        /// The chosen certificate's thumbprint.
        by: String,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NoServerUsage => {
                write!(f, "not for server authentication (extended key usage)")
            }
            Rejection::NameMismatch => write!(
                f,
                "subject and DNS names are neither the host name nor the FQDN"
            ),
            Rejection::NotYetValid => write!(f, "not valid yet (NotBefore is in the future)"),
            Rejection::Expired => write!(f, "expired (NotAfter is in the past)"),
            Rejection::IssuerNotAllowed => write!(f, "issuer not in CertIssuer"),
            Rejection::Outranked { by } => {
                write!(f, "valid, but {by} ranks higher (names, then validity)")
            }
        }
    }
}

/// The outcome of a selection: the index chosen, and for every other certificate
/// its index and the first rule it failed, in the page's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerChoice {
    /// Index into the certificates given, when one qualifies.
    pub chosen: Option<usize>,
    /// Every other certificate and why.
    pub rejected: Vec<(usize, Rejection)>,
}

fn name_match(c: &CertInfo, id: &HostIdentity) -> Option<NameMatch> {
    let host = c.names(&id.host_name);
    let fqdn = c.names(&id.fqdn);
    match (host, fqdn) {
        // A host whose FQDN is its host name has one name: it counts as both.
        (true, true) => Some(NameMatch::Both),
        (true, false) => Some(NameMatch::HostName),
        (false, true) => Some(NameMatch::Fqdn),
        (false, false) => None,
    }
}

/// Choose among `certs` (this host's certificates that have a private key) at
/// `now` (Unix seconds).
pub fn select_server(
    certs: &[CertInfo],
    id: &HostIdentity,
    issuers: &IssuerFilter,
    now: i64,
) -> ServerChoice {
    let mut rejected = Vec::new();
    let mut fit: Vec<(usize, NameMatch)> = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let names = name_match(c, id);
        let why = if !c.server_auth {
            Some(Rejection::NoServerUsage)
        } else if names.is_none() {
            Some(Rejection::NameMismatch)
        } else if c.not_before > now {
            Some(Rejection::NotYetValid)
        } else if c.not_after <= now {
            Some(Rejection::Expired)
        } else if !issuers.allows(&c.issuer) {
            Some(Rejection::IssuerNotAllowed)
        } else {
            None
        };
        match (why, names) {
            (Some(r), _) => rejected.push((i, r)),
            (None, Some(n)) => fit.push((i, n)),
            (None, None) => unreachable!("a name mismatch is rejected above"),
        }
    }
    // Best names first, then the latest NotAfter; the thumbprint makes the order
    // total, so the same store always gives the same choice.
    fit.sort_by(|(a, na), (b, nb)| {
        na.cmp(nb)
            .then(certs[*b].not_after.cmp(&certs[*a].not_after))
            .then(certs[*a].thumbprint.cmp(&certs[*b].thumbprint))
    });
    let chosen = fit.first().map(|&(i, _)| i);
    if let Some(c) = chosen {
        for &(i, _) in &fit[1..] {
            rejected.push((
                i,
                Rejection::Outranked {
                    by: certs[c].thumbprint.clone(),
                },
            ));
        }
    }
    rejected.sort_by_key(|&(i, _)| i);
    ServerChoice { chosen, rejected }
}
