//! The W&B SCIM client: reads the org snapshot and executes plan actions.
//!
//! - `wire`: tolerant readers for W&B's SCIM payloads and the bodies idsync sends;
//! - `retry`: the one retry policy (pure functions);
//! - `client`: [`WandbClient`], which sends every request through that policy;
//! - `transport`: reply bodies within a size limit and transport errors' real causes,
//!   shared with the identity-provider sources;
//! - `error`: [`TargetError`], whose messages name the operation and the fix.

mod client;
mod error;
pub mod retry;
pub mod transport;
mod wire;

#[cfg(test)]
mod tests;

pub use client::{Created, HttpStats, WandbClient};
pub use error::TargetError;
pub use retry::Backoff;
