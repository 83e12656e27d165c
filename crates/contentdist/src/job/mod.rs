//! Jobs: what a caller asks for, the states a job goes through, and the manager
//! that runs them.

mod control;
mod types;

pub use control::*;
pub use types::*;
