//! `idsync run`: the scheduled service of SPEC §8.
//!
//! One loop owns the runs, so two never overlap: it sleeps until the next cron tick (or a
//! signal), runs [`sync::run_once`], then folds the outcome into the metrics and the
//! `/status` view. A failed run is simply recorded; the next tick tries again. SIGTERM and
//! SIGINT raise the stop flag that `apply` checks before each action, so the action in
//! flight finishes and no new one starts; SIGHUP reloads the config between runs.

pub mod ha;
pub mod http;
pub mod metrics;
pub mod notify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::{parse_schedule, LogConfig, LogFormat};
use crate::error::Error;
use crate::notify::{Delivery, Notifier, RunFacts};
use crate::report::escape::{neutralise, Keep};
use crate::state::{Backend, RunRecord};
use crate::sync::{self, Env, RunOutcome, RunResult};
use ha::Ha;
use http::{ConfigView, LastRun, PlanView, Shared, StatusView};

/// Sets up logging from `[log]`: `RUST_LOG`, when set, overrides `level`. `ansi` is the
/// caller's colour decision (by default: stderr is a terminal and NO_COLOR is unset), so
/// the journal and log files get plain text.
pub fn init_logging(log: &LogConfig, ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter::new(ansi))
        .with_ansi(ansi);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Log lines to stderr with their control characters made visible
/// (`report::escape`): fields carry names and W&B's or the IdP's error bodies. The same
/// transformation keeps a JSON log line valid and exact (see `report::escape`).
#[derive(Debug, Clone, Copy)]
pub struct LogWriter(Keep);

impl LogWriter {
    /// `ansi`: the formatter colours its output, and then escapes ESC in values itself.
    pub fn new(ansi: bool) -> LogWriter {
        LogWriter(if ansi { Keep::LayoutAndEsc } else { Keep::Layout })
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        *self
    }
}

impl std::io::Write for LogWriter {
    /// tracing hands over one whole formatted event per call.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(neutralise(&text, self.0).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn usage(e: impl std::fmt::Display) -> Error {
    Error::Usage(e.to_string())
}

/// Loads the config and parses its schedule: what a (re)load must get past.
fn load(path: &Path) -> Result<(Env, cron::Schedule), Error> {
    let env = Env::load(path)?;
    // check-config has validated it already; this is the scheduler's own copy.
    let schedule = parse_schedule(&env.config.daemon.schedule).map_err(usage)?;
    Ok((env, schedule))
}

/// Seconds between the next two ticks, for `/readyz`'s freshness window.
fn interval_seconds(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<i64> {
    let mut it = schedule.after(&now);
    let (a, b) = (it.next()?, it.next()?);
    Some((b - a).num_seconds())
}

/// Logs the run's one summary line and tells systemd.
fn log_outcome(o: &RunOutcome) {
    let ready = o.plan.as_ref().map(|p| p.ready().count()).unwrap_or(0);
    let held = o.plan.as_ref().map(|p| p.held().count()).unwrap_or(0);
    let (applied, failed, skipped) = o
        .report
        .as_ref()
        .map(|r| (r.applied(), r.failed(), r.skipped()))
        .unwrap_or((0, 0, 0));
    // Outcomes the next run settles against W&B (SPEC §5).
    let unknown = o.report.as_ref().map(|r| r.unknown()).unwrap_or(0);
    let duration_ms = (o.finished - o.started).num_milliseconds();
    let result = o.result.as_str();
    if let Some(err) = &o.error {
        tracing::error!(
            run_id = %o.run_id, result, ready, held, applied, failed, unknown, skipped, duration_ms, stopped = o.stopped, error = %err,
            "run finished"
        );
    } else {
        tracing::info!(run_id = %o.run_id, result, ready, held, applied, failed, unknown, skipped, duration_ms, stopped = o.stopped, "run finished");
    }
    let suspicious = o.plan.as_ref().and_then(|p| p.source.suspicious.as_deref());
    if let Some(why) = suspicious {
        // Held actions alone may be zero: the read itself needs a human (SPEC §2).
        tracing::warn!(run_id = %o.run_id, reason = %why, "suspicious directory read: it started no tombstone clock and did not become the source-health baseline");
    }
    notify::notify(&format!(
        "STATUS=last run {result} at {}: {applied} applied, {failed} failed, {held} held{}",
        o.finished.format("%Y-%m-%dT%H:%M:%SZ"),
        if suspicious.is_some() { ", suspicious directory read" } else { "" }
    ));
}

/// Logs what became of a `[notify]` message: a failure is a warning, never the run's.
fn log_delivery(run_id: &str, d: &Delivery) {
    match (d, d.describe()) {
        (Delivery::Failed { .. }, Some(line)) => tracing::warn!(run_id, "{line}"),
        (_, Some(line)) => tracing::info!(run_id, "{line}"),
        (_, None) => {}
    }
}

/// The daemon's notifications, sent one at a time off the run loop: a slow or dead webhook
/// never delays the next run or the watchdog. Sends are bounded, so the queue drains.
fn spawn_notifier() -> tokio::sync::mpsc::Sender<(Notifier, RunFacts)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Notifier, RunFacts)>(8);
    tokio::spawn(async move {
        while let Some((n, facts)) = rx.recv().await {
            let d = n.after_run(&facts).await;
            log_delivery(&facts.run_id, &d);
        }
    });
    tx
}

/// A stop flag raised by the first SIGTERM or SIGINT (the signals are then handled by
/// idsync, no longer fatal): `apply` finishes the action in flight and starts no more; a
/// run still reading is abandoned. A second SIGTERM or SIGINT exits at once (exit code 1):
/// the journal settles the action it cuts short on the next run, as after a kill.
pub fn stop_on_signals() -> Result<watch::Receiver<bool>, Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).map_err(|e| usage(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| usage(format!("cannot handle SIGINT: {e}")))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the action in flight, then exiting (send it again to exit at once)"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the action in flight, then exiting (send it again to exit at once)"),
        }
        let _ = stop_tx.send(true);
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!("second {name}: exiting at once; the next run settles an action left in flight from the journal");
        // SPEC §2's "error": the run did not finish.
        std::process::exit(1);
    });
    Ok(stop_rx)
}

/// How `idsync run` ended; the CLI turns it into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The service stopped on a signal after finishing what it had started.
    Stopped,
    /// `--once`: the one run's result.
    Once(RunResult),
}

/// The daemon's progress sink: every action that ends, and every long step, is a sign of
/// life for systemd's watchdog (a stuck apply stops beating).
struct Watchdog;

impl crate::apply::Progress for Watchdog {
    fn action_done(&self, _a: &crate::plan::Action, _r: &crate::apply::ActionResult) {
        notify::beat();
    }
    fn alive(&self) {
        notify::beat();
    }
}

/// `idsync run [--once]`.
pub async fn run(path: &Path, once: bool, log_color: bool) -> Result<Ended, Error> {
    let (env, schedule) = load(path)?;
    init_logging(&env.config.log, log_color);
    for w in &env.warnings {
        tracing::warn!("{w}");
    }

    let stop_rx = stop_on_signals()?;

    if once {
        let ha = match start_ha(&env, Arc::new(Shared::new(new_metrics()?, empty_view(path, &env, None))))? {
            Some((ha, thread)) => {
                // One tick of a node: leader if the lease is free (or ours), else a standby.
                let t = std::time::Instant::now();
                while !ha.tried() && t.elapsed() < env.config.ha.lease_ttl.0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some((ha, thread))
            }
            None => None,
        };
        let o = match &ha {
            None => sync::run_once(&env, "run", Some(stop_rx), &Watchdog, None).await,
            Some((ha, _)) => match ha.lead() {
                Some(lead) => sync::run_once(&env, "run", Some(stop_rx), &Watchdog, Some(&lead)).await,
                None => {
                    tracing::info!(node = %ha.node(), "HA: another node holds the leader lease: this run only reads and plans");
                    sync::standby_once(&env, &Watchdog).await
                }
            },
        };
        if let Some((ha, thread)) = ha {
            ha.shutdown(thread);
        }
        log_outcome(&o);
        // One run and exit: the message is sent before exiting (bounded), never changing the exit code.
        if let Some(n) = Notifier::of(&env) {
            let d = n.after_run(&RunFacts::of(&o, "run", n.target())).await;
            log_delivery(&o.run_id, &d);
        }
        return Ok(Ended::Once(o.result));
    }
    Daemon::start(path.to_path_buf(), env, schedule, stop_rx).await?.serve().await
}

/// The last run and last success among `runs` (newest first) that synced: the daemon's
/// own and `idsync apply`'s, not `plan`'s (a plan changes nothing in W&B).
fn last_sync(runs: &[RunRecord]) -> (Option<LastRun>, Option<DateTime<Utc>>) {
    let mut syncs = runs.iter().filter(|r| r.command == "run" || r.command == "apply");
    let last = syncs.clone().next().map(|r| LastRun {
        run_id: r.run_id.clone(),
        result: match r.result.as_str() {
            "success" => RunResult::Success.as_str(),
            "held" => RunResult::Held.as_str(),
            _ => RunResult::Failure.as_str(),
        },
        finished_at: r.finished_at,
        error: r.error.clone(),
    });
    let success = syncs.find(|r| r.result != RunResult::Failure.as_str()).map(|r| r.finished_at);
    (last, success)
}

/// Seeds `/status`, `/readyz` and the run timestamps from the state store, so a restart
/// does not look stale or unready until the first run. A store error only logs: the
/// first run will report it properly.
fn seed_from_store(env: &Env, metrics: &metrics::Metrics, view: &mut StatusView) {
    let stored = env.open_store().and_then(|s| Ok((s.last_runs(50)?, s.tombstones()?)));
    let (runs, tombstones) = match stored {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last runs from the state store at start-up");
            return;
        }
    };
    let (last, success) = last_sync(&runs);
    metrics.seed(last.as_ref().map(|l| l.finished_at), success);
    view.last_run = last;
    view.last_success = success;
    view.last_runs = runs.into_iter().take(10).collect();
    view.tombstones = tombstones;
}

fn new_metrics() -> Result<metrics::Metrics, Error> {
    metrics::Metrics::new().map_err(|e| usage(format!("cannot set up the metrics: {e}")))
}

fn empty_view(path: &Path, env: &Env, schedule: Option<&cron::Schedule>) -> StatusView {
    StatusView {
        config: ConfigView {
            path: path.display().to_string(),
            schedule: env.config.daemon.schedule.clone(),
            listen: env.config.daemon.listen.clone(),
        },
        running: false,
        next_run: None,
        interval_seconds: schedule.and_then(|s| interval_seconds(s, Utc::now())),
        last_run: None,
        last_success: None,
        last_runs: vec![],
        latest_plan: None,
        tombstones: vec![],
        ha: None,
    }
}

/// This node's lease and the thread that keeps it.
type HaHandle = (Arc<Ha>, std::thread::JoinHandle<()>);

/// With `[ha] enabled = true`, starts this node's lease thread (`ha.rs`).
fn start_ha(env: &Env, shared: Arc<Shared>) -> Result<Option<HaHandle>, Error> {
    if !env.config.ha.enabled {
        return Ok(None);
    }
    let Backend::Postgres { url, ca_file } = env.state_backend()? else {
        // check-config refuses this; never lead without a lease.
        return Err(usage("[ha] enabled = true needs [state] backend = \"postgres\""));
    };
    let node = env.node_name();
    tracing::info!(node = %node, lease_ttl = %env.config.ha.lease_ttl, "HA: this node starts as a standby and applies only while it holds the leader lease");
    Ok(Some(Ha::start(
        node,
        env.config.ha.lease_ttl.0,
        env.config.target.timeout.0,
        url,
        ca_file,
        shared,
    )))
}

struct Daemon {
    path: PathBuf,
    env: Env,
    schedule: cron::Schedule,
    stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
    notify: tokio::sync::mpsc::Sender<(Notifier, RunFacts)>,
    /// `[ha] enabled = true`: the lease this node applies under, and its thread.
    ha: Option<HaHandle>,
}

impl Daemon {
    async fn start(path: PathBuf, env: Env, schedule: cron::Schedule, stop: watch::Receiver<bool>) -> Result<Daemon, Error> {
        let metrics = new_metrics()?;
        let mut view = empty_view(&path, &env, Some(&schedule));
        seed_from_store(&env, &metrics, &mut view);
        let shared = Arc::new(Shared::new(metrics, view));
        let listen = env.config.daemon.listen.trim().to_string();
        let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| Error::Io {
            what: format!("cannot listen on daemon.listen = {listen:?} (another process on that port?)"),
            source: e,
        })?;
        tracing::info!(listen = %listen, schedule = %env.config.daemon.schedule, "idsync daemon started");
        let app = http::router(shared.clone());
        let mut server_stop = stop.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        if let Some(limit) = notify::watchdog_limit() {
            // WATCHDOG=1 only while the run loop (idle) or the run (each phase, each action)
            // keeps beating: a wedged loop or apply stops the pings and systemd restarts us.
            notify::beat();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(limit / 2);
                loop {
                    tick.tick().await;
                    if notify::beating_within(limit) {
                        notify::notify("WATCHDOG=1");
                    } else {
                        tracing::warn!(
                            limit_ms = limit.as_millis() as u64,
                            "no progress within the watchdog limit: not telling systemd WATCHDOG=1"
                        );
                    }
                }
            });
        }
        let ha = start_ha(&env, shared.clone())?;
        Ok(Daemon {
            path,
            env,
            schedule,
            stop,
            shared,
            notify: spawn_notifier(),
            ha,
        })
    }

    fn next_tick(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&after).next()
    }

    async fn serve(mut self) -> Result<Ended, Error> {
        let mut hup = signal(SignalKind::hangup()).map_err(|e| usage(format!("cannot handle SIGHUP: {e}")))?;
        notify::notify("READY=1\nSTATUS=started, waiting for the first run");
        let mut next = if self.env.config.daemon.run_on_start {
            Some(Utc::now())
        } else {
            self.next_tick(Utc::now())
        };
        // The idle loop's heartbeat, for the watchdog pinger (never ticks without a watchdog).
        let beat_every = notify::watchdog_limit().map(|l| l / 4);
        let mut beat = tokio::time::interval(beat_every.unwrap_or(Duration::from_secs(3600)));
        let ha = self.ha.as_ref().map(|(h, _)| h.clone());
        if let Some(h) = &ha {
            // The first tick as what this node is: wait (bounded) for its first try at the
            // lease, so a lone or first node leads its first run instead of planning it.
            let t = std::time::Instant::now();
            while !h.tried() && t.elapsed() < self.env.config.ha.lease_ttl.0 && !*self.stop.borrow() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        loop {
            self.shared.status().next_run = next;
            let wait = next.map(|n| (n - Utc::now()).to_std().unwrap_or_default());
            let mut stop = self.stop.clone();
            tokio::select! {
                // A takeover runs at once: it resumes what the old leader left in the journal.
                _ = async { match &ha { Some(h) => h.took_over.notified().await, None => std::future::pending().await } } => {
                    self.run_now().await;
                    next = self.next_tick(Utc::now());
                }
                _ = beat.tick(), if beat_every.is_some() => notify::beat(),
                _ = async { match wait { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {
                    self.run_now().await;
                    // Ticks missed while running are skipped, never caught up in a burst.
                    next = self.next_tick(Utc::now());
                    if next.is_none() {
                        tracing::warn!(schedule = %self.env.config.daemon.schedule, "the schedule has no future tick: no more runs");
                    }
                }
                _ = hup.recv() => {
                    self.reload();
                    next = self.next_tick(Utc::now());
                }
                _ = stop.wait_for(|s| *s) => {}
            }
            if *self.stop.borrow() {
                break;
            }
        }
        notify::notify("STOPPING=1");
        if let Some((ha, thread)) = self.ha.take() {
            // After the last run: the lease is released only once nothing is in flight.
            ha.shutdown(thread);
        }
        tracing::info!("idsync daemon stopped");
        Ok(Ended::Stopped)
    }

    async fn run_now(&mut self) {
        notify::beat();
        self.shared.status().running = true;
        let mut standby = false;
        let o = match self.ha.as_ref().map(|(h, _)| h.clone()) {
            None => sync::run_once(&self.env, "run", Some(self.stop.clone()), &Watchdog, None).await,
            Some(ha) => match ha.lead() {
                Some(lead) => {
                    let o = sync::run_once(&self.env, "run", Some(self.stop.clone()), &Watchdog, Some(&lead)).await;
                    if o.fenced {
                        ha.step_down("a state write was refused: the lease is no longer this node's");
                    }
                    o
                }
                None => {
                    standby = true;
                    tracing::info!(node = %ha.node(), "HA standby: this run only reads and plans; the leader applies");
                    sync::standby_once(&self.env, &Watchdog).await
                }
            },
        };
        log_outcome(&o);
        // A standby's tick changed nothing: the leader's runs say what needs a human.
        // Read at each run, so a SIGHUP that adds, changes or drops [notify] counts at once.
        if let Some(n) = Notifier::of(&self.env).filter(|_| !standby) {
            let facts = RunFacts::of(&o, "run", n.target());
            if self.notify.try_send((n, facts)).is_err() {
                tracing::warn!(run_id = %o.run_id, "notify: earlier messages are still being sent; this run's is dropped");
            }
        }
        // What /status shows from the store; on a store error the previous view stays.
        let stored = self.env.open_store().and_then(|s| Ok((s.last_runs(10)?, s.tombstones()?)));
        let stored = match stored {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last runs and tombstones from the state store");
                None
            }
        };
        let tomb_count = stored.as_ref().map(|(_, t)| t.len());
        self.shared.metrics.observe(
            &o,
            &metrics::Context {
                min_org_admins: self.env.policy.guards.min_org_admins,
                tombstones: tomb_count,
            },
        );
        let mut v = self.shared.status();
        v.running = false;
        v.last_run = Some(LastRun {
            run_id: o.run_id.clone(),
            result: o.result.as_str(),
            finished_at: o.finished,
            error: o.error.clone(),
        });
        if o.result != sync::RunResult::Failure {
            v.last_success = Some(o.finished);
        }
        if let Some(p) = &o.plan {
            v.latest_plan = Some(PlanView::of(p));
        }
        if let Some((runs, tombstones)) = stored {
            v.last_runs = runs;
            v.tombstones = tombstones;
        }
        v.interval_seconds = interval_seconds(&self.schedule, Utc::now());
    }

    /// SIGHUP: swap in the new config if it loads, else keep the running one.
    fn reload(&mut self) {
        match load(&self.path) {
            Ok((env, schedule)) => {
                if env.config.daemon.listen.trim() != self.env.config.daemon.listen.trim() {
                    tracing::warn!(
                        old = %self.env.config.daemon.listen, new = %env.config.daemon.listen,
                        "daemon.listen changed: it takes effect at the next restart"
                    );
                }
                let (old, new) = (&self.env.config.ha, &env.config.ha);
                if (old.enabled, old.lease_ttl.0, old.node_name.trim()) != (new.enabled, new.lease_ttl.0, new.node_name.trim()) {
                    // Turning HA on here would apply beside the leader without a lease.
                    tracing::error!(path = %self.path.display(), "SIGHUP: [ha] changed, which needs a restart; keeping the running configuration");
                    return;
                }
                for w in &env.warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!(path = %self.path.display(), schedule = %env.config.daemon.schedule, "SIGHUP: configuration reloaded");
                let mut v = self.shared.status();
                v.config.schedule = env.config.daemon.schedule.clone();
                v.interval_seconds = interval_seconds(&schedule, Utc::now());
                drop(v);
                self.env = env;
                self.schedule = schedule;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "SIGHUP: the new configuration is invalid; keeping the running one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, command: &str, result: &str, minute: u32) -> RunRecord {
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 12, minute, 0).unwrap();
        RunRecord {
            run_id: id.into(),
            command: command.into(),
            started_at: t,
            finished_at: t,
            result: result.into(),
            summary: Default::default(),
            error: (result == "failure").then(|| "boom".to_string()),
        }
    }

    #[test]
    fn a_restart_takes_the_last_sync_and_success_ignoring_plans() {
        // Newest first, as the store returns them.
        let runs = [
            rec("p", "plan", "success", 50),
            rec("f", "run", "failure", 40),
            rec("a", "apply", "held", 30),
            rec("r", "run", "success", 20),
        ];
        let (last, success) = last_sync(&runs);
        let last = last.unwrap();
        assert_eq!((last.run_id.as_str(), last.result), ("f", "failure"));
        assert_eq!(last.error.as_deref(), Some("boom"));
        assert_eq!(success, Some(runs[2].finished_at), "a held apply is a success");
        assert!(last_sync(&[rec("p", "plan", "success", 1)]).0.is_none(), "a plan syncs nothing");
    }
}
