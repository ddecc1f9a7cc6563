//! Diff: the desired state against the org snapshot, into actions and tombstones.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::model::{Email, OrgRole, OrgSnapshot, OrgUser, TeamRole};

use super::mapping::{in_domain_scope, Desired, DesiredPerson};
use super::types::{
    Action, ActionId, ActionKind, Deployment, DeprovisionMode, PlanState, Policy, TeamMembershipMode, Tombstone, TombstoneCause,
};

/// What the diff produces before the guards look at it.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    pub actions: Vec<Action>,
    pub tombstones: Vec<Tombstone>,
    /// Ids of the actions that form identity-change pairs.
    pub identity_pairs: BTreeSet<ActionId>,
    /// In-scope active W&B users (the base for `max_deprovision_percent`).
    pub in_scope_active: usize,
    /// Anchor -> stored (old) email of identity changes still pending.
    pub identity_pending: BTreeMap<String, Email>,
}

/// The W&B users keyed by parsed email (unparseable emails are never in scope, nor are
/// service accounts: SPEC §4).
pub(crate) fn org_by_email(org: &OrgSnapshot) -> BTreeMap<Email, &OrgUser> {
    let mut m = BTreeMap::new();
    for u in org.users.iter().filter(|u| !u.service_account) {
        if let Some(e) = Email::parse(&u.email) {
            m.entry(e).or_insert(u);
        }
    }
    m
}

fn add_chrono(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    // Durations come from config and are bounded by parsing; saturate rather than panic.
    ChronoDuration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) fn diff(desired: &Desired<'_>, org: &OrgSnapshot, policy: &Policy, state: &PlanState, now: DateTime<Utc>) -> Diff {
    let mut out = Diff::default();
    let by_email = org_by_email(org);

    // Teams to create come first; adds to them depend on the creation.
    let mut team_create_ids: BTreeMap<&str, ActionId> = BTreeMap::new();
    for (team, reason) in &desired.teams_to_create {
        let a = Action::new(ActionKind::CreateTeam, None, Some(team.clone()), None, reason.clone());
        team_create_ids.insert(team.as_str(), a.id.clone());
        out.actions.push(a);
    }

    // People the directory wants.
    for (email, want) in &desired.people {
        // What W&B has for the person now, or will have right after a create or a
        // reactivation (then the changes depend on it).
        let (user_id, current, dep) = match by_email.get(email) {
            None => {
                let Some(reason) = want.create_reason(email) else { continue };
                let create = Action::new(ActionKind::CreateUser, Some(email.clone()), None, None, reason);
                let dep = create.id.clone();
                out.actions.push(create);
                // W&B creates users as org members.
                (None, UserView { ..NEW_MEMBER }, Some(dep))
            }
            Some(u) if !u.active => {
                let Some(reason) = want.create_reason(email) else { continue };
                let mut re = Action::new(
                    ActionKind::ReactivateUser,
                    Some(email.clone()),
                    None,
                    None,
                    format!("{reason}; the W&B user is inactive"),
                );
                re.user_id = Some(u.id.clone());
                re.from = Some("inactive".into());
                re.to = Some("active".into());
                let dep = re.id.clone();
                out.actions.push(re);
                (Some(&u.id), UserView::of(u, policy.deployment, true), Some(dep))
            }
            Some(u) => (Some(&u.id), UserView::of(u, policy.deployment, false), None),
        };
        changes_for(
            &mut out.actions,
            email,
            user_id,
            want,
            &current,
            desired,
            policy,
            state,
            dep.as_ref(),
            &team_create_ids,
        );
    }

    // W&B users in scope that the directory no longer wants: tombstones and deprovisions.
    for (email, u) in &by_email {
        if !in_domain_scope(email, policy) || desired.self_emails.contains(email) || desired.frozen.contains(email) {
            continue;
        }
        if !u.active {
            continue;
        }
        out.in_scope_active += 1;
        if desired.people.contains_key(email) {
            continue;
        }
        // The same person under a new email: one held pair, not churn.
        if let Some(r) = desired.renamed.get(email) {
            let (new_email, source_ref) = (&r.new_email, r.source_ref);
            let create_id = ActionId::compute(ActionKind::CreateUser, Some(new_email), None, None);
            if out.actions.iter().any(|a| a.id == create_id) {
                out.identity_pairs.insert(create_id.clone());
                out.identity_pending.insert(r.anchor.to_string(), email.clone());
                if policy.deprovision != DeprovisionMode::Off {
                    let mut d = deprovision(
                        email,
                        u,
                        policy,
                        format!("identity change: {source_ref} kept its anchor but its email moved from {email} to {new_email}"),
                    );
                    d.depends_on.push(create_id);
                    out.identity_pairs.insert(d.id.clone());
                    out.actions.push(d);
                }
                continue;
            }
        }
        let (cause, grace, what) = match desired.disabled.get(email) {
            Some(p) => (
                TombstoneCause::Disabled,
                policy.disabled_grace_period,
                format!("disabled in the directory ({})", p.source_ref),
            ),
            None => (
                TombstoneCause::Missing,
                policy.grace_period,
                "missing from the directory".to_string(),
            ),
        };
        let since = state.tombstones.get(email).map(|t| t.since).filter(|s| *s <= now).unwrap_or(now);
        let after = (policy.deprovision != DeprovisionMode::Off).then(|| add_chrono(since, grace));
        out.tombstones.push(Tombstone {
            user: email.clone(),
            since,
            deprovision_after: after,
            cause,
        });
        if let Some(after) = after {
            if now >= after {
                let reason = format!(
                    "{what} since {} (grace {} expired)",
                    since.format("%Y-%m-%dT%H:%M:%SZ"),
                    crate::duration::HumanDuration(grace)
                );
                out.actions.push(deprovision(email, u, policy, reason));
            }
        }
    }

    out.actions = sorted(std::mem::take(&mut out.actions));
    out
}

/// Actions in apply order (phase, then user, team, kind, id). Plans can hold hundreds of
/// thousands of actions: sorting positions by borrowed keys, then permuting the actions
/// in place (one swap each, following the permutation's cycles), beats cloning keys,
/// shuffling the large actions in the sort, and building a second vector of them (which
/// doubled the plan's peak memory).
pub(crate) fn sorted(mut actions: Vec<Action>) -> Vec<Action> {
    fn key(a: &Action) -> (u8, Option<&Email>, Option<&String>, ActionKind, &ActionId) {
        (a.phase(), a.user.as_ref(), a.team.as_ref(), a.kind, &a.id)
    }
    // Keys computed once, next to their position: comparing through `actions[i]` reached
    // into 300-byte actions (and worked out the phase) twice per comparison.
    let mut keyed: Vec<_> = actions.iter().enumerate().map(|(i, a)| (key(a), i)).collect();
    // The position breaks ties, so this gives exactly what a stable sort by key would.
    keyed.sort_unstable();
    let mut order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    // Position j must receive the action now at order[j]; a settled position gets
    // order[j] = j.
    for i in 0..order.len() {
        let mut j = i;
        while order[j] != i {
            let k = order[j];
            actions.swap(j, k);
            order[j] = j;
            j = k;
        }
        order[j] = j;
    }
    actions
}

pub(crate) fn deprovision(email: &Email, u: &OrgUser, policy: &Policy, reason: String) -> Action {
    let mut d = Action::new(ActionKind::DeprovisionUser, Some(email.clone()), None, None, reason);
    d.user_id = Some(u.id.clone());
    d.from = Some("active".into());
    d.to = Some(deprovision_outcome(policy).into());
    d
}

/// What a deprovision does to the user on this deployment.
pub(crate) fn deprovision_outcome(policy: &Policy) -> &'static str {
    match (policy.deprovision, policy.deployment) {
        (DeprovisionMode::Delete, _) if policy.delete_deactivates => "deactivated",
        (DeprovisionMode::Delete, _) => "deleted",
        (_, Deployment::Saas) => "removed from org",
        _ => "deactivated",
    }
}

/// The parts of a W&B user the diff compares, borrowed: most users need no action.
struct UserView<'u> {
    role: &'u OrgRole,
    teams: &'u BTreeMap<String, TeamRole>,
}

static NEW_MEMBER: UserView<'static> = UserView {
    role: &OrgRole::Member,
    teams: &BTreeMap::new(),
};

impl<'u> UserView<'u> {
    /// What the user looks like to the diff. On SaaS a reactivation is a re-add, which
    /// yields a plain member in no team, so the diff plans from that.
    fn of(u: &'u OrgUser, deployment: Deployment, reactivating: bool) -> UserView<'u> {
        if reactivating && deployment == Deployment::Saas {
            return UserView { ..NEW_MEMBER };
        }
        UserView {
            role: &u.org_role,
            teams: &u.teams,
        }
    }
}

/// Org role and team changes for one wanted person, against what W&B has (or will have
/// right after `dep`, a create or reactivation).
#[allow(clippy::too_many_arguments)]
fn changes_for(
    actions: &mut Vec<Action>,
    email: &Email,
    user_id: Option<&String>,
    want: &DesiredPerson<'_>,
    current: &UserView<'_>,
    desired: &Desired<'_>,
    policy: &Policy,
    state: &PlanState,
    dep: Option<&ActionId>,
    team_create_ids: &BTreeMap<&str, ActionId>,
) {
    let mut push = |mut a: Action, extra_dep: Option<&ActionId>| {
        a.user_id = user_id.cloned();
        a.depends_on.extend(dep.cloned());
        a.depends_on.extend(extra_dep.cloned());
        actions.push(a);
    };

    // Org role. Never send viewer; demote an admin only when an admin group is named.
    let target_role = match &want.org_role {
        Some(w) => Some((w.role.clone(), want.org_role_reason(w))),
        None if dep.is_some() && *current.role != policy.default_org_role => Some((
            policy.default_org_role.clone(),
            format!(
                "policy.default_org_role = {} for a new user in no org-role group",
                policy.default_org_role
            ),
        )),
        None if *current.role == OrgRole::Admin && desired.admin_group_named && policy.default_org_role != OrgRole::Admin => Some((
            policy.default_org_role.clone(),
            format!(
                "{} is in no org-role group and policy.org_roles names an admin group: demote to default_org_role",
                want.person.source_ref
            ),
        )),
        None => None,
    };
    if let Some((role, reason)) = target_role {
        let demotes_admin = *current.role == OrgRole::Admin && role != OrgRole::Admin;
        let allowed = matches!(role, OrgRole::Admin | OrgRole::Member) && (!demotes_admin || desired.admin_group_named);
        if allowed && role != *current.role {
            let mut a = Action::new(
                ActionKind::SetOrgRole,
                Some(email.clone()),
                None,
                Some(role.as_str().to_string()),
                reason,
            );
            a.from = Some(current.role.as_str().to_string());
            a.to = Some(role.as_str().to_string());
            push(a, None);
        }
    }

    // Teams: only managed ones, and only those the person wants or has (not every
    // managed team for every person: orgs have thousands of teams).
    let mut teams: BTreeSet<&str> = want.teams.keys().copied().collect();
    teams.extend(
        current
            .teams
            .keys()
            .map(String::as_str)
            .filter(|t| desired.managed_teams.contains(*t)),
    );
    for team in teams {
        let wanted = want.teams.get(team);
        let have = current.teams.get(team);
        match (wanted, have) {
            (Some(w), None) => {
                let mut a = Action::new(
                    ActionKind::AddToTeam,
                    Some(email.clone()),
                    Some(team.to_string()),
                    Some(w.role.as_str().to_string()),
                    want.team_reason(team, w),
                );
                a.to = Some(w.role.as_str().to_string());
                push(a, team_create_ids.get(team));
            }
            (Some(w), Some(h)) if &w.role != h => {
                let mut a = Action::new(
                    ActionKind::SetTeamRole,
                    Some(email.clone()),
                    Some(team.to_string()),
                    Some(w.role.as_str().to_string()),
                    want.team_reason(team, w),
                );
                a.from = Some(h.as_str().to_string());
                a.to = Some(w.role.as_str().to_string());
                push(a, None);
            }
            (None, Some(h)) => {
                let owned = state.ledger.contains(&(email.clone(), team.to_string()));
                let remove = match policy.team_membership {
                    TeamMembershipMode::Authoritative => true,
                    TeamMembershipMode::Owned => owned,
                };
                if remove {
                    let why = match policy.team_membership {
                        TeamMembershipMode::Authoritative => "team_membership = authoritative",
                        TeamMembershipMode::Owned => "team_membership = owned and idsync granted this membership",
                    };
                    let mut a = Action::new(
                        ActionKind::RemoveFromTeam,
                        Some(email.clone()),
                        Some(team.to_string()),
                        None,
                        format!("{} is in none of the groups mapped to team {team} ({why})", want.person.source_ref),
                    );
                    a.from = Some(h.as_str().to_string());
                    push(a, None);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The in-place permutation gives exactly what sorting the actions themselves by
        /// the same key gives.
        #[test]
        fn sorted_is_a_plain_sort_by_the_apply_key(spec in proptest::collection::vec((0u8..4, 0u8..5, 0u8..3), 0..60)) {
            let kinds = [ActionKind::CreateUser, ActionKind::AddToTeam, ActionKind::RemoveFromTeam, ActionKind::SetOrgRole];
            let actions: Vec<Action> = spec
                .iter()
                .enumerate()
                .map(|(n, &(k, u, t))| {
                    let user = Email::parse(&format!("u{u}@example.com"));
                    Action::new(kinds[k as usize], user, Some(format!("t{t}")), None, format!("r{n}"))
                })
                .collect();
            let mut expected = actions.clone();
            expected.sort_by(|a, b| {
                (a.phase(), a.user.as_ref(), a.team.as_ref(), a.kind, &a.id)
                    .cmp(&(b.phase(), b.user.as_ref(), b.team.as_ref(), b.kind, &b.id))
            });
            prop_assert_eq!(sorted(actions), expected);
        }
    }
}
