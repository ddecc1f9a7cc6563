//! `idsync history` and `idsync undo`: what they read of the audit log, streamed (the log
//! grows forever; neither command holds it whole), and the undo plan built from it.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::model::{DirectorySnapshot, Email, OrgSnapshot};
use crate::plan::undo::{self, AppliedChange, RunChanges};
use crate::plan::{ActionKind, Plan, PlanInput, PlanState};
use crate::report::history::{History, HistoryEntry};
use crate::state::{AuditLog, AuditRecord};
use crate::sync::Env;

/// One person's trail from the audit log: every action step and approval about them,
/// oldest first. An action's `begin` is replaced by its `end`, and an `unknown` end by the
/// `settle` that decided it (one line per change); one never ended stays, its result
/// unknown. An approval given for an action shows with the
/// end that used it.
pub(super) fn history(state_dir: &Path, email: &Email) -> Result<History, Error> {
    let mut h = History {
        user: email.to_string(),
        changes: Vec::new(),
    };
    let mut open: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut approved: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    AuditLog::for_each(state_dir, |r| {
        if r.user.as_deref().and_then(Email::parse).as_ref() != Some(email) {
            return;
        }
        let key = (r.run_id.clone(), r.action_id.clone());
        let mut e = entry(&r);
        match r.event.as_str() {
            "approve" => {
                approved.insert(r.action_id.clone(), (r.by.clone().unwrap_or_default(), r.guards.clone()));
                h.changes.push(e);
            }
            "revoke" => {
                approved.remove(&r.action_id);
                h.changes.push(e);
            }
            "begin" => {
                e.result = Some("unknown".into());
                open.insert(key, h.changes.len());
                h.changes.push(e);
            }
            _ => {
                if r.result.as_deref() == Some("ok") {
                    if let Some((by, guards)) = approved.remove(&r.action_id) {
                        e.approved_by = Some(by);
                        e.guards = guards;
                    }
                }
                let unknown = r.result.as_deref() == Some("unknown");
                let i = match open.remove(&key) {
                    Some(i) => {
                        h.changes[i] = e;
                        i
                    }
                    None => {
                        h.changes.push(e);
                        h.changes.len() - 1
                    }
                };
                // An unknown outcome stays open: a later `settle` line replaces it.
                if unknown {
                    open.insert(key, i);
                }
            }
        }
    })?;
    Ok(h)
}

fn entry(r: &AuditRecord) -> HistoryEntry {
    HistoryEntry {
        ts: r.ts,
        run_id: r.run_id.clone(),
        event: r.event.clone(),
        action_id: r.action_id.clone(),
        kind: r.kind.clone(),
        team: r.team.clone(),
        role: r.role.clone(),
        from: r.from.clone(),
        to: r.to.clone(),
        reason: r.reason.clone(),
        result: r.result.clone(),
        detail: r.detail.clone(),
        approved_by: None,
        guards: if matches!(r.event.as_str(), "approve" | "revoke") {
            r.guards.clone()
        } else {
            Vec::new()
        },
    }
}

/// What the audit log says a run applied, and what later runs applied after it.
#[derive(Debug, Default)]
pub(super) struct RunLog {
    pub applied: Vec<AppliedChange>,
    pub later: Vec<AppliedChange>,
}

/// Streams the audit log for `run_id`'s successful changes and the successful changes of
/// every run after its first line. A run the log never mentions is an error.
pub(super) fn run_log(state_dir: &Path, run_id: &str) -> Result<RunLog, Error> {
    let mut log = RunLog::default();
    let mut seen = false;
    let mut first: Option<DateTime<Utc>> = None;
    // Only later changes to the people the run touched matter for superseding: kept as
    // the stream goes, so an old run's undo does not hold the log since.
    let mut people: std::collections::BTreeSet<Option<Email>> = std::collections::BTreeSet::new();
    AuditLog::for_each(state_dir, |r| {
        if r.run_id == run_id {
            seen = true;
            first.get_or_insert(r.ts);
        }
        // An `unknown` end is decided by a later `settle` line under the same run id.
        if first.is_none() || !matches!(r.event.as_str(), "end" | "settle") || r.result.as_deref() != Some("ok") {
            return;
        }
        let Some(c) = change(&r) else { return };
        if r.run_id == run_id {
            people.insert(c.user.clone());
            log.applied.push(c);
        } else if people.contains(&c.user) {
            log.later.push(c);
        }
    })?;
    if !seen {
        return Err(Error::Usage(format!(
            "run {run_id} is not in the audit log ({}): name a run that applied changes (`idsync status` lists the latest runs; `idsync history EMAIL` shows a person's)",
            state_dir.join(crate::state::AUDIT_FILE).display()
        )));
    }
    Ok(log)
}

fn change(r: &AuditRecord) -> Option<AppliedChange> {
    let kind: ActionKind = serde_json::from_value(serde_json::Value::String(r.kind.clone())).ok()?;
    Some(AppliedChange {
        at: r.ts,
        run_id: r.run_id.clone(),
        kind,
        user: r.user.as_deref().and_then(Email::parse),
        team: r.team.clone(),
        role: r.role.clone(),
        from: r.from.clone(),
        to: r.to.clone(),
    })
}

/// The undo plan of `run_id` against the given snapshots and state (pure core).
pub(super) fn undo_plan(
    env: &Env,
    run_id: &str,
    log: &RunLog,
    dir: &DirectorySnapshot,
    org: &OrgSnapshot,
    state: &PlanState,
    now: DateTime<Utc>,
) -> Plan {
    undo::undo(
        PlanInput {
            directory: dir,
            org,
            policy: &env.policy,
            state,
            now,
        },
        &RunChanges {
            run_id,
            applied: &log.applied,
            later: &log.later,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rec(minute: u32, run: &str, event: &str, kind: &str, user: &str, result: Option<&str>) -> AuditRecord {
        AuditRecord {
            ts: Utc.with_ymd_and_hms(2026, 12, 1, 9, minute, 0).unwrap(),
            run_id: run.into(),
            actor: "idsync apply (user test)".into(),
            event: event.into(),
            action_id: format!("{kind}-{}", user.to_lowercase()),
            kind: kind.into(),
            user: Some(user.into()),
            result: result.map(str::to_string),
            ..AuditRecord::default()
        }
    }

    fn log(records: &[AuditRecord]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(tmp.path()).unwrap();
        for r in records {
            log.append(r).unwrap();
        }
        tmp
    }

    #[test]
    fn history_is_one_line_per_change_with_the_approval_that_released_it() {
        let mut approve = rec(1, "r0", "approve", "deprovision_user", "Ci@Example.com", None);
        approve.by = Some("alice".into());
        approve.guards = vec!["pipeline-key".into()];
        let dir = log(&[
            rec(0, "r0", "begin", "add_to_team", "other@example.com", None),
            approve,
            rec(2, "r1", "begin", "deprovision_user", "ci@example.com", None),
            rec(3, "r1", "end", "deprovision_user", "ci@example.com", Some("ok")),
            rec(4, "r2", "begin", "create_user", "ci@example.com", None),
            rec(5, "r3", "begin", "add_to_team", "ci@example.com", None),
            rec(6, "r3", "end", "add_to_team", "ci@example.com", Some("unknown")),
            rec(7, "r3", "settle", "add_to_team", "ci@example.com", Some("ok")),
        ]);
        let h = history(dir.path(), &Email::parse("CI@example.com").unwrap()).unwrap();
        let got: Vec<(&str, &str, Option<&str>, Option<&str>)> = h
            .changes
            .iter()
            .map(|c| (c.event.as_str(), c.kind.as_str(), c.result.as_deref(), c.approved_by.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("approve", "deprovision_user", None, None),
                ("end", "deprovision_user", Some("ok"), Some("alice")),
                ("begin", "create_user", Some("unknown"), None),
                ("settle", "add_to_team", Some("ok"), None),
            ]
        );
        assert_eq!(h.changes[1].guards, vec!["pipeline-key".to_string()]);
    }

    #[test]
    fn a_runs_log_is_its_successful_changes_and_later_ones_to_the_same_people() {
        let dir = log(&[
            rec(0, "r0", "end", "add_to_team", "a@example.com", Some("ok")),
            rec(1, "r1", "end", "add_to_team", "a@example.com", Some("ok")),
            rec(2, "r1", "end", "add_to_team", "b@example.com", Some("error")),
            rec(3, "r2", "end", "remove_from_team", "a@example.com", Some("ok")),
            rec(4, "r2", "end", "remove_from_team", "c@example.com", Some("ok")),
            rec(5, "r1", "settle", "set_team_role", "a@example.com", Some("ok")),
        ]);
        let l = run_log(dir.path(), "r1").unwrap();
        assert_eq!(l.applied.len(), 2, "what succeeded, a settled unknown too: {:?}", l.applied);
        assert_eq!(l.applied[1].kind, ActionKind::SetTeamRole);
        assert_eq!(l.applied[0].kind, ActionKind::AddToTeam);
        assert_eq!(l.later.len(), 1, "only later, only the same people: {:?}", l.later);
        assert_eq!(l.later[0].run_id, "r2");
        let err = run_log(dir.path(), "r9").unwrap_err().to_string();
        assert!(
            err.contains("run r9 is not in the audit log") && err.contains("idsync status"),
            "{err}"
        );
    }
}
