//! Jobs: what a caller asks for, the states a job goes through, and the manager
//! that runs them.

mod types;

pub use types::*;
