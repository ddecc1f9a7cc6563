//! Fixtures the state tests share: fixed times, emails, actions, approvals, healthy reads.
//! Test-only.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;

use super::DB_FILE;
use crate::model::Email;
use crate::plan::{Action, ActionId, ActionKind, Approval, Guard, HealthyRead};

pub(super) fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub(super) fn t(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, h, 0, 0).unwrap()
}

pub(super) fn action(user: &str, team: &str) -> Action {
    Action::new(
        ActionKind::AddToTeam,
        Some(email(user)),
        Some(team.into()),
        Some("member".into()),
        "test".into(),
    )
}

pub(super) fn approval(id: &str, at: u32, exp: u32) -> Approval {
    Approval {
        action_id: ActionId(id.into()),
        approved_at: t(at),
        expires_at: t(exp),
        approved_by: "ops".into(),
        guards: vec![Guard::PipelineKey],
        fingerprint: format!("fp-{id}"),
        kind: Some(ActionKind::DeprovisionUser),
        user: Some(email("ci@x.com")),
        team: None,
    }
}

pub(super) fn user_version(dir: &Path) -> i64 {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

pub(super) fn healthy(h: u32, people: usize, groups: &[(&str, usize)]) -> HealthyRead {
    HealthyRead {
        at: t(h),
        people,
        groups: groups.iter().map(|(g, n)| (g.to_string(), *n)).collect(),
    }
}
