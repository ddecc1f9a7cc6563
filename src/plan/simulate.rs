//! Simulation: what the org looks like after the ready actions, as W&B would do them.
//!
//! Used for the "after" roster in reports and by the property tests (plan, simulate,
//! plan again: nothing left to do).

use crate::model::{Email, FastMap, FastSet, OrgRole, OrgSnapshot, OrgUser, Team, TeamRole};

use super::types::{Action, ActionKind, Deployment, DeprovisionMode, Policy};

/// Applies `actions` (all of them: pass only the ready ones) to a copy of `org`.
pub fn simulate<'a>(org: &OrgSnapshot, actions: impl IntoIterator<Item = &'a Action>, policy: &Policy) -> OrgSnapshot {
    let mut o = Overlay::new(org);
    for a in actions {
        o.apply(a, policy);
    }
    o.into_snapshot()
}

/// The roster before and after the ready actions, without copying the whole org: only
/// the users an action touches are cloned (plans are small next to orgs of 50,000).
pub(crate) fn rosters<'a>(org: &OrgSnapshot, actions: impl IntoIterator<Item = &'a Action>, policy: &Policy) -> (Vec<String>, Vec<String>) {
    let mut o = Overlay::new(org);
    for a in actions {
        o.apply(a, policy);
    }
    let before: Vec<String> = org.users.iter().map(roster_line).collect();
    let mut after: Vec<String> = Vec::with_capacity(before.len() + o.created.len());
    for (i, line) in before.iter().enumerate() {
        if o.removed.contains(&i) {
            continue;
        }
        match o.changed.get(&i) {
            Some(u) => after.push(roster_line(u)),
            None => after.push(line.clone()),
        }
    }
    after.extend(o.created.iter().filter(|u| !u.email.is_empty()).map(roster_line));
    let mut before = before;
    before.sort_unstable();
    after.sort_unstable();
    (before, after)
}

/// Where a user lives while simulating: an index into the base org, or a new user.
#[derive(Clone, Copy)]
enum Slot {
    Base(usize),
    New(usize),
}

/// The base org plus copy-on-write changes.
struct Overlay<'o> {
    base: &'o OrgSnapshot,
    index: FastMap<Email, Slot>,
    changed: FastMap<usize, OrgUser>,
    created: Vec<OrgUser>,
    removed: FastSet<usize>,
    new_teams: Vec<Team>,
}

impl<'o> Overlay<'o> {
    fn new(base: &'o OrgSnapshot) -> Self {
        // Index once: a plan can hold tens of thousands of actions over as many users.
        let mut index = FastMap::with_capacity_and_hasher(base.users.len(), Default::default());
        // Service accounts are never an action's user (diff::org_by_email skips them too).
        for (i, u) in base.users.iter().enumerate().filter(|(_, u)| !u.service_account) {
            if let Some(e) = Email::parse(&u.email) {
                index.entry(e).or_insert(Slot::Base(i));
            }
        }
        Overlay {
            base,
            index,
            changed: FastMap::default(),
            created: Vec::new(),
            removed: FastSet::default(),
            new_teams: Vec::new(),
        }
    }

    /// The user an action names, copied on first write.
    fn user_mut(&mut self, email: Option<&Email>) -> Option<&mut OrgUser> {
        match *self.index.get(email?)? {
            Slot::New(i) => self.created.get_mut(i),
            Slot::Base(i) if self.removed.contains(&i) => None,
            Slot::Base(i) => {
                let base = self.base;
                Some(self.changed.entry(i).or_insert_with(|| base.users[i].clone()))
            }
        }
    }

    fn apply(&mut self, a: &Action, policy: &Policy) {
        match a.kind {
            ActionKind::CreateTeam => {
                if let Some(t) = &a.team {
                    if self.base.team(t).is_none() && !self.new_teams.iter().any(|n| &n.name == t) {
                        self.new_teams.push(Team {
                            id: format!("new-team:{t}"),
                            name: t.clone(),
                            members: Vec::new(),
                        });
                    }
                }
            }
            ActionKind::CreateUser => {
                if let Some(e) = &a.user {
                    self.index.insert(e.clone(), Slot::New(self.created.len()));
                    self.created.push(OrgUser {
                        id: format!("new-user:{e}"),
                        email: e.to_string(),
                        username: e.as_str().split('@').next().unwrap_or_default().to_string(),
                        display_name: String::new(),
                        active: true,
                        org_role: OrgRole::Member,
                        teams: Default::default(),
                        active_stated: true,
                        unstated_team_roles: Default::default(),
                        service_account: false,
                        last_active: Default::default(),
                        days_active: None,
                    });
                }
            }
            ActionKind::ReactivateUser => {
                if let Some(u) = self.user_mut(a.user.as_ref()) {
                    u.active = true;
                    if policy.deployment == Deployment::Saas {
                        // On SaaS a reactivation is a re-add: a fresh member.
                        u.org_role = OrgRole::Member;
                        u.teams.clear();
                        u.unstated_team_roles.clear();
                    }
                }
            }
            ActionKind::SetOrgRole => {
                if let (Some(r), Some(u)) = (a.role.as_deref(), self.user_mut(a.user.as_ref())) {
                    u.org_role = OrgRole::parse(r);
                }
            }
            ActionKind::AddToTeam | ActionKind::SetTeamRole => {
                if let (Some(t), Some(r)) = (a.team.as_ref(), a.role.as_deref()) {
                    if let Some(u) = self.user_mut(a.user.as_ref()) {
                        u.teams.insert(t.clone(), TeamRole::new(r));
                        // W&B states the role it was just given.
                        u.unstated_team_roles.remove(t);
                    }
                }
            }
            ActionKind::RemoveFromTeam => {
                if let Some(t) = a.team.as_ref() {
                    if let Some(u) = self.user_mut(a.user.as_ref()) {
                        u.teams.remove(t);
                        u.unstated_team_roles.remove(t);
                    }
                }
            }
            ActionKind::DeprovisionUser => {
                let removes = match policy.deprovision {
                    DeprovisionMode::Off => return,
                    DeprovisionMode::Delete => !policy.delete_deactivates,
                    DeprovisionMode::Deactivate => policy.deployment == Deployment::Saas,
                };
                let Some(email) = a.user.as_ref() else { return };
                if !removes {
                    if let Some(u) = self.user_mut(Some(email)) {
                        u.active = false;
                    }
                    return;
                }
                match self.index.remove(email) {
                    Some(Slot::Base(i)) => {
                        self.removed.insert(i);
                        self.changed.remove(&i);
                    }
                    Some(Slot::New(i)) => {
                        // A user created and removed in one plan: keep the slot, drop the entry.
                        self.created[i].email.clear();
                    }
                    None => {}
                }
            }
        }
    }

    fn into_snapshot(self) -> OrgSnapshot {
        let mut org = self.base.clone();
        for (i, u) in self.changed {
            org.users[i] = u;
        }
        let mut i = 0;
        org.users.retain(|_| {
            let keep = !self.removed.contains(&i);
            i += 1;
            keep
        });
        org.users.extend(self.created.into_iter().filter(|u| !u.email.is_empty()));
        org.teams.extend(self.new_teams);
        org
    }
}

/// One roster line per W&B user: `email  org_role  team:role,team:role`, sorted.
pub fn roster(org: &OrgSnapshot) -> Vec<String> {
    let mut lines: Vec<String> = org.users.iter().map(roster_line).collect();
    lines.sort_unstable();
    lines
}

fn roster_line(u: &OrgUser) -> String {
    use std::fmt::Write;
    let mut line = String::with_capacity(64);
    match Email::parse(&u.email) {
        Some(e) => line.push_str(e.as_str()),
        None => line.push_str(&u.email),
    }
    line.push_str("  ");
    line.push_str(u.org_role.as_str());
    if !u.active {
        line.push_str(" (inactive)");
    }
    for (i, (t, r)) in u.teams.iter().enumerate() {
        line.push_str(if i == 0 { "  " } else { "," });
        let _ = write!(line, "{t}:{r}");
    }
    line
}
