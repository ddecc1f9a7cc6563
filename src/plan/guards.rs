//! Guards (SPEC §4): rules that review the whole plan and hold unsafe actions.
//!
//! Order matters and is fixed: the per-action guards first, then approvals release
//! overridable holds, then holds spread to dependent actions, then `seat-limit` counts
//! the creates still ready, and `last-admin` runs last so that it sees exactly which
//! promotions and reductions will really happen.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::duration::HumanDuration;
use crate::model::{Email, FastMap, OrgRole, OrgSnapshot, OrgUser};

use super::admin;
use super::types::{Action, ActionId, ActionKind, Approval, Deployment, Guard, HealthyRead, Hold, PlanState, Policy, Status};

/// Everything the guards read besides the actions.
pub(crate) struct GuardInput<'a> {
    pub org: &'a OrgSnapshot,
    pub policy: &'a Policy,
    pub state: &'a PlanState,
    pub now: DateTime<Utc>,
    pub self_emails: &'a BTreeSet<Email>,
    pub managed_teams: &'a BTreeSet<String>,
    pub identity_pairs: &'a BTreeSet<ActionId>,
    /// In-scope active W&B users.
    pub in_scope_active: usize,
    /// People in the snapshot, and those enabled with a usable email.
    pub directory_people: usize,
    pub usable_enabled: usize,
    /// Members of each mapped group the directory has, by policy reference.
    pub mapped_groups: &'a BTreeMap<String, usize>,
}

/// How a stored approval fits the action as planned now (SPEC §4).
#[derive(Debug, Clone)]
enum Fit {
    /// No approval for this action id.
    None,
    /// Same change as reviewed: releases holds by these guards.
    Valid(Vec<Guard>),
    Expired(DateTime<Utc>),
    /// The change is not the one reviewed (another W&B user, role, deprovision mode, ...).
    Changed {
        legacy: bool,
    },
}

/// Per-action working state while the guards run.
struct Slot {
    holds: Vec<Hold>,
    /// A hold inherited from a held dependency; approval of this action does not lift it.
    dep_hold: Option<Hold>,
    approval: Fit,
}

impl Slot {
    /// Whether the approval releases a hold by `g`: only an overridable guard it was
    /// given over.
    fn releases(&self, g: Guard) -> bool {
        g.overridable() && matches!(&self.approval, Fit::Valid(gs) if gs.contains(&g))
    }
    fn ready(&self) -> bool {
        self.dep_hold.is_none() && self.holds.iter().all(|h| self.releases(h.guard))
    }
    /// The first hold that actually blocks.
    fn blocking(&self) -> Option<&Hold> {
        self.holds.iter().find(|h| !self.releases(h.guard))
    }
    fn hold(&mut self, guard: Guard, reason: String) {
        if !self.holds.iter().any(|h| h.guard == guard) {
            self.holds.push(Hold { guard, reason });
        }
    }
}

/// Runs every guard over `actions` and sets each action's status, guard and reason.
/// Returns why source-health finds the read suspicious, if it does.
pub(crate) fn run(actions: &mut [Action], input: &GuardInput<'_>) -> Option<String> {
    // The latest approval per action id (the store keeps one; later ones replace).
    let approvals: FastMap<&ActionId, &Approval> = input.state.approvals.iter().map(|a| (&a.action_id, a)).collect();
    let mode = input.policy.deprovision;
    let mut slots: Vec<Slot> = actions
        .iter_mut()
        .map(|a| {
            let approval = match approvals.get(&a.id) {
                None => Fit::None,
                Some(ap) => {
                    a.fingerprint = a.fingerprint(mode);
                    if ap.expires_at <= input.now {
                        Fit::Expired(ap.expires_at)
                    } else if ap.fingerprint != a.fingerprint {
                        Fit::Changed {
                            legacy: ap.fingerprint.is_empty(),
                        }
                    } else {
                        Fit::Valid(ap.guards.clone())
                    }
                }
            };
            Slot {
                holds: Vec::new(),
                dep_hold: None,
                approval,
            }
        })
        .collect();

    let deps = dependency_positions(actions);
    self_identity(actions, &mut slots, input);
    identity_change(actions, &mut slots, input);
    pipeline_key(actions, &mut slots, input);
    mass_deprovision(actions, &mut slots, input);
    mass_team_removal(actions, &mut slots, input);
    let suspicious = source_health(actions, &mut slots, input);
    propagate(actions, &deps, &mut slots);
    seat_limit(actions, &mut slots, input);
    propagate(actions, &deps, &mut slots);
    last_admin(actions, &mut slots, input);
    propagate(actions, &deps, &mut slots);

    for (a, mut s) in actions.iter_mut().zip(slots) {
        let ready = s.ready();
        // Most severe first: what cannot be approved is what a human must fix first.
        s.holds.sort_by_key(|h| (h.guard.overridable(), h.guard));
        a.approved = ready && !s.holds.is_empty();
        a.status = if ready { Status::Ready } else { Status::Held };
        if ready {
            a.guard = None;
            a.held_reason = None;
        } else {
            // The first hold that actually blocks: one the approval releases does not.
            let blocking = s.blocking().or(s.dep_hold.as_ref()).or(s.holds.first());
            a.guard = blocking.map(|h| h.guard);
            a.held_reason = blocking.map(|h| match approval_note(&s) {
                Some(note) => format!("{}; {note}", h.reason),
                None => h.reason.clone(),
            });
            // A human may approve what is held: the approval binds to this.
            if a.fingerprint.is_empty() {
                a.fingerprint = a.fingerprint(mode);
            }
        }
        let mut holds = s.holds;
        if let Some(d) = s.dep_hold {
            holds.push(d);
        }
        a.holds = holds;
    }
    suspicious
}

/// Why a stored approval did not release a held action, for the plan to say instead of
/// silently holding.
fn approval_note(s: &Slot) -> Option<String> {
    match &s.approval {
        Fit::None => None,
        Fit::Expired(at) => Some(format!(
            "approval expired at {}: approve again to release it",
            at.format("%Y-%m-%dT%H:%M:%SZ")
        )),
        Fit::Changed { legacy: true } => Some(
            "approval no longer matches: it was recorded without what was reviewed (an older idsync); approve again".into(),
        ),
        Fit::Changed { legacy: false } => Some(
            "approval no longer matches: the change is not the one approved (another W&B user, role or deprovision mode); review and approve again".into(),
        ),
        Fit::Valid(gs) => {
            let new: Vec<&str> = s
                .holds
                .iter()
                .filter(|h| h.guard.overridable() && !gs.contains(&h.guard))
                .map(|h| h.guard.as_str())
                .collect();
            (!new.is_empty()).then(|| {
                let was: Vec<&str> = gs.iter().map(|g| g.as_str()).collect();
                format!(
                    "approval no longer matches: new guard {} (it was approved over {})",
                    new.join(", "),
                    if was.is_empty() { "no guard".to_string() } else { was.join(", ") }
                )
            })
        }
    }
}

/// For each action, the positions of the actions it depends on (resolved once).
fn dependency_positions(actions: &[Action]) -> Vec<Vec<usize>> {
    let index: FastMap<&ActionId, usize> = actions.iter().enumerate().map(|(i, a)| (&a.id, i)).collect();
    actions
        .iter()
        .map(|a| a.depends_on.iter().filter_map(|d| index.get(d).copied()).collect())
        .collect()
}

/// Holds dependents of held actions, to a fixpoint.
fn propagate(actions: &[Action], deps: &[Vec<usize>], slots: &mut [Slot]) {
    loop {
        let mut changed = false;
        for i in 0..actions.len() {
            if slots[i].dep_hold.is_some() || deps[i].is_empty() {
                continue;
            }
            let blocked = deps[i].iter().copied().find(|&j| !slots[j].ready());
            if let Some(j) = blocked {
                let dep = &actions[j];
                let guard = slots[j]
                    .blocking()
                    .map(|h| h.guard)
                    .or(slots[j].dep_hold.as_ref().map(|h| h.guard))
                    .unwrap_or(Guard::LastAdmin);
                let what = dep.user.as_ref().map(|u| u.to_string()).or(dep.team.clone()).unwrap_or_default();
                slots[i].dep_hold = Some(Hold {
                    guard,
                    reason: format!("depends on held action {} ({} {what})", dep.id, dep.kind),
                });
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn self_identity(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        if a.user.as_ref().is_some_and(|u| input.self_emails.contains(u)) {
            s.hold(
                Guard::SelfIdentity,
                "this is the identity idsync authenticates as (target.username): idsync never changes itself".into(),
            );
        }
    }
}

fn identity_change(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        if input.identity_pairs.contains(&a.id) {
            s.hold(
                Guard::IdentityChange,
                "the directory entry kept its anchor but changed email: migrate the W&B user by hand (change its email in W&B), or approve both actions of the pair to re-create".into(),
            );
        }
    }
}

fn pipeline_key(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    let owners = &input.policy.guards.pipeline_owners;
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        let Some(user) = &a.user else { continue };
        let entries: Vec<_> = owners.iter().filter(|o| &o.owner == user).collect();
        if entries.is_empty() {
            continue;
        }
        let covers_team = |team: &str| entries.iter().any(|o| o.team.as_deref().is_none_or(|t| t == team));
        let hit = match a.kind {
            ActionKind::DeprovisionUser => true,
            ActionKind::RemoveFromTeam => a.team.as_deref().is_some_and(covers_team),
            ActionKind::SetTeamRole => a.role.as_deref() == Some("viewer") && a.team.as_deref().is_some_and(covers_team),
            ActionKind::SetOrgRole => a.role.as_deref() == Some("viewer"),
            _ => false,
        };
        if hit {
            let names: Vec<String> = entries
                .iter()
                .map(|o| match (&o.name, &o.team) {
                    (Some(n), Some(t)) => format!("{n} in team {t}"),
                    (Some(n), None) => n.clone(),
                    (None, Some(t)) => format!("a pipeline in team {t}"),
                    (None, None) => "guards.pipeline_key_owners".into(),
                })
                .collect();
            s.hold(
                Guard::PipelineKey,
                format!("{user} owns API keys that pipelines use ({}): this change would break them; move the pipelines to a service account first", names.join(", ")),
            );
        }
    }
}

fn mass_deprovision(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    let g = &input.policy.guards;
    let n = actions.iter().filter(|a| a.kind == ActionKind::DeprovisionUser).count();
    if n == 0 {
        return;
    }
    // The base counts users this plan adds, so that it is the same on the next run after
    // they exist: a plan must not release on re-plan what it held now.
    let adds = actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::CreateUser | ActionKind::ReactivateUser))
        .count();
    let base = input.in_scope_active + adds;
    let reason = if n > g.max_deprovisions {
        Some(format!(
            "{n} deprovisions in one run exceed guards.max_deprovisions = {}",
            g.max_deprovisions
        ))
    } else if (n as u128) * 100 > (g.max_deprovision_percent as u128) * (base as u128) {
        Some(format!(
            "{n} deprovisions are more than guards.max_deprovision_percent = {}% of {base} in-scope users",
            g.max_deprovision_percent
        ))
    } else {
        None
    };
    if let Some(reason) = reason {
        for (a, s) in actions.iter().zip(slots.iter_mut()) {
            if a.kind == ActionKind::DeprovisionUser {
                s.hold(Guard::MassDeprovision, reason.clone());
            }
        }
    }
}

fn mass_team_removal(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    let max = input.policy.guards.max_team_removals;
    let mut per_team: BTreeMap<&str, usize> = BTreeMap::new();
    for a in actions.iter().filter(|a| a.kind == ActionKind::RemoveFromTeam) {
        *per_team.entry(a.team.as_deref().unwrap_or("")).or_default() += 1;
    }
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        if a.kind != ActionKind::RemoveFromTeam {
            continue;
        }
        let team = a.team.as_deref().unwrap_or("");
        let n = per_team.get(team).copied().unwrap_or(0);
        if n > max {
            s.hold(
                Guard::MassTeamRemoval,
                format!("{n} removals from team {team} in one run exceed guards.max_team_removals = {max}"),
            );
        }
    }
}

/// `now - window`, or the beginning of time when that does not fit: then every stored
/// read counts, which can only hold more.
fn window_start(now: DateTime<Utc>, window: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether `now` is more than `pct` percent below `largest`.
fn shrank(largest: usize, now: usize, pct: u32) -> bool {
    largest > now && ((largest - now) as u128) * 100 > (pct as u128) * (largest as u128)
}

/// Why the directory read as a whole looks wrong: empty, or more than
/// `max_source_shrink_percent` below the largest healthy read within the window (not just
/// the last one, so a directory that loses 9% a run still trips a 10% limit).
fn directory_suspicion(input: &GuardInput<'_>) -> Option<String> {
    if input.directory_people == 0 || input.usable_enabled == 0 {
        return Some("the directory read returned no usable people: refusing to remove anyone on an empty read".into());
    }
    let g = &input.policy.guards;
    let since = window_start(input.now, g.source_health_window);
    // Reads stamped after `now` (a clock set back) are recent too.
    let largest = input
        .state
        .healthy_reads
        .iter()
        .filter(|r| r.at >= since)
        .max_by_key(|r| (r.people, r.at))?;
    let now = input.usable_enabled;
    let pct = g.max_source_shrink_percent;
    shrank(largest.people, now, pct).then(|| {
        format!(
            "the directory shrank from {} to {now} enabled people (more than guards.max_source_shrink_percent = {pct}% below the largest healthy read within guards.source_health_window = {}, at {})",
            largest.people,
            HumanDuration(g.source_health_window),
            largest.at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    })
}

/// What a mapped group drives that takes something away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Drives<'a> {
    /// Removals from and demotions in this team (`policy.teams`).
    Team(&'a str),
    /// Org admin demotions (`policy.org_roles` with role admin).
    OrgDemotions,
}

impl<'a> Drives<'a> {
    /// What of this kind `a` takes away, if anything.
    fn of(a: &'a Action) -> Option<Drives<'a>> {
        if !a.is_reducing() {
            return None;
        }
        match a.kind {
            ActionKind::RemoveFromTeam | ActionKind::SetTeamRole => a.team.as_deref().map(Drives::Team),
            ActionKind::SetOrgRole => Some(Drives::OrgDemotions),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Drives::Team(t) => format!("policy.teams: team {t}"),
            Drives::OrgDemotions => "policy.org_roles: org admin".into(),
        }
    }
}

/// Each mapped group the directory has, with what it drives. `auto_add_group` drives no
/// removals (leaving it only stops creation), so it is tracked but never held over.
fn mapped_group_drives<'a>(input: &GuardInput<'a>) -> BTreeMap<&'a str, BTreeSet<Drives<'a>>> {
    let p = input.policy;
    let mut out: BTreeMap<&'a str, BTreeSet<Drives<'a>>> = BTreeMap::new();
    let mut add = |group: &str, d: Drives<'a>| {
        if let Some((g, _)) = input.mapped_groups.get_key_value(group) {
            out.entry(g.as_str()).or_default().insert(d);
        }
    };
    for r in &p.teams {
        add(&r.group, Drives::Team(&r.team));
    }
    for r in p.org_roles.iter().filter(|r| r.role == OrgRole::Admin) {
        add(&r.group, Drives::OrgDemotions);
    }
    out
}

/// Why each kind of reduction is suspicious, from the mapped groups that look wrong
/// (SPEC §4): a group that is empty, or more than `max_source_shrink_percent` below its
/// largest healthy read within the window, makes the removals and demotions it drives
/// suspicious. A group that drives none this run is left alone: nothing rests on it.
fn group_suspicions<'a>(actions: &'a [Action], input: &GuardInput<'a>) -> (BTreeMap<Drives<'a>, String>, Vec<String>) {
    // One pass over the actions: plans can be large and policies have many rules.
    let present: BTreeSet<Drives<'a>> = actions.iter().filter_map(Drives::of).collect();
    let mut out: BTreeMap<Drives<'a>, String> = BTreeMap::new();
    let mut reasons = Vec::new();
    if present.is_empty() {
        return (out, reasons);
    }
    let g = &input.policy.guards;
    let since = window_start(input.now, g.source_health_window);
    let recent: Vec<&HealthyRead> = input.state.healthy_reads.iter().filter(|r| r.at >= since).collect();
    let window = HumanDuration(g.source_health_window);
    let pct = g.max_source_shrink_percent;
    for (group, drives) in mapped_group_drives(input) {
        if drives.is_disjoint(&present) {
            continue;
        }
        let now = input.mapped_groups.get(group).copied().unwrap_or(0);
        let largest = recent.iter().filter_map(|r| r.groups.get(group).copied()).max();
        let uses: Vec<String> = drives.iter().map(Drives::describe).collect();
        let uses = uses.join(", ");
        let reason = match largest {
            Some(m) if shrank(m, now, pct) => format!(
                "mapped group {group} ({uses}) shrank from {m} to {now} members (more than guards.max_source_shrink_percent = {pct}% below its largest healthy read within guards.source_health_window = {window}): holding the removals and demotions it drives"
            ),
            None if now == 0 => format!(
                "mapped group {group} ({uses}) came back empty and has no healthy read within guards.source_health_window = {window} to compare with: holding the removals and demotions it drives"
            ),
            Some(_) if now == 0 => {
                format!("mapped group {group} ({uses}) came back empty: holding the removals and demotions it drives")
            }
            _ => continue,
        };
        for d in drives.into_iter().filter(|d| present.contains(d)) {
            // Several suspicious groups on one team: each reason is worth reading.
            out.entry(d)
                .and_modify(|r| {
                    r.push_str("; ");
                    r.push_str(&reason);
                })
                .or_insert_with(|| reason.clone());
        }
        reasons.push(reason);
    }
    (out, reasons)
}

/// Holds what a suspicious read would take away, and returns why the read is suspicious.
/// A suspicious directory holds every reducing action; a suspicious mapped group, what
/// it drives. Either way the read starts no tombstone clock, so a deprovision whose clock
/// this read would start is held too (a grace of 0s would otherwise remove on it).
fn source_health(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) -> Option<String> {
    let directory = directory_suspicion(input);
    let (groups, group_reasons) = group_suspicions(actions, input);
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        if let Some(reason) = &directory {
            if a.is_reducing() {
                s.hold(Guard::SourceHealth, reason.clone());
            }
        }
        if let Some(reason) = Drives::of(a).and_then(|d| groups.get(&d)) {
            s.hold(Guard::SourceHealth, reason.clone());
        }
    }
    let why: Vec<&str> = directory.iter().chain(&group_reasons).map(String::as_str).collect();
    if why.is_empty() {
        return None;
    }
    let why = why.join("; ");
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        let clock_started = a
            .user
            .as_ref()
            .and_then(|u| input.state.tombstones.get(u))
            .is_some_and(|t| t.since <= input.now);
        if a.kind == ActionKind::DeprovisionUser && !clock_started {
            s.hold(
                Guard::SourceHealth,
                format!(
                    "this read is suspicious and starts no tombstone clock, so it deprovisions nobody whose clock it would start ({why})"
                ),
            );
        }
    }
    Some(why)
}

fn seat_limit(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    let max = input.policy.guards.max_seats;
    if max == 0 {
        return;
    }
    let active = input.org.users.iter().filter(|u| u.holds_seat()).count();
    let mut free = max.saturating_sub(active);
    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        if !matches!(a.kind, ActionKind::CreateUser | ActionKind::ReactivateUser) || !s.ready() {
            continue;
        }
        if free > 0 {
            free -= 1;
        } else {
            s.hold(
                Guard::SeatLimit,
                format!("{active} active users and guards.max_seats = {max}: no seat left for this user"),
            );
        }
    }
}

fn last_admin(actions: &[Action], slots: &mut [Slot], input: &GuardInput<'_>) {
    let floors = &input.policy.guards;
    let users = &input.org.users;
    let by_id: BTreeMap<&str, &OrgUser> = users.iter().map(|u| (u.id.as_str(), u)).collect();

    // Counts after the promotions that will really happen (SPEC: promotions count first),
    // of admins W&B states (`admin`).
    let mut org_admins = admin::count_org_admins(users);
    let mut team_admins = admin::team_admins(users, input.managed_teams.iter().map(String::as_str));
    for (a, s) in actions.iter().zip(slots.iter()) {
        if !s.ready() {
            continue;
        }
        match a.kind {
            // Outside SaaS a reactivated user comes back with their roles: an admin again.
            ActionKind::ReactivateUser if input.policy.deployment != Deployment::Saas => {
                if let Some(u) = a.user_id.as_deref().and_then(|id| by_id.get(id)) {
                    if admin::states_org_admin(u) {
                        org_admins += 1;
                    }
                    for (t, c) in team_admins.iter_mut() {
                        if admin::states_team_admin(u, t) {
                            c.counted += 1;
                        } else if admin::has_unstated_role(u, t) {
                            c.unstated += 1;
                        }
                    }
                }
            }
            ActionKind::SetOrgRole if a.role.as_deref() == Some("admin") => org_admins += 1,
            ActionKind::AddToTeam | ActionKind::SetTeamRole if a.role.as_deref() == Some("admin") => {
                if let Some(c) = a.team.as_deref().and_then(|t| team_admins.get_mut(t)) {
                    c.counted += 1;
                }
            }
            _ => {}
        }
    }
    let uncounted = admin::uncounted_org_admins(users);

    for (a, s) in actions.iter().zip(slots.iter_mut()) {
        // Held actions are checked too, without counting them, so that a human sees
        // "last-admin" before approving another guard's hold on the same action.
        let ready = s.ready();
        let user = a.user_id.as_deref().and_then(|id| by_id.get(id)).copied();
        let loss = admin::admin_loss(a, user);
        if loss.is_empty() {
            continue;
        }
        match admin::floor_breach(&loss, org_admins, &team_admins, floors.min_org_admins, floors.min_team_admins) {
            Some(b) => s.hold(
                Guard::LastAdmin,
                breach_reason(b, floors.min_org_admins, floors.min_team_admins, uncounted),
            ),
            None if ready => {
                if loss.org_admin {
                    org_admins = org_admins.saturating_sub(1);
                }
                for t in &loss.team_admins {
                    if let Some(c) = team_admins.get_mut(t) {
                        c.counted = c.counted.saturating_sub(1);
                    }
                }
            }
            None => {}
        }
    }
}

/// Why `last-admin` holds an action, for the plan to show.
fn breach_reason(b: admin::Breach<'_>, min_org: usize, min_team: usize, uncounted: usize) -> String {
    match b {
        admin::Breach::Org { admins } => {
            let note = if uncounted > 0 {
                format!(
                    " ({uncounted} more admin(s) in W&B are not counted: service accounts, or users whose `active` W&B does not state)"
                )
            } else {
                String::new()
            };
            format!(
                "would leave {} active org admin(s); guards.min_org_admins = {min_org}{note}: add another admin in the directory's admin group first",
                admins.saturating_sub(1)
            )
        }
        admin::Breach::Team { team, admins } => format!(
            "would leave team {team} with {} admin(s); guards.min_team_admins = {min_team}: make someone else a team admin first",
            admins.saturating_sub(1)
        ),
        admin::Breach::TeamUnstated { team, admins, unstated } => format!(
            "W&B does not state the team roles of {unstated} member(s) of team {team} (no teamRoles), so guards.min_team_admins = {min_team} cannot be checked \
             (W&B states {admins} admin(s) there): W&B must state the team's admins first (a server that reports teamRoles)"
        ),
    }
}
