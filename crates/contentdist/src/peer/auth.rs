//! Who may copy from this agent: the P2P account, a machine account, or (over HTTPS
//! later) a verified client certificate.
//!
//! # The P2P account
//!
//! The product creates a local account `SMSNomadP2P&` on every client and lets the
//! elected master's peers log on to it with a password they derive from a key the
//! master shares in its election announcement. contentdist keeps the idea without
//! creating an operating-system account: the user name is [`P2P_USER`]
//! (`contentdist-p2p`) and the password is
//! `hex(HMAC-SHA256(key, "contentdist p2p account v1"))` truncated to 16 bytes (32 hex
//! digits), where `key` is the master's 32-byte P2P key. Peers send it as HTTP Basic
//! authentication, so `curl -u contentdist-p2p:PASSWORD` works too.
//!
//! # Machine accounts (`SpecialNetShare` 0x80, `AuthenticatedUsers` 1)
//!
//! The product can let peers log on with their Active Directory computer account,
//! which any domain member can prove it owns. The analogue here is a site-wide
//! *machine key* the administrator gives every agent of the site: from it each host
//! derives its own credential, user `HOSTNAME$` (upper case) and password
//! `hex(HMAC-SHA256(machine_key, "contentdist machine account v1" || hostname))`
//! truncated to 32 hex digits, where `hostname` is the lower-case host name. A master
//! holding the same key recomputes it from the user name, so "every machine of the
//! site can prove it is one", as every computer of a domain can. Whoever holds the
//! machine key can act as any host: keep it as secret as a domain join credential.
//!
//! `AuthenticatedUsers` 2 accepts the P2P account only; 1 also accepts machine
//! accounts; 0 is treated as 2 over HTTP/S, as in the original.
//!
//! # Exposure
//!
//! Basic authentication over plain HTTP sends the password readable on the LAN: a
//! sniffer on the subnet learns the current P2P password (as one could attack the
//! original account's logons) and, with machine accounts, that host's credential.
//! The P2P password only opens content the master would serve to any peer anyway and
//! changes with the key. HTTPS (P2PEnabled 0x40) protects both.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The P2P account's user name (the product's `SMSNomadP2P&`).
pub const P2P_USER: &str = "contentdist-p2p";

const P2P_LABEL: &[u8] = b"contentdist p2p account v1";
const MACHINE_LABEL: &[u8] = b"contentdist machine account v1";
/// Password length in hex digits (16 bytes).
const PASSWORD_HEX_LEN: usize = 32;

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    let mut text = hex::encode(mac.finalize().into_bytes());
    text.truncate(PASSWORD_HEX_LEN);
    text
}

/// The P2P account's user name and password for a master's 32-byte P2P key.
pub fn p2p_credentials(key: &[u8; 32]) -> (String, String) {
    (P2P_USER.to_string(), hmac_hex(key, &[P2P_LABEL]))
}

/// A host's machine-account user name (`HOSTNAME$`, upper case) and password, from the
/// site's machine key. The host name is compared without regard to case.
pub fn machine_credentials(machine_key: &[u8], hostname: &str) -> (String, String) {
    let host = hostname.to_ascii_lowercase();
    (
        machine_account_name(hostname),
        hmac_hex(machine_key, &[MACHINE_LABEL, host.as_bytes()]),
    )
}

/// A host's machine-account user name: `HOSTNAME$`, upper case.
pub fn machine_account_name(hostname: &str) -> String {
    format!("{}$", hostname.to_ascii_uppercase())
}

/// Compare two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Who a request was accepted as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The P2P account.
    P2pAccount,
    /// A machine account; the host name as sent (without the `$`).
    Machine(String),
    /// A client certificate the TLS layer required and verified.
    Certificate,
}

/// Why a request was refused (logged by the server, answered with 403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header.
    #[error("no credentials")]
    NoCredentials,
    /// An `Authorization` header that is not readable HTTP Basic.
    #[error("credentials are not HTTP Basic user:password")]
    Malformed,
    /// A user that is neither the P2P account nor a machine account.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The right user with the wrong password (for the P2P account: a peer that holds
    /// another master's key, or an old one).
    #[error("wrong password for {0:?}")]
    WrongPassword(String),
    /// A machine account while `AuthenticatedUsers` is 2 (or 0).
    #[error("machine account {0:?} not allowed: AuthenticatedUsers is 2 (P2P account only)")]
    MachineAccountNotAllowed(String),
    /// The P2P account, on a master that has none (certificate authentication).
    #[error("the P2P account does not exist on this master: it authenticates peers by client certificate (P2PSslSettings 0x2) over HTTPS")]
    NoP2pAccount,
    /// A machine account, but this agent has no machine key to check it with.
    #[error("machine account {0:?} cannot be checked: no machine key is configured")]
    NoMachineKey(String),
}

/// What the peer-copy server accepts.
#[derive(Clone)]
pub struct PeerAuth {
    /// This agent's P2P key, the one it shares when it is elected master; `None`:
    /// no P2P account exists (`P2PSslSettings` 0x2: peers prove themselves with
    /// client certificates, and the page says the account is not created).
    pub p2p_key: Option<[u8; 32]>,
    /// `AuthenticatedUsers`: 1 also accepts machine accounts; 2 (and 0) only the P2P
    /// account.
    pub authenticated_users: u32,
    /// The site's machine key, if the administrator configured one.
    pub machine_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for PeerAuth {
    /// Keys are secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("authenticated_users", &self.authenticated_users)
            .field("machine_key", &self.machine_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl PeerAuth {
    /// `AuthenticatedUsers` as applied over HTTP/S: 0 counts as 2.
    pub fn effective_authenticated_users(&self) -> u32 {
        if self.authenticated_users == 0 {
            2
        } else {
            self.authenticated_users
        }
    }

    /// Check a request's `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Principal, Refusal> {
        let header = authorization.ok_or(Refusal::NoCredentials)?;
        let (user, password) = parse_basic(header).ok_or(Refusal::Malformed)?;
        if user.eq_ignore_ascii_case(P2P_USER) {
            let Some(key) = &self.p2p_key else {
                return Err(Refusal::NoP2pAccount);
            };
            let (_, expected) = p2p_credentials(key);
            return if constant_time_eq(password.as_bytes(), expected.as_bytes()) {
                Ok(Principal::P2pAccount)
            } else {
                Err(Refusal::WrongPassword(user))
            };
        }
        let Some(host) = user.strip_suffix('$').filter(|h| !h.is_empty()) else {
            return Err(Refusal::UnknownUser(user));
        };
        if self.effective_authenticated_users() != 1 {
            return Err(Refusal::MachineAccountNotAllowed(user));
        }
        let Some(key) = &self.machine_key else {
            return Err(Refusal::NoMachineKey(user));
        };
        let (_, expected) = machine_credentials(key, host);
        if constant_time_eq(password.as_bytes(), expected.as_bytes()) {
            Ok(Principal::Machine(host.to_string()))
        } else {
            Err(Refusal::WrongPassword(user))
        }
    }
}

/// `Basic base64(user:password)` to its two parts (the user cannot hold a colon).
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The `Authorization` header value for HTTP Basic.
pub fn basic_header(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(au: u32, machine: bool) -> PeerAuth {
        PeerAuth {
            p2p_key: Some([7; 32]),
            authenticated_users: au,
            machine_key: machine.then(|| b"site secret".to_vec()),
        }
    }

    fn check(a: &PeerAuth, user: &str, pass: &str) -> Result<Principal, Refusal> {
        a.check(Some(basic_header(user, pass).as_bytes()))
    }

    #[test]
    fn p2p_password_is_32_hex_digits_and_depends_on_the_key() {
        let (user, pass) = p2p_credentials(&[7; 32]);
        assert_eq!(user, "contentdist-p2p");
        assert_eq!(pass.len(), 32);
        assert!(pass.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(pass, p2p_credentials(&[8; 32]).1);
        // Pinned so a change of derivation (which would break mixed versions) is seen.
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"contentdist p2p account v1");
        assert_eq!(pass, hex::encode(&mac.finalize().into_bytes()[..16]));
    }

    #[test]
    fn machine_credentials_ignore_host_name_case() {
        let (u1, p1) = machine_credentials(b"k", "Host-1");
        let (u2, p2) = machine_credentials(b"k", "host-1");
        assert_eq!((u1.as_str(), &p1), ("HOST-1$", &p2));
        assert_eq!(u2, "HOST-1$");
        assert_ne!(p1, machine_credentials(b"k", "host-2").1);
        assert_ne!(p1, machine_credentials(b"other", "host-1").1);
    }

    #[test]
    fn the_p2p_account_is_accepted_at_every_level_and_a_wrong_password_is_not() {
        let (u, p) = p2p_credentials(&[7; 32]);
        for au in [0, 1, 2] {
            assert_eq!(check(&auth(au, true), &u, &p), Ok(Principal::P2pAccount));
        }
        assert_eq!(
            check(&auth(1, true), &u, &p2p_credentials(&[9; 32]).1),
            Err(Refusal::WrongPassword(u.clone()))
        );
    }

    #[test]
    fn without_a_p2p_account_its_credentials_are_refused_and_machine_accounts_still_work() {
        let mut a = auth(1, true);
        a.p2p_key = None;
        let (u, p) = p2p_credentials(&[7; 32]);
        assert_eq!(check(&a, &u, &p), Err(Refusal::NoP2pAccount));
        let (mu, mp) = machine_credentials(b"site secret", "peer7");
        assert_eq!(check(&a, &mu, &mp), Ok(Principal::Machine("PEER7".into())));
    }

    #[test]
    fn machine_accounts_need_authenticated_users_1_and_the_machine_key() {
        let (u, p) = machine_credentials(b"site secret", "peer7");
        assert_eq!(
            check(&auth(1, true), &u, &p),
            Ok(Principal::Machine("PEER7".into()))
        );
        for au in [0, 2] {
            assert_eq!(
                check(&auth(au, true), &u, &p),
                Err(Refusal::MachineAccountNotAllowed(u.clone()))
            );
        }
        assert_eq!(
            check(&auth(1, false), &u, &p),
            Err(Refusal::NoMachineKey(u.clone()))
        );
        let (_, other_site) = machine_credentials(b"other site", "peer7");
        assert_eq!(
            check(&auth(1, true), &u, &other_site),
            Err(Refusal::WrongPassword(u.clone()))
        );
    }

    #[test]
    fn missing_malformed_and_unknown_credentials_are_refused() {
        let a = auth(1, true);
        assert_eq!(a.check(None), Err(Refusal::NoCredentials));
        assert_eq!(a.check(Some(b"Bearer abc")), Err(Refusal::Malformed));
        assert_eq!(a.check(Some(b"Basic !!!")), Err(Refusal::Malformed));
        assert_eq!(
            check(&a, "root", "x"),
            Err(Refusal::UnknownUser("root".into()))
        );
        assert_eq!(check(&a, "$", "x"), Err(Refusal::UnknownUser("$".into())));
    }

    #[test]
    fn debug_output_does_not_show_keys() {
        let text = format!("{:?}", auth(1, true));
        assert!(
            !text.contains("site secret") && !text.contains("7, 7"),
            "{text}"
        );
    }
}
