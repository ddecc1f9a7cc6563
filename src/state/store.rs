//! [`StateStore`], the SQLite state store, `<state_dir>/idsync.db`: opening it (read-write,
//! creating and migrating it, or read-only), the connection's settings, and the
//! encodings every table shares (timestamps, emails, corruption errors). What it stores
//! is in the sibling files: `plan_state.rs`, `journal.rs`, `runs.rs`; the operations are
//! listed once in [`StateBackend`](super::StateBackend).
//!
//! Invariants: every write is committed before its method returns (inside
//! [`StateStore::atomically`], when the whole closure's writes commit at once), with
//! `journal_mode = WAL` and `synchronous = FULL`, so a crash or power loss loses nothing
//! a method reported as done; timestamps are stored as fixed-width RFC 3339 UTC, so they also sort
//! as text; a read-only open never creates, migrates or changes anything, and refuses a
//! schema that is not exactly this idsync's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

use super::error::db_err;
use super::schema::{migrate, MIGRATIONS};
use super::{ensure_dir, StateError};
use crate::model::Email;

/// The database file inside the state directory.
pub const DB_FILE: &str = "idsync.db";

/// Fixed-width RFC 3339 in UTC, so stored timestamps also sort as text.
pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The SQLite state store. See the module docs.
#[derive(Debug)]
pub struct StateStore {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl StateStore {
    /// Opens (creating when missing) `<state_dir>/idsync.db` and brings its schema up to
    /// date. Fails on a database written by a newer idsync.
    pub fn open(state_dir: &Path) -> Result<StateStore, StateError> {
        ensure_dir(state_dir)?;
        let path = state_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(db_err(&path))?;
        configure(&conn).map_err(db_err(&path))?;
        migrate(&mut conn, &path, MIGRATIONS)?;
        Ok(StateStore { conn, path })
    }

    /// Opens an existing store without writing to it (no directory, no migration, no
    /// journal-mode change), for read-only commands such as `report seats`. `Ok(None)`
    /// when there is no store yet: nothing has been recorded.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<StateStore>, StateError> {
        let path = state_dir.join(DB_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(db_err(&path))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err(&path))?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err(&path))?;
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if found == 0 {
            // Created but never migrated: an empty store.
            return Ok(None);
        }
        if found > supported {
            return Err(StateError::TooNew { path, found, supported });
        }
        if found < supported {
            return Err(StateError::Corrupt {
                path,
                msg: format!(
                    "schema version {found} is older than this idsync's {supported}: run `idsync apply` (or let the daemon run) once to upgrade it (this command only reads the store)"
                ),
            });
        }
        Ok(Some(StateStore { conn, path }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f`'s writes as one transaction: all of them are committed (one sync of the
    /// WAL) or, when `f` or the commit fails, none. `f` must use plain statements only:
    /// a method that opens its own transaction would fail inside this one.
    pub fn atomically<T, E: From<StateError>>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| E::from(db_err(&self.path)(e)))?;
        match f(self) {
            Ok(v) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(E::from(db_err(&self.path)(e)))
                }
            },
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        db_err(&self.path)
    }

    pub(super) fn corrupt(&self, msg: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            msg,
        }
    }

    pub(super) fn time(&self, s: &str) -> Result<DateTime<Utc>, StateError> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| self.corrupt(format!("stored timestamp {s:?} is not RFC 3339")))
    }

    pub(super) fn email(&self, s: &str) -> Result<Email, StateError> {
        Email::parse(s).ok_or_else(|| self.corrupt(format!("stored email {s:?} is not an email address")))
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Waits out another idsync process (e.g. `idsync status` while the daemon writes).
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers run during a write; FULL makes each commit survive power loss,
    // which the journal's "durable before it returns" relies on.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_support::*;
    use super::*;
    use crate::plan::{PlanState, Tombstone, TombstoneCause, TombstoneRecord};

    #[test]
    fn atomically_commits_all_writes_or_none() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let a = email("a@example.com");
        let failed: Result<(), StateError> = s.atomically(|s| {
            s.ledger_grant(&a, "ml")?;
            Err(StateError::Journal("fails after the first write".into()))
        });
        assert!(failed.is_err());
        assert!(s.load_plan_state().unwrap().ledger.is_empty(), "the first write is rolled back");
        s.atomically(|s| -> Result<(), StateError> {
            s.ledger_grant(&a, "ml")?;
            s.ledger_grant(&a, "data")
        })
        .unwrap();
        assert_eq!(s.load_plan_state().unwrap().ledger.len(), 2);
        // The connection is usable afterwards, inside and outside a transaction.
        s.ledger_revoke(&a, "data").unwrap();
        assert_eq!(s.load_plan_state().unwrap().ledger.len(), 1);
    }

    #[test]
    fn open_creates_a_private_directory_and_migrates_from_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        let s = StateStore::open(&dir).unwrap();
        assert_eq!(s.path(), dir.join(DB_FILE));
        assert_eq!(user_version(&dir), MIGRATIONS.len() as i64);
        let mode: String = s.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert_eq!(s.load_plan_state().unwrap(), PlanState::default());
        drop(s);
        // Opening an up-to-date database again applies nothing and keeps the version.
        StateStore::open(&dir).unwrap();
        assert_eq!(user_version(&dir), MIGRATIONS.len() as i64);
    }

    #[test]
    fn open_read_only_reads_without_creating_or_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        assert!(StateStore::open_read_only(&dir).unwrap().is_none());
        assert!(!dir.exists(), "a read-only open must not create the state directory");
        {
            let mut s = StateStore::open(&dir).unwrap();
            s.replace_tombstones(&[Tombstone {
                user: email("gone@example.com"),
                since: t(1),
                deprovision_after: Some(t(5)),
                cause: TombstoneCause::Missing,
            }])
            .unwrap();
        }
        let mut ro = StateStore::open_read_only(&dir).unwrap().expect("a store exists");
        let state = ro.load_plan_state().unwrap();
        assert_eq!(state.tombstones.keys().map(Email::as_str).collect::<Vec<_>>(), ["gone@example.com"]);
        assert!(ro.replace_tombstones(&[]).is_err(), "writes through a read-only store must fail");
        assert_eq!(ro.load_plan_state().unwrap(), state);
        // A store from a newer idsync is refused here too.
        drop(ro);
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(StateStore::open_read_only(&dir), Err(StateError::TooNew { .. })));
    }

    #[test]
    fn reopen_keeps_data() {
        let tmp = tempfile::tempdir().unwrap();
        let mut anchors = BTreeMap::new();
        anchors.insert("uuid-a".to_string(), email("a@example.com"));
        {
            let mut s = StateStore::open(tmp.path()).unwrap();
            s.replace_tombstones(&[Tombstone {
                user: email("gone@example.com"),
                since: t(1),
                deprovision_after: Some(t(5)),
                cause: TombstoneCause::Disabled,
            }])
            .unwrap();
            s.record_healthy_read(&healthy(1, 42, &[("cn=ml", 3)]), Duration::from_secs(86_400))
                .unwrap();
            s.record_good_read(&anchors).unwrap();
            s.ledger_grant(&email("a@example.com"), "ml").unwrap();
            s.add_approvals(&[approval("abc", 1, 9)]).unwrap();
        }
        let s = StateStore::open(tmp.path()).unwrap();
        let st = s.load_plan_state().unwrap();
        assert_eq!(
            st.tombstones.get(&email("gone@example.com")),
            Some(&TombstoneRecord { since: t(1) })
        );
        assert_eq!(st.healthy_reads, vec![healthy(1, 42, &[("cn=ml", 3)])]);
        assert_eq!(st.anchors, anchors);
        assert!(st.ledger.contains(&(email("a@example.com"), "ml".to_string())));
        assert_eq!(st.approvals, vec![approval("abc", 1, 9)]);
        let ts = s.tombstones().unwrap();
        assert_eq!(ts[0].cause, TombstoneCause::Disabled);
        assert_eq!(ts[0].deprovision_after, Some(t(5)));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DB_FILE), vec![b'x'; 4096]).unwrap();
        let msg = StateStore::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains(DB_FILE) && msg.contains("move it aside"), "{msg}");
    }
}
