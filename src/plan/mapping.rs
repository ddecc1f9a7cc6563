//! Mapping: from a directory snapshot and the policy to the desired state.
//!
//! Decides who is usable (a parseable, unique email), who is in scope, who may be created,
//! and which org role and team roles each person should have, with the rule and the source
//! entry that say so.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{normalize_dn, DirectorySnapshot, Email, FastMap, FastSet, Group, OrgRole, OrgSnapshot, Person, TeamRole};

use super::types::{Policy, Skipped};

/// A role the policy wants, with the rule behind it. The reason text is built only when
/// an action needs it: most wanted roles are already held and never become actions.
#[derive(Debug, Clone)]
pub(crate) struct Wanted<'a, R> {
    pub role: R,
    /// The policy group that grants the role.
    pub group: &'a str,
}

/// Why idsync may create (or reactivate) a person's W&B user.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MayCreate<'a> {
    /// `auto_add` with no `auto_add_group`: any in-scope person.
    Domain,
    /// A member of this `auto_add_group`.
    Group(&'a str),
}

/// One in-scope person the directory wants in W&B.
#[derive(Debug, Clone)]
pub(crate) struct DesiredPerson<'a> {
    pub person: &'a Person,
    /// Whether idsync may create (or reactivate) this person's W&B user.
    pub may_create: Option<MayCreate<'a>>,
    /// From `policy.org_roles`; `None` when no org-role group contains the person.
    pub org_role: Option<Wanted<'a, OrgRole>>,
    /// Managed team -> wanted role (the highest of the mapped groups).
    pub teams: BTreeMap<&'a str, Wanted<'a, TeamRole>>,
}

impl DesiredPerson<'_> {
    pub fn create_reason(&self, email: &Email) -> Option<String> {
        let p = &self.person.source_ref;
        self.may_create.map(|m| match m {
            MayCreate::Domain => format!("auto_add: {p} is in managed domain {}", email.domain()),
            MayCreate::Group(g) => format!("auto_add: {p} is a member of auto_add_group {g}"),
        })
    }

    pub fn org_role_reason(&self, w: &Wanted<'_, OrgRole>) -> String {
        format!(
            "policy.org_roles: {} is a member of {} (role {})",
            self.person.source_ref, w.group, w.role
        )
    }

    pub fn team_reason(&self, team: &str, w: &Wanted<'_, TeamRole>) -> String {
        format!(
            "policy.teams: {} is a member of {} (team {team}, role {})",
            self.person.source_ref, w.group, w.role
        )
    }
}

/// A person whose anchor kept while the email moved (identity-change).
#[derive(Debug, Clone)]
pub(crate) struct Renamed<'a> {
    pub new_email: Email,
    pub anchor: &'a str,
    pub source_ref: &'a str,
}

/// The desired state and what the mapping noticed on the way.
#[derive(Debug, Default)]
pub(crate) struct Desired<'a> {
    /// Enabled, in-scope people with a unique usable email.
    pub people: BTreeMap<Email, DesiredPerson<'a>>,
    /// In-scope people the directory marks disabled.
    pub disabled: BTreeMap<Email, &'a Person>,
    /// Emails claimed by several directory people or several W&B users: nothing touches them.
    pub frozen: BTreeSet<Email>,
    /// Emails of the identity idsync authenticates as.
    pub self_emails: BTreeSet<Email>,
    /// Whether `policy.org_roles` names an admin group that the directory has.
    pub admin_group_named: bool,
    /// Teams whose mapping is active (some mapped group was found).
    pub managed_teams: BTreeSet<String>,
    /// Managed teams missing from W&B that the policy lets idsync create, with the reason.
    pub teams_to_create: BTreeMap<String, String>,
    /// Old email -> the person now under a new email, for people whose anchor stayed but
    /// whose email changed.
    pub renamed: BTreeMap<Email, Renamed<'a>>,
    /// Anchors more than one directory entry carries (frozen, never stored anew).
    pub shared_anchors: Vec<&'a str>,
    /// Enabled people with a usable email (the size source-health compares).
    pub usable_enabled: usize,
    /// Members of each policy group the directory has, by the policy's reference (the
    /// per-group sizes source-health compares). Groups the directory lacks are absent:
    /// their rules are inert, never "empty".
    pub mapped_groups: BTreeMap<String, usize>,
    pub skipped: Vec<Skipped>,
}

/// Whether a W&B user with this email may be changed by idsync: managed domain, not
/// ignored. (Self and frozen emails are excluded by the caller, which knows them.)
pub fn in_domain_scope(email: &Email, policy: &Policy) -> bool {
    policy.managed_domains.iter().any(|d| d == email.domain()) && !policy.ignore_users.contains(email)
}

/// Groups indexed by every name a policy may use for them (normalised DN, or name and
/// id), built once so that thousands of rules do not each scan thousands of groups.
struct GroupIndex<'d> {
    by_ref: FastMap<String, Vec<&'d Group>>,
}

impl<'d> GroupIndex<'d> {
    fn new(dir: &'d DirectorySnapshot) -> Self {
        let mut by_ref: FastMap<String, Vec<&'d Group>> = FastMap::default();
        for g in &dir.groups {
            match &g.dn {
                Some(dn) => by_ref.entry(format!("dn:{}", normalize_dn(dn))).or_default().push(g),
                None => {
                    by_ref.entry(format!("id:{}", g.name)).or_default().push(g);
                    if g.anchor != g.name {
                        by_ref.entry(format!("id:{}", g.anchor)).or_default().push(g);
                    }
                }
            }
        }
        GroupIndex { by_ref }
    }

    /// Resolves a policy group reference to the anchors of its (flattened) members, the
    /// way [`Group::matches`] does. `None` when no directory group matches: the rule is
    /// then inert, never "empty".
    fn resolve(&self, reference: &str) -> Option<FastSet<&'d str>> {
        let dn = self.by_ref.get(&format!("dn:{}", normalize_dn(reference)));
        let id = self.by_ref.get(&format!("id:{reference}"));
        if dn.is_none() && id.is_none() {
            return None;
        }
        Some(
            dn.into_iter()
                .chain(id)
                .flatten()
                .flat_map(|g| g.members.iter().map(String::as_str))
                .collect(),
        )
    }
}

/// The emails of the identity idsync authenticates as: the W&B users named by
/// `policy.self_username` (never in scope).
pub fn self_emails(org: &OrgSnapshot, policy: &Policy) -> BTreeSet<Email> {
    let mut out = BTreeSet::new();
    if let Some(me) = policy.self_username.as_deref().filter(|s| !s.is_empty()) {
        for u in &org.users {
            if u.username.eq_ignore_ascii_case(me) {
                if let Some(e) = Email::parse(&u.email) {
                    out.insert(e);
                }
            }
        }
    }
    out
}

pub(crate) fn desired_state<'a>(
    dir: &'a DirectorySnapshot,
    org: &OrgSnapshot,
    policy: &'a Policy,
    anchors: &BTreeMap<String, Email>,
) -> Desired<'a> {
    // idsync's own identity, found by its W&B username.
    let mut out = Desired {
        self_emails: self_emails(org, policy),
        ..Desired::default()
    };

    // W&B users sharing an email cannot be told apart: freeze the email.
    let mut seen_target = BTreeSet::new();
    // Emails of service accounts: a person with one would be matched to the service account
    // or created beside it, neither of which is idsync's to decide.
    let mut service_accounts = BTreeSet::new();
    for u in &org.users {
        if u.service_account {
            service_accounts.extend(Email::parse(&u.email));
            continue;
        }
        if let Some(e) = Email::parse(&u.email) {
            if !seen_target.insert(e.clone()) && out.frozen.insert(e.clone()) {
                out.skipped.push(Skipped {
                    entry: e.to_string(),
                    why: "several W&B users share this email: left as they are".into(),
                });
            }
        }
    }

    // Usable people: a parseable email, claimed by exactly one directory person.
    // One person per email; the rare duplicates wait aside, so the common case allocates
    // no list per person.
    let mut by_email: BTreeMap<Email, &Person> = BTreeMap::new();
    let mut dupes: BTreeMap<Email, Vec<&Person>> = BTreeMap::new();
    for p in &dir.people {
        match p.email.as_deref().and_then(Email::parse) {
            Some(e) => match by_email.entry(e) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(p);
                }
                std::collections::btree_map::Entry::Occupied(o) => dupes.entry(o.key().clone()).or_default().push(p),
            },
            None => out.skipped.push(Skipped {
                entry: p.source_ref.clone(),
                why: match &p.email {
                    None => "no email in the directory: skipped, never guessed".into(),
                    Some(raw) => match Email::invisible_char(raw) {
                        Some(c) => format!(
                            "unusable email {raw:?}: it contains the invisible character U+{:04X}, so it only looks like an address; fix the entry in the directory (skipped, never guessed)",
                            c as u32
                        ),
                        None => format!("unusable email {raw:?}: skipped, never guessed"),
                    },
                },
            }),
        }
    }
    // An anchor claimed by several entries (a non-unique anchor_attr, an LDIF listing an
    // entry twice) would hand one person's group memberships to another: freeze them all.
    let shared = shared_anchors(dir);
    out.shared_anchors = shared.iter().copied().collect();
    for p in dir.people.iter().filter(|p| shared.contains(p.anchor.as_str())) {
        out.skipped.push(Skipped {
            entry: p.source_ref.clone(),
            why: format!(
                "anchor {:?} is used by several directory entries (is the anchor attribute unique?): none of them drives changes",
                p.anchor
            ),
        });
        if let Some(e) = p.email.as_deref().and_then(Email::parse) {
            out.frozen.insert(e);
        }
    }
    let mut usable: Vec<(Email, &Person)> = Vec::with_capacity(by_email.len());
    for (email, first) in by_email {
        if service_accounts.contains(&email) {
            out.skipped.push(Skipped {
                entry: first.source_ref.clone(),
                why: format!(
                    "email {email} is a service account's in W&B: service accounts are never changed, so this entry drives nothing (no match, no create)"
                ),
            });
            out.frozen.insert(email.clone());
        }
        if let Some(more) = dupes.remove(&email) {
            let people: Vec<&Person> = std::iter::once(first).chain(more).collect();
            for p in &people {
                out.skipped.push(Skipped {
                    entry: p.source_ref.clone(),
                    why: format!(
                        "email {email} is used by {} directory entries: none of them drives changes",
                        people.len()
                    ),
                });
            }
            out.frozen.insert(email);
        } else if !shared.contains(first.anchor.as_str()) {
            usable.push((email, first));
        }
    }
    out.usable_enabled = usable.iter().filter(|(_, p)| p.enabled).count();

    // Group rules. A rule whose group the directory lacks is inert and reported.
    let groups = GroupIndex::new(dir);
    let mut missing_groups = BTreeSet::new();
    let mut sized = |reference: &str, members: &FastSet<&str>| {
        out.mapped_groups.insert(reference.to_string(), members.len());
    };
    let auto_add_members = match &policy.auto_add_group {
        Some(g) => {
            let r = groups.resolve(g);
            match &r {
                Some(m) => sized(g, m),
                None => {
                    missing_groups.insert(g.clone());
                }
            }
            Some(r)
        }
        None => None,
    };
    let mut role_rules = Vec::new();
    for rule in &policy.org_roles {
        match groups.resolve(&rule.group) {
            Some(m) => {
                sized(&rule.group, &m);
                if rule.role == OrgRole::Admin {
                    out.admin_group_named = true;
                }
                role_rules.push((rule, m));
            }
            None => {
                missing_groups.insert(rule.group.clone());
            }
        }
    }
    let mut team_rules = Vec::new();
    for rule in &policy.teams {
        match groups.resolve(&rule.group) {
            Some(m) => {
                sized(&rule.group, &m);
                if org.team(&rule.team).is_some() {
                    out.managed_teams.insert(rule.team.clone());
                    team_rules.push((rule, m));
                } else if rule.create {
                    out.managed_teams.insert(rule.team.clone());
                    out.teams_to_create.entry(rule.team.clone()).or_insert_with(|| {
                        format!(
                            "policy.teams maps {} to team {} with create = true, and W&B has no such team",
                            rule.group, rule.team
                        )
                    });
                    team_rules.push((rule, m));
                }
            }
            None => {
                missing_groups.insert(rule.group.clone());
            }
        }
    }
    for rule in &policy.teams {
        if org.team(&rule.team).is_none() && !rule.create {
            out.skipped.push(Skipped {
                entry: format!("team {}", rule.team),
                why: "W&B has no such team and create = false: its mapping does nothing".into(),
            });
        }
    }
    for g in missing_groups {
        out.skipped.push(Skipped {
            entry: g,
            why: "policy group not found in the directory: its rule does nothing this run (no adds, no removals)".into(),
        });
    }

    // Identity changes: the anchor kept, the email moved.
    for (email, p) in &usable {
        if let Some(old) = anchors.get(&p.anchor) {
            if old != email {
                out.renamed.insert(
                    old.clone(),
                    Renamed {
                        new_email: email.clone(),
                        anchor: p.anchor.as_str(),
                        source_ref: p.source_ref.as_str(),
                    },
                );
            }
        }
    }

    // Anchor -> the rules whose group contains it, so each person looks up only their own.
    let mut role_rules_of: FastMap<&str, Vec<usize>> = FastMap::default();
    for (i, (_, members)) in role_rules.iter().enumerate() {
        for m in members {
            role_rules_of.entry(m).or_default().push(i);
        }
    }
    let mut team_rules_of: FastMap<&str, Vec<usize>> = FastMap::default();
    for (i, (_, members)) in team_rules.iter().enumerate() {
        for m in members {
            team_rules_of.entry(m).or_default().push(i);
        }
    }
    let no_rules: Vec<usize> = Vec::new();

    for (email, p) in usable {
        if !in_domain_scope(&email, policy) || out.self_emails.contains(&email) || out.frozen.contains(&email) {
            continue;
        }
        if !p.enabled {
            out.disabled.insert(email, p);
            continue;
        }
        let anchor = p.anchor.as_str();
        let may_create = if !policy.auto_add {
            None
        } else {
            match (&policy.auto_add_group, &auto_add_members) {
                (Some(g), Some(Some(m))) => m.contains(anchor).then_some(MayCreate::Group(g.as_str())),
                (Some(_), _) => None,
                (None, _) => Some(MayCreate::Domain),
            }
        };
        let mut org_role: Option<Wanted<'a, OrgRole>> = None;
        for &i in role_rules_of.get(anchor).unwrap_or(&no_rules) {
            let rule = role_rules[i].0;
            let better = match &org_role {
                None => true,
                Some(w) => w.role != OrgRole::Admin && rule.role == OrgRole::Admin,
            };
            if better {
                org_role = Some(Wanted {
                    role: rule.role.clone(),
                    group: rule.group.as_str(),
                });
            }
        }
        let mut teams: BTreeMap<&'a str, Wanted<'a, TeamRole>> = BTreeMap::new();
        for &i in team_rules_of.get(anchor).unwrap_or(&no_rules) {
            let rule = team_rules[i].0;
            if teams.get(rule.team.as_str()).is_none_or(|w| rule.role.rank() > w.role.rank()) {
                teams.insert(
                    rule.team.as_str(),
                    Wanted {
                        role: rule.role.clone(),
                        group: rule.group.as_str(),
                    },
                );
            }
        }
        out.people.insert(
            email,
            DesiredPerson {
                person: p,
                may_create,
                org_role,
                teams,
            },
        );
    }
    out
}

/// Anchors that more than one directory entry carries. Empty in any healthy directory,
/// so the common case only pays for one pass.
fn shared_anchors(dir: &DirectorySnapshot) -> FastSet<&str> {
    let mut seen: FastSet<&str> = FastSet::with_capacity_and_hasher(dir.people.len(), Default::default());
    let mut shared = FastSet::default();
    for p in &dir.people {
        if !seen.insert(p.anchor.as_str()) {
            shared.insert(p.anchor.as_str());
        }
    }
    shared
}

/// The anchor -> email map the shell stores after a healthy read (for identity-change):
/// every directory person with a usable email and an anchor no other entry shares, except
/// the anchors in `kept` ([`Plan::identity_pending`](super::Plan)): one whose identity
/// change is still pending keeps its stored email until a human approves the pair or the
/// old account is gone (SPEC §4), so that the change is held in every run, not only the
/// first; and a shared anchor keeps what was stored, so one bad read cannot erase it.
pub fn anchors_to_store(dir: &DirectorySnapshot, identity_pending: &BTreeMap<String, Email>) -> BTreeMap<String, Email> {
    let shared = shared_anchors(dir);
    let mut out: BTreeMap<String, Email> = dir
        .people
        .iter()
        .filter(|p| !shared.contains(p.anchor.as_str()))
        .filter_map(|p| Some((p.anchor.clone(), Email::parse(p.email.as_deref()?)?)))
        .collect();
    for (anchor, old) in identity_pending {
        out.insert(anchor.clone(), old.clone());
    }
    out
}
