//! Errors of loading the settings. Every message starts with the file, then the key.

use std::path::PathBuf;

use crate::codes::Code;

/// Why a settings file was refused. Every variant names the file; all but the
/// read and syntax errors name the key, so the administrator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the settings file: {source}", file.display())]
    Read {
        /// The settings file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, FIFO, device, socket).
    #[error("{}: not a regular file ({kind}); settings are read from a regular file only", file.display())]
    NotAFile {
        /// The settings file.
        file: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than any settings file should be.
    #[error("{}: {size} bytes is too large for a settings file (the limit is {limit} bytes)", file.display())]
    TooLarge {
        /// The settings file.
        file: PathBuf,
        /// Its size (at least; it may still grow).
        size: u64,
        /// [`super::MAX_CONFIG_BYTES`].
        limit: u64,
    },
    /// The file is not valid TOML.
    #[error("{}: line {line}, column {column}: TOML syntax error: {message}", file.display())]
    Syntax {
        /// The settings file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key this product does not have (names are case-sensitive).
    #[error("{}: unknown key '{key}'{}", file.display(), suggestion_text(suggestion))]
    UnknownKey {
        /// The settings file.
        file: PathBuf,
        /// The key as written; keys inside a table as `Table.key`.
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
    },
    /// A value of the wrong TOML type.
    #[error("{}: {key}: expected {expected}, found {found}", file.display())]
    WrongType {
        /// The settings file.
        file: PathBuf,
        /// The key.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// The TOML type written.
        found: &'static str,
    },
    /// A value of the right type that is not acceptable.
    #[error("{}: {key}: {message}", file.display())]
    Invalid {
        /// The settings file.
        file: PathBuf,
        /// The key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Two keys whose values contradict each other.
    #[error("{}: {key} and {other}: {message}", file.display())]
    Conflict {
        /// The settings file.
        file: PathBuf,
        /// The key whose value needs the other.
        key: String,
        /// The key it contradicts.
        other: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean '{s}'?"),
        None => String::new(),
    }
}

impl ConfigError {
    /// The catalogue code: always [`Code::CONFIG_INVALID`].
    pub fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }

    /// The key at fault, when the error is about one key (the first of two in a conflict).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. }
            | ConfigError::NotAFile { .. }
            | ConfigError::TooLarge { .. }
            | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Conflict { key, .. } => Some(key),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The known key closest to `key`, if it is close enough to be a likely typo.
/// Case differences alone always match (keys are case-sensitive, admins forget).
pub(crate) fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    let (best, distance) = known
        .iter()
        .map(|k| (*k, strsim::levenshtein(&lower, &k.to_ascii_lowercase())))
        .min_by_key(|&(_, d)| d)?;
    let allowed = (key.chars().count().max(best.len()) / 3).clamp(1, 3);
    (distance <= allowed).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes: the byte after it is the third character of the line.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn closest_key_tolerates_typos_and_case_but_not_strangers() {
        let known = ["P2PEnabled", "P2PHttpPort", "BlockSize", "LogLevel"];
        assert_eq!(closest("P2PEnabld", &known), Some("P2PEnabled"));
        assert_eq!(closest("p2penabled", &known), Some("P2PEnabled"));
        assert_eq!(closest("BlokSize", &known), Some("BlockSize"));
        assert_eq!(closest("CompletelyDifferent", &known), None);
        assert_eq!(closest("Foo", &known), None);
    }
}
