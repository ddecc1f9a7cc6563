//! Restore snapshots: what each person idsync deprovisioned had in W&B then (org role,
//! every team with its role), for restore on return and `idsync undo`.
//!
//! Invariants: one snapshot per email, the latest deprovision's (a later one replaces
//! it); written in the same commit as the deprovision's journal end, so a snapshot exists
//! exactly for deprovisions that landed; pruned with `[state] retention`.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{ts, StateError, StateStore};
use crate::plan::RestoreSnapshot;

impl StateStore {
    /// Stores what a person had when their deprovision landed, replacing any earlier
    /// snapshot of the same email. Without an anchor, the one the last good read stored
    /// for the email is kept with it (a returning person is known by anchor or email).
    pub fn record_restore_snapshot(&mut self, s: &RestoreSnapshot) -> Result<(), StateError> {
        let mut s = s.clone();
        if s.anchor.is_none() {
            s.anchor = self
                .conn
                .query_row(
                    "SELECT anchor FROM anchors WHERE email = ?1 ORDER BY anchor LIMIT 1",
                    params![s.user.as_str()],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(self.err())?;
        }
        let json = serde_json::to_string(&s).map_err(|e| self.corrupt(format!("cannot encode a restore snapshot: {e}")))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO restore_snapshots (email, taken_at, snapshot) VALUES (?1, ?2, ?3)",
                params![s.user.as_str(), ts(&s.taken_at), json],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every stored snapshot, oldest first.
    pub fn restore_snapshots(&self) -> Result<Vec<RestoreSnapshot>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT snapshot FROM restore_snapshots ORDER BY taken_at, email")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.iter()
            .map(|j| serde_json::from_str(j).map_err(|e| self.corrupt(format!("stored restore snapshot {j:?} does not parse: {e}"))))
            .collect()
    }

    /// Forgets snapshots taken before `before` (`[state] retention`); how many.
    pub fn prune_restore_snapshots(&mut self, before: DateTime<Utc>) -> Result<usize, StateError> {
        self.conn
            .execute("DELETE FROM restore_snapshots WHERE taken_at < ?1", params![ts(&before)])
            .map_err(self.err())
    }
}
