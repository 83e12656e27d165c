//! The lab: a branch office simulated in one process on loopback, for `contentdist lab`.
//!
//! Layout:
//! - [`origin`]: [`origin::LabOrigin`], an in-process origin web server whose total
//!   egress is capped by one shared token bucket, like a thin WAN link.
//! - [`office`]: [`office::run`], N agents on 127.0.0.x fetching generated content
//!   through it, and the report `contentdist lab` prints.
//! - `host`: a thread and runtime of its own, for the origin.

mod host;
pub mod office;
pub mod origin;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::codes::Code;

/// Why the lab could not start one of its parts.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The origin's listening socket could not be bound.
    #[error("lab origin: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The origin's root directory does not exist or is not a directory.
    #[error("lab origin: root {path} is not a readable directory: {source}")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The rate limit was zero (nothing could ever be served).
    #[error("lab origin: rate_bytes_per_sec must be greater than 0")]
    ZeroRate,
}

impl LabError {
    /// The catalogue code: every lab start failure is a configuration problem.
    pub fn code(&self) -> Code {
        match self {
            LabError::Bind { .. } | LabError::Root { .. } | LabError::ZeroRate => {
                Code::CONFIG_INVALID
            }
        }
    }
}
