//! Simulation: what the org looks like after the ready actions, as W&B would do them.
//!
//! Used for the "after" roster in reports and by the property tests (plan, simulate,
//! plan again: nothing left to do).

use std::collections::{HashMap, HashSet};

use crate::model::{Email, OrgRole, OrgSnapshot, OrgUser, Team, TeamRole};

use super::types::{Action, ActionKind, Deployment, DeprovisionMode, Policy};

/// Applies `actions` (all of them: pass only the ready ones) to a copy of `org`.
pub fn simulate<'a>(org: &OrgSnapshot, actions: impl IntoIterator<Item = &'a Action>, policy: &Policy) -> OrgSnapshot {
    let mut org = org.clone();
    // Index once: a plan can hold tens of thousands of actions over as many users.
    let mut index: HashMap<Email, usize> = HashMap::new();
    for (i, u) in org.users.iter().enumerate() {
        if let Some(e) = Email::parse(&u.email) {
            index.entry(e).or_insert(i);
        }
    }
    let mut removed: HashSet<usize> = HashSet::new();
    for a in actions {
        apply_one(&mut org, &mut index, &mut removed, a, policy);
    }
    if !removed.is_empty() {
        let mut i = 0;
        org.users.retain(|_| {
            let keep = !removed.contains(&i);
            i += 1;
            keep
        });
    }
    org
}

fn apply_one(org: &mut OrgSnapshot, index: &mut HashMap<Email, usize>, removed: &mut HashSet<usize>, a: &Action, policy: &Policy) {
    let user = a.user.as_ref().and_then(|e| index.get(e).copied()).filter(|i| !removed.contains(i));
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
                index.insert(e.clone(), org.users.len());
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
            if let Some(u) = user.map(|i| &mut org.users[i]) {
                u.active = true;
                if policy.deployment == Deployment::Saas {
                    // On SaaS a reactivation is a re-add: a fresh member.
                    u.org_role = OrgRole::Member;
                    u.teams.clear();
                }
            }
        }
        ActionKind::SetOrgRole => {
            if let (Some(i), Some(r)) = (user, a.role.as_deref()) {
                org.users[i].org_role = OrgRole::parse(r);
            }
        }
        ActionKind::AddToTeam | ActionKind::SetTeamRole => {
            if let (Some(i), Some(t), Some(r)) = (user, a.team.as_ref(), a.role.as_deref()) {
                org.users[i].teams.insert(t.clone(), TeamRole::new(r));
            }
        }
        ActionKind::RemoveFromTeam => {
            if let (Some(i), Some(t)) = (user, a.team.as_ref()) {
                org.users[i].teams.remove(t);
            }
        }
        ActionKind::DeprovisionUser => {
            let removes = match policy.deprovision {
                DeprovisionMode::Off => return,
                DeprovisionMode::Delete => !policy.delete_deactivates,
                DeprovisionMode::Deactivate => policy.deployment == Deployment::Saas,
            };
            if let Some(i) = user {
                if removes {
                    removed.insert(i);
                    if let Some(e) = &a.user {
                        index.remove(e);
                    }
                } else {
                    org.users[i].active = false;
                }
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
            let role = if u.active {
                u.org_role.to_string()
            } else {
                format!("{} (inactive)", u.org_role)
            };
            format!("{email}  {role}  {}", teams.join(",")).trim_end().to_string()
        })
        .collect();
    lines.sort();
    lines
}
