//! Executes a plan's ready actions against W&B (SPEC §5).
//!
//! Phases run in order; inside a phase independent actions run with bounded concurrency.
//! Every action is journaled before and after (state store and audit log), so a process
//! killed mid-apply resumes without repeating or losing an action. Before each action
//! that takes away an admin, the live admin count is re-read from W&B.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use tokio::task::JoinSet;

use crate::model::{DirectorySnapshot, Email, OrgRole, OrgSnapshot, TeamRole};
use crate::plan::{admin, Action, ActionId, ActionKind, Plan, Policy};
use crate::state::{AuditLog, AuditRecord, Outcome, StateBackend, StateError};
use crate::wandb::{TargetError, WandbClient};

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    Applied,
    /// The change was already in W&B (resumed after a crash, or 409 "exists").
    AlreadyDone,
    Failed(String),
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
            ActionResult::Skipped(_) => "skipped",
            ActionResult::NotApplied(_) => "not_applied",
        }
    }
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub results: Vec<(Action, ActionResult)>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|(_, r)| matches!(r, ActionResult::Failed(_))).count()
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
    } = ctx;
    // Approvals are used up when their action is applied, even one that turned ready
    // without needing it: left in place, it would re-arm on a later hold (SPEC §4).
    let approvals: BTreeSet<ActionId> = store.approvals()?.into_iter().map(|a| a.action_id).collect();
    let mut books = Books {
        store,
        audit,
        run_id,
        actor,
        approvals,
        progress,
        resumed: BTreeMap::new(),
        failed: BTreeSet::new(),
        report: ApplyReport::default(),
    };

    // Resume: an action begun earlier and not ended either landed (then the fresh plan no
    // longer contains it) or did not (then it is in the plan and runs now, under its
    // original journal entry, so the audit log holds it once).
    let planned: BTreeSet<&ActionId> = plan.ready().map(|a| &a.id).collect();
    let incomplete = books.store.journal_incomplete()?;
    // Ends the audit log already holds (a crash came between the two writes of `finish`).
    let audited: BTreeMap<(String, String), AuditRecord> = match (incomplete.is_empty(), books.audit.path().parent()) {
        (false, Some(dir)) => AuditLog::read_all(dir)?
            .into_iter()
            .filter(|r| r.event == "end")
            .map(|r| ((r.run_id.clone(), r.action_id.clone()), r))
            .collect(),
        _ => BTreeMap::new(),
    };
    for entry in incomplete {
        if let Some(rec) = audited.get(&(entry.run_id.clone(), entry.action.id.to_string())) {
            let ok = rec.result.as_deref() == Some("ok");
            let outcome = Outcome {
                ok,
                detail: "ended before an interruption; the audit log holds its result".into(),
            };
            // One commit, as in `finish`: never an ended entry without its effects.
            let approvals = &books.approvals;
            books.store.atomically(|s| {
                s.journal_end(&entry.run_id, &entry.action.id, &outcome)?;
                // The shared row went with the failed commit that left the entry open.
                s.record_audit(rec)?;
                record_effects(s, approvals, &entry.action, ok)
            })?;
        } else if planned.contains(&entry.action.id) {
            books.resumed.insert(entry.action.id.clone(), entry.run_id.clone());
        } else {
            // Not ready now: it landed, or it is held, or no longer wanted. Only the fresh
            // snapshot can tell (SPEC §5): `ok` only when W&B shows the change; otherwise
            // it was not applied, and its tombstone, approval and the ledger stay as they are.
            let (res, detail) = if crate::plan::org_shows(org, &entry.action) {
                (ActionResult::AlreadyDone, "confirmed on resume: W&B shows this change".to_string())
            } else {
                let why = "interrupted before it landed: W&B does not show this change; the next plan decides whether it is still needed";
                (ActionResult::NotApplied(why.into()), format!("not applied: {why}"))
            };
            finish(
                books.store,
                books.audit,
                &books.approvals,
                &entry.run_id,
                &books.actor,
                &entry.action,
                &res,
                &detail,
            )?;
            books.report.results.push((entry.action, res));
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
                if stopped(&stop) {
                    break;
                }
                if let Some(why) = blocked_by(a, &books.failed) {
                    books.skip(a, why)?;
                    continue;
                }
                books.begin(a)?;
                let (client, ids, people, policy, a) = (client.clone(), ids.clone(), people.clone(), policy.clone(), a.clone());
                set.spawn(async move {
                    let done = execute(&client, &ids, &people, &policy, &a).await;
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
            if stopped(&stop) {
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
            let (res, _, _) = execute(client, &ids, &people, policy, a).await;
            books.settle(a.clone(), res)?;
        }
        if stopped(&stop) {
            break;
        }
    }
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

fn stopped(stop: &Option<tokio::sync::watch::Receiver<bool>>) -> bool {
    stop.as_ref().is_some_and(|s| *s.borrow())
}

fn blocked_by(a: &Action, failed: &BTreeSet<ActionId>) -> Option<String> {
    a.depends_on
        .iter()
        .find(|d| failed.contains(*d))
        .map(|d| format!("not attempted: action {d} it depends on did not succeed"))
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

/// Runs one action. Returns the result and any new W&B id it produced.
async fn execute(client: &WandbClient, ids: &Ids, people: &People, policy: &Policy, a: &Action) -> Executed {
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
    let fail = |e: TargetError| ActionResult::Failed(e.to_string());
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
                let res = client.add_to_team(&tid, &uid).await;
                // New members get the default team role; set any other afterwards.
                let res = match res {
                    Ok(()) if r != TeamRole::member() => client.set_team_role(&uid, &team, &r).await,
                    other => other,
                };
                to_result(res)
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
        Err(e) => (ActionResult::Failed(e.to_string()), None, None),
    }
}

fn audit_record(run_id: &str, actor: &str, a: &Action, event: &str, result: Option<&ActionResult>) -> AuditRecord {
    AuditRecord {
        ts: Utc::now(),
        run_id: run_id.to_string(),
        actor: actor.to_string(),
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
        ActionResult::Skipped(e) => format!("skipped: {e}"),
        ActionResult::NotApplied(e) => format!("not applied: {e}"),
    }
}

/// The apply's bookkeeping: journal, audit log and report, kept in step for every action.
struct Books<'a> {
    store: &'a mut dyn StateBackend,
    audit: &'a mut AuditLog,
    run_id: String,
    actor: String,
    /// Action ids with a stored approval, used up when the action succeeds.
    approvals: BTreeSet<ActionId>,
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
        let rec = audit_record(&self.run_id, &self.actor, a, "begin", None);
        // The entry and its shared audit row (PostgreSQL) at once, then the local line.
        self.store.atomically(|s| -> Result<(), ApplyError> {
            s.journal_begin(&self.run_id, a)?;
            Ok(s.record_audit(&rec)?)
        })?;
        self.audit.append(&rec)?;
        Ok(())
    }

    /// Journals the end of an action (under the run that began it) and reports it.
    fn settle(&mut self, a: Action, res: ActionResult) -> Result<(), ApplyError> {
        let run = self.resumed.get(&a.id).unwrap_or(&self.run_id).clone();
        finish(
            self.store,
            self.audit,
            &self.approvals,
            &run,
            &self.actor,
            &a,
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
        let mut rec = audit_record(&self.run_id, &self.actor, a, "skip", Some(&res));
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
    approvals: &BTreeSet<ActionId>,
    run_id: &str,
    actor: &str,
    a: &Action,
    res: &ActionResult,
    detail: &str,
) -> Result<(), ApplyError> {
    // The audit line goes first: a crash between the two writes leaves the journal
    // entry open, and resume closes it without a second audit line (see `apply`).
    let mut rec = audit_record(run_id, actor, a, "end", Some(res));
    rec.detail = Some(detail.to_string());
    audit.append(&rec)?;
    // The outcome and what it leaves behind (ledger, used approval) in one commit: one
    // sync instead of three per action, and never an ended entry without its effects
    // (a failure leaves the entry open for resume to settle).
    store.atomically(|store| {
        store.journal_end(
            run_id,
            &a.id,
            &Outcome {
                ok: res.ok(),
                detail: detail.to_string(),
            },
        )?;
        store.record_audit(&rec)?;
        record_effects(store, approvals, a, res.ok())
    })
}

/// What the state store keeps of a succeeded action: ledger grants and used approvals.
fn record_effects(store: &mut dyn StateBackend, approvals: &BTreeSet<ActionId>, a: &Action, ok: bool) -> Result<(), ApplyError> {
    if ok {
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
