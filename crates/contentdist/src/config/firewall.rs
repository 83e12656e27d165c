//! The firewall settings' values: `ManageFirewall` and `FirewallScope` (see
//! [`crate::firewall`] for what the agent does with them).

use std::fmt;
use std::str::FromStr;

/// `ManageFirewall`: whether the agent keeps its own nftables table
/// (`inet contentdist`) accepting its peer-copy and election ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FirewallMode {
    /// `"auto"` (the default): managed when the agent runs as root, `nft` is
    /// installed and the agent's peers are on a network (not loopback).
    #[default]
    Auto,
    /// `true`: managed; a warning (and `status`) when it cannot be.
    On,
    /// `false`: nothing is touched.
    Off,
}

impl FirewallMode {
    /// The value as the settings file writes it: `"auto"`, `true` or `false`.
    pub fn as_toml(self) -> &'static str {
        match self {
            FirewallMode::Auto => "\"auto\"",
            FirewallMode::On => "true",
            FirewallMode::Off => "false",
        }
    }
}

impl fmt::Display for FirewallMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FirewallMode::Auto => "auto",
            FirewallMode::On => "true",
            FirewallMode::Off => "false",
        })
    }
}

impl FromStr for FirewallMode {
    type Err = String;
    /// `auto`, `true` or `false` (case-insensitive), for values written as strings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(FirewallMode::Auto),
            "true" => Ok(FirewallMode::On),
            "false" => Ok(FirewallMode::Off),
            _ => Err(format!(
                "'{s}' is not \"auto\", true or false (\"auto\": managed when running as root with nft installed)"
            )),
        }
    }
}

/// `FirewallScope`: where the accepted traffic may come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FirewallScope {
    /// `"subnet"` (the default): only from the subnet(s) of the interface the agent
    /// announces itself on (its peers' subnet).
    #[default]
    Subnet,
    /// `"any"`: from any source.
    Any,
}

impl FirewallScope {
    /// The name used in the settings file.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallScope::Subnet => "subnet",
            FirewallScope::Any => "any",
        }
    }
}

impl fmt::Display for FirewallScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FirewallScope {
    type Err = String;
    /// `subnet` or `any`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "subnet" => Ok(FirewallScope::Subnet),
            "any" => Ok(FirewallScope::Any),
            _ => Err(format!(
                "'{s}' is not a firewall scope (\"subnet\": only from the agent's subnet; \"any\")"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_scopes_parse_and_print_back() {
        for m in [FirewallMode::Auto, FirewallMode::On, FirewallMode::Off] {
            assert_eq!(m.to_string().parse::<FirewallMode>(), Ok(m));
        }
        assert_eq!(" AUTO ".parse::<FirewallMode>(), Ok(FirewallMode::Auto));
        assert!("yes".parse::<FirewallMode>().is_err());
        for s in [FirewallScope::Subnet, FirewallScope::Any] {
            assert_eq!(s.as_str().parse::<FirewallScope>(), Ok(s));
        }
        assert!("lan".parse::<FirewallScope>().is_err());
    }

    fn load(text: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::from_toml_str(text, std::path::Path::new("/etc/c.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_settings_load_with_their_defaults_and_refuse_nonsense() {
        let c = load("").unwrap();
        assert_eq!(c.manage_firewall, FirewallMode::Auto);
        assert_eq!(c.firewall_scope, FirewallScope::Subnet);
        assert_eq!(c.firewall_check(), Some(std::time::Duration::from_secs(60)));
        let c =
            load("ManageFirewall = false\nFirewallScope = \"any\"\nFirewallCheckSecs = 0").unwrap();
        assert_eq!(c.manage_firewall, FirewallMode::Off);
        assert_eq!(c.firewall_scope, FirewallScope::Any);
        assert_eq!(c.firewall_check(), None);
        assert_eq!(
            load("ManageFirewall = true").unwrap().manage_firewall,
            FirewallMode::On
        );
        assert_eq!(
            load("ManageFirewall = \"false\"").unwrap().manage_firewall,
            FirewallMode::Off
        );
        for (text, says) in [
            ("ManageFirewall = 1", "ManageFirewall"),
            (
                "ManageFirewall = \"sometimes\"",
                "not \"auto\", true or false",
            ),
            ("FirewallScope = \"lan\"", "not a firewall scope"),
            ("FirewallCheckSecs = 90000", "out of range 0..=86400"),
            ("ManageFirewal = true", "ManageFirewall"),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
