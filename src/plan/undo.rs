//! Undo: a plan that reverses what one run applied, for `idsync undo RUN_ID`.
//!
//! Pure: the run's applied changes (read from the audit log by the shell), the later
//! changes to the same people, and the usual plan inputs. Each change is reversed against
//! what W&B has now; a change a later run superseded, or that W&B no longer shows, is
//! left out with why. The result goes through every guard like any plan.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::model::{Email, OrgRole, TeamRole};

use super::diff::{self, org_by_email};
use super::mapping::{self, in_domain_scope};
use super::restore::{self, Scope};
use super::types::{Action, ActionId, ActionKind, DeprovisionMode, Plan, Skipped, UndoInfo};
use super::PlanInput;

/// One change idsync applied, as the audit log recorded its successful end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedChange {
    pub at: DateTime<Utc>,
    pub run_id: String,
    pub kind: ActionKind,
    pub user: Option<Email>,
    pub team: Option<String>,
    pub role: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl AppliedChange {
    /// `kind user [team]`, for the left-out list.
    fn label(&self) -> String {
        let mut s = format!("{} {}", self.kind, self.user.as_ref().map(Email::as_str).unwrap_or(""));
        if let Some(t) = &self.team {
            s.push_str(&format!(" team {t}"));
        }
        s.trim().to_string()
    }

    fn user_level(&self) -> bool {
        matches!(
            self.kind,
            ActionKind::CreateUser | ActionKind::ReactivateUser | ActionKind::DeprovisionUser
        )
    }
}

/// The run to undo: its successful changes in the order applied, and the successful
/// changes of later runs (only those to the same people matter).
#[derive(Debug, Clone, Copy)]
pub struct RunChanges<'a> {
    pub run_id: &'a str,
    pub applied: &'a [AppliedChange],
    pub later: &'a [AppliedChange],
}

/// The later change that supersedes `c`: one to the same person after it, that is a
/// create/reactivate/deprovision, or touches the same team, or the org role again.
fn superseded_by<'l>(c: &AppliedChange, later: &'l [AppliedChange]) -> Option<&'l AppliedChange> {
    later.iter().find(|l| {
        l.run_id != c.run_id
            && l.at >= c.at
            && l.user.is_some()
            && l.user == c.user
            && (l.user_level()
                || c.user_level()
                || (l.team.is_some() && l.team == c.team)
                || (l.kind == ActionKind::SetOrgRole && c.kind == ActionKind::SetOrgRole))
    })
}

/// The plan that reverses `run` against the org as it is now, guarded like any plan.
pub fn undo(input: PlanInput<'_>, run: &RunChanges<'_>) -> Plan {
    let PlanInput {
        directory,
        org,
        policy,
        state,
        now,
    } = input;
    let desired = mapping::desired_state(directory, org, policy, &state.anchors);
    // The directory plan's counts (in-scope active users) are what the guards compare with.
    let base = diff::diff(&desired, org, policy, state, now);
    let by_email = org_by_email(org);
    let rid = run.run_id;
    let mut actions: Vec<Action> = Vec::new();
    let mut left_out: Vec<Skipped> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut leave = |c: &AppliedChange, why: String| {
        left_out.push(Skipped { entry: c.label(), why });
    };

    // People whose creation the undo reverses: their team and role changes go with them.
    let removed: BTreeSet<&Email> = run
        .applied
        .iter()
        .filter(|c| matches!(c.kind, ActionKind::CreateUser | ActionKind::ReactivateUser))
        .filter(|c| superseded_by(c, run.later).is_none())
        .filter_map(|c| c.user.as_ref())
        .filter(|e| by_email.get(*e).is_some_and(|u| u.active))
        .collect();

    for c in run.applied {
        if let Some(l) = superseded_by(c, run.later) {
            leave(
                c,
                format!(
                    "superseded: run {} applied {} at {}",
                    l.run_id,
                    l.label(),
                    l.at.format("%Y-%m-%dT%H:%M:%SZ")
                ),
            );
            continue;
        }
        if c.kind == ActionKind::CreateTeam {
            let team = c.team.as_deref().unwrap_or("");
            leave(
                c,
                format!("idsync does not delete teams: delete team {team} in W&B by hand if it is unwanted"),
            );
            continue;
        }
        let Some(email) = c.user.as_ref() else {
            leave(c, "the audit line names no user".into());
            continue;
        };
        // Nothing outside scope is ever in a plan, an undo included.
        if !in_domain_scope(email, policy) || desired.self_emails.contains(email) {
            leave(
                c,
                format!("{email} is not in scope now (policy.managed_domains, ignore_users, or idsync itself)"),
            );
            continue;
        }
        let now_user = by_email.get(email).copied();
        let active = now_user.filter(|u| u.active);
        let wanted = desired.people.get(email);
        let reason = |what: &str| format!("undo run {rid}: {what}");
        match c.kind {
            ActionKind::CreateTeam => {}
            ActionKind::CreateUser | ActionKind::ReactivateUser => {
                let Some(u) = active else {
                    leave(c, format!("{email} is not active in W&B now"));
                    continue;
                };
                if policy.deprovision == DeprovisionMode::Off {
                    leave(c, "policy.deprovision = off: idsync deprovisions no one".into());
                    continue;
                }
                let verb = if c.kind == ActionKind::CreateUser {
                    "created"
                } else {
                    "reactivated"
                };
                actions.push(diff::deprovision(
                    email,
                    u,
                    policy,
                    reason(&format!("{email} was {verb} by that run")),
                ));
                if wanted.is_some_and(|w| w.may_create.is_some()) {
                    warnings.push(format!(
                        "{email}: the directory still wants this person in W&B, so the next regular run creates them again"
                    ));
                }
            }
            ActionKind::DeprovisionUser => {
                if active.is_some() {
                    leave(c, format!("{email} is active in W&B again"));
                    continue;
                }
                let mut back = match now_user {
                    Some(u) => {
                        let mut a = Action::new(
                            ActionKind::ReactivateUser,
                            Some(email.clone()),
                            None,
                            None,
                            reason(&format!("reactivate {email}, deprovisioned by that run")),
                        );
                        a.user_id = Some(u.id.clone());
                        a.from = Some("inactive".into());
                        a.to = Some("active".into());
                        a
                    }
                    None => Action::new(
                        ActionKind::CreateUser,
                        Some(email.clone()),
                        None,
                        None,
                        reason(&format!("re-add {email}, deprovisioned by that run")),
                    ),
                };
                back.user_id = now_user.map(|u| u.id.clone());
                let after = restore::after_return(now_user, policy.deployment);
                match state.restores.get(email) {
                    Some(snap) => actions.extend(restore::restore_actions(
                        snap,
                        email,
                        back.user_id.as_ref(),
                        &after,
                        &back.id,
                        Scope::Undo,
                        &desired,
                        org,
                        &mut skipped,
                    )),
                    None => warnings.push(format!(
                        "{email}: no restore snapshot (deprovisioned before idsync kept them, or pruned by [state] retention): comes back as W&B re-adds them, with no teams on SaaS"
                    )),
                }
                actions.push(back);
                if wanted.is_none() {
                    warnings.push(format!(
                        "{email}: the directory does not list this person as enabled and in scope, so the next regular run starts their grace clock again and deprovisions them when it expires; fix the directory first, or list them in policy.ignore_users"
                    ));
                }
            }
            ActionKind::AddToTeam | ActionKind::RemoveFromTeam | ActionKind::SetTeamRole => {
                let team = c.team.clone().unwrap_or_default();
                if removed.contains(email) {
                    leave(c, format!("covered: the undo deprovisions {email}"));
                    continue;
                }
                let Some(u) = active else {
                    leave(c, format!("{email} is not active in W&B now"));
                    continue;
                };
                let have = u.teams.get(&team);
                let managed = desired.managed_teams.contains(&team);
                let wants = wanted.and_then(|w| w.teams.get(team.as_str())).map(|w| &w.role);
                let mut a = match (c.kind, have) {
                    (ActionKind::AddToTeam, Some(h)) => {
                        let mut a = Action::new(
                            ActionKind::RemoveFromTeam,
                            Some(email.clone()),
                            Some(team.clone()),
                            None,
                            reason(&format!("{email} was added to team {team} by that run")),
                        );
                        a.from = Some(h.as_str().to_string());
                        if managed && wants.is_some() {
                            warnings.push(format!(
                                "{email}: policy.teams still maps them into team {team}, so the next regular run adds them again"
                            ));
                        }
                        a
                    }
                    (ActionKind::RemoveFromTeam, None) => {
                        if !org.teams.iter().any(|t| t.name == team) {
                            leave(c, format!("W&B has no team {team} now"));
                            continue;
                        }
                        let role = TeamRole::new(c.from.as_deref().unwrap_or("member"));
                        let mut a = Action::new(
                            ActionKind::AddToTeam,
                            Some(email.clone()),
                            Some(team.clone()),
                            Some(role.as_str().to_string()),
                            reason(&format!("{email} was removed from team {team} (as {}) by that run", role.as_str())),
                        );
                        a.to = Some(role.as_str().to_string());
                        if managed && wants.is_none() {
                            warnings.push(format!(
                                "{email}: policy.teams does not map them into team {team}, so the next regular run removes them again"
                            ));
                        }
                        a
                    }
                    (ActionKind::SetTeamRole, Some(h)) if Some(h.as_str()) == c.to.as_deref().or(c.role.as_deref()) => {
                        let Some(from) = c.from.as_deref() else {
                            leave(c, "the audit line does not say the role before".into());
                            continue;
                        };
                        let mut a = Action::new(
                            ActionKind::SetTeamRole,
                            Some(email.clone()),
                            Some(team.clone()),
                            Some(from.to_string()),
                            reason(&format!(
                                "that run changed {email}'s role in team {team} from {from} to {}",
                                h.as_str()
                            )),
                        );
                        a.from = Some(h.as_str().to_string());
                        a.to = Some(from.to_string());
                        if managed && wants.is_some_and(|w| w.as_str() != from) {
                            warnings.push(format!(
                                "{email}: policy.teams wants another role in team {team}, so the next regular run changes it again"
                            ));
                        }
                        a
                    }
                    (_, Some(h)) => {
                        leave(
                            c,
                            format!("W&B shows {email} in team {team} as {} now, not what that run left", h.as_str()),
                        );
                        continue;
                    }
                    (_, None) => {
                        leave(c, format!("W&B shows {email} in no team {team} now, not what that run left"));
                        continue;
                    }
                };
                a.user_id = Some(u.id.clone());
                actions.push(a);
            }
            ActionKind::SetOrgRole => {
                if removed.contains(email) {
                    leave(c, format!("covered: the undo deprovisions {email}"));
                    continue;
                }
                let Some(u) = active else {
                    leave(c, format!("{email} is not active in W&B now"));
                    continue;
                };
                let to = c.to.as_deref().or(c.role.as_deref()).unwrap_or("");
                let from = OrgRole::parse(c.from.as_deref().unwrap_or(""));
                if u.org_role.as_str() != to {
                    leave(c, format!("W&B shows org role {} for {email} now, not {to}", u.org_role));
                    continue;
                }
                if !matches!(from, OrgRole::Admin | OrgRole::Member) {
                    leave(
                        c,
                        format!("idsync never sets the org role {from} (W&B's viewer org role is deprecated)"),
                    );
                    continue;
                }
                let mut a = Action::new(
                    ActionKind::SetOrgRole,
                    Some(email.clone()),
                    None,
                    Some(from.as_str().to_string()),
                    reason(&format!("that run changed {email}'s org role from {from} to {to}")),
                );
                a.user_id = Some(u.id.clone());
                a.from = Some(to.to_string());
                a.to = Some(from.as_str().to_string());
                actions.push(a);
            }
        }
    }

    // One action per id: a reversal and a restore can ask for the same change.
    let mut seen: BTreeSet<ActionId> = BTreeSet::new();
    actions.retain(|a| seen.insert(a.id.clone()));
    let d = diff::Diff {
        actions: diff::sorted(actions),
        in_scope_active: base.in_scope_active,
        ..diff::Diff::default()
    };
    let info = UndoInfo {
        run_id: rid.to_string(),
        left_out,
        warnings,
    };
    super::finish(input, desired, d, skipped, Some(info))
}
