//! What the last `[notify]` message said: the ids of the held actions it listed, so the
//! next run posts only when that set changes (SPEC §3 `notify.on = ["held"]`).
//!
//! Invariants: one row at most, replaced as a whole; `None` until a message was sent; a
//! stored set that does not parse is [`StateError::Corrupt`], never taken as empty.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{ts, StateError, StateStore};

impl StateStore {
    /// The held action ids the last notification listed; `None` when none was sent yet.
    pub fn notified_held(&self) -> Result<Option<BTreeSet<String>>, StateError> {
        let held: Option<String> = self
            .conn
            .query_row("SELECT held FROM notified WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        held.map(|h| {
            serde_json::from_str(&h)
                .map_err(|e| self.corrupt(format!("the last notification's held actions {h:?} are not a JSON list: {e}")))
        })
        .transpose()
    }

    /// Remembers the held action ids a notification sent at `at` listed.
    pub fn record_notified(&mut self, held: &BTreeSet<String>, at: DateTime<Utc>) -> Result<(), StateError> {
        // A set of strings always serialises.
        let held = serde_json::to_string(held).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO notified (id, held, sent_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET held = excluded.held, sent_at = excluded.sent_at",
                params![held, ts(&at)],
            )
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn the_last_notified_held_set_is_replaced_and_survives_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        assert_eq!(s.notified_held().unwrap(), None, "nothing sent yet");
        let set = |ids: &[&str]| ids.iter().map(|i| i.to_string()).collect::<BTreeSet<_>>();
        s.record_notified(&set(&["b", "a"]), t(1)).unwrap();
        s.record_notified(&set(&["c"]), t(2)).unwrap();
        drop(s);
        let s = StateStore::open(tmp.path()).unwrap();
        assert_eq!(s.notified_held().unwrap(), Some(set(&["c"])));
        s.conn.execute("UPDATE notified SET held = 'nope'", []).unwrap();
        assert!(matches!(s.notified_held(), Err(StateError::Corrupt { .. })));
    }
}
