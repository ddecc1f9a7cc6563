//! The daemon's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/status`.
//!
//! Handlers only read [`Shared`], which the run loop updates after each run; they never
//! touch the state store or W&B, so a scrape cannot slow down or block a run.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::metrics::Metrics;
use crate::plan::{Plan, Tombstone};
use crate::state::RunRecord;
use crate::sync::RunResult;

pub struct Shared {
    pub metrics: Metrics,
    status: Mutex<StatusView>,
}

impl Shared {
    pub fn new(metrics: Metrics, status: StatusView) -> Shared {
        Shared {
            metrics,
            status: Mutex::new(status),
        }
    }

    pub fn status(&self) -> MutexGuard<'_, StatusView> {
        // A poisoned lock means a handler panicked mid-update; the view is still usable.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What `/status` shows and `/readyz` decides on.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub config: ConfigView,
    pub running: bool,
    pub next_run: Option<DateTime<Utc>>,
    /// Seconds between two schedule ticks; `/readyz` allows three of them.
    pub interval_seconds: Option<i64>,
    pub last_run: Option<LastRun>,
    pub last_success: Option<DateTime<Utc>>,
    /// Newest first, from the state store (includes `plan`/`apply` runs from the CLI).
    pub last_runs: Vec<RunRecord>,
    pub latest_plan: Option<PlanView>,
    pub tombstones: Vec<Tombstone>,
    /// `[ha] enabled = true`: this node, its role and who holds the lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<super::ha::HaView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigView {
    pub path: String,
    pub schedule: String,
    pub listen: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub result: &'static str,
    pub finished_at: DateTime<Utc>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub generated_at: DateTime<Utc>,
    pub summary: std::collections::BTreeMap<String, usize>,
    pub ready: usize,
    pub held: Vec<HeldView>,
    /// Why source-health found the read suspicious: a run can be `held` with nothing held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspicious: Option<String>,
}

/// A held action, with what a human needs to approve it (`idsync approve --id`).
#[derive(Debug, Clone, Serialize)]
pub struct HeldView {
    pub id: String,
    pub kind: &'static str,
    pub user: Option<String>,
    pub team: Option<String>,
    pub guard: Option<&'static str>,
    pub reason: Option<String>,
    pub overridable: bool,
}

impl PlanView {
    pub fn of(plan: &Plan) -> PlanView {
        PlanView {
            generated_at: plan.generated_at,
            summary: plan.summary.clone(),
            ready: plan.ready().count(),
            held: plan
                .held()
                .map(|a| HeldView {
                    id: a.id.to_string(),
                    kind: a.kind.as_str(),
                    user: a.user.as_ref().map(|u| u.to_string()),
                    team: a.team.clone(),
                    guard: a.guard.map(|g| g.as_str()),
                    reason: a.held_reason.clone(),
                    overridable: a.overridable(),
                })
                .collect(),
            suspicious: plan.source.suspicious.clone(),
        }
    }
}

impl StatusView {
    /// `Ok` when the last run succeeded (or was held) and finished within three schedule
    /// intervals of `now`; otherwise why not.
    pub fn readiness(&self, now: DateTime<Utc>) -> Result<(), String> {
        let Some(last) = &self.last_run else {
            return Err("no run has finished yet".into());
        };
        if last.result == RunResult::Failure.as_str() {
            return Err(format!(
                "the last run ({}) failed: {}",
                last.run_id,
                last.error.as_deref().unwrap_or("see the logs")
            ));
        }
        if let Some(secs) = self.interval_seconds {
            let age = now - last.finished_at;
            if age > chrono::Duration::seconds(secs.saturating_mul(3)) {
                return Err(format!(
                    "the last run finished {}s ago, more than 3 schedule intervals ({secs}s each)",
                    age.num_seconds()
                ));
            }
        }
        Ok(())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.status().readiness(Utc::now()) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

/// Through the reports' JSON writer, so `curl /status` on a terminal is as inert as
/// `idsync status --format json` (run errors carry W&B's and the directory's text).
async fn status(State(s): State<Arc<Shared>>) -> Response {
    let body = crate::report::escape::json_string(&*s.status());
    match body {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the status: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn view(result: &'static str, finished: DateTime<Utc>) -> StatusView {
        StatusView {
            config: ConfigView {
                path: "idsync.toml".into(),
                schedule: "0 */15 * * * *".into(),
                listen: "127.0.0.1:9464".into(),
            },
            running: false,
            next_run: None,
            interval_seconds: Some(900),
            last_run: Some(LastRun {
                run_id: "r1".into(),
                result,
                finished_at: finished,
                error: (result == "failure").then(|| "W&B unreachable".to_string()),
            }),
            last_success: None,
            last_runs: vec![],
            latest_plan: None,
            tombstones: vec![],
            ha: None,
        }
    }

    #[test]
    fn ready_only_after_a_fresh_successful_or_held_run() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert!(view("success", t).readiness(t + chrono::Duration::minutes(44)).is_ok());
        assert!(view("held", t).readiness(t).is_ok());
        let stale = view("success", t).readiness(t + chrono::Duration::minutes(46)).unwrap_err();
        assert!(stale.contains("3 schedule intervals"), "{stale}");
        let failed = view("failure", t).readiness(t).unwrap_err();
        assert!(failed.contains("W&B unreachable"), "{failed}");
        let mut none = view("success", t);
        none.last_run = None;
        assert!(none.readiness(t).is_err());
    }

    #[test]
    fn the_latest_plan_says_why_its_read_was_suspicious_and_only_then() {
        let mut plan = Plan {
            version: 1,
            generated_at: Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap(),
            source: Default::default(),
            target: Default::default(),
            summary: Default::default(),
            actions: vec![],
            tombstones: vec![],
            skipped: vec![],
            roster_before: vec![],
            roster_after: vec![],
            identity_pending: Default::default(),
            undo: None,
        };
        let v = serde_json::to_value(PlanView::of(&plan)).unwrap();
        assert!(v.get("suspicious").is_none(), "{v}");
        plan.source.suspicious = Some("the directory shrank from 100 to 40".into());
        let v = serde_json::to_value(PlanView::of(&plan)).unwrap();
        assert_eq!(v["suspicious"], "the directory shrank from 100 to 40");
    }
}
