//! The pure core: mapping, diff and guards. No I/O, no clock, no shell imports.
//!
//! `plan(directory, org, policy, state, now) -> Plan` is the whole of it: the shell
//! fetches the inputs, stores the state and executes the ready actions.

pub mod admin;
mod diff;
pub mod explain;
mod guards;
mod mapping;
mod restore;
mod settle;
mod simulate;
mod types;
pub mod undo;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::model::{DirectorySnapshot, OrgSnapshot};

pub use explain::{explain, Explanation, Verdict};
pub use mapping::{anchors_to_store, in_domain_scope, self_emails};
pub use settle::org_shows;
pub use simulate::{roster, simulate};
pub use types::*;

/// Everything a plan is computed from. Time is an input, never read from the clock.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub directory: &'a DirectorySnapshot,
    pub org: &'a OrgSnapshot,
    pub policy: &'a Policy,
    pub state: &'a PlanState,
    pub now: DateTime<Utc>,
}

/// Computes the plan: desired state, diff, restores on return, guards, summary and rosters.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let PlanInput {
        directory,
        org,
        policy,
        state,
        now,
    } = input;
    let desired = mapping::desired_state(directory, org, policy, &state.anchors);
    let mut d = diff::diff(&desired, org, policy, state, now);
    let mut skipped = Vec::new();
    let before = d.actions.len();
    restore::on_return(&mut d.actions, &desired, org, policy, state, now, &mut skipped);
    if d.actions.len() != before {
        d.actions = diff::sorted(std::mem::take(&mut d.actions));
    }
    finish(input, desired, d, skipped, None)
}

/// The shared tail of [`plan`] and [`undo::undo`]: guards, summary, rosters, the `Plan`.
fn finish(
    input: PlanInput<'_>,
    desired: mapping::Desired<'_>,
    mut d: diff::Diff,
    extra_skipped: Vec<Skipped>,
    undo: Option<UndoInfo>,
) -> Plan {
    let PlanInput {
        directory,
        org,
        policy,
        state,
        now,
    } = input;
    let gi = guards::GuardInput {
        org,
        policy,
        state,
        now,
        self_emails: &desired.self_emails,
        managed_teams: &desired.managed_teams,
        identity_pairs: &d.identity_pairs,
        in_scope_active: d.in_scope_active,
        directory_people: directory.people.len(),
        usable_enabled: desired.usable_enabled,
        mapped_groups: &desired.mapped_groups,
    };
    let suspicious = guards::run(&mut d.actions, &gi);
    if suspicious.is_some() {
        // A suspicious read starts no tombstone clock (SPEC §4): only the stored ones show.
        d.tombstones.retain(|t| state.tombstones.contains_key(&t.user));
    }

    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for a in &d.actions {
        let key = if a.is_ready() { a.kind.as_str() } else { "held" };
        *summary.entry(key.to_string()).or_default() += 1;
    }
    let (roster_before, roster_after) = simulate::rosters(org, d.actions.iter().filter(|a| a.is_ready()), policy);
    Plan {
        version: 1,
        generated_at: now,
        source: SourceSummary {
            kind: directory.kind.clone(),
            users: directory.people.len(),
            groups: directory.groups.len(),
            usable_enabled: desired.usable_enabled,
            mapped_groups: desired.mapped_groups,
            suspicious,
        },
        target: TargetSummary {
            // Service accounts are not users (SPEC §1), even when /Users lists them.
            users: org.users.iter().filter(|u| !u.service_account).count(),
            teams: org.teams.len(),
        },
        summary,
        actions: d.actions,
        tombstones: d.tombstones,
        skipped: {
            let mut s = desired.skipped;
            s.extend(extra_skipped);
            s
        },
        roster_before,
        roster_after,
        identity_pending: {
            // A shared anchor keeps what was stored: one read listing an entry twice must
            // not erase the anchor an identity change is later detected by.
            let mut kept = d.identity_pending;
            for a in &desired.shared_anchors {
                if let Some(e) = state.anchors.get(*a) {
                    kept.entry(a.to_string()).or_insert_with(|| e.clone());
                }
            }
            kept
        },
        undo,
    }
}
