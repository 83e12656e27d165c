//! What `contentdist certs` shows: the store's certificates, which one the server
//! rules and which one the client rules choose and why each other one is not
//! chosen, the trusted CAs, and the files skipped.

use std::path::PathBuf;

use serde::Serialize;

use super::{load, select_client, select_server, ClientRules, HostIdentity, IssuerFilter};
use crate::config::Config;

/// One of this host's certificates.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MyCertLine {
    /// The file.
    pub file: PathBuf,
    /// Subject, issuer, thumbprint.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
    /// SHA-1, upper-case hex.
    pub thumbprint: String,
    /// Valid from, UTC.
    pub not_before: String,
    /// Valid until, UTC.
    pub not_after: String,
    /// Usable for server authentication.
    pub server_auth: bool,
    /// Usable for client authentication.
    pub client_auth: bool,
    /// Self-signed.
    pub self_signed: bool,
    /// "chosen", or the rule that rejected it for server authentication.
    pub server_authentication: String,
    /// "chosen", or why it is not the client-authentication certificate.
    pub client_authentication: String,
}

/// A trusted CA certificate.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TrustedLine {
    /// The file.
    pub file: PathBuf,
    /// The subject.
    pub subject: String,
    /// SHA-1, upper-case hex.
    pub thumbprint: String,
    /// Valid until, UTC.
    pub not_after: String,
}

/// A skipped file.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProblemLine {
    /// The file.
    pub file: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CertsReport {
    /// `CertStoreDir`.
    pub store: PathBuf,
    /// The host name in force.
    pub host_name: String,
    /// The FQDN in force.
    pub fqdn: String,
    /// `CertIssuer` (empty: any issuer).
    pub cert_issuer: Vec<String>,
    /// `P2PSslSettings` 0x1: the server certificate must come from the store (else a
    /// self-signed one is used).
    pub pki_server_certificate: bool,
    /// The thumbprint the server rules choose, when one qualifies.
    pub server_choice: Option<String>,
    /// `P2PSslSettings` 0x2: peers authenticate to masters with a client
    /// certificate (without one, a job fails with 0x209A).
    pub client_certificate_authentication: bool,
    /// `CertSubject` (empty: no subject preferred).
    pub cert_subject: Vec<String>,
    /// `[Platform] thumbprint`, when set.
    pub platform_thumbprint: Option<String>,
    /// The thumbprint the client rules choose, when one is usable.
    pub client_choice: Option<String>,
    /// `my/`.
    pub my: Vec<MyCertLine>,
    /// `trusted/`.
    pub trusted: Vec<TrustedLine>,
    /// Files skipped.
    pub skipped: Vec<ProblemLine>,
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        // Outside years -9999..=9999: no certificate says so, but say what it is.
        Err(_) => format!("{t} s after 1970 UTC"),
    }
}

/// "chosen" for `chosen`, else the reason given for `i` (every index not chosen
/// has one).
fn verdict<R: ToString>(i: usize, chosen: Option<usize>, rejected: &[(usize, R)]) -> String {
    if chosen == Some(i) {
        return "chosen".into();
    }
    rejected
        .iter()
        .find(|(j, _)| *j == i)
        .map_or_else(String::new, |(_, r)| r.to_string())
}

/// Read the store `config` names and apply the server and client rules at `now`.
pub fn report(config: &Config, now: i64) -> CertsReport {
    let contents = load(&config.cert_store_dir);
    let id = HostIdentity {
        host_name: config.host_name_in_force(),
        fqdn: config.fqdn_in_force(),
    };
    let infos: Vec<_> = contents.mine.iter().map(|c| c.info.clone()).collect();
    let server = select_server(&infos, &id, &IssuerFilter(config.cert_issuer.clone()), now);
    let client = select_client(&infos, &ClientRules::from_config(config), now);
    CertsReport {
        store: config.cert_store_dir.clone(),
        host_name: id.host_name,
        fqdn: id.fqdn,
        cert_issuer: config.cert_issuer.clone(),
        pki_server_certificate: config.p2p_ssl_settings.pki_server_cert(),
        server_choice: server.chosen.map(|i| infos[i].thumbprint.clone()),
        client_certificate_authentication: config.p2p_ssl_settings.client_cert_auth(),
        cert_subject: config.cert_subject.clone(),
        platform_thumbprint: config.platform_thumbprint.clone(),
        client_choice: client.chosen.map(|i| infos[i].thumbprint.clone()),
        my: contents
            .mine
            .iter()
            .enumerate()
            .map(|(i, c)| MyCertLine {
                file: c.file.clone(),
                subject: c.info.subject.clone(),
                issuer: c.info.issuer.clone(),
                thumbprint: c.info.thumbprint.clone(),
                not_before: utc(c.info.not_before),
                not_after: utc(c.info.not_after),
                server_auth: c.info.server_auth,
                client_auth: c.info.client_auth,
                self_signed: c.info.self_signed,
                server_authentication: verdict(i, server.chosen, &server.rejected),
                client_authentication: verdict(i, client.chosen, &client.rejected),
            })
            .collect(),
        trusted: contents
            .trusted
            .iter()
            .map(|t| TrustedLine {
                file: t.file.clone(),
                subject: t.info.subject.clone(),
                thumbprint: t.info.thumbprint.clone(),
                not_after: utc(t.info.not_after),
            })
            .collect(),
        skipped: contents
            .problems
            .iter()
            .map(|p| ProblemLine {
                file: p.file.clone(),
                reason: p.reason.clone(),
            })
            .collect(),
    }
}
