//! What counts as an admin for the floors of SPEC §4, and what an action takes away from
//! them: the one definition the guards, apply's live re-check and the metrics share.
//!
//! Only what W&B states counts. A service account is never an admin; nor is a user whose
//! `active` W&B did not state; nor a team role W&B did not state (a guessed "member" from
//! `/Groups`, which may hide an admin). A team floor that only such guesses could satisfy
//! cannot be verified, and is reported as such.

use std::collections::BTreeMap;

use crate::model::{OrgRole, OrgUser, TeamRole};

use super::types::{Action, ActionKind};

/// A person whose standing W&B states: not a service account, `active` stated.
fn stated_person(u: &OrgUser) -> bool {
    !u.service_account && u.active_stated
}

/// The user's role in `team` if W&B states it.
fn stated_team_role<'u>(u: &'u OrgUser, team: &str) -> Option<&'u TeamRole> {
    if u.unstated_team_roles.contains(team) {
        None
    } else {
        u.teams.get(team)
    }
}

/// An org admin as W&B states it, active or not (a reactivation gives the role back).
pub fn states_org_admin(u: &OrgUser) -> bool {
    stated_person(u) && u.org_role == OrgRole::Admin
}

/// An admin of `team` as W&B states it, active or not.
pub fn states_team_admin(u: &OrgUser, team: &str) -> bool {
    stated_person(u) && stated_team_role(u, team).is_some_and(TeamRole::is_admin)
}

/// An active org admin the `min_org_admins` floor counts.
pub fn is_counted_org_admin(u: &OrgUser) -> bool {
    u.active && states_org_admin(u)
}

/// An active admin of `team` the `min_team_admins` floor counts.
pub fn is_counted_team_admin(u: &OrgUser, team: &str) -> bool {
    u.active && states_team_admin(u, team)
}

/// A person in `team` whose role there W&B does not state: possibly an admin nobody sees.
pub fn has_unstated_role(u: &OrgUser, team: &str) -> bool {
    !u.service_account && u.teams.contains_key(team) && u.unstated_team_roles.contains(team)
}

/// Active org admins the floor counts.
pub fn count_org_admins<'a>(users: impl IntoIterator<Item = &'a OrgUser>) -> usize {
    users.into_iter().filter(|u| is_counted_org_admin(u)).count()
}

/// Active users W&B shows as org admins that the floor does not count (service accounts,
/// users whose `active` is not stated): named in a hold's reason, so that a human sees why.
pub fn uncounted_org_admins<'a>(users: impl IntoIterator<Item = &'a OrgUser>) -> usize {
    users
        .into_iter()
        .filter(|u| u.active && u.org_role == OrgRole::Admin && !is_counted_org_admin(u))
        .count()
}

/// The admins of one team as W&B states them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TeamAdmins {
    /// Active admins whose role W&B states.
    pub counted: usize,
    /// Active members whose role W&B does not state: any of them may be an admin.
    pub unstated: usize,
}

/// [`TeamAdmins`] of each of `teams`, in one pass over the users (orgs have thousands of
/// teams; a pass per team would be quadratic).
pub fn team_admins<'t, 'a>(
    users: impl IntoIterator<Item = &'a OrgUser>,
    teams: impl IntoIterator<Item = &'t str>,
) -> BTreeMap<&'t str, TeamAdmins> {
    let mut out: BTreeMap<&'t str, TeamAdmins> = teams.into_iter().map(|t| (t, TeamAdmins::default())).collect();
    for u in users.into_iter().filter(|u| u.active) {
        for t in u.teams.keys() {
            if let Some(c) = out.get_mut(t.as_str()) {
                if is_counted_team_admin(u, t) {
                    c.counted += 1;
                } else if has_unstated_role(u, t) {
                    c.unstated += 1;
                }
            }
        }
    }
    out
}

/// What one action takes away from the admin floors, given the W&B user it names as W&B
/// has them (the snapshot when planning, a fresh read when applying).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminLoss<'a> {
    /// An org admin the floor counts.
    pub org_admin: bool,
    /// Teams losing an admin the floor counts.
    pub team_admins: Vec<&'a str>,
    /// Teams where the user's role is not stated: the action may take an admin away.
    pub unstated_teams: Vec<&'a str>,
}

impl AdminLoss<'_> {
    pub fn is_empty(&self) -> bool {
        !self.org_admin && self.team_admins.is_empty() && self.unstated_teams.is_empty()
    }

    /// Whether the loss touches the org floor or the floor of a team `is_floored` names.
    pub fn touches(&self, is_floored: impl Fn(&str) -> bool) -> bool {
        self.org_admin || self.team_admins.iter().chain(&self.unstated_teams).any(|t| is_floored(t))
    }
}

/// What `a` takes away from the admin floors. `user` is the W&B user the action names
/// (`None` for one this plan creates). Only a reducing action ([`Action::is_reducing`],
/// what source-health holds) can take an admin away, and a service account is never one.
pub fn admin_loss<'a>(a: &'a Action, user: Option<&'a OrgUser>) -> AdminLoss<'a> {
    let mut loss = AdminLoss::default();
    if !a.is_reducing() || user.is_some_and(|u| u.service_account) {
        return loss;
    }
    let team_loss = |loss: &mut AdminLoss<'a>, team: &'a str| match user {
        Some(u) if states_team_admin(u, team) => loss.team_admins.push(team),
        Some(u) if has_unstated_role(u, team) => loss.unstated_teams.push(team),
        Some(_) => {}
        None if a.from.as_deref() == Some("admin") => loss.team_admins.push(team),
        None => {}
    };
    match a.kind {
        // `is_reducing` already says this demotes from admin.
        ActionKind::SetOrgRole => loss.org_admin = user.is_none_or(states_org_admin),
        ActionKind::SetTeamRole if a.role.as_deref() != Some("admin") => {
            if let Some(t) = a.team.as_deref() {
                team_loss(&mut loss, t);
            }
        }
        ActionKind::RemoveFromTeam => {
            if let Some(t) = a.team.as_deref() {
                team_loss(&mut loss, t);
            }
        }
        ActionKind::DeprovisionUser => {
            if let Some(u) = user.filter(|u| u.active) {
                loss.org_admin = states_org_admin(u);
                for t in u.teams.keys() {
                    team_loss(&mut loss, t);
                }
            }
        }
        _ => {}
    }
    loss
}

/// Which floor an admin loss would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach<'a> {
    /// `admins` counted org admins now, and the loss would leave fewer than the floor.
    Org { admins: usize },
    /// `admins` counted admins in `team` now, and the loss would leave fewer than the floor.
    Team { team: &'a str, admins: usize },
    /// Only admins W&B does not state (`unstated` members) could keep `team` at its floor:
    /// it cannot be checked.
    TeamUnstated { team: &'a str, admins: usize, unstated: usize },
}

/// The first floor `loss` would break, given the counts before it; `None` when every floor
/// still holds. Teams missing from `teams` have no floor (unmanaged).
pub fn floor_breach<'a>(
    loss: &AdminLoss<'a>,
    org_admins: usize,
    teams: &BTreeMap<&str, TeamAdmins>,
    min_org_admins: usize,
    min_team_admins: usize,
) -> Option<Breach<'a>> {
    if loss.org_admin && org_admins < min_org_admins + 1 {
        return Some(Breach::Org { admins: org_admins });
    }
    for &team in &loss.team_admins {
        let Some(c) = teams.get(team) else { continue };
        if c.counted < min_team_admins + 1 {
            return Some(if c.unstated > 0 {
                Breach::TeamUnstated {
                    team,
                    admins: c.counted,
                    unstated: c.unstated,
                }
            } else {
                Breach::Team { team, admins: c.counted }
            });
        }
    }
    // Taking away a member whose role is unknown leaves the counted admins as they are:
    // the floor holds if they alone reach it, and cannot be checked otherwise.
    for &team in &loss.unstated_teams {
        let Some(c) = teams.get(team) else { continue };
        if c.counted < min_team_admins {
            return Some(Breach::TeamUnstated {
                team,
                admins: c.counted,
                unstated: c.unstated,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Email;

    fn user(id: &str, role: OrgRole, teams: &[(&str, &str)]) -> OrgUser {
        OrgUser {
            id: id.into(),
            email: format!("{id}@example.com"),
            username: id.into(),
            display_name: String::new(),
            active: true,
            active_stated: true,
            org_role: role,
            teams: teams.iter().map(|(t, r)| (t.to_string(), TeamRole::new(r))).collect(),
            unstated_team_roles: Default::default(),
            service_account: false,
            last_active: Default::default(),
            days_active: None,
        }
    }

    /// The shared definition, pinned: who counts as an org admin and as a team admin.
    #[test]
    fn only_active_people_whose_admin_role_w_and_b_states_count() {
        let admin = user("a", OrgRole::Admin, &[("ml", "admin")]);
        let inactive = OrgUser {
            active: false,
            ..user("b", OrgRole::Admin, &[("ml", "admin")])
        };
        let member = user("c", OrgRole::Member, &[("ml", "admin"), ("cv", "member")]);
        let sa = OrgUser {
            service_account: true,
            ..user("d", OrgRole::Admin, &[("ml", "admin")])
        };
        let unstated_active = OrgUser {
            active_stated: false,
            ..user("e", OrgRole::Admin, &[("ml", "admin")])
        };
        let guessed = OrgUser {
            unstated_team_roles: ["ml".to_string(), "cv".to_string()].into(),
            ..user("f", OrgRole::Member, &[("ml", "member"), ("cv", "member")])
        };
        let users = [admin, inactive, member, sa, unstated_active, guessed];
        let org: Vec<bool> = users.iter().map(is_counted_org_admin).collect();
        assert_eq!(org, [true, false, false, false, false, false]);
        assert_eq!(count_org_admins(&users), 1);
        assert_eq!(uncounted_org_admins(&users), 2, "the service account and the unstated one");
        let counts = team_admins(&users, ["ml", "cv", "empty"]);
        assert_eq!(counts["ml"], TeamAdmins { counted: 2, unstated: 1 });
        assert_eq!(counts["cv"], TeamAdmins { counted: 0, unstated: 1 });
        assert_eq!(counts["empty"], TeamAdmins::default());
        assert!(!counts.contains_key("other"));
    }

    fn action(kind: ActionKind, team: Option<&str>, role: Option<&str>, from: Option<&str>) -> Action {
        let mut a = Action::new(
            kind,
            Email::parse("x@example.com"),
            team.map(str::to_string),
            role.map(str::to_string),
            String::new(),
        );
        a.from = from.map(str::to_string);
        a
    }

    #[test]
    fn what_an_action_takes_away_is_read_from_the_user_as_w_and_b_has_them() {
        let u = OrgUser {
            unstated_team_roles: ["cv".to_string()].into(),
            ..user("a", OrgRole::Admin, &[("ml", "admin"), ("cv", "member"), ("nlp", "member")])
        };
        let demote = action(ActionKind::SetOrgRole, None, Some("member"), Some("admin"));
        assert!(admin_loss(&demote, Some(&u)).org_admin);
        let dep = action(ActionKind::DeprovisionUser, None, None, Some("active"));
        assert_eq!(
            admin_loss(&dep, Some(&u)),
            AdminLoss {
                org_admin: true,
                team_admins: vec!["ml"],
                unstated_teams: vec!["cv"],
            }
        );
        let rm = |t| action(ActionKind::RemoveFromTeam, Some(t), None, Some("member"));
        assert_eq!(admin_loss(&rm("ml"), Some(&u)).team_admins, ["ml"]);
        assert_eq!(admin_loss(&rm("cv"), Some(&u)).unstated_teams, ["cv"]);
        assert!(admin_loss(&rm("nlp"), Some(&u)).is_empty());
        let to_viewer = action(ActionKind::SetTeamRole, Some("cv"), Some("viewer"), Some("member"));
        assert_eq!(admin_loss(&to_viewer, Some(&u)).unstated_teams, ["cv"]);
        let to_admin = action(ActionKind::SetTeamRole, Some("cv"), Some("admin"), Some("member"));
        assert!(admin_loss(&to_admin, Some(&u)).is_empty());
        // Without a W&B user (one this plan creates), the action's `from` says it.
        assert_eq!(admin_loss(&rm("ml"), None), AdminLoss::default());
        let rm_admin = action(ActionKind::RemoveFromTeam, Some("ml"), None, Some("admin"));
        assert_eq!(admin_loss(&rm_admin, None).team_admins, ["ml"]);
        // A service account, an inactive user, an unstated `active`: nothing counted to lose.
        let sa = OrgUser {
            service_account: true,
            ..u.clone()
        };
        assert!(admin_loss(&dep, Some(&sa)).is_empty());
        let gone = OrgUser {
            active: false,
            ..u.clone()
        };
        assert!(admin_loss(&dep, Some(&gone)).is_empty());
        let unstated = OrgUser {
            active_stated: false,
            ..u.clone()
        };
        let l = admin_loss(&dep, Some(&unstated));
        assert!(!l.org_admin && l.team_admins.is_empty() && l.unstated_teams == ["cv"]);
    }

    #[test]
    fn only_reducing_actions_take_an_admin_away() {
        let u = OrgUser {
            unstated_team_roles: ["cv".to_string()].into(),
            ..user("a", OrgRole::Admin, &[("ml", "admin"), ("cv", "member")])
        };
        let roles = [None, Some("admin"), Some("member"), Some("viewer"), Some("ml-engineer")];
        let froms = [None, Some("admin"), Some("member"), Some("viewer"), Some("active")];
        for kind in ActionKind::ALL {
            for team in [None, Some("ml"), Some("cv")] {
                for role in roles {
                    for from in froms {
                        let a = action(kind, team, role, from);
                        for who in [Some(&u), None] {
                            if !admin_loss(&a, who).is_empty() {
                                assert!(a.is_reducing(), "{kind} {team:?} {role:?} {from:?} takes an admin away");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn floors_break_on_counted_admins_and_cannot_be_checked_on_guesses() {
        let teams: BTreeMap<&str, TeamAdmins> = [
            ("ml", TeamAdmins { counted: 1, unstated: 0 }),
            ("cv", TeamAdmins { counted: 1, unstated: 2 }),
            ("nlp", TeamAdmins { counted: 0, unstated: 3 }),
            ("ok", TeamAdmins { counted: 2, unstated: 3 }),
        ]
        .into();
        let org = AdminLoss {
            org_admin: true,
            ..AdminLoss::default()
        };
        assert_eq!(floor_breach(&org, 1, &teams, 1, 1), Some(Breach::Org { admins: 1 }));
        assert_eq!(floor_breach(&org, 2, &teams, 1, 1), None);
        let certain = |t| AdminLoss {
            team_admins: vec![t],
            ..AdminLoss::default()
        };
        let maybe = |t| AdminLoss {
            unstated_teams: vec![t],
            ..AdminLoss::default()
        };
        assert_eq!(
            floor_breach(&certain("ml"), 1, &teams, 1, 1),
            Some(Breach::Team { team: "ml", admins: 1 })
        );
        assert!(matches!(
            floor_breach(&certain("cv"), 1, &teams, 1, 1),
            Some(Breach::TeamUnstated { team: "cv", .. })
        ));
        assert_eq!(floor_breach(&certain("ok"), 1, &teams, 1, 1), None);
        // A guessed member: the counted admins alone decide.
        assert_eq!(floor_breach(&maybe("cv"), 1, &teams, 1, 1), None);
        assert!(matches!(
            floor_breach(&maybe("nlp"), 1, &teams, 1, 1),
            Some(Breach::TeamUnstated { team: "nlp", .. })
        ));
        assert_eq!(floor_breach(&maybe("nlp"), 1, &teams, 1, 0), None);
        // Unmanaged teams have no floor.
        assert_eq!(floor_breach(&certain("other"), 1, &teams, 1, 1), None);
    }
}
