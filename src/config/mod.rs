//! Configuration: the TOML shape (SPEC §3), loading with located errors, cross-checks,
//! secrets, and conversion to the plan core's [`crate::plan::Policy`].

mod duration;
mod types;

pub use duration::HumanDuration;
pub use types::*;
