//! `NomadInhibitedSubnets` entries: IPv4 or IPv6 networks in CIDR notation.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network in CIDR notation (`10.1.2.0/24`, `fd00::/8`). Host bits written after
/// the network are cleared at parse time, so `10.1.2.7/24` is `10.1.2.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl Subnet {
    /// True when `ip` is inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, as a dual-stack socket reports it) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix);
                u32::from(ip) & mask == u32::from(net) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix);
                u128::from(ip) & mask == u128::from(net) & mask
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Subnet {
    type Err = String;
    /// `ADDRESS/PREFIX`; the prefix is required, so that `10.1.2.0` meant as a /24
    /// is refused instead of silently read as one host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = |why: &str| format!("'{text}' is not a subnet in CIDR notation ({why})");
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| bad("missing /prefix, e.g. 10.1.2.0/24"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad("bad address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix.parse() {
            Ok(p) if p <= max => p,
            _ => return Err(bad(&format!("prefix must be 0..={max}"))),
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask_u32(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask_u128(prefix)).into()),
        };
        Ok(Subnet { addr, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
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
    }
}
