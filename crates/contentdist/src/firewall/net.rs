//! The local networks the firewall scope `subnet` accepts: those of the interface
//! that holds the agent's address (the one it announces to its peers, see
//! [`crate::agent::advertised_address`]), read with `getifaddrs(3)`.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ruleset::Network;

/// One address of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IfAddr {
    name: String,
    addr: IpAddr,
    prefix: u8,
}

/// The networks of every interface holding `addr`: each address of `addr`'s
/// family on it, with its prefix (IPv6 link-local ones left out unless `addr` is
/// one). Empty when `addr` is unspecified or on no interface.
pub fn networks_of(addr: IpAddr) -> Vec<Network> {
    if addr.is_unspecified() {
        return Vec::new();
    }
    select(&interface_addresses(), addr)
}

fn select(all: &[IfAddr], addr: IpAddr) -> Vec<Network> {
    let names: Vec<&str> = all
        .iter()
        .filter(|a| a.addr == addr)
        .map(|a| a.name.as_str())
        .collect();
    let mut out: Vec<Network> = all
        .iter()
        .filter(|a| names.contains(&a.name.as_str()))
        .filter(|a| a.addr.is_ipv4() == addr.is_ipv4())
        .filter(|a| !link_local(a.addr) || link_local(addr))
        .map(|a| Network::new(a.addr, a.prefix))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// Every IPv4 and IPv6 address of every interface; empty if `getifaddrs` fails.
fn interface_addresses() -> Vec<IfAddr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null pointers into the same list; the family says which
        // sockaddr type they point to.
        let (addr, prefix) = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    (
                        IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                        u32::from_be(m.sin_addr.s_addr).count_ones() as u8,
                    )
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    (
                        IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                        u128::from_be_bytes(m.sin6_addr.s6_addr).count_ones() as u8,
                    )
                }
                _ => continue,
            }
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push(IfAddr { name, addr, prefix });
    }
    // SAFETY: `head` came from getifaddrs and is freed once; nothing points into it now.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, addr: &str, prefix: u8) -> IfAddr {
        IfAddr {
            name: name.into(),
            addr: addr.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn the_networks_are_those_of_the_interface_holding_the_address() {
        let all = [
            a("lo", "127.0.0.1", 8),
            a("eth0", "10.1.2.30", 24),
            a("eth0", "10.9.0.4", 16),
            a("eth0", "fd00::4", 64),
            a("eth0", "fe80::1", 64),
            a("eth1", "192.168.7.2", 24),
        ];
        let shown = |v: Vec<Network>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(select(&all, "10.1.2.30".parse().unwrap())),
            ["10.1.2.0/24", "10.9.0.0/16"]
        );
        assert_eq!(
            shown(select(&all, "fd00::4".parse().unwrap())),
            ["fd00::/64"]
        );
        assert_eq!(
            shown(select(&all, "127.0.0.1".parse().unwrap())),
            ["127.0.0.0/8"]
        );
        assert!(select(&all, "10.1.2.31".parse().unwrap()).is_empty());
    }

    #[test]
    fn loopback_is_found_on_this_host() {
        let n = networks_of("127.0.0.1".parse().unwrap());
        assert!(n.iter().any(|n| n.to_string() == "127.0.0.0/8"), "{n:?}");
        assert!(networks_of("0.0.0.0".parse().unwrap()).is_empty());
    }
}
