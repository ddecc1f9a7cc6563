//! The shell's shared steps: load the config, read both sides, plan, persist what the plan
//! learned. Commands, the demo and the daemon all go through here, so they plan alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::apply::{self, AlwaysOpen, ApplyContext, ApplyReport, Gate, Progress};
use crate::config::{self, Config, Loaded};
use crate::error::Error;
use crate::http::HttpStats;
use crate::model::{DirectorySnapshot, OrgSnapshot};
use crate::plan::{self, Plan, PlanInput, PlanState, Policy};
use crate::source;
use crate::state::{self as state_store, actor, AuditLog, Backend, Fence, RunRecord, StateBackend, StateError, Store};
use crate::wandb::WandbClient;

/// A loaded, validated configuration with everything derived from it.
pub struct Env {
    pub config: Config,
    pub path: PathBuf,
    pub warnings: Vec<String>,
    pub policy: Policy,
    /// The config file's directory: relative paths in the config are resolved against it.
    pub base_dir: PathBuf,
}

impl Env {
    pub fn load(path: &Path) -> Result<Env, Error> {
        Self::from_loaded(config::load(path)?)
    }

    pub fn from_loaded(loaded: Loaded) -> Result<Env, Error> {
        let Loaded { config, path, warnings } = loaded;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let inventory = config.load_inventory(&base_dir)?;
        let policy = config.policy(inventory.as_ref())?;
        Ok(Env {
            config,
            path,
            warnings,
            policy,
            base_dir,
        })
    }

    /// `daemon.state_dir`, relative paths against the config file's directory.
    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.config.daemon.state_dir)
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn client(&self) -> Result<WandbClient, Error> {
        let key = self.config.target_api_key(&self.base_dir)?;
        Ok(WandbClient::new(&self.config.target, key)?)
    }

    /// `[ha] node_name`, else the host name (else "idsync"): how this node is named in
    /// `/status`, the metrics and its audit lines.
    pub fn node_name(&self) -> String {
        let name = self.config.ha.node_name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        match std::str::from_utf8(&buf[..end]) {
            Ok(h) if rc == 0 && !h.trim().is_empty() => h.trim().to_string(),
            _ => "idsync".into(),
        }
    }

    /// Where the state lives (`[state] backend`); reads the PostgreSQL URL's secret.
    pub fn state_backend(&self) -> Result<Backend, Error> {
        Ok(match self.config.state_url(&self.base_dir)? {
            None => Backend::Sqlite { dir: self.state_dir() },
            Some(url) => Backend::Postgres {
                url,
                ca_file: self.config.state.ca_file.as_deref().map(|f| self.resolve(f)),
            },
        })
    }

    /// Opens the state read-write (creating or migrating it).
    pub fn open_store(&self) -> Result<Store, Error> {
        Ok(state_store::open(&self.state_backend()?)?)
    }

    /// Opens the state without writing; `None` when nothing has been recorded yet.
    pub fn open_store_read_only(&self) -> Result<Option<Store>, Error> {
        Ok(state_store::open_read_only(&self.state_backend()?)?)
    }
}

/// HA: the leadership a run applies under: the fence every state write of the run
/// carries and the gate every W&B write passes (`daemon/ha.rs` holds the lease).
#[derive(Clone)]
pub struct Lead {
    pub fence: Fence,
    pub gate: std::sync::Arc<dyn Gate>,
}

impl Lead {
    /// Opens the state read-write with this run's fence on it.
    fn open_store(&self, env: &Env) -> Result<Store, Error> {
        let mut store = env.open_store()?;
        store.set_fence(self.fence.clone())?;
        Ok(store)
    }
}

/// Opens the state for a run: fenced under `lead` (HA), plain otherwise.
fn open_run_store(env: &Env, lead: Option<&Lead>) -> Result<Store, Error> {
    match lead {
        Some(l) => l.open_store(env),
        None => env.open_store(),
    }
}

/// Whether `e` says this node's lease token was refused (HA): it must step down.
pub fn is_fenced(e: &Error) -> bool {
    matches!(
        e,
        Error::State(StateError::Fenced { .. }) | Error::Apply(apply::ApplyError::State(StateError::Fenced { .. }))
    )
}

/// The stored state for a read-only command (`plan`, `explain`, `report seats`): the store
/// is opened without writing (no directory, file, lock or migration is created); no store
/// yet means nothing was recorded.
pub fn load_state_read_only(env: &Env) -> Result<PlanState, Error> {
    match env.open_store_read_only()? {
        Some(store) => Ok(store.load_plan_state()?),
        None => Ok(PlanState::default()),
    }
}

/// Plans against the stored state.
pub fn plan_now(env: &Env, dir: &DirectorySnapshot, org: &OrgSnapshot, state: &PlanState, now: DateTime<Utc>) -> Plan {
    plan::plan(PlanInput {
        directory: dir,
        org,
        policy: &env.policy,
        state,
        now,
    })
}

/// Stores what a healthy read taught: tombstone clocks, the read for the source-health
/// baseline (pruned to `guards.source_health_window`) and anchors. A suspicious read
/// stores nothing (SPEC §4): it starts and stops no clock and never joins the baseline.
pub fn persist_plan_state(store: &mut dyn StateBackend, plan: &Plan, dir: &DirectorySnapshot, policy: &Policy) -> Result<(), Error> {
    let Some(read) = plan.healthy_read() else {
        return Ok(());
    };
    store.replace_tombstones(&plan.tombstones)?;
    store.record_healthy_read(&read, policy.guards.source_health_window)?;
    let anchors = plan::anchors_to_store(dir, &plan.identity_pending);
    store.record_good_read(&anchors)?;
    Ok(())
}

/// How long each phase of a run took (`idsync_run_duration_seconds{phase}`). The two reads
/// run at once, each timed on its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseDurations {
    pub source: Option<Duration>,
    pub target: Option<Duration>,
    pub plan: Option<Duration>,
    pub apply: Option<Duration>,
}

/// What both sides looked like when read, for the gauges of SPEC §7.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideCounts {
    pub source_users: usize,
    pub source_groups: usize,
    pub target_active: usize,
    pub target_inactive: usize,
    pub org_admins: usize,
}

/// How a run ended, as recorded in the state store (`success`, `held`, `failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Success,
    /// Everything that could be applied was; some actions wait for a human.
    Held,
    Failure,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Held => "held",
            RunResult::Failure => "failure",
        }
    }
}

/// Everything one run produced: what `apply` prints, what the daemon logs, exports and serves.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub result: RunResult,
    pub error: Option<String>,
    /// The fresh plan (absent when a read failed).
    pub plan: Option<Plan>,
    pub report: Option<ApplyReport>,
    pub phases: PhaseDurations,
    pub sides: Option<SideCounts>,
    /// The target client's request counters for this run.
    pub http: HttpStats,
    /// The source's request counters for this run (empty for LDAP and LDIF).
    pub source_http: HttpStats,
    /// Seat hygiene from this run's snapshots, for the daemon's gauges (absent when a read
    /// failed, and for `idsync apply`, which has no gauges).
    pub seats: Option<crate::report::seats::SeatMetrics>,
    /// A stop request (SIGTERM) cut the apply short.
    pub stopped: bool,
    /// HA: a state write was refused because this node's lease token no longer holds: the
    /// node steps down.
    pub fenced: bool,
}

/// Reads the directory and the org at once, timing each. Either failing fails the whole run.
pub async fn read_both(env: &Env, client: &WandbClient) -> Result<(DirectorySnapshot, OrgSnapshot, PhaseDurations), Error> {
    let src = async { source::read_directory(&env.config.source, &env.base_dir).await.map_err(Error::from) };
    let tgt = async { client.snapshot().await.map_err(Error::from) };
    let ((dir, ds), (org, dt)) = tokio::join!(timed_fut(src), timed_fut(tgt));
    let phases = PhaseDurations {
        source: Some(ds),
        target: Some(dt),
        ..PhaseDurations::default()
    };
    Ok((dir?, org?, phases))
}

async fn timed_fut<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed())
}

/// Counts both sides for the gauges.
pub fn side_counts(dir: &DirectorySnapshot, org: &OrgSnapshot) -> SideCounts {
    // Service accounts are not users (SPEC §1), whether or not /Users lists them.
    let people = org.users.iter().filter(|u| !u.service_account);
    let (active, inactive) = people.fold((0, 0), |(a, i), u| if u.active { (a + 1, i) } else { (a, i + 1) });
    SideCounts {
        source_users: dir.people.len(),
        source_groups: dir.groups.len(),
        target_active: active,
        target_inactive: inactive,
        // The floor's own count (`idsync_org_admins`, alerted on against the floor).
        org_admins: plan::admin::count_org_admins(&org.users),
    }
}

/// One read-and-planned run, ready to execute.
pub struct Prepared {
    pub run_id: String,
    pub command: String,
    pub actor: String,
    pub started: DateTime<Utc>,
    pub directory: DirectorySnapshot,
    pub org: OrgSnapshot,
    /// The fresh plan: its held actions decide `held`.
    pub fresh: Plan,
    pub phases: PhaseDurations,
    /// The apply lock the caller took before reading: the snapshots, the plan and what it
    /// persisted all belong to this run alone; released once the run is recorded.
    pub lock: ApplyLock,
}

/// Applies `to_apply` (the fresh plan, or the part of it a reviewed plan still says) and
/// records the run. The shared tail of `idsync apply` and the daemon. The apply lock in
/// `prepared` is released only once the run is recorded. `gate` is checked before every
/// W&B write (HA: the leader lease; [`AlwaysOpen`] otherwise).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    env: &Env,
    client: &WandbClient,
    store: &mut dyn StateBackend,
    prepared: Prepared,
    to_apply: &Plan,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    progress: &dyn Progress,
    gate: std::sync::Arc<dyn Gate>,
) -> Result<RunOutcome, Error> {
    let Prepared {
        run_id,
        command,
        actor,
        started,
        directory,
        org,
        fresh,
        mut phases,
        lock: _lock,
    } = prepared;
    let stopped_before = stop.as_ref().is_some_and(|s| *s.borrow());
    let mut audit = AuditLog::open(&env.state_dir())?;
    let t = Instant::now();
    // Always called, even with nothing ready: it also settles what an interrupted apply
    // left open in the journal.
    let report = apply::apply(
        to_apply,
        ApplyContext {
            client,
            store,
            audit: &mut audit,
            policy: &env.policy,
            directory: &directory,
            org: &org,
            run_id: run_id.clone(),
            actor,
            max_concurrency: env.config.target.max_concurrency,
            stop: stop.clone(),
            progress,
            gate,
        },
    )
    .await?;
    phases.apply = Some(t.elapsed());
    let stopped = stopped_before || stop.as_ref().is_some_and(|s| *s.borrow());
    // A suspicious read is `held` even with nothing held: a human must look (SPEC §2).
    let held = fresh.needs_a_human();
    let done: std::collections::BTreeSet<_> = report.results.iter().map(|(a, _)| &a.id).collect();
    let not_started = to_apply.ready().filter(|a| !done.contains(&a.id)).count();
    // An action the live admin re-check skipped was not applied: like a held one, it waits
    // for the next run or a human, so the run is `held`, never `success`.
    // An unknown outcome is not success (SPEC §5): like a failure, until a read settles it.
    let result = if report.failed() > 0 || report.unknown() > 0 || not_started > 0 || report.gate_closed.is_some() {
        RunResult::Failure
    } else if held || report.skipped() > 0 {
        RunResult::Held
    } else {
        RunResult::Success
    };
    let mut summary = fresh.summary.clone();
    summary.insert("applied".into(), report.applied());
    summary.insert("failed".into(), report.failed());
    if report.unknown() > 0 {
        summary.insert("unknown".into(), report.unknown());
    }
    let error = if let Some(why) = &report.gate_closed {
        Some(format!(
            "this node stopped applying: {why}; the node that holds the lease resumes the journal{}",
            if report.failed() + report.unknown() > 0 {
                format!(" ({} failed, {} unknown before that)", report.failed(), report.unknown())
            } else {
                String::new()
            }
        ))
    } else if report.failed() > 0 || report.unknown() > 0 {
        let mut parts = Vec::new();
        if report.failed() > 0 {
            parts.push(format!("{} action(s) failed", report.failed()));
        }
        if report.unknown() > 0 {
            parts.push(format!(
                "{} action(s) have an unknown outcome (W&B may have applied them; the next run settles them against W&B)",
                report.unknown()
            ));
        }
        Some(parts.join("; "))
    } else if report.skipped() > 0 {
        Some(format!(
            "{} action(s) skipped by the live re-check against W&B; the next run plans them again",
            report.skipped()
        ))
    } else if not_started > 0 {
        // Only a stop request leaves ready actions unattempted.
        Some(format!(
            "stopped by a signal with {not_started} ready action(s) not started; the next run applies them"
        ))
    } else {
        None
    };
    let finished = Utc::now();
    store.record_run(&RunRecord {
        run_id: run_id.clone(),
        command,
        started_at: started,
        finished_at: finished,
        result: result.as_str().to_string(),
        summary,
        error: error.clone(),
    })?;
    prune(store, finished, env.config.state.retention.0);
    Ok(RunOutcome {
        run_id,
        started,
        finished,
        result,
        error,
        sides: Some(side_counts(&directory, &org)),
        plan: Some(fresh),
        report: Some(report),
        phases,
        http: client.http_stats(),
        source_http: HttpStats::default(),
        // Filled in by `run_once` for the daemon's gauges; `idsync apply` does not need them.
        seats: None,
        stopped,
        fenced: false,
    })
}

/// One unattended run (the daemon, `run --once`): read, plan, persist, apply the ready
/// actions, record. Never returns an error: a failure is an outcome, recorded as a failed
/// run when the state store is reachable.
pub async fn run_once(
    env: &Env,
    command: &str,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    progress: &dyn Progress,
    lead: Option<&Lead>,
) -> RunOutcome {
    let started = Utc::now();
    let run_id = new_run_id(started);
    let mut learned = Learned::default();
    // Source clients count process-wide; this run's share is the difference.
    let source_before = source::http::http_stats();
    let stop_flag = stop.clone();
    let (err, fenced) = match run_inner(env, command, &run_id, started, stop, &mut learned, progress, lead).await {
        Ok(mut outcome) => {
            outcome.source_http = source::http::http_stats().since(&source_before);
            return outcome;
        }
        Err(e) => (e.to_string(), is_fenced(&e)),
    };
    let finished = Utc::now();
    // Recorded under the same fence: a node that lost the lease records nothing.
    if let Ok(mut store) = open_run_store(env, lead) {
        let rec = RunRecord {
            run_id: run_id.clone(),
            command: command.to_string(),
            started_at: started,
            finished_at: finished,
            result: RunResult::Failure.as_str().to_string(),
            summary: BTreeMap::new(),
            error: Some(err.clone()),
        };
        if let Err(e) = store.record_run(&rec) {
            tracing::warn!(error = %e, "cannot record the failed run in the state store");
        }
    }
    RunOutcome {
        run_id,
        started,
        finished,
        result: RunResult::Failure,
        error: Some(err),
        plan: None,
        report: None,
        phases: learned.phases,
        sides: learned.sides,
        http: learned.http,
        source_http: source::http::http_stats().since(&source_before),
        seats: None,
        stopped: stop_flag.as_ref().is_some_and(|s| *s.borrow()),
        fenced,
    }
}

/// HA standby: one read-and-plan tick that writes nothing, neither the state nor W&B. It
/// keeps the metrics and `/status` live and shows the node could take over (`/readyz`).
/// Never returns an error: a failed read is an outcome, recorded nowhere.
pub async fn standby_once(env: &Env, progress: &dyn Progress) -> RunOutcome {
    let started = Utc::now();
    let run_id = new_run_id(started);
    let mut learned = Learned::default();
    let source_before = source::http::http_stats();
    let r: Result<(Plan, crate::report::seats::SeatMetrics), Error> = async {
        let client = env.client()?;
        let state = load_state_read_only(env)?;
        let read = read_both(env, &client).await;
        learned.http = client.http_stats();
        let (dir, org, phases) = read?;
        progress.alive();
        learned.phases = phases;
        learned.sides = Some(side_counts(&dir, &org));
        let t = Instant::now();
        let plan = plan_now(env, &dir, &org, &state, started);
        learned.phases.plan = Some(t.elapsed());
        let seats = crate::report::seats::seat_metrics(&dir, &org, &env.policy, env.config.report.inactive_days, Utc::now());
        Ok((plan, seats))
    }
    .await;
    let (result, error, plan, seats) = match r {
        Ok((plan, seats)) => (
            if plan.needs_a_human() {
                RunResult::Held
            } else {
                RunResult::Success
            },
            None,
            Some(plan),
            Some(seats),
        ),
        Err(e) => (RunResult::Failure, Some(e.to_string()), None, None),
    };
    RunOutcome {
        run_id,
        started,
        finished: Utc::now(),
        result,
        error,
        plan,
        report: None,
        phases: learned.phases,
        sides: learned.sides,
        http: learned.http,
        source_http: source::http::http_stats().since(&source_before),
        seats,
        stopped: false,
        fenced: false,
    }
}

/// The error of a run abandoned by a stop request before it changed anything.
pub const STOPPED_DURING_READ: &str = "stopped by a signal while reading the directory and W&B; nothing was changed";

/// What a run learned before it failed: a failed run still reports its timings and requests.
#[derive(Default)]
struct Learned {
    phases: PhaseDurations,
    http: HttpStats,
    sides: Option<SideCounts>,
}

#[allow(clippy::too_many_arguments)]
async fn run_inner(
    env: &Env,
    command: &str,
    run_id: &str,
    started: DateTime<Utc>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    learned: &mut Learned,
    progress: &dyn Progress,
    lead: Option<&Lead>,
) -> Result<RunOutcome, Error> {
    let client = env.client()?;
    // Taken before reading, held through recording: no other run applies between our read
    // and our apply, and a run refused here has changed nothing (no tombstones, no baseline).
    // (Opening the store first creates the state directory the lock lives in.)
    let mut store = open_run_store(env, lead)?;
    let lock = lock_apply(&env.state_dir())?;
    let state = store.load_plan_state()?;
    // A stop request during the reads abandons the run: nothing has been written yet, and a
    // slow read with retries must not outlive systemd's stop timeout.
    let read = match stop.clone() {
        Some(mut s) => tokio::select! {
            r = read_both(env, &client) => Some(r),
            _ = async { if s.wait_for(|v| *v).await.is_err() { std::future::pending::<()>().await } } => None,
        },
        None => Some(read_both(env, &client).await),
    };
    learned.http = client.http_stats();
    let stop_requested = stop.as_ref().is_some_and(|s| *s.borrow());
    let Some(read) = read.filter(|_| !stop_requested) else {
        return Err(Error::Usage(STOPPED_DURING_READ.into()));
    };
    let (dir, org, phases) = read?;
    // The read is the one phase that does not beat while it runs: its requests' timeouts
    // bound it (README: WatchdogSec must exceed the longest read).
    progress.alive();
    learned.phases = phases;
    learned.sides = Some(side_counts(&dir, &org));
    let t = Instant::now();
    let fresh = plan_now(env, &dir, &org, &state, started);
    persist_plan_state(&mut *store, &fresh, &dir, &env.policy)?;
    learned.phases.plan = Some(t.elapsed());
    let to_apply = fresh.clone();
    // Seat hygiene for the daemon's gauges, from the same snapshots the plan used.
    let seats = crate::report::seats::seat_metrics(&dir, &org, &env.policy, env.config.report.inactive_days, Utc::now());
    let prepared = Prepared {
        run_id: run_id.to_string(),
        command: command.to_string(),
        actor: actor(command),
        started,
        directory: dir,
        org,
        fresh,
        phases: learned.phases.clone(),
        lock,
    };
    let gate = lead.map_or_else(|| std::sync::Arc::new(AlwaysOpen) as std::sync::Arc<dyn Gate>, |l| l.gate.clone());
    let mut outcome = execute(env, &client, &mut *store, prepared, &to_apply, stop, progress, gate).await?;
    outcome.seats = Some(seats);
    Ok(outcome)
}

/// The held apply lock; dropping it releases it.
#[must_use = "the lock is released when this is dropped"]
pub struct ApplyLock(#[allow(dead_code)] std::fs::File);

/// Takes `<state_dir>/apply.lock` (an advisory lock the OS drops when the process dies,
/// so a killed run never leaves it stale), or fails at once if another run holds it.
/// Take it before reading either side and pass it to [`execute`].
pub fn lock_apply(state_dir: &Path) -> Result<ApplyLock, Error> {
    // With PostgreSQL nothing else has created the directory yet.
    state_store::ensure_dir(state_dir)?;
    let path = state_dir.join("apply.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            what: format!("cannot open the apply lock {}", path.display()),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(ApplyLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "another idsync run (the daemon or an `idsync apply`) is applying with this state directory ({} is locked); \
             try again when it has finished",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io {
            what: format!("cannot lock {}", path.display()),
            source,
        }),
    }
}

/// A run id that sorts by time: `20260101T120000Z-3f2a1c`.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    format!("{}-{:06x}", now.format("%Y%m%dT%H%M%SZ"), rand::random::<u32>() & 0xff_ffff)
}

/// Forgets what is older than `[state] retention`: finished runs, ended journal entries
/// approvals expired that long ago and restore snapshots taken that long ago, so the store does not grow forever. Open journal
/// entries are never pruned (resume needs them) and the audit log is never touched. A
/// failure costs only space: it is logged, and the run stands.
fn prune(store: &mut dyn StateBackend, now: chrono::DateTime<Utc>, retention: std::time::Duration) {
    let Ok(keep) = chrono::Duration::from_std(retention) else {
        return;
    };
    let Some(cut) = now.checked_sub_signed(keep) else {
        return;
    };
    let pruned = store
        .prune_history(cut)
        .and_then(|n| Ok(n + store.prune_approvals(cut)?))
        .and_then(|n| Ok(n + store.prune_restore_snapshots(cut)?));
    match pruned {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(rows = n, before = %cut, "state store: pruned runs, journal entries, approvals and restore snapshots past [state] retention")
        }
        Err(e) => tracing::warn!(error = %e, "state store: pruning past [state] retention failed; the run stands"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Email, Person};
    use crate::plan::{SourceSummary, TargetSummary, Tombstone, TombstoneCause};
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap()
    }

    /// A plan at `h` o'clock with `people` enabled people and one new tombstone.
    fn plan_at(h: u32, people: usize, suspicious: Option<&str>) -> Plan {
        Plan {
            version: 1,
            generated_at: at(h),
            source: SourceSummary {
                kind: "ldif".into(),
                users: people,
                groups: 1,
                usable_enabled: people,
                mapped_groups: [("cn=ml".to_string(), 4)].into(),
                suspicious: suspicious.map(str::to_string),
            },
            target: TargetSummary::default(),
            summary: BTreeMap::new(),
            actions: Vec::new(),
            tombstones: vec![Tombstone {
                user: Email::parse(&format!("gone{h}@example.com")).unwrap(),
                since: at(h),
                deprovision_after: None,
                cause: TombstoneCause::Missing,
            }],
            skipped: Vec::new(),
            roster_before: Vec::new(),
            roster_after: Vec::new(),
            identity_pending: Default::default(),
            undo: None,
        }
    }

    fn dir(email: &str) -> DirectorySnapshot {
        DirectorySnapshot {
            kind: "ldif".into(),
            people: vec![Person {
                anchor: format!("anchor-{email}"),
                email: Some(email.into()),
                username: String::new(),
                display_name: String::new(),
                enabled: true,
                source_ref: String::new(),
            }],
            groups: Vec::new(),
        }
    }

    #[test]
    fn a_suspicious_read_persists_nothing_and_a_healthy_one_joins_the_baseline() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = crate::state::StateStore::open(tmp.path()).unwrap();
        let policy = Policy::default();
        persist_plan_state(&mut store, &plan_at(1, 100, None), &dir("a@example.com"), &policy).unwrap();
        let healthy = store.load_plan_state().unwrap();
        assert_eq!(healthy.healthy_reads.len(), 1);
        assert_eq!(healthy.healthy_reads[0].groups.get("cn=ml"), Some(&4));
        assert_eq!(healthy.tombstones.len(), 1);

        let suspicious = plan_at(2, 50, Some("the directory shrank from 100 to 50"));
        persist_plan_state(&mut store, &suspicious, &dir("b@example.com"), &policy).unwrap();
        assert_eq!(
            store.load_plan_state().unwrap(),
            healthy,
            "no clock, baseline or anchor from a suspicious read"
        );
    }

    #[test]
    fn healthy_reads_older_than_the_window_are_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = crate::state::StateStore::open(tmp.path()).unwrap();
        let mut policy = Policy::default();
        policy.guards.source_health_window = Duration::from_secs(2 * 3600);
        for (h, n) in [(1, 100), (2, 95), (4, 90)] {
            persist_plan_state(&mut store, &plan_at(h, n, None), &dir("a@example.com"), &policy).unwrap();
        }
        let kept: Vec<usize> = store.load_plan_state().unwrap().healthy_reads.iter().map(|r| r.people).collect();
        assert_eq!(kept, vec![95, 90]);
    }
}
