//! Small typed values of the settings: machine type, log level, site key.

use std::fmt;
use std::str::FromStr;

/// `MachineType`: what kind of host this is, which gives its election weight when
/// `P2PElectionWeight` is not set (the product derives it from the OS and chassis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MachineType {
    /// A server: weight 61.
    Server,
    /// A desktop or anything else: weight 50.
    #[default]
    Default,
    /// A laptop: weight 40.
    Laptop,
    /// A host on a wireless link: weight 30.
    Wireless,
}

impl MachineType {
    /// Every machine type, heaviest first.
    pub const ALL: [MachineType; 4] = [
        MachineType::Server,
        MachineType::Default,
        MachineType::Laptop,
        MachineType::Wireless,
    ];

    /// The product's election weight for this machine type.
    pub fn weight(self) -> u8 {
        match self {
            MachineType::Server => 61,
            MachineType::Default => 50,
            MachineType::Laptop => 40,
            MachineType::Wireless => 30,
        }
    }

    /// The name used in the settings file.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineType::Server => "server",
            MachineType::Default => "default",
            MachineType::Laptop => "laptop",
            MachineType::Wireless => "wireless",
        }
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MachineType {
    type Err = String;
    /// Case-insensitive: `server`, `default`, `laptop`, `wireless`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineType::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "'{s}' is not a machine type (server 61, default 50, laptop 40, wireless 30)"
                )
            })
    }
}

/// `LogLevel`: the most detailed log level written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: what an administrator wants in the journal.
    #[default]
    Info,
    /// Per-job and per-connection detail.
    Debug,
    /// Everything, per block.
    Trace,
}

impl LogLevel {
    /// Every level, least detailed first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The level's name as tracing filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;
    /// Case-insensitive: `error`, `warn`, `info`, `debug`, `trace`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("'{s}' is not a log level (error, warn, info, debug, trace)"))
    }
}

/// `LogFormat`: how log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event (no colour unless standard error is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;
    /// Case-insensitive: `text`, `json`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [LogFormat::Text, LogFormat::Json]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("'{s}' is not a log format (text, json)"))
    }
}

/// `SiteKey`: the secret that authenticates election messages. Its `Debug` output is
/// redacted so that logging a `Config` never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct SiteKey(String);

impl SiteKey {
    /// The shortest key accepted, in characters.
    pub const MIN_LEN: usize = 16;

    /// A key of at least [`SiteKey::MIN_LEN`] characters.
    pub fn new(key: &str) -> Result<SiteKey, String> {
        let chars = key.chars().count();
        if chars < Self::MIN_LEN {
            return Err(format!(
                "a site key needs at least {} characters, this one has {chars}",
                Self::MIN_LEN
            ));
        }
        Ok(SiteKey(key.to_string()))
    }

    /// The key's text, for the settings file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's bytes, for deriving message-authentication keys.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SiteKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_types_give_the_products_weights() {
        let weights: Vec<u8> = MachineType::ALL.iter().map(|m| m.weight()).collect();
        assert_eq!(weights, vec![61, 50, 40, 30]);
        assert_eq!("Laptop".parse::<MachineType>(), Ok(MachineType::Laptop));
        assert!("desktop".parse::<MachineType>().is_err());
    }

    #[test]
    fn log_levels_parse_case_insensitively() {
        assert_eq!("DEBUG".parse::<LogLevel>(), Ok(LogLevel::Debug));
        assert!("verbose".parse::<LogLevel>().is_err());
        assert_eq!(LogLevel::default().as_str(), "info");
    }

    #[test]
    fn site_key_is_redacted_in_debug_and_needs_16_characters() {
        let key = SiteKey::new("correct horse battery").unwrap();
        assert_eq!(format!("{key:?}"), "SiteKey(<redacted>)");
        assert_eq!(key.as_str(), "correct horse battery");
        assert!(SiteKey::new("fifteen chars!!").is_err());
        assert!(SiteKey::new("sixteen chars!!!").is_ok());
    }
}
