//! The product's bit masks (`P2PEnabled`, `P2PSslSettings`, `SpecialNetShare`) and the
//! peer-copy protocol set, each able to say in words what it holds.
//!
//! The masks keep their raw number as a public field: administrators think in those
//! numbers (`0x61`), and the loader has already refused unknown bits where the product
//! defines them all, so the accessors never need to.

use std::fmt;

/// Joins the names of the set bits of `bits` found in `table`, in table order.
fn names_of(bits: u32, table: &[(u32, &'static str)]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|&(_, name)| name)
        .collect()
}

/// `0x01 SMB, 0x02 UDP server, ...`: the legend printed when a mask has unknown bits.
fn legend(table: &[(u32, &'static str)]) -> String {
    let mut sorted = table.to_vec();
    sorted.sort_by_key(|&(bit, _)| bit);
    sorted
        .iter()
        .map(|(bit, name)| format!("0x{bit:02X} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `P2PEnabled` mask: which peer-copy protocols and options are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct P2PEnabled(pub u32);

impl P2PEnabled {
    /// Peer copy over SMB (a share of the master's cache).
    pub const SMB: u32 = 0x01;
    /// Connectionless (UDP) peer-copy server.
    pub const UDP_SERVER: u32 = 0x02;
    /// Connectionless (UDP) peer-copy client.
    pub const UDP_CLIENT: u32 = 0x04;
    /// Reach the master by IP address; HTTPS clients then ignore a host-name mismatch.
    pub const NET_LITERAL_NAMES: u32 = 0x08;
    /// Peer copy over HTTP.
    pub const HTTP: u32 = 0x20;
    /// Peer copy over HTTPS.
    pub const HTTPS: u32 = 0x40;
    /// Every bit the product defines; any other bit is refused at load.
    pub const KNOWN: u32 = 0x6F;
    /// The product's default, `0x9`: SMB with net literal names.
    pub const DEFAULT: P2PEnabled = P2PEnabled(0x9);

    /// Description order: protocols by preference, then the options.
    const WORDS: &'static [(u32, &'static str)] = &[
        (Self::HTTPS, "HTTPS"),
        (Self::HTTP, "HTTP"),
        (Self::SMB, "SMB"),
        (Self::UDP_SERVER, "UDP server"),
        (Self::UDP_CLIENT, "UDP client"),
        (Self::NET_LITERAL_NAMES, "net literal names"),
    ];

    /// True when peers may copy over HTTP (0x20).
    pub fn has_http(self) -> bool {
        self.0 & Self::HTTP != 0
    }

    /// True when peers may copy over HTTPS (0x40).
    pub fn has_https(self) -> bool {
        self.0 & Self::HTTPS != 0
    }

    /// True when peers may copy over SMB (0x01).
    pub fn has_smb(self) -> bool {
        self.0 & Self::SMB != 0
    }

    /// True when the master is reached by IP address and HTTPS ignores host-name mismatches (0x08).
    pub fn net_literal_names(self) -> bool {
        self.0 & Self::NET_LITERAL_NAMES != 0
    }

    /// The bits this product does not define (0 after a successful load).
    pub fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN
    }

    /// The peer-copy protocols enabled (HTTPS, HTTP, SMB), in preference order.
    pub fn protocols(self) -> Protocols {
        Protocols::from_bits(self.0)
    }

    /// `0x01 SMB, 0x02 UDP server, ...`, for error messages.
    pub fn legend() -> String {
        legend(Self::WORDS)
    }

    /// The mask in words, e.g. `HTTPS + HTTP + SMB` for 0x61.
    pub fn describe(self) -> String {
        if self.0 == 0 {
            return "peer copy disabled".to_string();
        }
        let mut text = names_of(self.0, Self::WORDS).join(" + ");
        let transfer = Self::SMB | Self::UDP_CLIENT | Self::UDP_SERVER | Self::HTTP | Self::HTTPS;
        if self.0 & transfer == 0 {
            text.push_str(" (no peer-copy protocol: peer copy disabled)");
        }
        if self.unknown_bits() != 0 {
            text.push_str(&format!(" + unknown bits 0x{:X}", self.unknown_bits()));
        }
        text
    }
}

impl Default for P2PEnabled {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One peer-copy protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTPS (P2PEnabled 0x40), tried first.
    Https,
    /// HTTP (P2PEnabled 0x20), tried second.
    Http,
    /// SMB (P2PEnabled 0x01), tried last.
    Smb,
}

impl Protocol {
    /// Every protocol, most preferred (most secure) first, as the product tries them.
    pub const PREFERENCE: [Protocol; 3] = [Protocol::Https, Protocol::Http, Protocol::Smb];

    /// The protocol's bit in `P2PEnabled`.
    pub fn bit(self) -> u32 {
        match self {
            Protocol::Https => P2PEnabled::HTTPS,
            Protocol::Http => P2PEnabled::HTTP,
            Protocol::Smb => P2PEnabled::SMB,
        }
    }

    /// `HTTPS`, `HTTP` or `SMB`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Https => "HTTPS",
            Protocol::Http => "HTTP",
            Protocol::Smb => "SMB",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of peer-copy protocols, kept as their `P2PEnabled` bits so it travels in
/// election messages as one number; iteration is always in preference order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Protocols(u32);

impl Protocols {
    /// No protocol.
    pub const NONE: Protocols = Protocols(0);
    /// HTTPS, HTTP and SMB.
    pub const ALL: Protocols = Protocols(P2PEnabled::HTTPS | P2PEnabled::HTTP | P2PEnabled::SMB);

    /// The protocols among `bits` (other bits are ignored).
    pub fn from_bits(bits: u32) -> Protocols {
        Protocols(bits & Self::ALL.0)
    }

    /// The set as `P2PEnabled` bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// True when `protocol` is in the set.
    pub fn contains(self, protocol: Protocol) -> bool {
        self.0 & protocol.bit() != 0
    }

    /// True when no protocol is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `protocol` added.
    pub fn with(self, protocol: Protocol) -> Protocols {
        Protocols(self.0 | protocol.bit())
    }

    /// The protocols in both sets: what a peer and a master can agree on.
    pub fn intersection(self, other: Protocols) -> Protocols {
        Protocols(self.0 & other.0)
    }

    /// The protocols of the set, most preferred first.
    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::PREFERENCE
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// The most preferred protocol of the set.
    pub fn preferred(self) -> Option<Protocol> {
        self.iter().next()
    }
}

impl FromIterator<Protocol> for Protocols {
    fn from_iter<I: IntoIterator<Item = Protocol>>(iter: I) -> Self {
        iter.into_iter().fold(Protocols::NONE, Protocols::with)
    }
}

impl fmt::Display for Protocols {
    /// `HTTPS + HTTP + SMB`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Protocol::name).collect();
        f.write_str(&names.join(" + "))
    }
}

/// The `P2PSslSettings` mask: where the HTTPS server certificate comes from and how
/// peers authenticate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SslSettings(pub u32);

impl SslSettings {
    /// Use a PKI certificate from the store for server authentication (else self-signed).
    pub const PKI_SERVER_CERT: u32 = 0x1;
    /// Peers authenticate with a client certificate instead of the P2P account.
    pub const CLIENT_CERT_AUTH: u32 = 0x2;
    /// Every bit the product defines; any other bit is refused at load.
    pub const KNOWN: u32 = 0x3;

    const WORDS: &'static [(u32, &'static str)] = &[
        (Self::PKI_SERVER_CERT, "PKI server certificate"),
        (Self::CLIENT_CERT_AUTH, "certificate client authentication"),
    ];

    /// True when the HTTPS server presents a PKI certificate from the store (0x1).
    pub fn pki_server_cert(self) -> bool {
        self.0 & Self::PKI_SERVER_CERT != 0
    }

    /// True when peers must present a client certificate (0x2).
    pub fn client_cert_auth(self) -> bool {
        self.0 & Self::CLIENT_CERT_AUTH != 0
    }

    /// The bits this product does not define (0 after a successful load).
    pub fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN
    }

    /// `0x01 PKI server certificate, 0x02 certificate client authentication`.
    pub fn legend() -> String {
        legend(Self::WORDS)
    }

    /// Both choices in words, e.g. `self-signed server certificate; peers use the P2P account`.
    pub fn describe(self) -> String {
        let server = if self.pki_server_cert() {
            "PKI server certificate"
        } else {
            "self-signed server certificate"
        };
        let client = if self.client_cert_auth() {
            "peers authenticate with a client certificate"
        } else {
            "peers authenticate with the P2P account"
        };
        let mut text = format!("{server}; {client}");
        if self.unknown_bits() != 0 {
            text.push_str(&format!("; unknown bits 0x{:X}", self.unknown_bits()));
        }
        text
    }
}

/// The `SpecialNetShare` mask. Bits the product documents are decoded; the others are
/// kept (the default 0x2070 has some) and shown as "other bits".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpecialNetShare(pub u32);

impl SpecialNetShare {
    /// Enable IPv6.
    pub const IPV6: u32 = 0x2;
    /// Disable IPv4.
    pub const DISABLE_IPV4: u32 = 0x4;
    /// FanOut: copy from another peer that holds more when the master is busy.
    pub const FAN_OUT: u32 = 0x40;
    /// Peers authenticate with the machine credential instead of the P2P account.
    pub const MACHINE_ACCOUNT: u32 = 0x80;
    /// The product's default.
    pub const DEFAULT: SpecialNetShare = SpecialNetShare(0x2070);

    const WORDS: &'static [(u32, &'static str)] = &[
        (Self::MACHINE_ACCOUNT, "machine account"),
        (Self::FAN_OUT, "FanOut"),
        (Self::IPV6, "IPv6"),
        (Self::DISABLE_IPV4, "IPv4 disabled"),
    ];
    const KNOWN: u32 = Self::IPV6 | Self::DISABLE_IPV4 | Self::FAN_OUT | Self::MACHINE_ACCOUNT;

    /// True when peers authenticate with the machine credential (0x80).
    pub fn machine_account(self) -> bool {
        self.0 & Self::MACHINE_ACCOUNT != 0
    }

    /// True when FanOut is on (0x40).
    pub fn fan_out(self) -> bool {
        self.0 & Self::FAN_OUT != 0
    }

    /// True when IPv6 is enabled (0x2).
    pub fn ipv6(self) -> bool {
        self.0 & Self::IPV6 != 0
    }

    /// True when IPv4 is disabled (0x4).
    pub fn ipv4_disabled(self) -> bool {
        self.0 & Self::DISABLE_IPV4 != 0
    }

    /// The bits set that the product does not document.
    pub fn other_bits(self) -> u32 {
        self.0 & !Self::KNOWN
    }

    /// The mask in words, e.g. `FanOut + other bits 0x2030` for the default 0x2070.
    pub fn describe(self) -> String {
        let mut parts: Vec<String> = names_of(self.0, Self::WORDS)
            .into_iter()
            .map(str::to_string)
            .collect();
        if self.other_bits() != 0 {
            parts.push(format!("other bits 0x{:X}", self.other_bits()));
        }
        if parts.is_empty() {
            return "none".to_string();
        }
        parts.join(" + ")
    }
}

impl Default for SpecialNetShare {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2p_enabled_0x61_reads_https_http_smb() {
        let p = P2PEnabled(0x61);
        assert_eq!(p.describe(), "HTTPS + HTTP + SMB");
        assert!(p.has_https() && p.has_http() && p.has_smb() && !p.net_literal_names());
        assert_eq!(P2PEnabled::default().describe(), "SMB + net literal names");
        assert_eq!(P2PEnabled(0).describe(), "peer copy disabled");
        assert_eq!(
            P2PEnabled(0x8).describe(),
            "net literal names (no peer-copy protocol: peer copy disabled)"
        );
        assert_eq!(P2PEnabled(0x16).unknown_bits(), 0x10);
    }

    #[test]
    fn p2p_enabled_legend_lists_bits_in_numeric_order() {
        assert_eq!(
            P2PEnabled::legend(),
            "0x01 SMB, 0x02 UDP server, 0x04 UDP client, 0x08 net literal names, 0x20 HTTP, 0x40 HTTPS"
        );
    }

    #[test]
    fn protocols_iterate_in_preference_order() {
        let all: Vec<Protocol> = P2PEnabled(0x6F).protocols().iter().collect();
        assert_eq!(all, vec![Protocol::Https, Protocol::Http, Protocol::Smb]);
        let smb_http: Protocols = [Protocol::Smb, Protocol::Http].into_iter().collect();
        assert_eq!(smb_http.preferred(), Some(Protocol::Http));
        assert_eq!(smb_http.to_string(), "HTTP + SMB");
        assert_eq!(smb_http.bits(), 0x21);
        let https = Protocols::from_bits(0x48);
        assert_eq!(https.intersection(smb_http), Protocols::NONE);
        assert_eq!(Protocols::NONE.to_string(), "none");
        assert_eq!(Protocols::NONE.preferred(), None);
    }

    #[test]
    fn ssl_settings_describe_both_choices() {
        assert_eq!(
            SslSettings(0).describe(),
            "self-signed server certificate; peers authenticate with the P2P account"
        );
        assert_eq!(
            SslSettings(3).describe(),
            "PKI server certificate; peers authenticate with a client certificate"
        );
        assert!(SslSettings(2).client_cert_auth() && !SslSettings(2).pki_server_cert());
        assert_eq!(SslSettings(0x6).unknown_bits(), 0x4);
    }

    #[test]
    fn special_net_share_names_known_bits_and_reports_others() {
        assert_eq!(
            SpecialNetShare::default().describe(),
            "FanOut + other bits 0x2030"
        );
        assert_eq!(
            SpecialNetShare(0xC6).describe(),
            "machine account + FanOut + IPv6 + IPv4 disabled"
        );
        assert_eq!(SpecialNetShare(0).describe(), "none");
        let s = SpecialNetShare(0x82);
        assert!(s.machine_account() && s.ipv6() && !s.fan_out() && !s.ipv4_disabled());
    }
}
