//! Restore: putting back what a person had when idsync deprovisioned them, from the
//! stored [`RestoreSnapshot`]. Used by restore on return (a create or reactivation of
//! someone deprovisioned within `policy.restore_window`) and by `idsync undo`.
//!
//! Pure. The actions depend on the create or reactivation, so a hold on it holds them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::model::{Email, OrgRole, OrgSnapshot, TeamRole};

use super::diff::org_by_email;
use super::mapping::Desired;
use super::types::{Action, ActionId, ActionKind, Deployment, PlanState, Policy, RestoreSnapshot, Skipped};

/// How far a restore goes: restore on return lets the policy win where it has a say
/// (managed teams, org roles the policy assigns); an undo puts back everything the run
/// took that still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    OnReturn,
    Undo,
}

/// What W&B will have for the person right after `dep` (a create, or a reactivation:
/// on SaaS a re-add, which comes back a plain member in no team).
pub(crate) struct After<'u> {
    pub role: OrgRole,
    pub teams: Option<&'u BTreeMap<String, TeamRole>>,
}

/// The restore actions for one person: their teams (that still exist) with the roles they
/// had, and their org role, each depending on `dep`. Teams that are gone are reported in
/// `skipped`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn restore_actions(
    snap: &RestoreSnapshot,
    email: &Email,
    user_id: Option<&String>,
    after: &After<'_>,
    dep: &ActionId,
    scope: Scope,
    desired: &Desired<'_>,
    org: &OrgSnapshot,
    skipped: &mut Vec<Skipped>,
) -> Vec<Action> {
    let until = snap.taken_at.format("%Y-%m-%d");
    let teams: BTreeSet<&str> = org.teams.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    let mut push = |mut a: Action| {
        a.user_id = user_id.cloned();
        a.depends_on.push(dep.clone());
        out.push(a);
    };
    let want = desired.people.get(email);

    // The org role: only admin is worth restoring (W&B re-adds people as members, and
    // the viewer org role is never sent). On return, the policy wins when an org-role
    // rule has the person, or when it names an admin group the person is not in.
    let had_admin = OrgRole::parse(&snap.org_role) == OrgRole::Admin;
    let policy_says = want.is_some_and(|w| w.org_role.is_some()) || desired.admin_group_named;
    if had_admin && after.role != OrgRole::Admin && (scope == Scope::Undo || !policy_says) {
        let mut a = Action::new(
            ActionKind::SetOrgRole,
            Some(email.clone()),
            None,
            Some("admin".into()),
            format!("restore: had org role admin until {until}"),
        );
        a.from = Some(after.role.as_str().to_string());
        a.to = Some("admin".into());
        push(a);
    }

    for (team, role) in &snap.teams {
        if scope == Scope::OnReturn && desired.managed_teams.contains(team) {
            // policy.teams decides managed teams; the diff already planned them.
            continue;
        }
        if !teams.contains(team.as_str()) {
            skipped.push(Skipped {
                entry: email.to_string(),
                why: format!("restore: had team {team} as {role} until {until}, but W&B has no team {team} now"),
            });
            continue;
        }
        let role = TeamRole::new(role);
        let reason = format!("restore: had team {team} as {role} until {until}", role = role.as_str());
        match after.teams.and_then(|t| t.get(team)) {
            Some(have) if *have == role => {}
            Some(have) => {
                let mut a = Action::new(
                    ActionKind::SetTeamRole,
                    Some(email.clone()),
                    Some(team.clone()),
                    Some(role.as_str().to_string()),
                    reason,
                );
                a.from = Some(have.as_str().to_string());
                a.to = Some(role.as_str().to_string());
                push(a);
            }
            None => {
                let mut a = Action::new(
                    ActionKind::AddToTeam,
                    Some(email.clone()),
                    Some(team.clone()),
                    Some(role.as_str().to_string()),
                    reason,
                );
                a.to = Some(role.as_str().to_string());
                push(a);
            }
        }
    }
    out
}

/// The snapshot of a returning person, by email or by the anchor of their directory
/// entry (`by_anchor`), when it was taken within `policy.restore_window` of `now`.
pub(crate) fn returning<'s>(
    state: &'s PlanState,
    by_anchor: &BTreeMap<&str, &'s RestoreSnapshot>,
    desired: &Desired<'_>,
    email: &Email,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<&'s RestoreSnapshot> {
    if policy.restore_window.is_zero() {
        return None;
    }
    let anchor = desired.people.get(email).map(|p| p.person.anchor.as_str());
    let snap = state
        .restores
        .get(email)
        .or_else(|| anchor.and_then(|a| by_anchor.get(a).copied()))?;
    let age = now.signed_duration_since(snap.taken_at).to_std().ok()?;
    (age <= policy.restore_window).then_some(snap)
}

/// Restore on return: for each create or reactivation in `actions` of someone idsync
/// deprovisioned within the window, the restore actions.
pub(crate) fn on_return(
    actions: &mut Vec<Action>,
    desired: &Desired<'_>,
    org: &OrgSnapshot,
    policy: &Policy,
    state: &PlanState,
    now: DateTime<Utc>,
    skipped: &mut Vec<Skipped>,
) {
    if policy.restore_window.is_zero() || state.restores.is_empty() {
        return;
    }
    let by_email = org_by_email(org);
    let by_anchor: BTreeMap<&str, &RestoreSnapshot> = state
        .restores
        .values()
        .filter_map(|s| Some((s.anchor.as_deref().filter(|a| !a.is_empty())?, s)))
        .collect();
    let mut extra = Vec::new();
    let planned: BTreeSet<ActionId> = actions.iter().map(|a| a.id.clone()).collect();
    for a in actions.iter() {
        if !matches!(a.kind, ActionKind::CreateUser | ActionKind::ReactivateUser) {
            continue;
        }
        let Some(email) = a.user.as_ref() else { continue };
        let Some(snap) = returning(state, &by_anchor, desired, email, policy, now) else {
            continue;
        };
        let current = by_email.get(email).filter(|_| a.kind == ActionKind::ReactivateUser);
        let after = after_return(current.copied(), policy.deployment);
        let restored = restore_actions(
            snap,
            email,
            a.user_id.as_ref(),
            &after,
            &a.id,
            Scope::OnReturn,
            desired,
            org,
            skipped,
        );
        // The diff's own action for the same change (an org role it also wants) stays.
        extra.extend(restored.into_iter().filter(|r| !planned.contains(&r.id)));
    }
    actions.extend(extra);
}

/// What a user looks like right after a create (`None`) or reactivation: on SaaS a re-add
/// yields a plain member in no team; Dedicated keeps what the inactive user had.
pub(crate) fn after_return(current: Option<&crate::model::OrgUser>, deployment: Deployment) -> After<'_> {
    match current {
        Some(u) if deployment != Deployment::Saas => After {
            role: u.org_role.clone(),
            teams: Some(&u.teams),
        },
        _ => After {
            role: OrgRole::Member,
            teams: None,
        },
    }
}
