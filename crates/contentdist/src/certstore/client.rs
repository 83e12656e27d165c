//! Choosing the client-authentication certificate a peer presents to the master,
//! by the product page's "Client authentication certificate selection".
//!
//! A certificate is usable when it is for client authentication, PKI-issued (the
//! page: self-signed certificates cannot be used), valid now, and, when
//! `CertIssuer` is set, issued by one of its CAs. The page's rule 1 prefers
//! CertIssuer's certificates, but its "Missing or invalid" section counts a
//! certificate "not from the specified issuer" as no valid certificate at all: so
//! CertIssuer is applied as a filter, and among the usable certificates rule 1
//! never separates two. The page's other rules then decide pairwise: subject in
//! `CertSubject`, then subject given as an FQDN, then the latest expiry; the
//! thumbprint breaks a full tie so the same store always gives the same choice.
//!
//! Exception: with neither CertIssuer nor CertSubject set, the usable certificate
//! whose thumbprint is `[Platform] thumbprint` is chosen before any rule.
//!
//! [`client_usable`] is the check alone, for re-validating a cached choice (the
//! page keeps the chosen certificate until it expires or leaves the store).

use std::cmp::Ordering;
use std::net::IpAddr;

use super::{CertInfo, IssuerFilter};
use crate::config::Config;

/// `CertSubject`: subject names or parts of them, compared without case against
/// the subject (`CN=…, O=…`) and each DNS name; empty: none preferred.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectFilter(pub Vec<String>);

impl SubjectFilter {
    /// True when an entry is part of `c`'s subject or of one of its DNS names.
    /// An empty filter matches nothing, so it prefers no certificate.
    pub fn matches(&self, c: &CertInfo) -> bool {
        let names: Vec<String> = std::iter::once(&c.subject)
            .chain(&c.dns_names)
            .map(|n| n.to_lowercase())
            .collect();
        self.0
            .iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .any(|p| names.iter().any(|n| n.contains(&p)))
    }
}

/// What client-certificate selection applies.
#[derive(Clone, Debug, Default)]
pub struct ClientRules {
    /// `CertIssuer`: when set, only certificates from these CAs are usable.
    pub issuers: IssuerFilter,
    /// `CertSubject`: subjects preferred (rule 2).
    pub subjects: SubjectFilter,
    /// `[Platform] thumbprint`: the certificate chosen first when neither
    /// CertIssuer nor CertSubject is set.
    pub platform_thumbprint: Option<String>,
}

impl ClientRules {
    /// The rules `config`'s settings give.
    pub fn from_config(config: &Config) -> ClientRules {
        ClientRules {
            issuers: IssuerFilter(config.cert_issuer.clone()),
            subjects: SubjectFilter(config.cert_subject.clone()),
            platform_thumbprint: config.platform_thumbprint.clone(),
        }
    }

    /// The `[Platform] thumbprint` when the exception applies: set, and neither
    /// CertIssuer nor CertSubject is.
    fn platform_exception(&self) -> Option<String> {
        if !self.issuers.0.is_empty() || !self.subjects.0.is_empty() {
            return None;
        }
        self.platform_thumbprint.as_deref().map(normalise)
    }
}

/// Why a certificate is not (or no longer) usable, or not chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRejection {
    /// Its extended key usage excludes client authentication.
    NoClientUsage,
    /// Subject and issuer are the same: the master cannot check it against a CA.
    SelfSigned,
    /// NotBefore is in the future.
    NotYetValid,
    /// NotAfter is in the past.
    Expired,
    /// CertIssuer is set and its issuer is not one of them.
    IssuerNotAllowed,
    /// It is usable, but the chosen one ranks higher.
    Outranked {
        /// The chosen certificate's thumbprint.
        by: String,
        /// The first rule that put the chosen one first.
        rule: ClientRule,
    },
}

impl std::fmt::Display for ClientRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientRejection::NoClientUsage => {
                write!(f, "not for client authentication (extended key usage)")
            }
            ClientRejection::SelfSigned => write!(
                f,
                "self-signed: client authentication needs a PKI-issued certificate"
            ),
            ClientRejection::NotYetValid => write!(f, "not valid yet (NotBefore is in the future)"),
            ClientRejection::Expired => write!(f, "expired (NotAfter is in the past)"),
            ClientRejection::IssuerNotAllowed => write!(f, "issuer not in CertIssuer"),
            ClientRejection::Outranked { by, rule } => {
                write!(f, "usable, but {by} ranks higher: {rule}")
            }
        }
    }
}

/// The rule that decided between two certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRule {
    /// Rule 1, issued by one of CertIssuer. CertIssuer is applied as a filter
    /// ([`ClientRejection::IssuerNotAllowed`]), so this rule never separates two
    /// usable certificates and [`select_client`] never reports it; it is named so
    /// the rules read as the page numbers them.
    Issuer,
    /// Rule 2, subject in CertSubject.
    Subject,
    /// Rule 3, subject given as an FQDN.
    Fqdn,
    /// Rule 4, the latest NotAfter.
    Expiry,
    /// Equal on every rule: the smallest thumbprint, so the choice is stable.
    Thumbprint,
    /// The `[Platform] thumbprint` exception.
    PlatformThumbprint,
}

impl std::fmt::Display for ClientRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientRule::Issuer => "issued by one of CertIssuer (rule 1)",
            ClientRule::Subject => "subject in CertSubject (rule 2)",
            ClientRule::Fqdn => "subject given as an FQDN (rule 3)",
            ClientRule::Expiry => "later expiry (rule 4)",
            ClientRule::Thumbprint => "equal on every rule, smaller thumbprint",
            ClientRule::PlatformThumbprint => "it is the [Platform] thumbprint certificate",
        })
    }
}

/// The outcome of a selection: the index chosen, and for every other certificate
/// its index and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientChoice {
    /// Index into the certificates given, when one is usable.
    pub chosen: Option<usize>,
    /// Every other certificate and why, in index order.
    pub rejected: Vec<(usize, ClientRejection)>,
    /// The choice is the `[Platform] thumbprint` exception's.
    pub by_platform_thumbprint: bool,
}

/// Whether `c` may be used as a client certificate at `now` (usage, self-signed,
/// dates, CertIssuer): the check a cached choice is re-validated with. The first
/// check failed is the one returned.
pub fn client_usable(c: &CertInfo, rules: &ClientRules, now: i64) -> Result<(), ClientRejection> {
    if !c.client_auth {
        Err(ClientRejection::NoClientUsage)
    } else if c.self_signed {
        Err(ClientRejection::SelfSigned)
    } else if c.not_before > now {
        Err(ClientRejection::NotYetValid)
    } else if c.not_after <= now {
        Err(ClientRejection::Expired)
    } else if !rules.issuers.allows(&c.issuer) {
        Err(ClientRejection::IssuerNotAllowed)
    } else {
        Ok(())
    }
}

/// True when a common name of the subject is a DNS name of two labels or more
/// (`pc1.branch.example`), not an IP address (`10.1.2.3` has dots too).
pub(super) fn subject_is_fqdn(c: &CertInfo) -> bool {
    c.common_names.iter().any(|cn| {
        let name = cn.strip_suffix('.').unwrap_or(cn);
        name.contains('.')
            && name.parse::<IpAddr>().is_err()
            && name
                .split('.')
                .all(|l| !l.is_empty() && !l.contains(char::is_whitespace))
    })
}

/// How `a` compares with `b` by the page's rules 2 to 4 and the thumbprint
/// (`Less`: `a` is preferred), and the first rule that told them apart.
fn rank(a: &CertInfo, b: &CertInfo, rules: &ClientRules) -> (Ordering, ClientRule) {
    let s = &rules.subjects;
    // `true` is preferred, so the bools compare b against a.
    [
        (s.matches(b).cmp(&s.matches(a)), ClientRule::Subject),
        (
            subject_is_fqdn(b).cmp(&subject_is_fqdn(a)),
            ClientRule::Fqdn,
        ),
        (b.not_after.cmp(&a.not_after), ClientRule::Expiry),
        (a.thumbprint.cmp(&b.thumbprint), ClientRule::Thumbprint),
    ]
    .into_iter()
    .find(|(o, _)| o.is_ne())
    // The same certificate in two files: the first file's copy is kept.
    .unwrap_or((Ordering::Equal, ClientRule::Thumbprint))
}

/// Upper-case hex without the colons and spaces Windows and openssl print.
fn normalise(thumbprint: &str) -> String {
    thumbprint
        .chars()
        .filter(|ch| !matches!(ch, ':' | ' ' | '\t'))
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Choose among `certs` (this host's certificates with private keys) at `now`
/// (Unix seconds).
pub fn select_client(certs: &[CertInfo], rules: &ClientRules, now: i64) -> ClientChoice {
    let mut rejected = Vec::new();
    let mut usable = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        match client_usable(c, rules, now) {
            Ok(()) => usable.push(i),
            Err(r) => rejected.push((i, r)),
        }
    }
    let platform = rules.platform_exception().and_then(|tp| {
        usable
            .iter()
            .copied()
            .find(|&i| normalise(&certs[i].thumbprint) == tp)
    });
    let chosen = platform.or_else(|| {
        // `min_by` keeps the first of equals: the earlier file of a duplicate.
        usable
            .iter()
            .copied()
            .min_by(|&a, &b| rank(&certs[a], &certs[b], rules).0)
    });
    if let Some(c) = chosen {
        for &i in usable.iter().filter(|&&i| i != c) {
            let rule = match platform {
                Some(_) => ClientRule::PlatformThumbprint,
                None => rank(&certs[c], &certs[i], rules).1,
            };
            let by = certs[c].thumbprint.clone();
            rejected.push((i, ClientRejection::Outranked { by, rule }));
        }
    }
    rejected.sort_by_key(|&(i, _)| i);
    ClientChoice {
        chosen,
        rejected,
        by_platform_thumbprint: platform.is_some(),
    }
}
