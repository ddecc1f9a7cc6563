//! `idsync status`: the last runs, tombstones and pending approvals from the state store,
//! as text (one row per line) or JSON; and `idsync approvals`, the pending approvals alone,
//! in the same rows. Pure: the CLI reads the store and fills a
//! [`StatusReport`]; this module only lays it out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::plan::{ActionKind, Approval, Guard, Tombstone};

use super::{deprovision_time, time, tombstone_cause, TextOrJson};

/// The version of the status JSON; bumped only when a field changes meaning or goes.
const VERSION: u32 = 1;

/// Everything `idsync status` shows. The JSON shape is documented in the README.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// `daemon.state_dir`.
    pub state_dir: String,
    /// False when there is no state store yet (nothing applied with this state directory).
    pub store_exists: bool,
    /// Newest first.
    pub runs: Vec<StatusRun>,
    /// Oldest first, with cause and when deprovisioning is planned (`null`: never).
    pub tombstones: Vec<Tombstone>,
    /// Approvals not yet expired, oldest first.
    pub approvals: Vec<StatusApproval>,
    /// Journal entries the next apply or daemon run settles against W&B, oldest first.
    pub unsettled: Vec<StatusUnsettled>,
    /// `[ha] enabled = true`: who holds the leader lease now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<StatusHa>,
}

/// The HA leader lease as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusHa {
    /// The node holding an unexpired lease; `None`: no node leads now.
    pub leader: Option<String>,
    pub token: Option<i64>,
    /// How long the lease is valid for yet, by the database's clock.
    pub valid_for_seconds: Option<u64>,
}

/// An action begun and not yet settled: interrupted, or sent with an unknown outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusUnsettled {
    pub run_id: String,
    pub action_id: String,
    pub kind: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub begun_at: DateTime<Utc>,
    /// `unknown` (sent; W&B's answer never said) or `interrupted` (no result recorded).
    pub state: String,
    /// Why the outcome is unknown.
    pub detail: Option<String>,
}

/// One recorded run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRun {
    pub run_id: String,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `success`, `held` or `failure`.
    pub result: String,
    pub summary: BTreeMap<String, usize>,
    pub error: Option<String>,
}

/// One pending approval and what it releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusApproval {
    pub action_id: String,
    /// `null` for approvals recorded by an idsync that did not keep them.
    pub kind: Option<ActionKind>,
    pub user: Option<String>,
    pub team: Option<String>,
    /// The guards it releases the action from.
    pub guards: Vec<Guard>,
    pub approved_by: String,
    pub approved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl StatusApproval {
    pub fn of(a: &Approval) -> StatusApproval {
        StatusApproval {
            action_id: a.action_id.to_string(),
            kind: a.kind,
            user: a.user.as_ref().map(|u| u.to_string()),
            team: a.team.clone(),
            guards: a.guards.clone(),
            approved_by: a.approved_by.clone(),
            approved_at: a.approved_at,
            expires_at: a.expires_at,
        }
    }
}

pub fn render(r: &StatusReport, format: TextOrJson) -> String {
    match format {
        TextOrJson::Text => render_text(r),
        TextOrJson::Json => render_json(r),
    }
}

/// Pretty JSON, `{"version": 1, ...}`.
pub fn render_json(r: &StatusReport) -> String {
    super::versioned_json(VERSION, r)
}

/// Free text (an error message from a server) on one line, so one row stays one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn render_text(r: &StatusReport) -> String {
    let mut out = String::new();
    // Every line passes here (see `escape`).
    let mut line = |s: String| {
        out.push_str(&super::escape::neutralise(&s, super::escape::Keep::Nothing));
        out.push('\n');
    };
    line(format!("state: {}", r.state_dir));
    match &r.ha {
        Some(StatusHa {
            leader: Some(node),
            token,
            valid_for_seconds,
        }) => line(format!(
            "ha: leader {node} (token {}, lease valid {}s more)",
            token.unwrap_or_default(),
            valid_for_seconds.unwrap_or_default()
        )),
        Some(_) => line("ha: no node holds the leader lease (it expired or was never taken): nothing applies until one does".into()),
        None => {}
    }
    if !r.store_exists {
        line("no runs yet (no state store: nothing has been applied with this state directory)".into());
    } else if r.runs.is_empty() {
        line("no runs yet".into());
    } else {
        line("last runs:".into());
        for run in &r.runs {
            let counts: Vec<String> = run.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line(format!(
                "  {} {:<6} {:<8} {} {}{}",
                time(&run.started_at),
                run.command,
                run.result,
                run.run_id,
                counts.join(" "),
                run.error.as_deref().map(|e| format!(" error: {}", one_line(e))).unwrap_or_default()
            ));
        }
    }
    line(format!("tombstones: {}", r.tombstones.len()));
    let w = r.tombstones.iter().map(|t| t.user.as_str().chars().count()).max().unwrap_or(0);
    for t in &r.tombstones {
        let (cause, after) = (tombstone_cause(t), deprovision_time(t));
        line(format!(
            "  {:<w$}  {cause} since {}, deprovision after {after}",
            t.user.as_str(),
            time(&t.since)
        ));
    }
    line(format!("pending approvals: {}", r.approvals.len()));
    for a in &r.approvals {
        line(format!("  {}", approval_row(a)));
    }
    if !r.unsettled.is_empty() {
        line(format!(
            "unsettled actions: {} (the next apply or run settles them against W&B)",
            r.unsettled.len()
        ));
        for u in &r.unsettled {
            let who = u.user.as_deref().unwrap_or("");
            let team = u.team.as_deref().map(|t| format!(" team {t}")).unwrap_or_default();
            let why = u.detail.as_deref().map(|d| format!(": {}", one_line(d))).unwrap_or_default();
            line(format!(
                "  {} {} {who}{team} {} in run {} since {}{why}",
                u.action_id,
                u.kind,
                u.state,
                u.run_id,
                time(&u.begun_at)
            ));
        }
    }
    out
}

/// One pending approval on one line: `ID KIND USER team TEAM over GUARDS by WHO until
/// WHEN`, the row `status` and `approvals` share.
pub fn approval_row(a: &StatusApproval) -> String {
    let what = match (a.kind, &a.user, &a.team) {
        (None, _, _) => "(action not recorded: approved by an older idsync)".to_string(),
        (Some(k), user, team) => {
            let mut s = k.as_str().to_string();
            if let Some(u) = user {
                s.push_str(&format!(" {u}"));
            }
            if let Some(t) = team {
                s.push_str(&format!(" team {t}"));
            }
            s
        }
    };
    let guards: Vec<&str> = a.guards.iter().map(|g| g.as_str()).collect();
    format!(
        "{} {what} over {} by {} until {}",
        a.action_id,
        if guards.is_empty() { "-".to_string() } else { guards.join(", ") },
        if a.approved_by.is_empty() {
            "unknown".to_string()
        } else {
            one_line(&a.approved_by)
        },
        time(&a.expires_at)
    )
}

/// `idsync approvals`: the pending approvals alone (the same rows and JSON objects as in
/// [`StatusReport`]). The JSON shape is documented in the README.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalsReport {
    pub state_dir: String,
    /// False when there is no state store yet (then nothing can be approved either).
    pub store_exists: bool,
    /// Unexpired, unused approvals, oldest first.
    pub approvals: Vec<StatusApproval>,
}

pub fn render_approvals(r: &ApprovalsReport, format: TextOrJson) -> String {
    match format {
        TextOrJson::Json => super::versioned_json(VERSION, r),
        TextOrJson::Text => {
            let mut out = format!("pending approvals: {}\n", r.approvals.len());
            for a in &r.approvals {
                out.push_str(&format!("  {}\n", approval_row(a)));
            }
            if r.approvals.is_empty() {
                if !r.store_exists {
                    out.push_str(&format!("(no state store in {} yet)\n", r.state_dir));
                }
            } else {
                out.push_str("Withdraw one with `idsync revoke ID`; each is used up when its action is applied.\n");
            }
            super::escape::neutralised(out, super::escape::Keep::Layout)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::Email;
    use crate::plan::TombstoneCause;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap()
    }

    fn report() -> StatusReport {
        StatusReport {
            state_dir: "/var/lib/idsync".into(),
            store_exists: true,
            runs: vec![StatusRun {
                run_id: "r1".into(),
                command: "apply".into(),
                started_at: t(1),
                finished_at: t(2),
                result: "failure".into(),
                summary: BTreeMap::new(),
                error: Some("W&B said:\n  500 Internal\n".into()),
            }],
            tombstones: vec![Tombstone {
                user: Email::parse("gone@example.com").unwrap(),
                since: t(1),
                deprovision_after: None,
                cause: TombstoneCause::Disabled,
            }],
            approvals: vec![StatusApproval {
                action_id: "abc".into(),
                kind: None,
                user: None,
                team: None,
                guards: vec![Guard::MassTeamRemoval],
                approved_by: "ops".into(),
                approved_at: t(1),
                expires_at: t(3),
            }],
            unsettled: vec![],
            ha: None,
        }
    }

    #[test]
    fn a_hostile_error_or_approver_cannot_reach_the_terminal_raw() {
        let mut r = report();
        r.runs[0].error = Some("W&B said: \x1b[2J\u{9b}31m\u{202e}gone".into());
        r.approvals[0].approved_by = "ops\x07\rx".into();
        let text = render_text(&r);
        assert!(text.contains("error: W&B said: \\x1b[2J\\u009b31m\\u202egone\n"), "{text}");
        let approvals = render_approvals(
            &ApprovalsReport {
                state_dir: r.state_dir.clone(),
                store_exists: true,
                approvals: r.approvals.clone(),
            },
            TextOrJson::Text,
        );
        for out in [&text, &approvals] {
            assert!(!out.chars().any(|c| c.is_control() && c != '\n' || c == '\u{202e}'), "{out:?}");
        }
        assert!(approvals.contains("by ops\\x07 x until"), "{approvals}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(json["runs"][0]["error"], "W&B said: \x1b[2J\u{9b}31m\u{202e}gone");
    }

    #[test]
    fn the_ha_line_names_the_leader_or_says_there_is_none_and_only_with_ha() {
        assert!(!render_text(&report()).contains("ha:"), "no [ha]: no line");
        let led = StatusReport {
            ha: Some(StatusHa {
                leader: Some("idsync-2".into()),
                token: Some(7),
                valid_for_seconds: Some(21),
            }),
            ..report()
        };
        assert!(render_text(&led).contains("\nha: leader idsync-2 (token 7, lease valid 21s more)\n"));
        let v: serde_json::Value = serde_json::from_str(&render_json(&led)).unwrap();
        assert_eq!((v["ha"]["leader"].as_str(), v["ha"]["token"].as_i64()), (Some("idsync-2"), Some(7)));
        let none = StatusReport {
            ha: Some(StatusHa {
                leader: None,
                token: None,
                valid_for_seconds: None,
            }),
            ..report()
        };
        assert!(render_text(&none).contains("ha: no node holds the leader lease"));
    }

    #[test]
    fn unsettled_actions_are_listed_only_when_there_are_some() {
        assert!(!render_text(&report()).contains("unsettled"), "nothing to settle: no section");
        let r = StatusReport {
            unsettled: vec![StatusUnsettled {
                run_id: "r1".into(),
                action_id: "abc123".into(),
                kind: "add_to_team".into(),
                user: Some("a@example.com".into()),
                team: Some("ml".into()),
                begun_at: t(1),
                state: "unknown".into(),
                detail: Some("PATCH /Groups/g1: W&B may or may not\nhave applied it".into()),
            }],
            ..report()
        };
        let s = render_text(&r);
        assert!(
            s.contains("unsettled actions: 1 (the next apply or run settles them against W&B)\n"),
            "{s}"
        );
        assert!(
            s.contains("  abc123 add_to_team a@example.com team ml unknown in run r1 since 2026-11-22T01:00:00Z: PATCH /Groups/g1: W&B may or may not have applied it\n"),
            "one line: {s}"
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(v["unsettled"][0]["state"], "unknown");
        assert_eq!(v["unsettled"][0]["action_id"], "abc123");
    }

    #[test]
    fn each_row_is_one_line_and_says_what_it_is() {
        let s = render_text(&report());
        assert!(
            s.contains("  2026-11-22T01:00:00Z apply  failure  r1  error: W&B said: 500 Internal\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "  gone@example.com  disabled in the directory since 2026-11-22T01:00:00Z, deprovision after never (deprovision = off)\n"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "  abc (action not recorded: approved by an older idsync) over mass-team-removal by ops until 2026-11-22T03:00:00Z\n"
            ),
            "{s}"
        );
        assert!(s.contains("pending approvals: 1\n"));
    }

    #[test]
    fn approvals_list_the_same_rows_as_status_and_say_how_to_withdraw() {
        let mut a = report().approvals;
        a.push(StatusApproval {
            action_id: "def".into(),
            kind: Some(ActionKind::RemoveFromTeam),
            user: Some("bob@example.com".into()),
            team: Some("ml".into()),
            guards: vec![Guard::PipelineKey, Guard::SourceHealth],
            approved_by: "alice".into(),
            approved_at: t(1),
            expires_at: t(4),
        });
        let r = ApprovalsReport {
            state_dir: "/var/lib/idsync".into(),
            store_exists: true,
            approvals: a,
        };
        let s = render_approvals(&r, TextOrJson::Text);
        assert!(s.starts_with("pending approvals: 2\n"), "{s}");
        assert!(
            s.contains(
                "  def remove_from_team bob@example.com team ml over pipeline-key, source-health by alice until 2026-11-22T04:00:00Z\n"
            ),
            "{s}"
        );
        assert!(s.contains("idsync revoke ID"), "{s}");
        let status = render_text(&StatusReport {
            approvals: r.approvals.clone(),
            ..report()
        });
        for row in s.lines().filter(|l| l.starts_with("  ")) {
            assert!(status.contains(row), "status shows the same row {row:?}:\n{status}");
        }
        let v: serde_json::Value = serde_json::from_str(&render_approvals(&r, TextOrJson::Json)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["approvals"][1]["guards"], serde_json::json!(["pipeline-key", "source-health"]));
        assert_eq!(v["approvals"][1]["approved_by"], "alice");
        assert_eq!(v["approvals"][1]["expires_at"], "2026-11-22T04:00:00Z");
        let none = ApprovalsReport {
            state_dir: "/x".into(),
            store_exists: false,
            approvals: vec![],
        };
        assert_eq!(
            render_approvals(&none, TextOrJson::Text),
            "pending approvals: 0\n(no state store in /x yet)\n"
        );
    }

    #[test]
    fn the_json_is_versioned_with_nulls_for_what_is_unknown() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&report())).unwrap();
        assert_eq!(v["version"], 1);
        assert!(v["tombstones"][0]["deprovision_after"].is_null());
        assert_eq!(v["tombstones"][0]["cause"], "disabled");
        assert!(v["approvals"][0]["kind"].is_null() && v["approvals"][0]["user"].is_null());
        assert_eq!(v["approvals"][0]["guards"][0], "mass-team-removal");
    }
}
