//! Settling an outcome idsync could not know (SPEC §5): an action begun by an interrupted
//! apply is confirmed only when a fresh W&B snapshot shows its change. Pure.

use crate::model::{Email, OrgSnapshot, OrgUser};

use super::types::{Action, ActionKind};

/// Whether `org` shows the change `a` makes, so that it can be recorded `ok` without
/// being sent again. Anything W&B does not show, or shows only in part, is `false`: the
/// action was not (fully) applied, and the next plan decides what is still needed.
pub fn org_shows(org: &OrgSnapshot, a: &Action) -> bool {
    let user = find_user(org, a);
    let role = a.role.as_deref();
    match a.kind {
        ActionKind::CreateTeam => a.team.as_deref().is_some_and(|t| org.team(t).is_some()),
        ActionKind::CreateUser | ActionKind::ReactivateUser => user.is_some_and(|u| u.active),
        ActionKind::SetOrgRole => user.is_some_and(|u| u.active && role.is_some_and(|r| u.org_role.as_str() == r)),
        // The add is the membership: a role other than the default is a second request,
        // and a role W&B does not show yet is the next plan's `set_team_role` (its own
        // action), so settling the add by its role would record `not_applied` for a
        // membership W&B has.
        ActionKind::AddToTeam => user.is_some_and(|u| u.active && a.team.as_deref().is_some_and(|t| u.teams.contains_key(t))),
        ActionKind::SetTeamRole => user.is_some_and(|u| {
            u.active
                && a.team
                    .as_deref()
                    .and_then(|t| u.teams.get(t))
                    .is_some_and(|have| role.is_none_or(|r| have.as_str() == r))
        }),
        // Removed: out of the team, or no longer a user at all.
        ActionKind::RemoveFromTeam => match user {
            None => true,
            Some(u) => a.team.as_deref().is_some_and(|t| !u.teams.contains_key(t)),
        },
        ActionKind::DeprovisionUser => user.is_none_or(|u| !u.active),
    }
}

/// The W&B user an action is about: by its W&B id when known (an email may have moved
/// to another account), else by email.
fn find_user<'o>(org: &'o OrgSnapshot, a: &Action) -> Option<&'o OrgUser> {
    match &a.user_id {
        Some(id) => org.users.iter().find(|u| &u.id == id),
        None => {
            let email = a.user.as_ref()?;
            // A service account is never the person an action is about (SPEC §4).
            org.users
                .iter()
                .find(|u| !u.service_account && Email::parse(&u.email).as_ref() == Some(email))
        }
    }
}
