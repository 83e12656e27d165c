//! The control socket: how local callers (the `contentdist` CLI, scripts, a
//! configuration-management tool) talk to their agent.
//!
//! It is HTTP/1.1 with JSON bodies over a Unix socket, so that `curl --unix-socket`
//! works for debugging and file permissions (mode 0660) decide who may submit jobs;
//! no network port is opened for it.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/jobs` with a [`JobRequest`](crate::job::JobRequest) | 201 [`JobInfo`](crate::job::JobInfo) |
//! | `GET /v1/jobs` | 200 `[JobInfo]`, oldest first |
//! | `GET /v1/jobs/{id}` | 200 `JobInfo` |
//! | `POST /v1/jobs/{id}/pause`, `.../resume`, `.../cancel` | 200 `JobInfo` |
//! | `GET /v1/status` | 200 [`AgentStatus`] |
//! | `GET /v1/p2p-account` | 200 [`P2pAccount`]; root (or the agent's own user) only, else 403; 404 when the agent has none |
//! | `GET /v1/cache` | 200 `[CacheEntryInfo]` |
//! | `POST /v1/cache/clean` | 200 [`CleanReport`](crate::cache::CleanReport) |
//!
//! Every refusal is a [`ControlError`](crate::job::ControlError) body (`{"code": 52492,
//! "message": "..."}`) with 400 (bad JSON or argument), 404 (unknown job or route),
//! 403 (a secret asked for by another user), 405 (wrong method), 409 (the job's state does not allow it), 413 (body over 64 KiB)
//! or 500 (the agent failed).
//!
//! - [`server`]: [`bind`] the socket safely and [`serve`] a [`JobControl`](crate::job::JobControl).
//! - [`client`]: [`ControlClient`], one method per route.

pub mod client;
pub mod server;
mod status;

#[cfg(test)]
mod tests;

pub use client::{ClientError, ControlClient};
pub use server::{bind, serve, ControlServer, ControlSocketError};
pub use status::{
    AgentAddrs, AgentStatus, CertWaitReport, ElectionReport, ElectionRole, P2pAccount,
};

/// The largest request body the server reads; a job request is a few hundred bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
