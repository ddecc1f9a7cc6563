//! Simulation: what the org looks like after the ready actions, as W&B would do them.
//!
//! Used for the "after" roster in reports and by the property tests (plan, simulate,
//! plan again: nothing left to do).

use crate::model::{Email, OrgRole, OrgSnapshot, OrgUser, Team, TeamRole};

use super::types::{Action, ActionKind, DeprovisionMode, Deployment, Policy};

/// Applies `actions` (all of them: pass only the ready ones) to a copy of `org`.
pub fn simulate<'a>(org: &OrgSnapshot, actions: impl IntoIterator<Item = &'a Action>, policy: &Policy) -> OrgSnapshot {
    let mut org = org.clone();
    for a in actions {
        apply_one(&mut org, a, policy);
    }
    org
}

fn find<'o>(org: &'o mut OrgSnapshot, email: Option<&Email>) -> Option<&'o mut OrgUser> {
    let email = email?;
    org.users.iter_mut().find(|u| Email::parse(&u.email).as_ref() == Some(email))
}

fn apply_one(org: &mut OrgSnapshot, a: &Action, policy: &Policy) {
    match a.kind {
        ActionKind::CreateTeam => {
            if let Some(t) = &a.team {
                if org.team(t).is_none() {
                    org.teams.push(Team {
                        id: format!("new-team:{t}"),
                        name: t.clone(),
                        members: Vec::new(),
                    });
                }
            }
        }
        ActionKind::CreateUser => {
            if let Some(e) = &a.user {
                org.users.push(OrgUser {
                    id: format!("new-user:{e}"),
                    email: e.to_string(),
                    username: e.as_str().split('@').next().unwrap_or_default().to_string(),
                    display_name: String::new(),
                    active: true,
                    org_role: OrgRole::Member,
                    teams: Default::default(),
                    last_active_at: None,
                    days_active: None,
                });
            }
        }
        ActionKind::ReactivateUser => {
            if let Some(u) = find(org, a.user.as_ref()) {
                u.active = true;
                if policy.deployment == Deployment::Saas {
                    // On SaaS a reactivation is a re-add: a fresh member.
                    u.org_role = OrgRole::Member;
                    u.teams.clear();
                }
            }
        }
        ActionKind::SetOrgRole => {
            if let (Some(u), Some(r)) = (find(org, a.user.as_ref()), a.role.as_deref()) {
                u.org_role = OrgRole::parse(r);
            }
        }
        ActionKind::AddToTeam | ActionKind::SetTeamRole => {
            if let (Some(u), Some(t), Some(r)) = (find(org, a.user.as_ref()), a.team.as_ref(), a.role.as_deref()) {
                u.teams.insert(t.clone(), TeamRole::new(r));
            }
        }
        ActionKind::RemoveFromTeam => {
            if let (Some(u), Some(t)) = (find(org, a.user.as_ref()), a.team.as_ref()) {
                u.teams.remove(t);
            }
        }
        ActionKind::DeprovisionUser => {
            let removes = match policy.deprovision {
                DeprovisionMode::Off => return,
                DeprovisionMode::Delete => !policy.delete_deactivates,
                DeprovisionMode::Deactivate => policy.deployment == Deployment::Saas,
            };
            if removes {
                if let Some(e) = &a.user {
                    org.users.retain(|u| Email::parse(&u.email).as_ref() != Some(e));
                }
            } else if let Some(u) = find(org, a.user.as_ref()) {
                u.active = false;
            }
        }
    }
}

/// One roster line per W&B user: `email  org_role  team:role,team:role`, sorted.
pub fn roster(org: &OrgSnapshot) -> Vec<String> {
    let mut lines: Vec<String> = org
        .users
        .iter()
        .map(|u| {
            let teams: Vec<String> = u.teams.iter().map(|(t, r)| format!("{t}:{r}")).collect();
            let email = Email::parse(&u.email).map(|e| e.to_string()).unwrap_or_else(|| u.email.clone());
            let role = if u.active { u.org_role.to_string() } else { format!("{} (inactive)", u.org_role) };
            format!("{email}  {role}  {}", teams.join(","))
                .trim_end()
                .to_string()
        })
        .collect();
    lines.sort();
    lines
}
