//! Jobs: what a caller asks for, the states a job goes through, and the manager
//! that runs them.

mod control;
mod fill;
mod manager;
mod run;
mod types;

pub use control::*;
pub use fill::PeerSetup;
pub use manager::{Counters, JobManager, JobManagerOptions};
pub use run::JobError;
pub use types::*;
