//! The W&B SCIM client: reads the org snapshot and executes plan actions.
//!
//! - `wire`: tolerant readers for W&B's SCIM payloads and the bodies idsync sends;
//! - `client`: [`WandbClient`], which sends every request through `crate::http`'s one
//!   retry policy;
//! - `error`: [`TargetError`], whose messages name the operation and the fix.

mod client;
mod error;
mod fields;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_equiv;

pub use crate::http::retry::Backoff;
pub use client::{Created, WandbClient};
pub use error::TargetError;

/// Feeds bytes to every reader of W&B's SCIM payloads, as the client would: the fuzz
/// target `wandb_scim` (`crate::fuzz`). Returns how many resources parsed, so the work
/// cannot be optimised away.
#[doc(hidden)]
pub fn wire_fuzz(data: &[u8]) -> usize {
    let _ = wire::error_detail(data);
    // The streamed list reader, as `list` uses it.
    let streamed = |n: Option<usize>| n.unwrap_or(0);
    let mut n = streamed(
        wire::read_list::<crate::model::OrgUser>(data)
            .ok()
            .and_then(|p| p.items.ok())
            .map(|i| i.len()),
    ) + streamed(
        wire::read_list::<crate::model::Team>(data)
            .ok()
            .and_then(|p| p.items.ok())
            .map(|i| i.len()),
    );
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return n;
    };
    if let Ok(page) = wire::parse_list(v.clone()) {
        for r in &page.resources {
            n += usize::from(wire::parse_user(r).is_ok()) + usize::from(wire::parse_team(r).is_ok());
        }
    }
    n + usize::from(wire::parse_user(&v).is_ok()) + usize::from(wire::parse_team(&v).is_ok())
}
