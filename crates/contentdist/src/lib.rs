//! contentdist: bring published content to every host of a site while crossing the
//! WAN once per subnet, verifying every block on every hop.
//!
//! # Layout
//!
//! - [`certstore`]: certificate facts (names, usages, dates, thumbprint) and the
//!   server-certificate selection rules; the store's loading and HTTPS come next.
//! - [`codes`]: the code catalogue (0x209A, 0x2EFD, ...) and `SuccessCodes`.
//! - [`config`]: settings with the product's names, validated once at load.
//! - [`election`]: master election per content (sans-I/O state machine, wire format).
//! - [`firewall`]: the agent's own nftables table accepting its ports, kept in place.
//! - [`manifest`]: the content manifest (files, sizes, block hashes, content hash) and `ContentKey`.
//! - [`publish`]: write a directory tree and its manifest into an origin root.
//! - [`cache`]: the content store: verified blocks, resume, clean-up.
//! - [`origin`]: download from the origin: ranges, resume, retries, throttling.
//! - [`transfer`]: the one transfer engine (Range request, reassembly, verified writes) and its sources.
//! - [`peer`]: peer copy: the HTTP server, the client that copies from a master, the P2P account.
//! - [`smb`]: peer copy over SMB: the agent's own smbd sharing the cache read-only.
//! - [`job`]: jobs, their states and the job manager.
//! - [`control`]: the control socket (HTTP/JSON over a Unix socket) and its client.
//! - [`subnet`]: the election driver (UDP) and each content's role for the jobs.
//! - [`tasks`]: accounted background tasks: named, spanned, cancellable, joined at shutdown.
//! - [`agent`]: `Agent::start(config)` wires it all together; its handle has the bound
//!   addresses, a typed status, `shutdown()` and `join()`.
//! - [`lab`]: a branch office simulated in one process: the rate-limited lab origin.
//! - [`util`]: shared plumbing: the HTTP/1 server loop, the `Range` parser, the token bucket.

pub mod agent;
pub mod cache;
pub mod certstore;
pub mod codes;
pub mod config;
pub mod control;
pub mod election;
pub mod firewall;
pub mod job;
pub mod lab;
pub mod manifest;
pub mod metrics;
pub mod origin;
pub mod peer;
pub mod publish;
pub mod smb;
pub mod subnet;
pub mod tasks;
pub mod transfer;
pub mod util;

#[cfg(test)]
mod test_util;
