//! Executes a plan's ready actions against W&B (SPEC §5).
//!
//! Phases run in order; inside a phase independent actions run with bounded concurrency.
//! Every action is journaled before and after (state store and audit log), so a process
//! killed mid-apply resumes without repeating or losing an action. Before each action
//! that takes away an admin, the live admin count is re-read from W&B.
//!
//! An outcome idsync cannot know (SPEC §5: a timeout, a 5xx after retries, a dropped
//! connection) is `unknown`: its journal entry stays open and the next apply settles it
//! against its fresh read of W&B, exactly like an action a kill interrupted.
//!
//! Write order per action, and what resume makes of a crash between any two writes:
//! 1. journal `begin` (durable, with the audit log's length) — then the request is sent;
//! 2. audit `begin`;
//! 3. audit `end` (or, for an earlier unknown, `settle`) with the result;
//! 4. one journal commit: the entry ended (or marked unknown) with its ledger grant and
//!    used approval.
//!
//! Resume reads only the audit lines after each open entry's recorded offset (never the
//! whole log): a missing `begin` line is written; a final result already audited (crash
//! between 3 and 4) closes the entry with that result and no second line; `unknown`, or
//! nothing at all, is settled against W&B.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use tokio::task::JoinSet;

use crate::model::{DirectorySnapshot, Email, OrgRole, OrgSnapshot, TeamRole};
use crate::plan::{admin, Action, ActionId, ActionKind, Plan, Policy, RestoreSnapshot};
use crate::state::{AuditLog, AuditRecord, Outcome, StateBackend, StateError};
use crate::wandb::{TargetError, WandbClient};

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    Applied,
    /// The change was already in W&B (resumed after a crash, or 409 "exists").
    AlreadyDone,
    Failed(String),
    /// Sent, but W&B's answer never said whether it was applied (SPEC §5). Not a success:
    /// the next run settles it against W&B.
    Unknown(String),
    /// Not attempted: a dependency failed, or the live admin re-check refused it.
    Skipped(String),
    /// Begun by an interrupted apply and, as a fresh read of W&B shows, never landed.
    NotApplied(String),
}

impl ActionResult {
    pub fn ok(&self) -> bool {
        matches!(self, ActionResult::Applied | ActionResult::AlreadyDone)
    }

    /// The result as the audit log and `idsync_actions_applied_total{result}` name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionResult::Applied | ActionResult::AlreadyDone => "ok",
            ActionResult::Failed(_) => "error",
            ActionResult::Unknown(_) => "unknown",
            ActionResult::Skipped(_) => "skipped",
            ActionResult::NotApplied(_) => "not_applied",
        }
    }
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub results: Vec<(Action, ActionResult)>,
    /// HA: why the [`Gate`] closed and the apply stopped (this node lost, or could not
    /// renew, the leader lease). A run with this set is a failure.
    pub gate_closed: Option<String>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|(_, r)| matches!(r, ActionResult::Failed(_))).count()
    }
    pub fn unknown(&self) -> usize {
        self.results.iter().filter(|(_, r)| matches!(r, ActionResult::Unknown(_))).count()
    }
    pub fn skipped(&self) -> usize {
        self.results.iter().filter(|(_, r)| matches!(r, ActionResult::Skipped(_))).count()
    }
    pub fn not_applied(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, r)| matches!(r, ActionResult::NotApplied(_)))
            .count()
    }
    pub fn applied(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.ok()).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// Where the shell's lower layers report progress: the daemon's systemd watchdog, a
/// progress bar. They report through it and never reach up into the daemon or the CLI.
pub trait Progress: Sync {
    /// One action ended (applied, failed, skipped, not applied).
    fn action_done(&self, _a: &Action, _r: &ActionResult) {}
    /// A long step finished (the reads): the run is alive.
    fn alive(&self) {}
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {}

/// Whether this node may send a write to W&B now: with `[ha]`, it holds the leader lease
/// for longer than a request can take. The daemon's HA layer implements it; apply checks
/// it before beginning each action and again as the last thing before sending it, and
/// never knows about leases (the sink pattern, like [`Progress`]).
pub trait Gate: Send + Sync {
    /// `Err(why)` when this node must not write (it stops applying).
    fn check(&self) -> Result<(), String>;
    /// The node's name (`[ha] node_name`), stamped on its audit lines; `None` without HA.
    fn node(&self) -> Option<String> {
        None
    }
}

/// A single-node run: always open.
pub struct AlwaysOpen;

impl Gate for AlwaysOpen {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Who writes an audit line: the actor, and with HA the node.
struct Who {
    actor: String,
    node: Option<String>,
}

/// What the executor needs besides the plan.
pub struct ApplyContext<'a> {
    pub client: &'a WandbClient,
    pub store: &'a mut dyn StateBackend,
    pub audit: &'a mut AuditLog,
    pub policy: &'a Policy,
    pub directory: &'a DirectorySnapshot,
    pub org: &'a OrgSnapshot,
    pub run_id: String,
    pub actor: String,
    pub max_concurrency: usize,
    /// Stop taking new actions when this becomes true (SIGTERM in the daemon).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    pub progress: &'a dyn Progress,
    /// HA: closed once this node may no longer write to W&B ([`AlwaysOpen`] otherwise).
    pub gate: Arc<dyn Gate>,
}

/// How an action ended, and any new W&B user or team id it produced.
type Executed = (ActionResult, Option<(Email, String)>, Option<(String, String)>);

/// Username and display name of each directory person, for creates.
type People = BTreeMap<Email, (String, String)>;

/// Ids known while applying: W&B ids of users and teams, including ones just created.
#[derive(Debug, Clone, Default)]
struct Ids {
    users: BTreeMap<Email, String>,
    teams: BTreeMap<String, String>,
}

/// Applies the ready actions of `plan`, resuming any journaled-but-unfinished actions
/// from an earlier, interrupted apply first.
pub async fn apply(plan: &Plan, ctx: ApplyContext<'_>) -> Result<ApplyReport, ApplyError> {
    let ApplyContext {
        client,
        store,
        audit,
        policy,
        directory,
        org,
        run_id,
        actor,
        max_concurrency,
        stop,
        progress,
        gate,
    } = ctx;
    let actor = Who { node: gate.node(), actor };
    // The gate before every attempt of every write, retries included: a leader paused
    // mid-request never retries it after losing the lease.
    let guard = gate.clone();
    let guarded = client.with_write_guard(Arc::new(move || guard.check()));
    let client = &guarded;
    // Approvals are used up when their action is applied, even one that turned ready
    // without needing it: left in place, it would re-arm on a later hold (SPEC §4).
    let approvals: BTreeSet<ActionId> = store.approvals()?.into_iter().map(|a| a.action_id).collect();
    let mut books = Books {
        store,
        audit,
        run_id,
        who: actor,
        approvals,
        snapshots: restore_snapshots(org, plan),
        progress,
        resumed: BTreeMap::new(),
        failed: BTreeSet::new(),
        report: ApplyReport::default(),
    };

    // Resume: settle what earlier runs left open, reading only their audit lines.
    let planned: BTreeSet<&ActionId> = plan.ready().map(|a| &a.id).collect();
    let open = books.store.journal_incomplete()?;
    let keys: BTreeSet<(String, String)> = open.iter().map(|e| (e.run_id.clone(), e.action.id.to_string())).collect();
    // Entries from before the journal recorded offsets are read from the start, once.
    let from = open.iter().map(|e| e.audit_at.unwrap_or(0)).min().unwrap_or(0);
    let steps = books.audit.steps_since(from, &keys)?;
    for entry in open {
        let key = (entry.run_id.clone(), entry.action.id.to_string());
        let st = steps.get(&key).cloned().unwrap_or_default();
        if !st.begun {
            // The crash came between the journal entry and its audit line.
            books
                .audit
                .append(&audit_record(&entry.run_id, &books.who, &entry.action, "begin", None))?;
        }
        match resume_step(&st, entry.unknown.is_some(), planned.contains(&entry.action.id)) {
            Resume::Close { ok, result } => {
                // Its final result is audited; the crash came before the journal commit.
                let outcome = Outcome {
                    ok,
                    detail: format!("ended before an interruption; the audit log holds its result ({result})"),
                };
                // The shared audit row (PostgreSQL) went with the commit the crash
                // prevented: it is written again, saying what the file's line says.
                let mut rec = audit_record(&entry.run_id, &books.who, &entry.action, "end", None);
                rec.result = Some(result);
                rec.detail = Some(outcome.detail.clone());
                // One commit, as in `finish`: never an ended entry without its effects.
                let (approvals, snapshots) = (&books.approvals, &books.snapshots);
                books.store.atomically(|s| {
                    s.journal_end(&entry.run_id, &entry.action.id, &outcome)?;
                    s.record_audit(&rec)?;
                    record_effects(s, approvals, snapshots, &entry.action, ok)
                })?;
            }
            Resume::Rerun => {
                books.resumed.insert(entry.action.id.clone(), entry.run_id.clone());
            }
            Resume::Settle { unknown } => {
                // Only the fresh snapshot can tell (SPEC §5). `ok` only when W&B shows the
                // change; otherwise it was not applied, its tombstone, approval and the
                // ledger stay, and the plan (this one, if it still wants it) applies it
                // afresh.
                let event = if unknown { "settle" } else { "end" };
                let (res, detail) = if crate::plan::org_shows(org, &entry.action) {
                    let how = if unknown { "settled" } else { "confirmed on resume" };
                    (ActionResult::AlreadyDone, format!("{how}: W&B shows this change"))
                } else {
                    let why = if unknown {
                        "its outcome was unknown and W&B does not show this change; the next plan decides whether it is still needed"
                    } else {
                        "interrupted before it landed: W&B does not show this change; the next plan decides whether it is still needed"
                    };
                    (ActionResult::NotApplied(why.into()), format!("not applied: {why}"))
                };
                finish(
                    books.store,
                    books.audit,
                    (&books.approvals, &books.snapshots),
                    &entry.run_id,
                    &books.who,
                    &entry.action,
                    event,
                    &res,
                    &detail,
                )?;
                books.report.results.push((entry.action, res));
            }
        }
    }

    let mut ids = Ids::default();
    for u in &org.users {
        if let Some(e) = Email::parse(&u.email) {
            ids.users.entry(e).or_insert_with(|| u.id.clone());
        }
    }
    for t in &org.teams {
        ids.teams.insert(t.name.clone(), t.id.clone());
    }
    let people: Arc<People> = Arc::new(
        directory
            .people
            .iter()
            .filter_map(|p| Some((Email::parse(p.email.as_deref()?)?, (p.username.clone(), p.display_name.clone()))))
            .collect(),
    );

    let ready: Vec<&Action> = plan.ready().collect();
    let phases: BTreeSet<u8> = ready.iter().map(|a| a.phase()).collect();
    for phase in phases {
        let batch: Vec<&Action> = ready.iter().copied().filter(|a| a.phase() == phase).collect();
        // Admin-reducing actions run one at a time, each after a live re-check.
        let (serial, parallel): (Vec<&Action>, Vec<&Action>) = batch.into_iter().partition(|a| takes_admin(a, org, policy));
        let mut set: JoinSet<(Action, Executed)> = JoinSet::new();
        let mut queue = parallel.into_iter();
        loop {
            while set.len() < max_concurrency.max(1) {
                let Some(a) = queue.next() else { break };
                if stopped(&stop) || closed(&*gate, &mut books.report) {
                    break;
                }
                if let Some(why) = blocked_by(a, &books.failed) {
                    books.skip(a, why)?;
                    continue;
                }
                books.begin(a)?;
                let (client, ids, people, policy, a, gate) =
                    (client.clone(), ids.clone(), people.clone(), policy.clone(), a.clone(), gate.clone());
                set.spawn(async move {
                    let done = execute(&client, &ids, &people, &policy, &a, &*gate).await;
                    (a, done)
                });
            }
            let Some(joined) = set.join_next().await else { break };
            let (a, (res, new_user, new_team)) = match joined {
                Ok(v) => v,
                // A panicking task is a bug; the action stays journaled as begun and is
                // re-checked on the next apply.
                Err(_) => continue,
            };
            if let Some((e, id)) = new_user {
                ids.users.insert(e, id);
            }
            if let Some((t, id)) = new_team {
                ids.teams.insert(t, id);
            }
            books.settle(a, res)?;
        }
        for a in serial {
            if stopped(&stop) || closed(&*gate, &mut books.report) {
                break;
            }
            if let Some(why) = blocked_by(a, &books.failed) {
                books.skip(a, why)?;
                continue;
            }
            if let Some(why) = live_admin_check(client, policy, a).await {
                books.skip(a, why)?;
                continue;
            }
            books.begin(a)?;
            let (res, _, _) = execute(client, &ids, &people, policy, a, &*gate).await;
            books.settle(a.clone(), res)?;
        }
        if stopped(&stop) || books.report.gate_closed.is_some() {
            break;
        }
    }
    // A gate that closed after the last action began still fails the run.
    closed(&*gate, &mut books.report);
    // A deprovisioned user's tombstone has served its purpose.
    let Books { store, report, .. } = books;
    let gone: BTreeSet<&Email> = report
        .results
        .iter()
        .filter(|(a, r)| a.kind == ActionKind::DeprovisionUser && r.ok())
        .filter_map(|(a, _)| a.user.as_ref())
        .collect();
    if !gone.is_empty() {
        let keep: Vec<_> = store.tombstones()?.into_iter().filter(|t| !gone.contains(&t.user)).collect();
        store.replace_tombstones(&keep)?;
    }
    Ok(report)
}

/// What resume does with one open journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    /// Its final result is already audited (the crash came between the audit line and
    /// the journal commit): close the entry with it, writing no second line.
    Close { ok: bool, result: String },
    /// Interrupted before any result and still in the ready plan: run it now under its
    /// original journal entry, so the audit log holds one begin and one end.
    Rerun,
    /// Settle against the fresh snapshot: with a `settle` line after an `unknown` end,
    /// else with the `end` line an interrupted action never got.
    Settle { unknown: bool },
}

/// Decides from the entry's own audit lines (`steps`), whether the journal marked it
/// unknown, and whether the fresh plan has it ready. Pure.
fn resume_step(steps: &crate::state::Steps, marked_unknown: bool, planned: bool) -> Resume {
    match steps.last.as_deref() {
        // Audit lines come before the journal writes: an `unknown` end is unknown even when
        // the crash came before the journal's mark, and a later final line (a `settle`
        // whose commit a crash prevented) decides even when the journal still says unknown.
        Some("unknown") => Resume::Settle { unknown: true },
        Some(result) => Resume::Close {
            ok: result == "ok",
            result: result.to_string(),
        },
        None if marked_unknown => Resume::Settle { unknown: true },
        None if planned => Resume::Rerun,
        None => Resume::Settle { unknown: false },
    }
}

fn stopped(stop: &Option<tokio::sync::watch::Receiver<bool>>) -> bool {
    stop.as_ref().is_some_and(|s| *s.borrow())
}

/// Whether the gate has closed (noting why, once): no further action begins.
fn closed(gate: &dyn Gate, report: &mut ApplyReport) -> bool {
    if report.gate_closed.is_some() {
        return true;
    }
    match gate.check() {
        Ok(()) => false,
        Err(why) => {
            tracing::warn!(reason = %why, "apply stops: this node may no longer write to W&B");
            report.gate_closed = Some(why);
            true
        }
    }
}

fn blocked_by(a: &Action, failed: &BTreeSet<ActionId>) -> Option<String> {
    a.depends_on
        .iter()
        .find(|d| failed.contains(*d))
        .map(|d| format!("not attempted: action {d} it depends on did not succeed (or its outcome is unknown)"))
}

/// Whether the action can lower an org admin count or that of a team the policy maps:
/// the same definition the `last-admin` guard uses ([`admin::admin_loss`]).
fn takes_admin(a: &Action, org: &OrgSnapshot, policy: &Policy) -> bool {
    let user = a.user_id.as_deref().and_then(|id| org.users.iter().find(|u| u.id == id));
    admin::admin_loss(a, user).touches(|t| policy.teams.iter().any(|r| r.team == t))
}

/// Re-reads W&B before an admin-reducing action and counts its admins with the guard's own
/// definition ([`admin`]), the user as W&B has them now. `Some(reason)` refuses.
async fn live_admin_check(client: &WandbClient, policy: &Policy, a: &Action) -> Option<String> {
    // Users and teams: team roles W&B does not state show only through /Groups.
    let live = match client.snapshot().await {
        Ok(o) => o,
        Err(e) => return Some(format!("refused: could not re-check the live admin counts ({e})")),
    };
    let user = a.user_id.as_deref().and_then(|id| live.users.iter().find(|u| u.id == id));
    let loss = admin::admin_loss(a, user);
    let teams: BTreeSet<&str> = policy.teams.iter().map(|r| r.team.as_str()).collect();
    let org_admins = admin::count_org_admins(&live.users);
    let team_admins = admin::team_admins(&live.users, teams.iter().copied());
    let (floor, tfloor) = (policy.guards.min_org_admins, policy.guards.min_team_admins);
    let breach = admin::floor_breach(&loss, org_admins, &team_admins, floor, tfloor)?;
    Some(match breach {
        admin::Breach::Org { admins } => format!(
            "refused by the live admin re-check: W&B has {admins} active org admin(s) now and guards.min_org_admins = {floor}"
        ),
        admin::Breach::Team { team, admins } => format!(
            "refused by the live admin re-check: team {team} has {admins} admin(s) now and guards.min_team_admins = {tfloor}"
        ),
        admin::Breach::TeamUnstated { team, admins, unstated } => format!(
            "refused by the live admin re-check: team {team} has {admins} stated admin(s) now and W&B does not state the roles of {unstated} member(s), so guards.min_team_admins = {tfloor} cannot be checked"
        ),
    })
}

/// Runs one action. Returns the result and any new W&B id it produced. The gate is the
/// last check before the request is sent: closed, nothing is sent.
async fn execute(client: &WandbClient, ids: &Ids, people: &People, policy: &Policy, a: &Action, gate: &dyn Gate) -> Executed {
    if let Err(why) = gate.check() {
        return (ActionResult::NotApplied(format!("not sent: {why}")), None, None);
    }
    let user_id = || -> Result<String, String> {
        a.user_id
            .clone()
            .or_else(|| a.user.as_ref().and_then(|e| ids.users.get(e).cloned()))
            .ok_or_else(|| format!("no W&B id known for {}", a.user.as_ref().map(Email::as_str).unwrap_or("?")))
    };
    let team_id = || -> Result<String, String> {
        let t = a.team.as_deref().unwrap_or_default();
        ids.teams.get(t).cloned().ok_or_else(|| format!("no W&B team named {t}"))
    };
    let role = a.role.as_deref().unwrap_or("member");
    let fail = from_error;
    let (res, new_user, new_team) = match a.kind {
        ActionKind::CreateTeam => {
            let name = a.team.clone().unwrap_or_default();
            match client.create_team(&name).await {
                Ok(t) => (ActionResult::Applied, None, Some((name, t.id))),
                Err(e) => (fail(e), None, None),
            }
        }
        ActionKind::CreateUser => {
            let Some(email) = a.user.clone() else {
                return (ActionResult::Failed("create_user without an email".into()), None, None);
            };
            let (username, display) = people
                .get(&email)
                .map(|(u, d)| (u.as_str(), d.as_str()))
                .unwrap_or((email.as_str(), ""));
            match client.create_user(&email, username, display, &[]).await {
                Ok(u) => (ActionResult::Applied, Some((email, u.id)), None),
                Err(e) => (fail(e), None, None),
            }
        }
        ActionKind::ReactivateUser => match (user_id(), a.user.as_ref()) {
            (Ok(id), Some(email)) => {
                let username = people.get(email).map(|p| p.0.as_str()).unwrap_or(email.as_str());
                match client.reactivate_user(&id, email, username).await {
                    Ok(()) => (ActionResult::Applied, None, None),
                    Err(e) => (fail(e), None, None),
                }
            }
            (Err(e), _) => (ActionResult::Failed(e), None, None),
            (_, None) => (ActionResult::Failed("reactivate_user without an email".into()), None, None),
        },
        ActionKind::SetOrgRole => match user_id() {
            Ok(id) => to_result(client.set_org_role(&id, &OrgRole::parse(role)).await),
            Err(e) => (ActionResult::Failed(e), None, None),
        },
        ActionKind::AddToTeam => match (user_id(), team_id()) {
            (Ok(uid), Ok(tid)) => {
                let team = a.team.clone().unwrap_or_default();
                let r = TeamRole::new(role);
                // New members get the default team role; set any other afterwards. When
                // only the add landed, W&B has the member: not a plain `error` (which says
                // nothing changed) but unknown, settled next run by the membership, the
                // role left to that plan's `set_team_role`.
                match client.add_to_team(&tid, &uid).await {
                    Ok(()) if r != TeamRole::member() => match client.set_team_role(&uid, &team, &r).await {
                        Err(e) if !e.is_outcome_unknown() => (
                            ActionResult::Unknown(format!(
                                "added to team {team}, but setting its team role {role} failed ({e}); the next run settles the add against W&B and plans the role"
                            )),
                            None,
                            None,
                        ),
                        other => to_result(other),
                    },
                    other => to_result(other),
                }
            }
            (Err(e), _) | (_, Err(e)) => (ActionResult::Failed(e), None, None),
        },
        ActionKind::SetTeamRole => match user_id() {
            Ok(uid) => to_result(
                client
                    .set_team_role(&uid, a.team.as_deref().unwrap_or_default(), &TeamRole::new(role))
                    .await,
            ),
            Err(e) => (ActionResult::Failed(e), None, None),
        },
        ActionKind::RemoveFromTeam => match (user_id(), team_id()) {
            (Ok(uid), Ok(tid)) => to_result(client.remove_from_team(&tid, &uid).await),
            (Err(e), _) | (_, Err(e)) => (ActionResult::Failed(e), None, None),
        },
        ActionKind::DeprovisionUser => match user_id() {
            Ok(uid) => to_result(client.deprovision(&uid, policy.deprovision).await),
            Err(e) => (ActionResult::Failed(e), None, None),
        },
    };
    (res, new_user, new_team)
}

fn to_result(r: Result<(), TargetError>) -> Executed {
    match r {
        Ok(()) => (ActionResult::Applied, None, None),
        Err(e) => (from_error(e), None, None),
    }
}

/// A failed request: `unknown` when W&B may have applied it (the client's typed
/// classification, [`TargetError::is_outcome_unknown`]), else a definite `error`.
fn from_error(e: TargetError) -> ActionResult {
    if e.is_outcome_unknown() {
        ActionResult::Unknown(e.to_string())
    } else {
        ActionResult::Failed(e.to_string())
    }
}

fn audit_record(run_id: &str, who: &Who, a: &Action, event: &str, result: Option<&ActionResult>) -> AuditRecord {
    AuditRecord {
        ts: Utc::now(),
        run_id: run_id.to_string(),
        actor: who.actor.clone(),
        node: who.node.clone(),
        event: event.to_string(),
        action_id: a.id.to_string(),
        kind: a.kind.as_str().to_string(),
        user: a.user.as_ref().map(|u| u.to_string()),
        team: a.team.clone(),
        role: a.role.clone(),
        from: a.from.clone(),
        to: a.to.clone(),
        reason: a.reason.clone(),
        result: result.map(|r| r.as_str().to_string()),
        detail: result.map(describe),
        ..AuditRecord::default()
    }
}

pub fn describe(r: &ActionResult) -> String {
    match r {
        ActionResult::Applied => "applied".into(),
        ActionResult::AlreadyDone => "already done".into(),
        ActionResult::Failed(e) => format!("failed: {e}"),
        ActionResult::Unknown(e) => format!("outcome unknown: {e}"),
        ActionResult::Skipped(e) => format!("skipped: {e}"),
        ActionResult::NotApplied(e) => format!("not applied: {e}"),
    }
}

/// The apply's bookkeeping: journal, audit log and report, kept in step for every action.
struct Books<'a> {
    store: &'a mut dyn StateBackend,
    audit: &'a mut AuditLog,
    run_id: String,
    who: Who,
    /// Action ids with a stored approval, used up when the action succeeds.
    approvals: BTreeSet<ActionId>,
    /// What each person a deprovision of this plan removes has now, stored when it lands.
    snapshots: BTreeMap<ActionId, RestoreSnapshot>,
    progress: &'a dyn Progress,
    /// Actions resumed from an interrupted apply, with the run that began them.
    resumed: BTreeMap<ActionId, String>,
    /// Actions that did not succeed; their dependents are skipped.
    failed: BTreeSet<ActionId>,
    report: ApplyReport,
}

impl Books<'_> {
    /// Journals the start of an action, unless a resumed journal entry already did.
    fn begin(&mut self, a: &Action) -> Result<(), ApplyError> {
        if self.resumed.contains_key(&a.id) {
            return Ok(());
        }
        let at = self.audit.end_offset()?;
        let rec = audit_record(&self.run_id, &self.who, a, "begin", None);
        // The entry and its shared audit row (PostgreSQL) at once, then the local line.
        self.store.atomically(|s| -> Result<(), ApplyError> {
            s.journal_begin(&self.run_id, a, at)?;
            Ok(s.record_audit(&rec)?)
        })?;
        // Synced with the end line (issue 14: two syncs per action, not four).
        self.audit.append_unsynced(&rec)?;
        Ok(())
    }

    /// Journals the end of an action (under the run that began it) and reports it.
    fn settle(&mut self, a: Action, res: ActionResult) -> Result<(), ApplyError> {
        let run = self.resumed.get(&a.id).unwrap_or(&self.run_id).clone();
        finish(
            self.store,
            self.audit,
            (&self.approvals, &self.snapshots),
            &run,
            &self.who,
            &a,
            "end",
            &res,
            &describe(&res),
        )?;
        // Progress (the daemon's systemd watchdog: a stuck apply stops beating).
        self.progress.action_done(&a, &res);
        if !res.ok() {
            self.failed.insert(a.id.clone());
        }
        self.report.results.push((a, res));
        Ok(())
    }

    /// A skipped action never reached W&B: it is audited, not journaled.
    fn skip(&mut self, a: &Action, why: String) -> Result<(), ApplyError> {
        let res = ActionResult::Skipped(why);
        let mut rec = audit_record(&self.run_id, &self.who, a, "skip", Some(&res));
        rec.result = Some("skipped".into());
        self.audit.append(&rec)?;
        self.store.record_audit(&rec)?;
        self.progress.action_done(a, &res);
        self.failed.insert(a.id.clone());
        self.report.results.push((a.clone(), res));
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    store: &mut dyn StateBackend,
    audit: &mut AuditLog,
    (approvals, snapshots): (&BTreeSet<ActionId>, &BTreeMap<ActionId, RestoreSnapshot>),
    run_id: &str,
    actor: &Who,
    a: &Action,
    event: &str,
    res: &ActionResult,
    detail: &str,
) -> Result<(), ApplyError> {
    // The audit line goes first: a crash between the two writes leaves the journal
    // entry open, and resume finds the line after the entry's offset and closes it
    // without a second one (see `apply`).
    let mut rec = audit_record(run_id, actor, a, event, Some(res));
    rec.detail = Some(detail.to_string());
    audit.append(&rec)?;
    if let ActionResult::Unknown(why) = res {
        // Open until a read of W&B settles it; nothing to record as done yet. A deprovision
        // that may have landed keeps its restore snapshot now: once settled, the person is
        // gone from every later snapshot (if it did not land, a later one replaces it).
        return store.atomically(|store| -> Result<(), ApplyError> {
            store.journal_unknown(run_id, &a.id, why)?;
            if let Some(snap) = snapshots.get(&a.id).filter(|_| a.kind == ActionKind::DeprovisionUser) {
                store.record_restore_snapshot(&RestoreSnapshot {
                    taken_at: Utc::now(),
                    ..snap.clone()
                })?;
            }
            Ok(store.record_audit(&rec)?)
        });
    }
    // The outcome and what it leaves behind (ledger, used approval) in one commit, never an
    // ended entry without its effects (a failure leaves the entry open for resume to
    // settle). Lazily durable: the audit line above is fsynced, so if a power loss takes
    // this commit, resume finds that line and closes the entry with the same effects. A
    // deprovision's commit stays durable: its restore snapshot is not in the audit line.
    let durable = a.kind == ActionKind::DeprovisionUser;
    store.atomically_with(durable, |store| {
        store.journal_end(
            run_id,
            &a.id,
            &Outcome {
                ok: res.ok(),
                detail: detail.to_string(),
            },
        )?;
        store.record_audit(&rec)?;
        record_effects(store, approvals, snapshots, a, res.ok())
    })
}

/// For each ready deprovision, what its person has in the snapshot this apply read: their
/// org role and every team with its role, managed or not (restore on return and undo put
/// it back). `taken_at` is set when the deprovision lands.
fn restore_snapshots(org: &OrgSnapshot, plan: &Plan) -> BTreeMap<ActionId, RestoreSnapshot> {
    plan.ready()
        .filter(|a| a.kind == ActionKind::DeprovisionUser)
        .filter_map(|a| {
            let email = a.user.as_ref()?;
            let u = org
                .users
                .iter()
                .find(|u| a.user_id.as_deref() == Some(u.id.as_str()))
                .or_else(|| org.users.iter().find(|u| Email::parse(&u.email).as_ref() == Some(email)))?;
            Some((
                a.id.clone(),
                RestoreSnapshot {
                    user: email.clone(),
                    anchor: None,
                    taken_at: Utc::now(),
                    org_role: u.org_role.as_str().to_string(),
                    teams: u.teams.iter().map(|(t, r)| (t.clone(), r.as_str().to_string())).collect(),
                },
            ))
        })
        .collect()
}

/// What the state store keeps of a succeeded action: ledger grants, used approvals and,
/// for a deprovision, what the person had (in the same commit as its journal end).
fn record_effects(
    store: &mut dyn StateBackend,
    approvals: &BTreeSet<ActionId>,
    snapshots: &BTreeMap<ActionId, RestoreSnapshot>,
    a: &Action,
    ok: bool,
) -> Result<(), ApplyError> {
    if ok {
        if let Some(snap) = snapshots.get(&a.id).filter(|_| a.kind == ActionKind::DeprovisionUser) {
            let snap = RestoreSnapshot {
                taken_at: Utc::now(),
                ..snap.clone()
            };
            store.record_restore_snapshot(&snap)?;
        }
        if let (Some(u), Some(t)) = (&a.user, &a.team) {
            match a.kind {
                ActionKind::AddToTeam => store.ledger_grant(u, t)?,
                ActionKind::RemoveFromTeam => store.ledger_revoke(u, t)?,
                _ => {}
            }
        }
        if a.approved || approvals.contains(&a.id) {
            store.consume_approval(&a.id)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Steps;

    fn steps(begun: bool, last: Option<&str>) -> Steps {
        Steps {
            begun,
            last: last.map(str::to_string),
        }
    }

    #[test]
    fn resume_closes_what_is_audited_and_settles_the_rest_against_w_and_b() {
        let close = |ok: bool, r: &str| Resume::Close { ok, result: r.into() };
        // A final result audited before the crash closes the entry, planned or not.
        for planned in [false, true] {
            assert_eq!(resume_step(&steps(true, Some("ok")), false, planned), close(true, "ok"));
            assert_eq!(resume_step(&steps(true, Some("error")), false, planned), close(false, "error"));
            assert_eq!(
                resume_step(&steps(true, Some("not_applied")), false, planned),
                close(false, "not_applied")
            );
        }
        // Nothing audited: rerun when still wanted, else settle with the missing end.
        assert_eq!(resume_step(&steps(true, None), false, true), Resume::Rerun);
        assert_eq!(resume_step(&steps(false, None), false, true), Resume::Rerun);
        assert_eq!(resume_step(&steps(true, None), false, false), Resume::Settle { unknown: false });
        // Unknown, by the journal or by the audit line a crash kept from the journal: always
        // settled against W&B first, even when the plan wants it (never rerun unchecked).
        for planned in [false, true] {
            assert_eq!(
                resume_step(&steps(true, Some("unknown")), false, planned),
                Resume::Settle { unknown: true }
            );
            assert_eq!(
                resume_step(&steps(true, Some("unknown")), true, planned),
                Resume::Settle { unknown: true }
            );
            assert_eq!(resume_step(&steps(true, None), true, planned), Resume::Settle { unknown: true });
        }
        // A settle line already written (crash before its journal commit) closes the entry
        // the journal still calls unknown: no second settle line.
        for planned in [false, true] {
            assert_eq!(resume_step(&steps(true, Some("ok")), true, planned), close(true, "ok"));
            assert_eq!(
                resume_step(&steps(true, Some("not_applied")), true, planned),
                close(false, "not_applied")
            );
        }
    }

    #[test]
    fn only_an_unknown_client_error_is_an_unknown_result() {
        let http = |status| TargetError::Http {
            op: "PATCH /Groups/g".into(),
            status,
            detail: "x".into(),
        };
        let unknown = TargetError::OutcomeUnknown {
            op: "PATCH /Groups/g".into(),
            last: Box::new(http(500)),
        };
        assert!(matches!(from_error(unknown), ActionResult::Unknown(_)));
        for e in [http(400), http(500), TargetError::Refused("no".into())] {
            assert!(matches!(from_error(e), ActionResult::Failed(_)));
        }
        let r = ActionResult::Unknown("x".into());
        assert!(!r.ok(), "unknown is not success");
        assert_eq!(r.as_str(), "unknown");
    }
}
