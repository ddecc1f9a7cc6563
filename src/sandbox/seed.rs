//! The sandbox's seed format (what org it starts with) and its state dump (what tests
//! assert on).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SandboxError;

/// The org a sandbox starts with, as JSON (see `examples/sandbox-org.json`):
///
/// ```json
/// {
///   "users": [
///     {"email": "alice@example.com", "username": "alice", "display_name": "Alice",
///      "active": true, "org_role": "admin", "teams": {"ml-research": "admin"},
///      "last_active_at": "2024-05-01T09:00:00Z", "days_active": 42}
///   ],
///   "teams": [{"name": "ml-research", "service_accounts": ["sa-training"]}],
///   "service_accounts": ["sa-training", {"name": "idsync", "org_role": "admin"}],
///   "roles": ["ml-engineer"]
/// }
/// ```
///
/// - `users`: `email` and `username` are required and unique (case-insensitively).
///   `display_name` defaults to the username, `active` to true, `org_role` to `member`
///   (`admin`, `member`, or `viewer`, which W&B stores as a member with a viewer seat).
///   `teams` maps a team named in `teams` to a team role (`admin`, `member`, `viewer` or a
///   name from `roles`). On SaaS an inactive user is not in the org at all (W&B removes
///   deactivated users there), but a later `POST /Users` re-adds the same account.
///   `last_active_at` (RFC 3339) and `days_active` are served when the sandbox emulates a
///   server with activity fields; a user without `last_active_at` is served
///   `"lastActiveAt": null`, which W&B documents as never active. `omit_activity: true`
///   leaves both keys out for that user, as a server that does not report activity does
///   (the seat report then says "unknown").
/// - `teams`: team names, and the service accounts in each. A name that is not in the
///   top-level `service_accounts` is a team-scoped service account.
/// - `service_accounts`: org-level service accounts, added to every team created later:
///   a name, or `{"name", "email", "org_role"}` (both optional; `org_role` is `admin` or
///   `member`, the default). Service accounts are team members; `/Users` lists them only
///   when [`super::SandboxOptions::service_accounts`] says so (the shape is unconfirmed at
///   W&B), with the email only in the marked shape.
/// - `roles`: custom team role names, listed by `/Roles` and accepted in `teamRoles`.
/// - `_comment`: free text, ignored.
///
/// Ids are assigned in order, as W&B's opaque base64 node ids (`User:1`, `Group:1`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxOrg {
    #[serde(default, rename = "_comment", skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub teams: Vec<SeedTeam>,
    #[serde(default)]
    pub service_accounts: Vec<SeedServiceAccount>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// One seeded org-level service account: a bare name, or the name with the email and org
/// role it shows when `/Users` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SeedServiceAccountForm", into = "SeedServiceAccountForm")]
pub struct SeedServiceAccount {
    pub name: String,
    pub email: Option<String>,
    /// `admin` or `member`; `None` is member.
    pub org_role: Option<String>,
}

impl From<&str> for SeedServiceAccount {
    fn from(name: &str) -> Self {
        SeedServiceAccount {
            name: name.to_string(),
            email: None,
            org_role: None,
        }
    }
}

/// The two spellings of a seeded service account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum SeedServiceAccountForm {
    Name(String),
    Full {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org_role: Option<String>,
    },
}

impl From<SeedServiceAccountForm> for SeedServiceAccount {
    fn from(f: SeedServiceAccountForm) -> Self {
        match f {
            SeedServiceAccountForm::Name(name) => SeedServiceAccount::from(name.as_str()),
            SeedServiceAccountForm::Full { name, email, org_role } => SeedServiceAccount { name, email, org_role },
        }
    }
}

impl From<SeedServiceAccount> for SeedServiceAccountForm {
    fn from(s: SeedServiceAccount) -> Self {
        match (s.email, s.org_role) {
            (None, None) => SeedServiceAccountForm::Name(s.name),
            (email, org_role) => SeedServiceAccountForm::Full {
                name: s.name,
                email,
                org_role,
            },
        }
    }
}

/// One seeded user; see [`SandboxOrg`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub email: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_role: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_active: Option<u64>,
    /// Serve this user without `lastActiveAt`/`daysActive` (not even `null`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omit_activity: bool,
}

impl SeedUser {
    /// An active member with no teams.
    pub fn new(email: &str, username: &str) -> SeedUser {
        SeedUser {
            email: email.to_string(),
            username: username.to_string(),
            display_name: None,
            active: true,
            org_role: None,
            teams: BTreeMap::new(),
            last_active_at: None,
            days_active: None,
            omit_activity: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// One seeded team; see [`SandboxOrg`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTeam {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
}

impl SandboxOrg {
    /// Parses the JSON seed format.
    pub fn from_json(text: &str) -> Result<SandboxOrg, SandboxError> {
        serde_json::from_str(text).map_err(|e| SandboxError::Seed(e.to_string()))
    }

    /// Reads the JSON seed format from a file.
    pub fn from_json_file(path: &Path) -> Result<SandboxOrg, SandboxError> {
        let text = std::fs::read_to_string(path).map_err(|source| SandboxError::ReadSeed {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| SandboxError::Seed(format!("{}: {e}", path.display())))
    }

    /// The bundled demo org (`examples/sandbox-org.json`).
    pub fn example() -> SandboxOrg {
        // The file is part of the crate and checked by a unit test, so parsing cannot fail
        // at run time; fall back to an empty org rather than panic all the same.
        SandboxOrg::from_json(include_str!("../../examples/sandbox-org.json")).unwrap_or_default()
    }
}

/// The sandbox's org now, plainly, for test assertions (also served as
/// `GET /_sandbox/state`). Users are those in the org (inactive ones included on
/// Dedicated/Self-Managed), ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxState {
    pub users: Vec<StateUser>,
    pub teams: Vec<StateTeam>,
    /// Writes addressed to a service account (`PATCH`/`DELETE /Users/{id}`, or removing it
    /// from a team by id): 0 proves a client never changed one.
    #[serde(default)]
    pub service_account_writes: u64,
    /// Emails of accounts that were removed from the org (SaaS deactivation, deletion) and
    /// are not back.
    pub removed_users: Vec<String>,
    /// `POST /Users` requests per primary email (lower case), whatever their outcome.
    pub user_posts: BTreeMap<String, u64>,
    /// Users actually created (or re-added on SaaS) per email: more than 1 is a duplicate.
    pub user_creates: BTreeMap<String, u64>,
    /// Bare `{"op":"remove","path":"members"}` operations received (they strip a team).
    pub bare_member_removes: u64,
    /// `organizationRole: viewer` assignments received (deprecated; resets team roles).
    pub viewer_role_assignments: u64,
    /// SCIM requests received so far.
    pub request_count: u64,
    /// SCIM requests other than GET received so far (whatever their outcome): 0 proves a
    /// client only read.
    #[serde(default)]
    pub write_request_count: u64,
    /// Every SCIM write answered, in order, with the key that made it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_log: Vec<super::WriteRecord>,
}

impl SandboxState {
    /// The user with this email (case-insensitive).
    pub fn user(&self, email: &str) -> Option<&StateUser> {
        self.users.iter().find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// The team with this name.
    pub fn team(&self, name: &str) -> Option<&StateTeam> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// Active org admins.
    pub fn active_admins(&self) -> usize {
        self.users.iter().filter(|u| u.active && u.org_role == "admin").count()
    }
}

/// One user in [`SandboxState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateUser {
    pub id: String,
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub active: bool,
    /// `admin` or `member` (W&B turns an assigned `viewer` into a member with a viewer seat).
    pub org_role: String,
    pub viewer_seat: bool,
    /// Team name -> team role.
    pub teams: BTreeMap<String, String>,
}

/// One team in [`SandboxState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateTeam {
    pub id: String,
    pub name: String,
    /// Emails of the users in the team, by id.
    pub members: Vec<String>,
    /// Names of the service accounts in the team.
    pub service_accounts: Vec<String>,
}
