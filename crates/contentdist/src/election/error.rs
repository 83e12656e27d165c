//! Why an election message was refused.

use crate::codes::Code;

/// Why a datagram is not an election message we accept (or a message cannot be
/// encoded). The driver logs it (rate-limited) and drops the datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The datagram ends inside `field`.
    #[error("election message too short: it ends inside the {field}")]
    TooShort {
        /// The field that is cut off.
        field: &'static str,
    },
    /// The datagram does not start with `CDEL`: not an election message.
    #[error("not an election message (bad magic)")]
    BadMagic,
    /// An election message of a protocol version we do not speak.
    #[error("election protocol version {0} is not supported (this agent speaks {v})", v = super::wire::VERSION)]
    UnsupportedVersion(u8),
    /// A message kind we do not know.
    #[error("unknown election message kind {0}")]
    UnknownKind(u8),
    /// Header flags we do not know.
    #[error("unknown election message flags 0x{0:02X}")]
    UnknownFlags(u8),
    /// An address family other than 4 or 6.
    #[error("unknown address family {0} in election message")]
    BadAddressFamily(u8),
    /// The content id is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("bad content id in election message: {reason}")]
    BadContentId {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A master announcement's names: more than 4, or one that is not 1 to 253
    /// bytes of `[A-Za-z0-9.-]` or starts or ends with `-` or `.`; or a sender's
    /// host name that is not one DNS label (refused when encoding too).
    #[error("bad name in election message: {reason}")]
    BadName {
        /// What is wrong with them.
        reason: &'static str,
    },
    /// A field holds a value outside its range (share > 1000, weight > 99, unknown
    /// protocol or flag bits).
    #[error("election message field {field} has invalid value {value}")]
    BadField {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Encoding only: a rank that is not the sender's.
    #[error("rank of node {rank:016x} in a message sent by node {sender:016x}")]
    RankNodeMismatch {
        /// The rank's node id.
        rank: u64,
        /// The message's node id.
        sender: u64,
    },
    /// Bytes follow the end of the message.
    #[error("{0} trailing bytes after the election message")]
    TrailingBytes(usize),
    /// The tag does not match: wrong site key, or the message was altered.
    #[error("election message authentication failed (wrong site key or altered message)")]
    BadTag,
    /// The message's authentication does not match this agent's configuration.
    #[error("election message refused: {0}")]
    Unauthenticated(AuthMismatch),
}

/// How a message's authentication differs from what this agent expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthMismatch {
    /// A site key is configured but the message carries no tag.
    #[error("it is not authenticated but a site key is configured")]
    MissingTag,
    /// The message is authenticated but no site key is configured here.
    #[error("it is authenticated but no site key is configured on this agent")]
    NoSiteKey,
}

impl WireError {
    /// The catalogue code: [`Code::SECURE_FAILURE`] for authentication failures,
    /// [`Code::INVALID_PACKAGE_PATH`] for a bad content id, else
    /// [`Code::INVALID_SERVER_RESPONSE`] (a malformed message).
    pub fn code(&self) -> Code {
        match self {
            WireError::BadTag | WireError::Unauthenticated(_) => Code::SECURE_FAILURE,
            WireError::BadContentId { .. } => Code::INVALID_PACKAGE_PATH,
            _ => Code::INVALID_SERVER_RESPONSE,
        }
    }
}

/// Why an authenticated message was refused as stale (see
/// [`ReplayGuard`](super::ReplayGuard)): its tag is good, but it was seen before or
/// is out of time. The driver counts these apart from undecodable datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// This counter was already accepted from this node: a replay.
    #[error("election message from node {node:016x} replayed (counter {counter} seen before)")]
    Replayed {
        /// The sender.
        node: u64,
        /// Its counter.
        counter: u64,
    },
    /// The counter is further below the highest seen than reordering explains.
    #[error("election message from node {node:016x} too old (counter {counter}, highest seen {highest})")]
    TooOld {
        /// The sender.
        node: u64,
        /// Its counter.
        counter: u64,
        /// The highest counter accepted from it.
        highest: u64,
    },
    /// The message's time is more than 30 s from this host's clock.
    #[error("election message from node {node:016x} is {offset_ms} ms off this host's clock (more than 30 s)")]
    OutOfWindow {
        /// The sender.
        node: u64,
        /// How far its time is from ours, either way.
        offset_ms: u64,
    },
    /// The sender was forgotten to bound memory and the message is not newer than
    /// what was forgotten.
    #[error("election message from node {node:016x} is not newer than the replay guard's floor")]
    Forgotten {
        /// The sender.
        node: u64,
    },
}

impl Stale {
    /// The catalogue code: [`Code::SECURE_FAILURE`].
    pub fn code(&self) -> Code {
        Code::SECURE_FAILURE
    }
}
