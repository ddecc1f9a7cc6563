//! Run history: one [`RunRecord`] per finished `plan`, `apply` or `run`, for `idsync
//! status` and the daemon's `/status`, and pruning of old history.
//!
//! Invariants: recording a `run_id` again replaces its record (a run has one record);
//! `last_runs` lists newest first; pruning removes only runs and journal entries that
//! have *ended*, so an action a crash left begun is never forgotten (the audit log keeps
//! the full history).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{ts, StateError, StateStore};

/// One finished `plan`, `apply` or `run`, for `idsync status` and `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// `plan`, `apply` or `run`.
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `success`, `failure` or `held`.
    pub result: String,
    pub summary: BTreeMap<String, usize>,
    pub error: Option<String>,
}

impl StateStore {
    /// Records a run; recording the same `run_id` again replaces it.
    pub fn record_run(&mut self, r: &RunRecord) -> Result<(), StateError> {
        let summary = serde_json::to_string(&r.summary).map_err(|e| StateError::Journal(format!("cannot encode run summary: {e}")))?;
        self.conn
            .execute(
                "INSERT INTO runs (run_id, command, started_at, finished_at, result, summary, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (run_id) DO UPDATE SET command = excluded.command, started_at = excluded.started_at,
                     finished_at = excluded.finished_at, result = excluded.result, summary = excluded.summary, error = excluded.error",
                params![
                    r.run_id,
                    r.command,
                    ts(&r.started_at),
                    ts(&r.finished_at),
                    r.result,
                    summary,
                    r.error
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The latest `n` runs, newest first.
    pub fn last_runs(&self, n: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let mut st = self
            .conn
            .prepare("SELECT run_id, command, started_at, finished_at, result, summary, error FROM runs ORDER BY started_at DESC, seq DESC LIMIT ?1")
            .map_err(self.err())?;
        type Row = (String, String, String, String, String, String, Option<String>);
        let rows: Vec<Row> = st
            .query_map(params![limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(run_id, command, started, finished, result, summary, error)| {
                let summary =
                    serde_json::from_str(&summary).map_err(|e| self.corrupt(format!("run {run_id} has an unreadable summary: {e}")))?;
                Ok(RunRecord {
                    run_id,
                    command,
                    started_at: self.time(&started)?,
                    finished_at: self.time(&finished)?,
                    result,
                    summary,
                    error,
                })
            })
            .collect()
    }

    /// Deletes ended journal entries and runs finished before `before` (the audit log
    /// keeps the full history); returns how many rows went.
    pub fn prune_history(&mut self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let cut = ts(&before);
        let j = self
            .conn
            .execute("DELETE FROM journal WHERE state = 'ended' AND ended_at < ?1", params![cut])
            .map_err(self.err())?;
        let r = self
            .conn
            .execute("DELETE FROM runs WHERE finished_at < ?1", params![cut])
            .map_err(self.err())?;
        Ok(j + r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn runs_are_listed_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let run = |id: &str, h, result: &str| RunRecord {
            run_id: id.into(),
            command: "run".into(),
            started_at: t(h),
            finished_at: t(h + 1),
            result: result.into(),
            summary: [("add_to_team".to_string(), 2usize), ("held".to_string(), 1)].into(),
            error: None,
        };
        s.record_run(&run("r1", 1, "success")).unwrap();
        s.record_run(&run("r3", 3, "held")).unwrap();
        s.record_run(&run("r2", 2, "success")).unwrap();
        let mut failed = run("r2", 2, "failure");
        failed.error = Some("W&B: 503".into());
        s.record_run(&failed).unwrap();
        drop(s);
        let s = StateStore::open(tmp.path()).unwrap();
        let last = s.last_runs(2).unwrap();
        assert_eq!(last, vec![run("r3", 3, "held"), failed]);
        assert_eq!(s.last_runs(10).unwrap().len(), 3);
        assert!(s.last_runs(0).unwrap().is_empty());
    }
}
