//! The transfer engine: blocks of a cache entry from a source, verified and stored.
//!
//! The origin download and the peer copy are the same loop: ask for a run of
//! blocks with one Range request, check the answer, cut the body into blocks,
//! verify and store each off the async runtime, count the bytes, and say how the run
//! ended. That loop lives here once ([`fetch_run`]); `origin` and `peer` keep only
//! what differs: which runs to ask for, when to retry, when to give up.
//!
//! # The source abstraction
//!
//! [`BlockSource`] is a trait with one method, `open_run(file, range)`, answering
//! with a [`RunBody`] (chunks as they arrive) or "not held any more". It is a trait,
//! not an enum of the known sources, so that the engine stays generic (static
//! dispatch, no boxing per chunk) and new sources (SMB, or a fan-out that splits a
//! run over several masters and answers from whichever holds the blocks) plug in
//! without touching it. [`HttpSource`] serves both the origin and a master: what
//! differs between them, which answers are valid (a web server may ignore Range,
//! a master may not; a master's 409 means "not held") and what a failure is called,
//! follows from [`Remote`]; the rest (client, credentials, stall timeout, WAN
//! throttle) are fields.
//!
//! # Layout
//!
//! - `engine`: [`fetch_run`], [`RunEnd`], [`RunReport`], and [`BadBlocks`], the
//!   per-block failure count that becomes a `Corrupt` error.
//! - `source`: [`BlockSource`], [`RunBody`], [`HttpSource`], [`ContentUrls`].
//! - `failure`: [`HttpFailure`] (code + retryable), built by [`classify`] and
//!   [`check_status`]; the origin and peer errors wrap it.
//! - `client`: the one rustls + reqwest client builder ([`tls_config`], [`http_client`]).
//! - `writer`: [`BlockWriter`], verify-and-store on a blocking thread, and [`flush`].

mod client;
mod engine;
mod failure;
mod source;
mod writer;

pub use client::{http_client, tls_config, ClientOptions, ClientSetupError, Roots};
pub use engine::{fetch_run, BadBlocks, CorruptBlock, RunEnd, RunReport};
pub use failure::{check_status, classify, stall_guard, FailureKind, HttpFailure, Remote};
pub use source::{BlockSource, ContentUrls, HttpBody, HttpSource, Opened, RunBody};
pub use writer::{flush, BlockWriter};

#[cfg(test)]
mod tests;
