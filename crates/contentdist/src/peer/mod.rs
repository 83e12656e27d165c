//! Peer copy: the server every agent holding verified blocks runs, the client a peer
//! copies from its master with, and the P2P account both authenticate with.
//!
//! # Wire protocol (HTTP/1.1, plain or inside TLS; any client can use it)
//!
//! Every request needs HTTP Basic authentication ([`auth`]); a refused one gets 403.
//!
//! - `GET /content/{id}/{version}/manifest.json`: the cached manifest (404 when the
//!   cache does not hold the content). Whoever fetches it must check it against the
//!   content hash it trusts, when it has one.
//! - `GET /content/{id}/{version}/have[?after=N&wait_ms=M]`: which blocks the serving
//!   agent holds *verified*, as JSON ([`HaveDoc`]):
//!   `{"content_id":"PKG1","version":3,"content_hash":"…","block_count":80,
//!   "verified":12,"complete":false,"bitmap":"ff0f00…"}` where `bitmap` is hex of one
//!   bit per block, bit `i` in byte `i / 8` at position `i % 8` (least significant
//!   first), the cache's own layout. With `after=N`, the answer waits until more than
//!   `N` blocks are verified, the content is complete, or `wait_ms` (capped at 30 s)
//!   passed: a peer copies while its master is still downloading without polling.
//!   With FanOut, a peer sends header `x-contentdist-holder: {json}` describing
//!   itself ([`swarm::HolderAd`]: its ports, protocols, P2P key, pin, names and
//!   verified count); the answer then carries `"holders": [...]` (other holders,
//!   each its address and description) and `"you": "addr"` (the asker as seen).
//! - `GET /content/{id}/{version}/files/{path}` with an optional `Range: bytes=a-b`
//!   (`a-`, `-n` too): the file's bytes (200, or 206 with `Content-Range`; 416 when
//!   the range starts past the end). `{path}` is percent-decoded and must be exactly a
//!   file path of the manifest, anything else is 404: the URL never becomes a file
//!   system path. Only when every block the range touches is verified (else 409,
//!   "blocks not verified yet"); each block is hashed again just before it is sent
//!   (at most one 256 KiB chunk ahead of the one being sent).
//!   A block whose bytes changed on disk is no longer held: it leaves the `have` map
//!   at once and the cache re-verifies the entry (the agent then repairs it). Found
//!   in the first 256 KiB of the range, it is answered 409 before any byte is sent;
//!   found later, the response is cut short, and a client that asks `have` again
//!   sees the block gone (so a cut at a block still advertised is a bad answer,
//!   while a cut at a block no longer advertised is "not held").
//!
//! A source address (IPv4, or IPv6 /64) may hold at most
//! [`PeerServerLimits::max_connections_per_source`] connections (default 64); more
//! are closed as soon as accepted, without reading. Refused requests and
//! connections are counted ([`PeerServerCounters`]) and logged at most once per
//! source per minute.
//!
//! # Layout
//!
//! - [`auth`]: the P2P and machine accounts, HTTP Basic, constant-time checks.
//! - [`server`]: [`PeerServer`] (accept loop) over [`PeerService`] (one connection,
//!   any byte stream); an HTTP and an HTTPS server share one service.
//! - `https`: [`PeerServer::start_https`], the TLS transport in front of it.
//! - `request`: paths, `Range` and the `have` query, parsed.
//! - `handlers`: authentication, routing, manifests, `have`.
//! - `files`: files and ranges, streamed from verified blocks; changed blocks.
//! - `limits`: [`PeerServerLimits`], the per-source connection cap, the refusal
//!   log's rate limit.
//! - `counters`: [`PeerServerCounters`] and their [`PeerServerStats`] snapshot.
//! - [`client`]: [`PeerClient`], protocol order and fallback, manifest and `have`
//!   requests.
//! - `tls`: how a peer checks a master's certificate, one TLS client per master.
//! - `copy`: [`PeerClient::copy`], the copy loop, from the master and (FanOut)
//!   from other holders, several transfers at once.
//! - `plan`: which source each missing block comes from (pure).
//! - `smb`: the peer's side of SMB: a master's share as a source of the engine.
//! - [`swarm`]: FanOut's descriptions, the master's registry of holders.

pub mod auth;
mod bytes;
mod cached;
pub mod client;
mod copy;
mod counters;
mod files;
mod handlers;
mod https;
mod limits;
pub mod pace;
mod plan;
mod request;
pub mod server;
mod smb;
pub mod swarm;
mod tls;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::cache::CacheError;
use crate::codes::Code;
use crate::config::Protocols;
use crate::manifest::ManifestError;
use crate::transfer::HttpFailure;

pub use auth::{
    constant_time_eq, machine_account_name, machine_credentials, p2p_credentials, PeerAuth,
    Principal, Refusal, P2P_USER,
};
pub use bytes::{PeerBytes, PeerBytesByProtocol};
pub use client::{
    choose_protocol, protocol_order, MasterTarget, PeerClient, PeerClientCounters,
    PeerClientOptions,
};
pub use copy::CopyOutcome;
pub use counters::{PeerServerCounters, PeerServerStats};
pub use https::{server_tls_config, HttpsOptions};
pub use limits::{ConnectionPermit, PeerServerLimits};
pub use server::{ConnectionInfo, PeerServer, PeerServerOptions, PeerService, ServiceOptions};
pub use tls::PeerTlsOptions;

/// The longest a `have` request may wait (`wait_ms` above this is cut to it).
pub const MAX_HAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The answer to `GET /content/{id}/{version}/have`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveDoc {
    /// Content id.
    pub content_id: String,
    /// Content version.
    pub version: u32,
    /// Content hash of the manifest the serving agent holds.
    pub content_hash: String,
    /// Number of blocks of the content.
    pub block_count: usize,
    /// Number of blocks verified (the bits set in `bitmap`).
    pub verified: usize,
    /// Every block verified.
    pub complete: bool,
    /// Hex of the verified-block bitmap: bit `i % 8` of byte `i / 8` is block `i`.
    pub bitmap: String,
    /// FanOut: other holders of the content, for a peer that described itself
    /// (see [`swarm`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<swarm::Holder>,
    /// FanOut: the asking peer's address as the serving agent sees it (the
    /// holders' addresses are seen the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub you: Option<std::net::IpAddr>,
}

impl HaveDoc {
    /// Whether block `index` is marked in `bitmap` (decoded bytes).
    pub fn bit(bitmap: &[u8], index: usize) -> bool {
        bitmap
            .get(index / 8)
            .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }
}

/// What went wrong copying from a peer or serving peers.
///
/// Who is at fault decides what the caller does: [`PeerError::is_master_lost`] says
/// the master no longer answers (elect again); [`PeerError::Corrupt`] says it answers
/// with bytes that were not published (go elsewhere); the protocol variants and an
/// HTTP refusal (403) are configuration problems another election will not fix.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// This agent and the master have no peer-copy protocol in common.
    #[error("no peer-copy protocol in common with the master: this agent allows {local}, the master accepts {master}; set the same P2PEnabled protocol bits (0x40 HTTPS, 0x20 HTTP, 0x01 SMB) on every agent")]
    ProtocolMismatch {
        /// What this agent allows (`P2PEnabled`).
        local: Protocols,
        /// What the master accepts.
        master: Protocols,
    },
    /// The protocols in common are ones this agent cannot speak yet.
    #[error("the only peer-copy protocol this agent shares with the master is {common}, which this agent does not implement yet (this agent allows {local}, the master accepts {master}); enable HTTP (P2PEnabled 0x20) on both")]
    ProtocolNotImplemented {
        /// The protocols both sides allow.
        common: Protocols,
        /// What this agent allows.
        local: Protocols,
        /// What the master accepts.
        master: Protocols,
    },
    /// An HTTP exchange with the master failed: it does not answer (connection
    /// refused, no route, stall: [`PeerError::is_master_lost`]), refused our
    /// credentials (403), does not hold the content (404), failed the secure channel,
    /// or answered something malformed. The failure carries its catalogue code.
    #[error(transparent)]
    Http(#[from] HttpFailure),
    /// The master's manifest does not parse.
    #[error("{url}: {source}")]
    Manifest {
        /// Where it came from.
        url: String,
        /// What is wrong.
        source: ManifestError,
    },
    /// The master holds other content than asked for.
    #[error("manifest mismatch: {0}")]
    ManifestMismatch(String),
    /// A block kept failing verification: the master sends bytes never published.
    #[error("block {block} of {path} failed verification {times} times: the master sends bytes that were not published")]
    Corrupt {
        /// The file in the content.
        path: String,
        /// Global block index.
        block: usize,
        /// How many times.
        times: u32,
    },
    /// The local cache could not store a block.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The peer-copy server could not listen.
    #[error("cannot listen for peer copy on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The master presents a PKI certificate (or this agent requires one), and the
    /// store's `trusted/` holds no CA to check it with.
    #[error("cannot check the HTTPS certificate of the master {master}: {why}, and {} holds no CA certificate; put the CA that issued the masters' certificates there (PEM), or use self-signed certificates on every agent (P2PSslSettings without 0x1)", trusted.display())]
    NoTrustedCa {
        /// The master's HTTPS address.
        master: std::net::SocketAddr,
        /// The store's `trusted/`.
        trusted: std::path::PathBuf,
        /// Why a PKI certificate is expected.
        why: &'static str,
    },
    /// The HTTP client could not be built (TLS settings).
    #[error("peer-copy client settings: {0}")]
    Setup(String),
    /// The copy was paused or cancelled.
    #[error("stopped")]
    Stopped,
}

impl PeerError {
    /// The catalogue code.
    ///
    /// A refusal (403) reports `ORIGIN_REFUSED` (0xCD04, "refused the request (HTTP
    /// 401, 403)"): the nearest existing meaning; the message says it was the master.
    /// A 404 or any status the protocol does not use reports `INVALID_SERVER_RESPONSE`.
    /// (HTTP failures carry their code, settled in [`crate::transfer::check_status`].)
    pub fn code(&self) -> Code {
        match self {
            PeerError::ProtocolMismatch { .. } | PeerError::ProtocolNotImplemented { .. } => {
                Code::PROTOCOL_MISMATCH
            }
            PeerError::Http(f) => f.code,
            PeerError::Manifest { source, .. } => source.code(),
            PeerError::ManifestMismatch(_) => Code::MANIFEST_MISMATCH,
            PeerError::Corrupt { .. } => Code::DATA_ERROR,
            PeerError::Cache(e) => e.code(),
            PeerError::Bind { .. } | PeerError::Setup(_) => Code::CONFIG_INVALID,
            PeerError::NoTrustedCa { .. } => Code::BAD_ENVIRONMENT,
            PeerError::Stopped => Code::CANCELLED,
        }
    }

    /// True when the master stopped answering (refused connection, no route, stall):
    /// the caller should elect a new master.
    pub fn is_master_lost(&self) -> bool {
        matches!(self, PeerError::Http(f) if f.is_unreachable())
    }

    /// True when the peer answered 404: it does not hold the content (yet), for
    /// example a master elected before it had the manifest.
    pub fn is_not_held(&self) -> bool {
        matches!(self, PeerError::Http(f) if f.status() == Some(404))
    }
}
