//! Explain: one person end to end (`idsync explain EMAIL`), like Entra's "provision on
//! demand" or GCDS's user test.
//!
//! Built from the very inputs and functions the plan uses: the desired state comes from
//! [`mapping::desired_state`], the reasons of wanted roles from the mapping's own reason
//! builders, the actions, holds, tombstones and skipped entries from the [`Plan`] itself,
//! scope from [`in_domain_scope`] and [`Desired::self_emails`]. Nothing here decides
//! anything the plan does not: it only gathers and says why. Pure, like the rest of the core.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::model::{DirectorySnapshot, Email, Group, OrgSnapshot, OrgUser, Person};

use super::mapping::{self, in_domain_scope, Desired};
use super::types::{Action, ActionKind, Plan, Policy, Tombstone, TombstoneCause};
use super::PlanInput;

/// How the plan stands for the person: what `idsync explain` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing is planned for the person (in sync, or out of scope: `why_nothing` says).
    NothingPlanned,
    /// Ready actions are planned and nothing is held.
    Pending,
    /// Some action for the person is held by a guard.
    Held,
    /// The email is in neither the directory nor W&B.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NothingPlanned => "nothing_planned",
            Verdict::Pending => "pending",
            Verdict::Held => "held",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One person, end to end. The JSON shape is documented in the README ("idsync explain").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The email asked about, normalised as the mapping joins (trimmed, lower case).
    pub email: String,
    pub verdict: Verdict,
    /// Whether the W&B user with this email is one idsync may change (SPEC §1 scope).
    pub in_scope: bool,
    /// The directory entries with this email (more than one is a conflict).
    pub directory: Vec<DirectoryEntry>,
    /// What the policy wants for the person; `None` when the directory wants nothing (not
    /// there, disabled, out of scope or frozen).
    pub desired: Option<DesiredView>,
    /// The W&B users with this email, as `/Users` reports them.
    pub wandb: Vec<WandbUser>,
    /// The planned actions for the person (and the team creations they wait for), in
    /// apply order, with reason, status and holds as in the plan.
    pub actions: Vec<Action>,
    /// The person's tombstone, when W&B has them in scope and the directory does not want them.
    pub tombstone: Option<Tombstone>,
    /// When nothing is planned: why not.
    pub why_nothing: Vec<String>,
    /// Everything else worth knowing (skipped entries, unmanaged teams, a suspicious read).
    pub notes: Vec<String>,
    /// For an unknown email: the closest emails the directory or W&B has.
    pub did_you_mean: Vec<String>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// DN or IdP id.
    pub source_ref: String,
    pub anchor: String,
    pub username: String,
    pub display_name: String,
    /// The email as the directory has it, unparsed.
    pub email: Option<String>,
    pub enabled: bool,
    pub groups: Vec<GroupMembership>,
}

/// A group the entry is in (directly or through nesting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub name: String,
    pub dn: Option<String>,
    /// The nested groups the membership runs through, outermost first, ending with the
    /// group the person is a direct member of; empty for a direct membership or when the
    /// source does not record nesting.
    pub via: Vec<String>,
    /// The policy rules that name this group (`policy.teams: team ml (member)`, ...).
    pub rules: Vec<String>,
}

/// What the policy wants for the person, each with the rule that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredView {
    /// Why idsync may create (or reactivate) the person's W&B user; `None` when it may not.
    pub create: Option<String>,
    /// The org role `policy.org_roles` gives; `None` when no org-role group has the person.
    pub org_role: Option<Wanted>,
    /// Managed teams and roles.
    pub teams: Vec<WantedTeam>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    pub role: String,
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantedTeam {
    pub team: String,
    pub role: String,
    pub rule: String,
}

/// A W&B user as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WandbUser {
    pub id: String,
    pub user_name: String,
    pub email: String,
    pub active: bool,
    pub org_role: String,
    /// Team -> team role.
    pub teams: BTreeMap<String, String>,
    pub service_account: bool,
}

/// Explains `email` against the inputs `plan` was computed from.
pub fn explain(input: PlanInput<'_>, plan: &Plan, email: &str) -> Explanation {
    let PlanInput {
        directory,
        org,
        policy,
        state,
        now,
    } = input;
    let parsed = Email::parse(email);
    let key = parsed
        .as_ref()
        .map(|e| e.as_str().to_string())
        .unwrap_or_else(|| email.trim().to_lowercase());
    let desired = mapping::desired_state(directory, org, policy, &state.anchors);

    // The entries: by parsed email, or by the raw text for an email the mapping refused.
    let people: Vec<&Person> = directory
        .people
        .iter()
        .filter(|p| {
            p.email.as_deref().is_some_and(|raw| match (&parsed, Email::parse(raw)) {
                (Some(q), Some(e)) => *q == e,
                _ => raw.trim().to_lowercase() == key,
            })
        })
        .collect();
    let users: Vec<&OrgUser> = org
        .users
        .iter()
        .filter(|u| match (&parsed, Email::parse(&u.email)) {
            (Some(q), Some(e)) => *q == e,
            _ => u.email.trim().to_lowercase() == key,
        })
        .collect();

    let mut x = Explanation {
        email: key.clone(),
        verdict: Verdict::NothingPlanned,
        in_scope: false,
        directory: people.iter().map(|p| entry(p, directory, policy)).collect(),
        desired: None,
        wandb: users.iter().map(|u| wandb_user(u)).collect(),
        actions: Vec::new(),
        tombstone: None,
        why_nothing: Vec::new(),
        notes: Vec::new(),
        did_you_mean: Vec::new(),
    };

    if people.is_empty() && users.is_empty() {
        x.verdict = Verdict::Unknown;
        x.did_you_mean = did_you_mean(&key, directory, org);
        x.why_nothing.push(format!("{key} is in neither the directory nor W&B"));
        nameless_lookalikes(&mut x, &key, directory);
        return x;
    }
    let Some(e) = parsed else {
        x.why_nothing.push(format!(
            "{key:?} is not a usable email address: the mapping joins on email and skips it, never guessed"
        ));
        skipped_notes(&mut x, plan, &people, &key);
        return x;
    };

    x.in_scope = in_domain_scope(&e, policy)
        && !desired.self_emails.contains(&e)
        && !desired.frozen.contains(&e)
        && !users.iter().any(|u| u.service_account);
    x.desired = desired.people.get(&e).map(|want| DesiredView {
        create: want.create_reason(&e),
        org_role: want.org_role.as_ref().map(|w| Wanted {
            role: w.role.to_string(),
            rule: want.org_role_reason(w),
        }),
        teams: want
            .teams
            .iter()
            .map(|(team, w)| WantedTeam {
                team: team.to_string(),
                role: w.role.to_string(),
                rule: want.team_reason(team, w),
            })
            .collect(),
    });

    // The person's actions, and the team creations they wait for.
    let own: Vec<&Action> = plan.actions.iter().filter(|a| a.user.as_ref() == Some(&e)).collect();
    let deps: BTreeSet<_> = own.iter().flat_map(|a| a.depends_on.iter()).collect();
    x.actions = plan
        .actions
        .iter()
        .filter(|a| a.user.as_ref() == Some(&e) || (a.kind == ActionKind::CreateTeam && deps.contains(&a.id)))
        .cloned()
        .collect();
    x.tombstone = plan.tombstones.iter().find(|t| t.user == e).cloned();
    x.verdict = if x.actions.iter().any(|a| !a.is_ready()) {
        Verdict::Held
    } else if x.actions.is_empty() {
        Verdict::NothingPlanned
    } else {
        Verdict::Pending
    };

    skipped_notes(&mut x, plan, &people, e.as_str());
    if let Some(why) = &plan.source.suspicious {
        x.notes.push(format!(
            "the directory read is suspicious ({why}): reducing actions are held and no tombstone clock starts"
        ));
    }
    if let Some(snap) = state.restores.get(&e) {
        // A pending restore shows as the plan's own actions ("restore: ..."); this says
        // what idsync remembers and until when it would restore it.
        let teams: Vec<String> = snap.teams.iter().map(|(t, r)| format!("{t}:{r}")).collect();
        let until = chrono::Duration::from_std(policy.restore_window)
            .ok()
            .and_then(|w| snap.taken_at.checked_add_signed(w));
        let window = match until {
            _ if policy.restore_window.is_zero() => "restore on return is off (policy.restore_window = \"0s\")".to_string(),
            Some(u) if u >= now => format!("restored on return until {}", u.format("%Y-%m-%d")),
            _ => "past policy.restore_window: not restored on return (idsync undo still can)".to_string(),
        };
        x.notes.push(format!(
            "idsync deprovisioned this person on {} and keeps what they had (org role {}, teams {}): {window}",
            snap.taken_at.format("%Y-%m-%d"),
            snap.org_role,
            if teams.is_empty() { "none".to_string() } else { teams.join(", ") }
        ));
    }
    if let Some(r) = desired.renamed.get(&e) {
        x.notes.push(format!(
            "identity change: {} kept its anchor but its email moved from {e} to {}",
            r.source_ref, r.new_email
        ));
    }
    for u in users.iter().filter(|u| !u.service_account) {
        for team in u.teams.keys().filter(|t| !desired.managed_teams.contains(*t)) {
            x.notes.push(format!(
                "W&B team {team} is not managed by policy.teams (or its group is not in the directory): left as it is"
            ));
        }
    }
    if x.actions.is_empty() {
        x.why_nothing = why_nothing(&e, &x, &desired, policy, &users);
    }
    x
}

fn entry(p: &Person, dir: &DirectorySnapshot, policy: &Policy) -> DirectoryEntry {
    let by_anchor: BTreeMap<&str, &Group> = dir.groups.iter().map(|g| (g.anchor.as_str(), g)).collect();
    let groups = dir
        .groups
        .iter()
        .filter(|g| g.members.contains(&p.anchor))
        .map(|g| GroupMembership {
            name: g.name.clone(),
            dn: g.dn.clone(),
            via: nested_path(g, &p.anchor, &by_anchor),
            rules: rules_naming(g, policy),
        })
        .collect();
    DirectoryEntry {
        source_ref: p.source_ref.clone(),
        anchor: p.anchor.clone(),
        username: p.username.clone(),
        display_name: p.display_name.clone(),
        email: p.email.clone(),
        enabled: p.enabled,
        groups,
    }
}

/// The chain of nested groups from `g` down to one that has `anchor` as a direct member:
/// each step goes into a subgroup that (flattened) contains the person; the last group is
/// one none of whose subgroups does, so the person is a direct member there. Empty when
/// the person is a direct member of `g` (no subgroup contains them) or nesting is not
/// recorded. Cycle-safe.
fn nested_path(g: &Group, anchor: &str, by_anchor: &BTreeMap<&str, &Group>) -> Vec<String> {
    let contains = |x: &Group| x.members.iter().any(|m| m == anchor);
    let mut path = Vec::new();
    let mut seen = BTreeSet::from([g.anchor.as_str()]);
    let mut at = g;
    while let Some(next) = at
        .subgroups
        .iter()
        .filter_map(|s| by_anchor.get(s.as_str()).copied())
        .find(|s| contains(s) && !seen.contains(s.anchor.as_str()))
    {
        seen.insert(next.anchor.as_str());
        path.push(next.name.clone());
        at = next;
    }
    path
}

/// The policy rules that reference group `g` (matched as the mapping matches them).
fn rules_naming(g: &Group, policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if policy.auto_add_group.as_deref().is_some_and(|r| g.matches(r)) {
        out.push("policy.auto_add_group".to_string());
    }
    for r in policy.org_roles.iter().filter(|r| g.matches(&r.group)) {
        out.push(format!("policy.org_roles: org role {}", r.role));
    }
    for r in policy.teams.iter().filter(|r| g.matches(&r.group)) {
        out.push(format!("policy.teams: team {} ({})", r.team, r.role));
    }
    out
}

fn wandb_user(u: &OrgUser) -> WandbUser {
    WandbUser {
        id: u.id.clone(),
        user_name: u.username.clone(),
        email: u.email.clone(),
        active: u.active,
        org_role: u.org_role.to_string(),
        teams: u.teams.iter().map(|(t, r)| (t.clone(), r.to_string())).collect(),
        service_account: u.service_account,
    }
}

/// The plan's skipped entries about the person (by entry or by email), as notes.
fn skipped_notes(x: &mut Explanation, plan: &Plan, people: &[&Person], email: &str) {
    for s in &plan.skipped {
        if s.entry == email || people.iter().any(|p| p.source_ref == s.entry) {
            x.notes.push(format!("skipped {}: {}", s.entry, s.why));
        }
    }
}

/// Why the plan has nothing for the person: the first reason that applies decides, in the
/// order the mapping and diff apply them.
fn why_nothing(e: &Email, x: &Explanation, desired: &Desired<'_>, policy: &Policy, users: &[&OrgUser]) -> Vec<String> {
    let mut why = Vec::new();
    if users.iter().any(|u| u.service_account) {
        why.push("the W&B user with this email is a service account: service accounts are never changed".to_string());
    }
    if desired.self_emails.contains(e) {
        why.push(format!(
            "this is the identity idsync authenticates as (target.username = {}): it never changes itself",
            policy.self_username.as_deref().unwrap_or("")
        ));
    }
    if !policy.managed_domains.iter().any(|d| d == e.domain()) {
        why.push(format!(
            "out of scope: domain {} is not in policy.managed_domains ({}): never touched",
            e.domain(),
            policy.managed_domains.join(", ")
        ));
    } else if policy.ignore_users.contains(e) {
        why.push("out of scope: listed in policy.ignore_users: never touched".to_string());
    }
    if desired.frozen.contains(e) {
        why.push("frozen: the email is claimed by several directory entries or W&B users (see the notes): nothing touches it".into());
    }
    if !why.is_empty() {
        return why;
    }
    let active = users.iter().find(|u| u.active);
    let in_dir = !x.directory.is_empty();
    if let Some(t) = &x.tombstone {
        let (what, grace, key) = match t.cause {
            TombstoneCause::Missing => ("missing from the directory", policy.grace_period, "grace_period"),
            TombstoneCause::Disabled => ("disabled in the directory", policy.disabled_grace_period, "disabled_grace_period"),
        };
        why.push(match t.deprovision_after {
            Some(after) => format!(
                "{what} since {}: inside the grace period (policy.{key} = {}); deprovisioning is planned from {}",
                t.since.format("%Y-%m-%dT%H:%M:%SZ"),
                HumanDuration(grace),
                after.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            None => format!(
                "{what} since {}: policy.deprovision = off, so idsync never deprovisions",
                t.since.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        });
        return why;
    }
    if desired.disabled.contains_key(e) {
        why.push("disabled in the directory, and W&B has no active user with this email: nothing to do".into());
        return why;
    }
    if !in_dir {
        why.push(match active {
            Some(_) => "not in the directory, and no tombstone clock started this read (see the notes)".into(),
            None => "not in the directory and inactive in W&B: nothing to do".into(),
        });
        return why;
    }
    match (&x.desired, active) {
        (Some(d), None) if d.create.is_none() => why.push(match (&policy.auto_add, &policy.auto_add_group) {
            (false, _) => "policy.auto_add = false: idsync never creates (or reactivates) W&B users".to_string(),
            (true, Some(g)) => format!("not a member of policy.auto_add_group {g}: idsync does not create (or reactivate) this user"),
            (true, None) => "idsync may not create this user".to_string(),
        }),
        (Some(_), Some(u)) => why.push(format!(
            "already in sync: W&B has the org role ({}) and the managed teams the policy wants",
            u.org_role
        )),
        _ => why.push("the directory entry drives nothing (see the notes)".into()),
    }
    why
}

/// Up to three emails from either side within a small edit distance of `key`.
fn did_you_mean(key: &str, dir: &DirectorySnapshot, org: &OrgSnapshot) -> Vec<String> {
    let known: BTreeSet<String> = dir
        .people
        .iter()
        .filter_map(|p| p.email.as_deref().and_then(Email::parse))
        .chain(org.users.iter().filter_map(|u| Email::parse(&u.email)))
        .map(|e| e.as_str().to_string())
        .collect();
    let limit = (key.len() / 4).clamp(1, 3);
    let mut near: Vec<(usize, String)> = known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(key, &k), k))
        .filter(|(d, _)| *d <= limit)
        .collect();
    near.sort();
    near.into_iter().take(3).map(|(_, k)| k).collect()
}

/// Directory entries with no email whose username is the email's local part: possibly the
/// person, who then cannot be joined (SPEC §1: skipped, never guessed).
fn nameless_lookalikes(x: &mut Explanation, key: &str, dir: &DirectorySnapshot) {
    let Some((local, _)) = key.split_once('@') else { return };
    for p in dir
        .people
        .iter()
        .filter(|p| p.email.is_none() && p.username.eq_ignore_ascii_case(local))
    {
        x.notes.push(format!(
            "{} (username {}) has no email in the directory: if this is the person, it is skipped, never guessed",
            p.source_ref, p.username
        ));
    }
}
