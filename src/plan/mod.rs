//! The pure core: mapping, diff and guards. No I/O, no clock, no shell imports.

mod types;

pub use types::*;
