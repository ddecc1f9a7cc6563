//! The apply journal: for each action of each run, `begun` before the request goes to
//! W&B and `ended` (with its [`Outcome`]) after, so a crash leaves a record of exactly the
//! actions whose effect is unknown, and the next apply resumes them.
//!
//! An entry whose outcome idsync cannot know (SPEC §5) is marked `unknown` and stays
//! open: only the next run's read of W&B settles it (`journal_end`). Each entry records
//! where the audit log ended when it was begun (`audit_at`), so resume reads the audit
//! lines of the open entries from there instead of the whole log.
//!
//! Invariants: a journal entry is durable (committed, `synchronous = FULL`) before
//! `journal_begin` returns, so before the request is sent; a run applies each action
//! once (beginning an ended action is an error, beginning a begun one is a no-op); the
//! first outcome stays (ending an ended entry changes nothing); an entry is ended under
//! the run that began it, even when a later run resumes it; an unknown entry is open
//! until ended.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{ts, StateError, StateStore};
use crate::plan::{Action, ActionId};

/// The outcome of one applied action, stored with its journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    pub detail: String,
}

/// An action that was begun and not (yet) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub run_id: String,
    pub action: Action,
    pub begun_at: DateTime<Utc>,
    /// The audit log's length when it was begun (`None` for entries older than that
    /// column): its audit lines start at or after this offset.
    pub audit_at: Option<u64>,
    /// Set when the request was sent and its outcome could not be known: why.
    pub unknown: Option<String>,
}

/// Where one action of one run stands in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalState {
    Begun,
    /// Sent, outcome unknown (why); open until settled against W&B.
    Unknown(String),
    Ended(Outcome),
}

impl StateStore {
    /// Journals the start of `action` in `run_id`, durably, before it touches W&B;
    /// `audit_at` is the audit log's length before its `begin` line is appended.
    /// Idempotent while the entry is begun; beginning an action the run already ended is
    /// an error (a run applies each action once).
    pub fn journal_begin(&mut self, run_id: &str, action: &Action, audit_at: u64) -> Result<(), StateError> {
        let json = serde_json::to_string(action).map_err(|e| StateError::Journal(format!("cannot encode action {}: {e}", action.id)))?;
        // SQLite integers are i64; a log past 8 EiB is not a case to handle gracefully.
        let at = i64::try_from(audit_at).unwrap_or(i64::MAX);
        let n = self
            .conn
            .execute(
                "INSERT INTO journal (run_id, action_id, action, state, begun_at, audit_at) VALUES (?1, ?2, ?3, 'begun', ?4, ?5)
                 ON CONFLICT (run_id, action_id) DO NOTHING",
                params![run_id, action.id.as_str(), json, ts(&Utc::now()), at],
            )
            .map_err(self.err())?;
        if n == 0 {
            if let Some(JournalState::Ended(_)) = self.journal_state(run_id, &action.id)? {
                return Err(StateError::Journal(format!(
                    "action {} already ended in run {run_id}; it is not applied twice",
                    action.id
                )));
            }
        }
        Ok(())
    }

    /// Journals the end of an action begun in `run_id` (which may be an earlier,
    /// interrupted run being resumed), durably. Ending an ended entry keeps the first
    /// outcome; ending an entry never begun is an error.
    pub fn journal_end(&mut self, run_id: &str, action_id: &ActionId, outcome: &Outcome) -> Result<(), StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE journal SET state = 'ended', ended_at = ?1, ok = ?2, detail = ?3
                 WHERE run_id = ?4 AND action_id = ?5 AND state = 'begun'",
                params![ts(&Utc::now()), outcome.ok, outcome.detail, run_id, action_id.as_str()],
            )
            .map_err(self.err())?;
        if n == 0 && self.journal_state(run_id, action_id)?.is_none() {
            return Err(StateError::Journal(format!(
                "no journal entry for action {action_id} in run {run_id}: it must be begun first"
            )));
        }
        Ok(())
    }

    /// Marks an entry begun in `run_id` as sent with an outcome idsync cannot know,
    /// durably. It stays open (listed by [`journal_incomplete`](Self::journal_incomplete))
    /// until `journal_end` settles it; marking an ended entry changes nothing, marking an
    /// entry never begun is an error.
    pub fn journal_unknown(&mut self, run_id: &str, action_id: &ActionId, why: &str) -> Result<(), StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE journal SET unknown = ?1 WHERE run_id = ?2 AND action_id = ?3 AND state = 'begun'",
                params![why, run_id, action_id.as_str()],
            )
            .map_err(self.err())?;
        if n == 0 && self.journal_state(run_id, action_id)?.is_none() {
            return Err(StateError::Journal(format!(
                "no journal entry for action {action_id} in run {run_id}: it must be begun first"
            )));
        }
        Ok(())
    }

    /// Actions begun and never ended (interrupted, or sent with an unknown outcome), from
    /// any run, oldest first: what the next run settles.
    pub fn journal_incomplete(&self) -> Result<Vec<JournalEntry>, StateError> {
        type Row = (String, String, String, Option<i64>, Option<String>);
        let mut st = self
            .conn
            .prepare("SELECT run_id, action, begun_at, audit_at, unknown FROM journal WHERE state = 'begun' ORDER BY seq")
            .map_err(self.err())?;
        let rows: Vec<Row> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(run_id, json, at, audit_at, unknown)| {
                let action: Action = serde_json::from_str(&json)
                    .map_err(|e| self.corrupt(format!("journal entry of run {run_id} holds an unreadable action: {e}")))?;
                Ok(JournalEntry {
                    run_id,
                    action,
                    begun_at: self.time(&at)?,
                    // A negative offset cannot be written by idsync; reading from the start
                    // is the safe reading of one.
                    audit_at: audit_at.map(|n| u64::try_from(n).unwrap_or(0)),
                    unknown,
                })
            })
            .collect()
    }

    /// Where `action_id` stands in `run_id`: `None` when never begun.
    pub fn journal_state(&self, run_id: &str, action_id: &ActionId) -> Result<Option<JournalState>, StateError> {
        type Row = (String, Option<bool>, Option<String>, Option<String>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT state, ok, detail, unknown FROM journal WHERE run_id = ?1 AND action_id = ?2",
                params![run_id, action_id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.err())?;
        Ok(row.map(|(state, ok, detail, unknown)| match (state.as_str(), unknown) {
            ("ended", _) => JournalState::Ended(Outcome {
                ok: ok.unwrap_or(false),
                detail: detail.unwrap_or_default(),
            }),
            (_, Some(why)) => JournalState::Unknown(why),
            _ => JournalState::Begun,
        }))
    }

    /// Whether `action_id` has ended (either way) in `run_id`.
    pub fn journal_has_ended(&self, run_id: &str, action_id: &ActionId) -> Result<bool, StateError> {
        Ok(matches!(self.journal_state(run_id, action_id)?, Some(JournalState::Ended(_))))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn journal_survives_a_crash_and_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let (a1, a2, a3) = (action("a@x.com", "ml"), action("b@x.com", "ml"), action("c@x.com", "ops"));
        {
            let mut s = StateStore::open(tmp.path()).unwrap();
            s.journal_begin("run-1", &a1, 0).unwrap();
            s.journal_begin("run-1", &a1, 0).unwrap();
            s.journal_end(
                "run-1",
                &a1.id,
                &Outcome {
                    ok: true,
                    detail: "applied".into(),
                },
            )
            .unwrap();
            s.journal_begin("run-1", &a2, 10).unwrap();
            s.journal_begin("run-2", &a3, 20).unwrap();
            // Dropped without ending a2 and a3: a crash.
        }
        let mut s = StateStore::open(tmp.path()).unwrap();
        let open = s.journal_incomplete().unwrap();
        let got: Vec<_> = open.iter().map(|e| (e.run_id.as_str(), e.action.clone())).collect();
        assert_eq!(got, vec![("run-1", a2.clone()), ("run-2", a3.clone())], "oldest first, across runs");
        assert_eq!(open.iter().map(|e| e.audit_at).collect::<Vec<_>>(), [Some(10), Some(20)]);
        assert!(s.journal_has_ended("run-1", &a1.id).unwrap());
        assert!(!s.journal_has_ended("run-1", &a2.id).unwrap());
        assert_eq!(
            s.journal_state("run-1", &a1.id).unwrap(),
            Some(JournalState::Ended(Outcome {
                ok: true,
                detail: "applied".into()
            }))
        );
        assert_eq!(s.journal_state("run-9", &a1.id).unwrap(), None);

        // Resume ends the old entries under their original run.
        s.journal_end(
            "run-1",
            &a2.id,
            &Outcome {
                ok: false,
                detail: "409".into(),
            },
        )
        .unwrap();
        s.journal_end(
            "run-2",
            &a3.id,
            &Outcome {
                ok: true,
                detail: "ok".into(),
            },
        )
        .unwrap();
        s.journal_end(
            "run-2",
            &a3.id,
            &Outcome {
                ok: false,
                detail: "late".into(),
            },
        )
        .unwrap();
        assert!(s.journal_incomplete().unwrap().is_empty());
        assert_eq!(
            s.journal_state("run-2", &a3.id).unwrap(),
            Some(JournalState::Ended(Outcome {
                ok: true,
                detail: "ok".into()
            })),
            "the first outcome stays"
        );

        let err = s.journal_begin("run-1", &a1, 0).unwrap_err();
        assert!(err.to_string().contains("already ended"), "{err}");
        let err = s
            .journal_end(
                "run-3",
                &a1.id,
                &Outcome {
                    ok: true,
                    detail: String::new(),
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("must be begun first"), "{err}");
        // The same action in a new run is a new entry.
        s.journal_begin("run-3", &a1, 30).unwrap();
        assert_eq!(s.journal_incomplete().unwrap().len(), 1);

        assert_eq!(
            s.prune_history(Utc::now() + chrono::Duration::hours(1)).unwrap(),
            3,
            "ended entries go, the begun one stays"
        );
        assert_eq!(s.journal_incomplete().unwrap().len(), 1);
    }

    #[test]
    fn an_unknown_outcome_stays_open_across_a_restart_until_settled() {
        let tmp = tempfile::tempdir().unwrap();
        let a = action("a@x.com", "ml");
        {
            let mut s = StateStore::open(tmp.path()).unwrap();
            s.journal_begin("run-1", &a, 7).unwrap();
            s.journal_unknown("run-1", &a.id, "500 after retries").unwrap();
        }
        let mut s = StateStore::open(tmp.path()).unwrap();
        let open = s.journal_incomplete().unwrap();
        assert_eq!(open.len(), 1, "unknown is not ended");
        assert_eq!(open[0].unknown.as_deref(), Some("500 after retries"));
        assert_eq!(open[0].audit_at, Some(7));
        assert_eq!(
            s.journal_state("run-1", &a.id).unwrap(),
            Some(JournalState::Unknown("500 after retries".into()))
        );
        assert!(!s.journal_has_ended("run-1", &a.id).unwrap());
        assert_eq!(
            s.prune_history(Utc::now() + chrono::Duration::hours(1)).unwrap(),
            0,
            "pruning keeps an unsettled entry"
        );
        // The next run's read of W&B settles it; marking it again changes nothing.
        let settled = Outcome {
            ok: true,
            detail: "W&B shows this change".into(),
        };
        s.journal_end("run-1", &a.id, &settled).unwrap();
        s.journal_unknown("run-1", &a.id, "late").unwrap();
        assert_eq!(s.journal_state("run-1", &a.id).unwrap(), Some(JournalState::Ended(settled)));
        assert!(s.journal_incomplete().unwrap().is_empty());
        let err = s.journal_unknown("run-9", &a.id, "x").unwrap_err();
        assert!(err.to_string().contains("must be begun first"), "{err}");
    }
}
