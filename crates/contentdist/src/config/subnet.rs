//! `NomadInhibitedSubnets` entries: IPv4 or IPv6 networks in CIDR notation, parsed
//! and matched by `ipnet`; this module adds the product's rules (a prefix is
//! required, IPv4-mapped addresses count as IPv4) and messages that say what is wrong.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A network in CIDR notation (`10.1.2.0/24`, `fd00::/8`). Host bits written after
/// the network are cleared at parse time, so `10.1.2.7/24` is `10.1.2.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet(IpNet);

impl Subnet {
    /// True when `ip` is inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, as a dual-stack socket reports it) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// The network (host bits zero) and its prefix length.
    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl FromStr for Subnet {
    type Err = String;
    /// `ADDRESS/PREFIX`; the prefix is required, so that `10.1.2.0` meant as a /24
    /// is refused instead of silently read as one host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = |why: &str| format!("'{text}' is not a subnet in CIDR notation ({why})");
        match text.parse::<IpNet>() {
            Ok(net) => Ok(Subnet(net.trunc())),
            // ipnet only says "invalid IP address syntax": say which half is wrong.
            Err(_) => Err(match text.split_once('/') {
                None => bad("missing /prefix, e.g. 10.1.2.0/24"),
                Some((addr, _)) => match addr.parse::<IpAddr>() {
                    Err(_) => bad("bad address"),
                    Ok(IpAddr::V4(_)) => bad("prefix must be 0..=32"),
                    Ok(IpAddr::V6(_)) => bad("prefix must be 0..=128"),
                },
            }),
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_subnet_contains_its_hosts_only() {
        let net: Subnet = "10.1.2.0/24".parse().unwrap();
        assert!(net.contains(ip("10.1.2.0")));
        assert!(net.contains(ip("10.1.2.255")));
        assert!(!net.contains(ip("10.1.3.1")));
        assert!(net.contains(ip("::ffff:10.1.2.9")));
        assert!(!net.contains(ip("fd00::1")));
    }

    #[test]
    fn ipv6_subnet_and_edge_prefixes() {
        let net: Subnet = "fd00:1::/32".parse().unwrap();
        assert!(net.contains(ip("fd00:1::5")));
        assert!(!net.contains(ip("fd00:2::5")));
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let host: Subnet = "192.0.2.1/32".parse().unwrap();
        assert!(host.contains(ip("192.0.2.1")) && !host.contains(ip("192.0.2.2")));
        let host6: Subnet = "::1/128".parse().unwrap();
        assert!(host6.contains(ip("::1")));
    }

    #[test]
    fn host_bits_are_cleared_and_display_round_trips() {
        let net: Subnet = " 10.1.2.7/24 ".parse().unwrap();
        assert_eq!(net.to_string(), "10.1.2.0/24");
        assert_eq!(net.to_string().parse::<Subnet>(), Ok(net));
    }

    #[test]
    fn bad_cidrs_are_refused_with_the_text() {
        for bad in [
            "10.1.2.0",
            "10.1.2.0/33",
            "fd00::/129",
            "10.1.2/24",
            "x/8",
            "10.0.0.0/",
        ] {
            let err = bad.parse::<Subnet>().unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        let says = |bad: &str| bad.parse::<Subnet>().unwrap_err();
        assert!(says("10.1.2.0").contains("missing /prefix"));
        assert!(says("10.1.2/24").contains("bad address"));
        assert!(says("10.1.2.0/33").contains("prefix must be 0..=32"));
        assert!(says("fd00::/129").contains("prefix must be 0..=128"));
    }
}
