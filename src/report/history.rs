//! `idsync history EMAIL`: every change idsync made to one person, oldest first, from the
//! audit log (the CLI reads it and fills a [`History`]). Pure; lays out, adds nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::TextOrJson;

/// The version of the history JSON; bumped only when a field changes meaning or goes.
const VERSION: u32 = 1;

/// One person's trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    /// The email asked for, lower case.
    pub user: String,
    pub changes: Vec<HistoryEntry>,
}

/// One audited step about the person: an action's end (`ok`, `error`, ...), an action
/// skipped, begun but never ended (`unknown`), or an approval given or revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub ts: DateTime<Utc>,
    pub run_id: String,
    /// `end`, `skip`, `begin` (never ended), `approve` or `revoke`.
    pub event: String,
    pub action_id: String,
    pub kind: String,
    pub team: Option<String>,
    pub role: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
    /// `ok`, `error`, `skipped`, `not_applied`, or `unknown` for a step never ended;
    /// `None` for approvals.
    pub result: Option<String>,
    pub detail: Option<String>,
    /// For an action an approval released: who approved it, and over which guards.
    pub approved_by: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<String>,
}

pub fn render(h: &History, format: TextOrJson) -> String {
    match format {
        TextOrJson::Json => super::versioned_json(VERSION, h),
        TextOrJson::Text => render_text(h),
    }
}

fn render_text(h: &History) -> String {
    let mut out = format!("History of {} ({} change(s) by idsync, oldest first)\n", h.user, h.changes.len());
    if h.changes.is_empty() {
        out.push_str("  idsync's audit log holds nothing about this person.\n");
        return out;
    }
    for e in &h.changes {
        let mut what = e.kind.clone();
        if let Some(t) = &e.team {
            what.push_str(&format!(" team {t}"));
        }
        match (&e.from, &e.to, &e.role) {
            (Some(f), Some(t), _) => what.push_str(&format!(" {f} -> {t}")),
            (None, Some(t), _) | (None, None, Some(t)) => what.push_str(&format!(" {t}")),
            (Some(f), None, _) => what.push_str(&format!(" (was {f})")),
            _ => {}
        }
        let result = match (e.event.as_str(), &e.result) {
            ("approve", _) => "approved".to_string(),
            ("revoke", _) => "approval revoked".to_string(),
            (_, Some(r)) => r.clone(),
            (_, None) => "unknown".to_string(),
        };
        out.push_str(&format!(
            "  {}  run {}  {}  {result}\n",
            e.ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.run_id,
            what
        ));
        if !e.reason.is_empty() {
            out.push_str(&format!("      reason: {}\n", e.reason));
        }
        if let Some(d) = e.detail.as_deref().filter(|d| !d.is_empty() && *d != "applied") {
            out.push_str(&format!("      detail: {d}\n"));
        }
        if let Some(by) = &e.approved_by {
            out.push_str(&format!("      approved by {by} over {}\n", e.guards.join(", ")));
        } else if matches!(e.event.as_str(), "approve" | "revoke") && !e.guards.is_empty() {
            out.push_str(&format!("      guards: {}\n", e.guards.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(event: &str, kind: &str, result: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            ts: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
            run_id: "r1".into(),
            event: event.into(),
            action_id: "abc".into(),
            kind: kind.into(),
            team: Some("ml".into()),
            role: Some("admin".into()),
            to: Some("admin".into()),
            reason: "policy.teams: ml".into(),
            result: result.map(str::to_string),
            ..HistoryEntry::default()
        }
    }

    #[test]
    fn text_shows_each_change_with_reason_result_and_approver() {
        let mut released = entry("end", "remove_from_team", Some("ok"));
        released.approved_by = Some("alice".into());
        released.guards = vec!["mass-team-removal".into()];
        let h = History {
            user: "a@example.com".into(),
            changes: vec![entry("end", "add_to_team", Some("ok")), released],
        };
        let t = render(&h, TextOrJson::Text);
        assert!(t.contains("History of a@example.com (2 change(s)"), "{t}");
        assert!(t.contains("run r1  add_to_team team ml admin  ok"), "{t}");
        assert!(t.contains("reason: policy.teams: ml"), "{t}");
        assert!(t.contains("approved by alice over mass-team-removal"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&render(&h, TextOrJson::Json)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["changes"][1]["approved_by"], "alice");
        assert_eq!(v["changes"][0]["ts"], "2026-12-01T09:00:00Z");
    }

    #[test]
    fn an_empty_history_says_so() {
        let t = render(&History::default(), TextOrJson::Text);
        assert!(t.contains("holds nothing"), "{t}");
    }
}
