//! The apply journal: for each action of each run, `begun` before the request goes to
//! W&B and `ended` (with its [`Outcome`]) after, so a crash leaves a record of exactly the
//! actions whose effect is unknown, and the next apply resumes them.
//!
//! Invariants: a journal entry is durable (committed, `synchronous = FULL`) before
//! `journal_begin` returns, so before the request is sent; a run applies each action
//! once (beginning an ended action is an error, beginning a begun one is a no-op); the
//! first outcome stays (ending an ended entry changes nothing); an entry is ended under
//! the run that began it, even when a later run resumes it.

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
}

/// Where one action of one run stands in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalState {
    Begun,
    Ended(Outcome),
}

impl StateStore {
    /// Journals the start of `action` in `run_id`, durably, before it touches W&B.
    /// Idempotent while the entry is begun; beginning an action the run already ended is
    /// an error (a run applies each action once).
    pub fn journal_begin(&mut self, run_id: &str, action: &Action) -> Result<(), StateError> {
        let json = serde_json::to_string(action).map_err(|e| StateError::Journal(format!("cannot encode action {}: {e}", action.id)))?;
        let n = self
            .conn
            .execute(
                "INSERT INTO journal (run_id, action_id, action, state, begun_at) VALUES (?1, ?2, ?3, 'begun', ?4)
                 ON CONFLICT (run_id, action_id) DO NOTHING",
                params![run_id, action.id.as_str(), json, ts(&Utc::now())],
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

    /// Actions begun and never ended, from any run, oldest first: what a crash left.
    pub fn journal_incomplete(&self) -> Result<Vec<JournalEntry>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT run_id, action, begun_at FROM journal WHERE state = 'begun' ORDER BY seq")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(run_id, json, at)| {
                let action: Action = serde_json::from_str(&json)
                    .map_err(|e| self.corrupt(format!("journal entry of run {run_id} holds an unreadable action: {e}")))?;
                Ok(JournalEntry {
                    run_id,
                    action,
                    begun_at: self.time(&at)?,
                })
            })
            .collect()
    }

    /// Where `action_id` stands in `run_id`: `None` when never begun.
    pub fn journal_state(&self, run_id: &str, action_id: &ActionId) -> Result<Option<JournalState>, StateError> {
        let row: Option<(String, Option<bool>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT state, ok, detail FROM journal WHERE run_id = ?1 AND action_id = ?2",
                params![run_id, action_id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())?;
        Ok(row.map(|(state, ok, detail)| match state.as_str() {
            "ended" => JournalState::Ended(Outcome {
                ok: ok.unwrap_or(false),
                detail: detail.unwrap_or_default(),
            }),
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
            s.journal_begin("run-1", &a1).unwrap();
            s.journal_begin("run-1", &a1).unwrap();
            s.journal_end(
                "run-1",
                &a1.id,
                &Outcome {
                    ok: true,
                    detail: "applied".into(),
                },
            )
            .unwrap();
            s.journal_begin("run-1", &a2).unwrap();
            s.journal_begin("run-2", &a3).unwrap();
            // Dropped without ending a2 and a3: a crash.
        }
        let mut s = StateStore::open(tmp.path()).unwrap();
        let open = s.journal_incomplete().unwrap();
        let got: Vec<_> = open.iter().map(|e| (e.run_id.as_str(), e.action.clone())).collect();
        assert_eq!(got, vec![("run-1", a2.clone()), ("run-2", a3.clone())], "oldest first, across runs");
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

        let err = s.journal_begin("run-1", &a1).unwrap_err();
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
        s.journal_begin("run-3", &a1).unwrap();
        assert_eq!(s.journal_incomplete().unwrap().len(), 1);

        assert_eq!(
            s.prune_history(Utc::now() + chrono::Duration::hours(1)).unwrap(),
            3,
            "ended entries go, the begun one stays"
        );
        assert_eq!(s.journal_incomplete().unwrap().len(), 1);
    }
}
