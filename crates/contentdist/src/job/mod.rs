//! Jobs: what a caller asks for, the states a job goes through, and the manager
//! that runs them.
//!
//! The manager keeps the table of jobs and persists it; each job runs as a task
//! with a [`context::JobContext`] (cache, origin, peers, counters, tasks) and its
//! own `Live` record, the one place it reports its state. `run` is one job's
//! life; `fill` fills the cache entry from the origin or, on a subnet, following
//! the election's role for the content.

mod certwait;
mod context;
mod control;
mod fill;
mod gate;
mod live;
mod manager;
mod manifest;
mod ops;
mod persist;
mod run;
mod types;

#[cfg(test)]
mod certwait_tests;
#[cfg(test)]
mod tests;

pub use certwait::CertWait;
pub use context::{Counters, PeerSetup};
pub use control::*;
pub use manager::{JobManager, JobManagerOptions, JobStats};
pub use run::JobError;
pub use types::*;
