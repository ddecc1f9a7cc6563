//! The plan's vocabulary: actions, guards, holds, the policy and the state the core reads.
//!
//! All plain data. The JSON shape of [`Plan`] is the contract of SPEC §6.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::model::{Deployment, DeprovisionMode};
use crate::model::{Email, OrgRole, TeamRole};

/// The kinds of change idsync makes (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CreateTeam,
    CreateUser,
    ReactivateUser,
    SetOrgRole,
    AddToTeam,
    SetTeamRole,
    RemoveFromTeam,
    DeprovisionUser,
}

impl ActionKind {
    pub const ALL: [ActionKind; 8] = [
        ActionKind::CreateTeam,
        ActionKind::CreateUser,
        ActionKind::ReactivateUser,
        ActionKind::SetOrgRole,
        ActionKind::AddToTeam,
        ActionKind::SetTeamRole,
        ActionKind::RemoveFromTeam,
        ActionKind::DeprovisionUser,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CreateTeam => "create_team",
            ActionKind::CreateUser => "create_user",
            ActionKind::ReactivateUser => "reactivate_user",
            ActionKind::SetOrgRole => "set_org_role",
            ActionKind::AddToTeam => "add_to_team",
            ActionKind::SetTeamRole => "set_team_role",
            ActionKind::RemoveFromTeam => "remove_from_team",
            ActionKind::DeprovisionUser => "deprovision_user",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short stable hash of (kind, user, team, role): the same change has the same id in
/// every run, which is what approvals bind to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(pub String);

impl ActionId {
    pub fn compute(kind: ActionKind, user: Option<&Email>, team: Option<&str>, role: Option<&str>) -> ActionId {
        ActionId(short_hash(&[Some(kind.as_str()), user.map(Email::as_str), team, role]))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 12 hex digits of SHA-256 over length-prefixed fields, so that ("ab","c") and
/// ("a","bc") differ and an absent field differs from an empty one.
fn short_hash(fields: &[Option<&str>]) -> String {
    let mut h = Sha256::new();
    for part in fields {
        let p = part.unwrap_or("\u{0}none");
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(12);
    for b in digest.iter().take(6) {
        id.push(HEX[(b >> 4) as usize] as char);
        id.push(HEX[(b & 0xf) as usize] as char);
    }
    id
}

/// The guards of SPEC §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Guard {
    #[serde(rename = "last-admin")]
    LastAdmin,
    #[serde(rename = "self")]
    SelfIdentity,
    #[serde(rename = "pipeline-key")]
    PipelineKey,
    #[serde(rename = "mass-deprovision")]
    MassDeprovision,
    #[serde(rename = "mass-team-removal")]
    MassTeamRemoval,
    #[serde(rename = "source-health")]
    SourceHealth,
    #[serde(rename = "seat-limit")]
    SeatLimit,
    #[serde(rename = "identity-change")]
    IdentityChange,
}

impl Guard {
    pub const ALL: [Guard; 8] = [
        Guard::LastAdmin,
        Guard::SelfIdentity,
        Guard::PipelineKey,
        Guard::MassDeprovision,
        Guard::MassTeamRemoval,
        Guard::SourceHealth,
        Guard::SeatLimit,
        Guard::IdentityChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Guard::LastAdmin => "last-admin",
            Guard::SelfIdentity => "self",
            Guard::PipelineKey => "pipeline-key",
            Guard::MassDeprovision => "mass-deprovision",
            Guard::MassTeamRemoval => "mass-team-removal",
            Guard::SourceHealth => "source-health",
            Guard::SeatLimit => "seat-limit",
            Guard::IdentityChange => "identity-change",
        }
    }

    /// Whether an operator's approval may release an action this guard holds.
    pub fn overridable(self) -> bool {
        !matches!(self, Guard::LastAdmin | Guard::SelfIdentity)
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ready,
    Held,
}

/// One reason an action is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub guard: Guard,
    pub reason: String,
}

/// One change in the plan.
///
/// Serialises to the SPEC §6 action object; `user_id`, `holds`, `depends_on`, `approved`
/// and `overridable` are extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: ActionId,
    pub kind: ActionKind,
    /// The person's email, lower case. `None` only for `create_team`.
    pub user: Option<Email>,
    /// The W&B user id, when the user exists already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub team: Option<String>,
    /// The role this action grants (org role for `set_org_role`, team role for team
    /// actions); part of the id.
    pub role: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Which rule and which source entry caused this action.
    pub reason: String,
    pub status: Status,
    /// The first guard holding the action (the one a human must deal with first).
    pub guard: Option<Guard>,
    pub held_reason: Option<String>,
    /// Every hold on the action, most severe first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Hold>,
    /// Actions that must succeed first (a team add after its user's creation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ActionId>,
    /// True when an approval released this action from overridable holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
    /// What an approval binds to besides the id ([`Action::fingerprint`]); set on held
    /// actions (the ones a human may approve) and on actions that have an approval.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
}

impl Action {
    /// Builds a ready action and computes its id.
    pub fn new(kind: ActionKind, user: Option<Email>, team: Option<String>, role: Option<String>, reason: String) -> Action {
        let id = ActionId::compute(kind, user.as_ref(), team.as_deref(), role.as_deref());
        Action {
            id,
            kind,
            user,
            user_id: None,
            team,
            role,
            from: None,
            to: None,
            reason,
            status: Status::Ready,
            guard: None,
            held_reason: None,
            holds: Vec::new(),
            depends_on: Vec::new(),
            approved: false,
            fingerprint: String::new(),
        }
    }

    /// A short hash of everything a human reviewed about this change (SPEC §4): kind,
    /// user, team, role, from, to, the W&B user id and, for deprovisions, the deprovision
    /// mode. An approval binds to it, so an approved deactivation never becomes an
    /// approved DELETE, nor an approval of one W&B account an approval of another.
    pub fn fingerprint(&self, deprovision: DeprovisionMode) -> String {
        let mode = (self.kind == ActionKind::DeprovisionUser).then_some(match deprovision {
            DeprovisionMode::Deactivate => "deactivate",
            DeprovisionMode::Delete => "delete",
            DeprovisionMode::Off => "off",
        });
        let fields = [
            Some(self.kind.as_str()),
            self.user.as_ref().map(Email::as_str),
            self.team.as_deref(),
            self.role.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            self.user_id.as_deref(),
            mode,
        ];
        short_hash(&fields)
    }

    pub fn is_ready(&self) -> bool {
        self.status == Status::Ready
    }

    /// True when every hold may be released by approval.
    pub fn overridable(&self) -> bool {
        !self.holds.is_empty() && self.holds.iter().all(|h| h.guard.overridable())
    }

    /// Apply phase (SPEC §5): create/reactivate users → grant org admin → add to teams and
    /// raise team roles → other role changes → team removals and demotions → deprovisions.
    pub fn phase(&self) -> u8 {
        match self.kind {
            ActionKind::CreateTeam | ActionKind::CreateUser | ActionKind::ReactivateUser => 0,
            ActionKind::SetOrgRole if self.role.as_deref() == Some("admin") => 1,
            ActionKind::AddToTeam => 2,
            ActionKind::SetTeamRole if self.is_team_raise() => 2,
            ActionKind::SetOrgRole => 3,
            ActionKind::SetTeamRole => 4,
            ActionKind::RemoveFromTeam => 4,
            ActionKind::DeprovisionUser => 5,
        }
    }

    fn is_team_raise(&self) -> bool {
        let from = self.from.as_deref().map(TeamRole::rank_of).unwrap_or(0);
        let to = self.role.as_deref().map(TeamRole::rank_of).unwrap_or(0);
        to > from
    }

    /// True for actions that take something away (the ones source-health holds).
    pub fn is_reducing(&self) -> bool {
        match self.kind {
            ActionKind::RemoveFromTeam | ActionKind::DeprovisionUser => true,
            ActionKind::SetOrgRole => {
                let from = self.from.as_deref().map(OrgRole::parse);
                from == Some(OrgRole::Admin) && self.role.as_deref() != Some("admin")
            }
            ActionKind::SetTeamRole => !self.is_team_raise(),
            _ => false,
        }
    }
}

/// A user in scope who vanished from (or was disabled in) the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub user: Email,
    pub since: DateTime<Utc>,
    /// When deprovisioning will be planned; `None` when `deprovision = "off"`.
    pub deprovision_after: Option<DateTime<Utc>>,
    /// `missing` or `disabled`.
    pub cause: TombstoneCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TombstoneCause {
    Missing,
    Disabled,
}

/// A directory entry or W&B user the plan could not use, reported to a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The directory reference (DN / id) or W&B email.
    pub entry: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub kind: String,
    pub users: usize,
    pub groups: usize,
    /// Enabled people with a usable, unique email: the size source-health tracks.
    /// In-process only: the JSON `source` object stays SPEC §6's `{kind, users, groups}`.
    #[serde(skip)]
    pub usable_enabled: usize,
    /// Members of each group a policy rule uses, by the rule's reference, for the groups
    /// the directory has: what source-health tracks per group. In-process only.
    #[serde(skip)]
    pub mapped_groups: BTreeMap<String, usize>,
    /// Why source-health finds this read suspicious; `None` for a healthy read, which the
    /// shell then records for the baseline. In the JSON only when set, so a script (and a
    /// saved plan) sees why a read that changes nothing is still not "in sync".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicious: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSummary {
    pub users: usize,
    pub teams: usize,
}

/// The whole plan: what reports render, `--out` saves, metrics count and apply executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub generated_at: DateTime<Utc>,
    pub source: SourceSummary,
    pub target: TargetSummary,
    /// Ready actions per kind, plus `held`.
    pub summary: BTreeMap<String, usize>,
    /// In apply order.
    pub actions: Vec<Action>,
    pub tombstones: Vec<Tombstone>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Roster lines (`email  org_role  team:role,...`) before and after the ready actions.
    #[serde(default)]
    pub roster_before: Vec<String>,
    #[serde(default)]
    pub roster_after: Vec<String>,
    /// Anchor -> stored email to keep in the anchor map: identity changes still pending
    /// (until a human approves the pair or the old account is gone) and anchors several
    /// entries share this read. In-process only.
    #[serde(skip)]
    pub identity_pending: BTreeMap<String, Email>,
    /// Set on a plan `idsync undo` made: which run it reverses, what it left out and why,
    /// and what the next regular run would do differently. `apply --plan` of such a plan
    /// re-derives the undo, not a directory plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoInfo>,
}

/// What makes a plan an undo plan (see [`Plan::undo`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoInfo {
    /// The run whose applied changes this plan reverses.
    pub run_id: String,
    /// Changes of that run the undo does not reverse, each with why (superseded by a
    /// later run, W&B no longer shows it, idsync does not reverse that kind).
    #[serde(default)]
    pub left_out: Vec<Skipped>,
    /// Where the directory disagrees with the undo: the next regular run would plan the
    /// change again.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn ready(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| a.is_ready())
    }
    pub fn held(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| !a.is_ready())
    }
    pub fn action(&self, id: &ActionId) -> Option<&Action> {
        self.actions.iter().find(|a| &a.id == id)
    }

    /// Whether a human must look: something is held, or the directory read is
    /// suspicious (SPEC §2: a suspicious read is never "in sync", even with nothing to do).
    pub fn needs_a_human(&self) -> bool {
        self.source.suspicious.is_some() || self.held().next().is_some()
    }

    /// What the shell records for the source-health baseline after this read; `None` when
    /// the read is suspicious, which never becomes part of the baseline.
    pub fn healthy_read(&self) -> Option<HealthyRead> {
        self.source.suspicious.is_none().then(|| HealthyRead {
            at: self.generated_at,
            people: self.source.usable_enabled,
            groups: self.source.mapped_groups.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeamMembershipMode {
    /// Managed teams contain exactly the mapped groups' in-scope members.
    Authoritative,
    /// Only undo what idsync granted (the ledger).
    Owned,
}

/// `[[policy.org_roles]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRoleRule {
    pub group: String,
    pub role: OrgRole,
}

/// `[[policy.teams]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRule {
    pub team: String,
    pub group: String,
    pub role: TeamRole,
    pub create: bool,
}

/// One pipeline-key owner: from `pipeline_key_owners` (every team) or the inventory
/// (`team` narrows team removals to that team).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOwner {
    pub owner: Email,
    pub team: Option<String>,
    pub name: Option<String>,
}

/// `[guards]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardLimits {
    pub min_org_admins: usize,
    pub min_team_admins: usize,
    pub max_deprovisions: usize,
    pub max_deprovision_percent: u32,
    pub max_team_removals: usize,
    pub max_source_shrink_percent: u32,
    /// How far back source-health looks for the largest healthy read.
    pub source_health_window: Duration,
    /// 0 = no limit.
    pub max_seats: usize,
    pub pipeline_owners: Vec<PipelineOwner>,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            min_org_admins: 1,
            min_team_admins: 1,
            max_deprovisions: 10,
            max_deprovision_percent: 5,
            max_team_removals: 50,
            max_source_shrink_percent: 10,
            source_health_window: Duration::from_secs(7 * 86_400),
            max_seats: 0,
            pipeline_owners: Vec::new(),
        }
    }
}

/// Everything the plan core needs from the configuration, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lower-case domains.
    pub managed_domains: Vec<String>,
    pub ignore_users: BTreeSet<Email>,
    /// The W&B username idsync authenticates as (`target.username`), if any.
    pub self_username: Option<String>,
    pub auto_add: bool,
    pub auto_add_group: Option<String>,
    pub default_org_role: OrgRole,
    pub deprovision: DeprovisionMode,
    pub grace_period: Duration,
    pub disabled_grace_period: Duration,
    pub team_membership: TeamMembershipMode,
    pub org_roles: Vec<OrgRoleRule>,
    pub teams: Vec<TeamRule>,
    pub guards: GuardLimits,
    pub deployment: Deployment,
    /// True when `DELETE` only deactivates (servers before 0.56).
    pub delete_deactivates: bool,
    /// How long after a deprovision a returning person gets back what they had
    /// (`policy.restore_window`); zero turns restore on return off.
    pub restore_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            managed_domains: Vec::new(),
            ignore_users: BTreeSet::new(),
            self_username: None,
            auto_add: true,
            auto_add_group: None,
            default_org_role: OrgRole::Member,
            deprovision: DeprovisionMode::Deactivate,
            grace_period: Duration::from_secs(72 * 3600),
            disabled_grace_period: Duration::ZERO,
            team_membership: TeamMembershipMode::Authoritative,
            org_roles: Vec::new(),
            teams: Vec::new(),
            guards: GuardLimits::default(),
            deployment: Deployment::Saas,
            delete_deactivates: false,
            restore_window: Duration::from_secs(90 * 86_400),
        }
    }
}

/// A stored tombstone clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneRecord {
    pub since: DateTime<Utc>,
}

/// An operator's release of one held action, until `expires_at`, bound to what the
/// operator reviewed (SPEC §4): the guards then holding it and the change's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub action_id: ActionId,
    pub approved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub approved_by: String,
    /// The overridable guards that held the action when it was approved: the approval
    /// releases holds by these guards only.
    #[serde(default)]
    pub guards: Vec<Guard>,
    /// [`Action::fingerprint`] of the reviewed action; empty for approvals recorded by an
    /// idsync that did not bind them, which then match nothing.
    #[serde(default)]
    pub fingerprint: String,
    /// What the approved action does, as reviewed: its kind, user and team, for `status`
    /// and the audit trail. Descriptive only (the id and fingerprint bind the approval);
    /// `None` for approvals recorded before idsync kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

impl Approval {
    /// An approval of `a` as reviewed (a held action of a plan, carrying its fingerprint)
    /// over the overridable guards holding it.
    pub fn of(a: &Action, approved_at: DateTime<Utc>, expires_at: DateTime<Utc>, approved_by: &str) -> Approval {
        let mut guards: Vec<Guard> = a.holds.iter().map(|h| h.guard).filter(|g| g.overridable()).collect();
        guards.extend(a.guard.filter(|g| g.overridable()));
        guards.sort();
        guards.dedup();
        Approval {
            action_id: a.id.clone(),
            approved_at,
            expires_at,
            approved_by: approved_by.to_string(),
            guards,
            fingerprint: a.fingerprint.clone(),
            kind: Some(a.kind),
            user: a.user.clone(),
            team: a.team.clone(),
        }
    }
}

/// One healthy directory read, kept for `guards.source_health_window`: source-health
/// compares each read with the largest of these, so a slow decline still adds up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthyRead {
    pub at: DateTime<Utc>,
    /// Enabled people with a usable email.
    pub people: usize,
    /// Members of each mapped group the directory had, by policy reference.
    pub groups: BTreeMap<String, usize>,
}

/// What the state store remembers that the plan core reads. Plain data, loaded by the
/// shell before planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanState {
    /// Tombstone clocks by email.
    pub tombstones: BTreeMap<Email, TombstoneRecord>,
    /// Healthy directory reads, oldest first; the core looks only at those within
    /// `guards.source_health_window` of `now` (the shell prunes older ones).
    pub healthy_reads: Vec<HealthyRead>,
    /// Team memberships idsync granted: (email, team).
    pub ledger: BTreeSet<(Email, String)>,
    pub approvals: Vec<Approval>,
    /// The email each anchor had at the last good read (for identity-change).
    pub anchors: BTreeMap<String, Email>,
    /// What each person idsync deprovisioned had then, by email (the latest deprovision).
    pub restores: BTreeMap<Email, RestoreSnapshot>,
}

/// What a person had in W&B when idsync deprovisioned them, taken from the snapshot the
/// apply read: restore on return and `idsync undo` put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSnapshot {
    pub user: Email,
    /// The person's directory anchor at the last good read, when idsync knew it: a
    /// returning person is recognised by anchor or by email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// When the deprovision was applied.
    pub taken_at: DateTime<Utc>,
    /// The org role then (`admin`, `member`, ...).
    pub org_role: String,
    /// Every team the person was in then, managed by the policy or not, with its role.
    #[serde(default)]
    pub teams: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_are_stable_and_distinguish_fields() {
        let e = Email::parse("a@example.com");
        let a = ActionId::compute(ActionKind::AddToTeam, e.as_ref(), Some("t"), Some("member"));
        let b = ActionId::compute(ActionKind::AddToTeam, e.as_ref(), Some("t"), Some("member"));
        let c = ActionId::compute(ActionKind::AddToTeam, e.as_ref(), Some("t"), Some("admin"));
        let d = ActionId::compute(ActionKind::AddToTeam, e.as_ref(), Some("tm"), Some("ember"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(a.as_str().len(), 12);
    }

    #[test]
    fn guard_names_serialise_as_in_the_spec() {
        for g in Guard::ALL {
            assert_eq!(serde_json::to_string(&g).unwrap(), format!("\"{}\"", g.as_str()));
        }
        assert!(!Guard::LastAdmin.overridable());
        assert!(!Guard::SelfIdentity.overridable());
        assert!(Guard::PipelineKey.overridable());
    }
}
