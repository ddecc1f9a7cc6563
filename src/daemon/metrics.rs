//! The Prometheus metrics of SPEC §7, fed from each run's [`RunOutcome`].
//!
//! Every metric is declared in [`Metrics::new`] and set in [`Metrics::observe`]: a new
//! gauge is one field, one line in `new`, one line in `observe`. Label sets that are known
//! up front (kinds, guards, phases, results) are initialised at zero, so a series exists
//! from the first scrape and alert expressions never see "no data" for "none".

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::plan::{ActionKind, Guard};
use crate::sync::RunOutcome;

/// Run durations range from a fraction of a second (a small LDIF) to minutes (a big
/// directory behind a slow W&B), so the buckets do too.
const DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

pub struct Metrics {
    registry: Registry,
    runs_total: IntCounterVec,
    last_run_timestamp: Gauge,
    last_success_timestamp: Gauge,
    run_duration: HistogramVec,
    source_users: IntGauge,
    source_groups: IntGauge,
    target_users: IntGaugeVec,
    org_admins: IntGauge,
    /// Extension: `guards.min_org_admins`, so the "admins at the floor" alert needs no
    /// copy of the config.
    org_admins_floor: IntGauge,
    drift_actions: IntGaugeVec,
    held_actions: IntGaugeVec,
    tombstones: IntGauge,
    /// Extension (issue 6): active users inactive for more than `report.inactive_days`.
    inactive_users: IntGauge,
    /// Extension (issue 6): active in-scope users missing from the directory.
    orphan_users: IntGauge,
    actions_applied_total: IntCounterVec,
    http_requests_total: IntCounterVec,
    http_retries_total: IntCounterVec,
    /// HA: 1 on the node that holds the leader lease, 0 on a standby (label: node name).
    ha_leader: IntGaugeVec,
    /// HA: times this node took the lease over from another node.
    ha_failovers_total: IntCounter,
}

/// What the daemon knows besides the outcome itself.
pub struct Context {
    pub min_org_admins: usize,
    /// Tombstones in the state store after the run (`None` when it could not be read).
    pub tombstones: Option<usize>,
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new("idsync_build_info", "Always 1; the version label says which idsync runs."),
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let m = Metrics {
            runs_total: IntCounterVec::new(
                Opts::new("idsync_runs_total", "Runs by result; held runs count as success."),
                &["result"],
            )?,
            last_run_timestamp: Gauge::new("idsync_last_run_timestamp_seconds", "When the last run finished (Unix time).")?,
            last_success_timestamp: Gauge::new(
                "idsync_last_success_timestamp_seconds",
                "When the last successful (or held) run finished (Unix time).",
            )?,
            run_duration: HistogramVec::new(
                HistogramOpts::new("idsync_run_duration_seconds", "Duration of each phase of a run.").buckets(DURATION_BUCKETS.to_vec()),
                &["phase"],
            )?,
            source_users: IntGauge::new("idsync_source_users", "People read from the directory in the last read.")?,
            source_groups: IntGauge::new("idsync_source_groups", "Groups read from the directory in the last read.")?,
            target_users: IntGaugeVec::new(Opts::new("idsync_target_users", "W&B users by state, as last read."), &["state"])?,
            org_admins: IntGauge::new("idsync_org_admins", "Active W&B org admins, as last read.")?,
            org_admins_floor: IntGauge::new("idsync_org_admins_floor", "guards.min_org_admins: idsync never goes below it.")?,
            drift_actions: IntGaugeVec::new(
                Opts::new("idsync_drift_actions", "Ready actions in the latest plan, by kind."),
                &["kind"],
            )?,
            held_actions: IntGaugeVec::new(
                Opts::new("idsync_held_actions", "Held actions in the latest plan, by guard."),
                &["guard"],
            )?,
            tombstones: IntGauge::new("idsync_tombstones", "Users waiting out their grace period before deprovisioning.")?,
            inactive_users: IntGauge::new(
                "idsync_inactive_users",
                "Active W&B users last active more than report.inactive_days ago or never active (lastActiveAt null); unknown activity is not counted.",
            )?,
            orphan_users: IntGauge::new(
                "idsync_orphan_users",
                "Active W&B users in managed domains with no directory entry.",
            )?,
            actions_applied_total: IntCounterVec::new(
                Opts::new(
                    "idsync_actions_applied_total",
                    "Actions executed, by kind and result (ok, error, unknown, not_applied, skipped).",
                ),
                &["kind", "result"],
            )?,
            http_requests_total: IntCounterVec::new(
                Opts::new(
                    "idsync_http_requests_total",
                    "HTTP requests by system and status code (\"error\": no response).",
                ),
                &["system", "code"],
            )?,
            http_retries_total: IntCounterVec::new(
                Opts::new("idsync_http_retries_total", "HTTP requests retried, by system."),
                &["system"],
            )?,
            ha_leader: IntGaugeVec::new(
                Opts::new(
                    "idsync_ha_leader",
                    "[ha]: 1 while this node holds the leader lease and applies, 0 on a standby.",
                ),
                &["node"],
            )?,
            ha_failovers_total: IntCounter::new(
                "idsync_ha_failovers_total",
                "[ha]: times this node took the leader lease over from another node.",
            )?,
            registry,
        };
        m.registry.register(Box::new(build_info))?;
        m.registry.register(Box::new(m.runs_total.clone()))?;
        m.registry.register(Box::new(m.last_run_timestamp.clone()))?;
        m.registry.register(Box::new(m.last_success_timestamp.clone()))?;
        m.registry.register(Box::new(m.run_duration.clone()))?;
        m.registry.register(Box::new(m.source_users.clone()))?;
        m.registry.register(Box::new(m.source_groups.clone()))?;
        m.registry.register(Box::new(m.target_users.clone()))?;
        m.registry.register(Box::new(m.org_admins.clone()))?;
        m.registry.register(Box::new(m.org_admins_floor.clone()))?;
        m.registry.register(Box::new(m.drift_actions.clone()))?;
        m.registry.register(Box::new(m.held_actions.clone()))?;
        m.registry.register(Box::new(m.tombstones.clone()))?;
        m.registry.register(Box::new(m.inactive_users.clone()))?;
        m.registry.register(Box::new(m.orphan_users.clone()))?;
        m.registry.register(Box::new(m.actions_applied_total.clone()))?;
        m.registry.register(Box::new(m.http_requests_total.clone()))?;
        m.registry.register(Box::new(m.http_retries_total.clone()))?;
        m.registry.register(Box::new(m.ha_leader.clone()))?;
        m.registry.register(Box::new(m.ha_failovers_total.clone()))?;

        for r in ["success", "failure"] {
            m.runs_total.with_label_values(&[r]);
        }
        for s in ["active", "inactive"] {
            m.target_users.with_label_values(&[s]);
        }
        for k in ActionKind::ALL {
            m.drift_actions.with_label_values(&[k.as_str()]);
            for r in ["ok", "error", "unknown", "not_applied", "skipped"] {
                m.actions_applied_total.with_label_values(&[k.as_str(), r]);
            }
        }
        for g in Guard::ALL {
            m.held_actions.with_label_values(&[g.as_str()]);
        }
        for s in ["source", "target"] {
            m.http_retries_total.with_label_values(&[s]);
        }
        for p in ["source", "target", "plan", "apply"] {
            m.run_duration.with_label_values(&[p]);
        }
        Ok(m)
    }

    /// At start-up, the last run and last success the state store remembers, so a restarted
    /// daemon does not export 0 (which looks stale) until its first run finishes.
    pub fn seed(&self, last_run: Option<DateTime<Utc>>, last_success: Option<DateTime<Utc>>) {
        if let Some(t) = last_run {
            self.last_run_timestamp.set(t.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(t) = last_success {
            self.last_success_timestamp.set(t.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Folds one run into the metrics. A failed run moves the run counters and timestamps
    /// only: the gauges keep describing the last read that worked.
    pub fn observe(&self, o: &RunOutcome, ctx: &Context) {
        let ok = o.result != crate::sync::RunResult::Failure;
        self.runs_total.with_label_values(&[if ok { "success" } else { "failure" }]).inc();
        let ts = o.finished.timestamp_millis() as f64 / 1000.0;
        self.last_run_timestamp.set(ts);
        if ok {
            self.last_success_timestamp.set(ts);
        }
        for (phase, d) in [
            ("source", o.phases.source),
            ("target", o.phases.target),
            ("plan", o.phases.plan),
            ("apply", o.phases.apply),
        ] {
            if let Some(d) = d {
                self.run_duration.with_label_values(&[phase]).observe(d.as_secs_f64());
            }
        }
        self.org_admins_floor.set(to_i64(ctx.min_org_admins));
        if let Some(s) = &o.sides {
            self.source_users.set(to_i64(s.source_users));
            self.source_groups.set(to_i64(s.source_groups));
            self.target_users.with_label_values(&["active"]).set(to_i64(s.target_active));
            self.target_users.with_label_values(&["inactive"]).set(to_i64(s.target_inactive));
            self.org_admins.set(to_i64(s.org_admins));
        }
        if let Some(plan) = &o.plan {
            for k in ActionKind::ALL {
                let n = plan.ready().filter(|a| a.kind == k).count();
                self.drift_actions.with_label_values(&[k.as_str()]).set(to_i64(n));
            }
            for g in Guard::ALL {
                let n = plan.held().filter(|a| a.guard == Some(g)).count();
                self.held_actions.with_label_values(&[g.as_str()]).set(to_i64(n));
            }
        }
        if let Some(n) = ctx.tombstones {
            self.tombstones.set(to_i64(n));
        }
        if let Some(seats) = &o.seats {
            self.inactive_users.set(to_i64(seats.inactive_users));
            self.orphan_users.set(to_i64(seats.orphan_users));
        }
        if let Some(report) = &o.report {
            for (a, r) in &report.results {
                self.actions_applied_total.with_label_values(&[a.kind.as_str(), r.as_str()]).inc();
            }
        }
        // The clients are new each run, so their counters are this run's.
        for (system, stats) in [("target", &o.http), ("source", &o.source_http)] {
            for (code, n) in &stats.requests_by_code {
                self.http_requests_total.with_label_values(&[system, code]).inc_by(*n);
            }
            self.http_retries_total.with_label_values(&[system]).inc_by(stats.retries);
        }
    }

    /// HA: this node's role (`idsync_ha_leader{node}`).
    pub fn set_ha_leader(&self, node: &str, leader: bool) {
        self.ha_leader.with_label_values(&[node]).set(i64::from(leader));
    }

    /// HA: this node took the lease over from another node.
    pub fn count_failover(&self) {
        self.ha_failovers_total.inc();
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a metric family with no metrics, which the
        // registry never hands out.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpStats;
    use crate::sync::{PhaseDurations, RunResult, SideCounts};
    use chrono::{TimeZone, Utc};

    fn outcome(result: RunResult) -> RunOutcome {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        RunOutcome {
            run_id: "r".into(),
            started: t,
            finished: t,
            result,
            error: None,
            plan: None,
            report: None,
            phases: PhaseDurations {
                source: Some(std::time::Duration::from_millis(30)),
                ..PhaseDurations::default()
            },
            sides: Some(SideCounts {
                source_users: 7,
                source_groups: 2,
                target_active: 5,
                target_inactive: 1,
                org_admins: 2,
            }),
            http: HttpStats {
                requests_by_code: [("200".to_string(), 4u64)].into_iter().collect(),
                retries: 1,
            },
            source_http: HttpStats {
                requests_by_code: [("200".to_string(), 2u64)].into_iter().collect(),
                retries: 0,
            },
            seats: Some(crate::report::seats::SeatMetrics {
                inactive_users: 3,
                orphan_users: 1,
            }),
            stopped: false,
            fenced: false,
        }
    }

    #[test]
    fn every_spec_metric_is_exported_from_the_first_scrape() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        for name in [
            "idsync_build_info",
            "idsync_runs_total",
            "idsync_drift_actions",
            "idsync_held_actions",
            "idsync_http_retries_total",
            "idsync_target_users",
            "idsync_org_admins_floor",
            "idsync_inactive_users",
            "idsync_orphan_users",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert!(text.contains("idsync_held_actions{guard=\"last-admin\"} 0"), "{text}");
    }

    #[test]
    fn a_failed_run_moves_the_counters_but_not_the_success_timestamp() {
        let m = Metrics::new().unwrap();
        let ctx = Context {
            min_org_admins: 1,
            tombstones: Some(3),
        };
        m.observe(&outcome(RunResult::Success), &ctx);
        let mut failed = outcome(RunResult::Failure);
        failed.finished += chrono::Duration::minutes(15);
        failed.sides = None;
        failed.seats = None;
        m.observe(&failed, &ctx);
        let text = m.render();
        assert!(text.contains("idsync_runs_total{result=\"success\"} 1"), "{text}");
        assert!(text.contains("idsync_runs_total{result=\"failure\"} 1"), "{text}");
        assert!(text.contains("idsync_last_success_timestamp_seconds 1767268800\n"), "{text}");
        assert!(text.contains("idsync_last_run_timestamp_seconds 1767269700\n"), "{text}");
        assert!(text.contains("idsync_source_users 7"), "{text}");
        assert!(text.contains("idsync_tombstones 3"), "{text}");
        // A failed run (no snapshots) leaves the seat gauges at the last good read.
        assert!(text.contains("idsync_inactive_users 3\n"), "{text}");
        assert!(text.contains("idsync_orphan_users 1\n"), "{text}");
        assert!(
            text.contains("idsync_http_requests_total{code=\"200\",system=\"source\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("idsync_http_requests_total{code=\"200\",system=\"target\"} 8"),
            "{text}"
        );
        assert!(text.contains("idsync_run_duration_seconds_count{phase=\"source\"} 2"), "{text}");
    }
}

/// The alert rules and the dashboard name only metrics this module exports.
#[cfg(test)]
mod deploy_tests {
    use super::Metrics;
    use std::collections::BTreeSet;

    fn names_in(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("idsync_") {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            // Histogram series and the alert/dashboard's own names are not metrics.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            if base.len() > "idsync_".len() {
                out.insert(base.to_string());
            }
            rest = &tail[end..];
        }
        out
    }

    #[test]
    fn alert_rules_and_dashboard_use_exported_metric_names() {
        let m = Metrics::new().unwrap();
        // Status codes are only known once requests were made; node names once HA runs.
        m.http_requests_total.with_label_values(&["target", "200"]).inc();
        m.set_ha_leader("node-a", true);
        let exported: BTreeSet<String> = m
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        assert!(exported.contains("idsync_runs_total"), "{exported:?}");
        for (file, text) in [
            ("idsync-alerts.yml", include_str!("../../deploy/prometheus/idsync-alerts.yml")),
            ("idsync-dashboard.json", include_str!("../../deploy/grafana/idsync-dashboard.json")),
        ] {
            let used = names_in(text);
            assert!(used.len() >= 5, "{file}: {used:?}");
            let unknown: Vec<&String> = used.difference(&exported).collect();
            assert!(unknown.is_empty(), "{file} names metrics idsync does not export: {unknown:?}");
        }
        let dashboard: serde_json::Value = serde_json::from_str(include_str!("../../deploy/grafana/idsync-dashboard.json")).unwrap();
        assert!(dashboard["panels"].as_array().is_some_and(|p| !p.is_empty()));
    }
}
