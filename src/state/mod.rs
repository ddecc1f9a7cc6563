//! The SQLite state store and the append-only audit log, both in `daemon.state_dir`.
//!
//! - [`StateStore`] (`idsync.db`): what the plan core reads back between runs
//!   ([`PlanState`]: tombstone clocks, the recent healthy directory reads and anchors, the
//!   ledger, approvals), the apply journal, and the run history. Every write is committed
//!   before the method returns, with `synchronous = FULL`, so a crash loses nothing that
//!   a method reported as done.
//! - [`AuditLog`] (`audit.jsonl`): one JSON object per line for every journaled step,
//!   for humans and SIEMs. It is kept separate from the store on purpose: it is
//!   append-only, never rewritten or migrated, and readable with `jq` alone. The apply
//!   step writes the journal first and the audit line second.
//!
//! Schema changes are ordered SQL scripts in [`schema::MIGRATIONS`], applied in a transaction
//! each and counted in `PRAGMA user_version`. A database from a newer idsync is refused
//! rather than guessed at.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

use crate::model::Email;

mod actor;
mod audit;
mod error;
mod journal;
mod plan_state;
mod runs;
mod schema;
#[cfg(test)]
mod test_support;

pub use actor::actor;
pub use audit::{AuditLog, AuditRecord, AUDIT_FILE};
pub use error::StateError;
use error::{db_err, io_err};
pub use journal::{JournalEntry, JournalState, Outcome};
pub use runs::RunRecord;
use schema::{migrate, MIGRATIONS};

/// The database file inside the state directory.
pub const DB_FILE: &str = "idsync.db";

/// Creates the state directory (mode 0700 on unix) when missing.
fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // Tombstones, approvals and the audit trail are nobody else's business.
        b.mode(0o700);
    }
    b.create(dir).map_err(io_err("create the state directory", dir))
}

/// Fixed-width RFC 3339 in UTC, so stored timestamps also sort as text.
fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The SQLite state store. See the module docs.
#[derive(Debug)]
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
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

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        db_err(&self.path)
    }

    fn corrupt(&self, msg: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            msg,
        }
    }

    fn time(&self, s: &str) -> Result<DateTime<Utc>, StateError> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| self.corrupt(format!("stored timestamp {s:?} is not RFC 3339")))
    }

    fn email(&self, s: &str) -> Result<Email, StateError> {
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
    use super::error::io_hint;
    use std::collections::BTreeMap;
    use std::io;

    use super::test_support::*;
    use super::*;
    use crate::plan::{PlanState, Tombstone, TombstoneCause, TombstoneRecord};

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
    fn unusable_state_dirs_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = StateStore::open(&file.join("state")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("state directory") && msg.contains("file/state") && msg.contains("daemon.state_dir"),
            "{msg}"
        );
        assert!(AuditLog::open(&file.join("state")).is_err());

        assert!(io_hint(io::ErrorKind::PermissionDenied).contains("StateDirectory="));
        assert!(io_hint(io::ErrorKind::NotFound).contains("daemon.state_dir"));
    }

    #[cfg(unix)]
    #[test]
    fn permission_denied_names_the_path_and_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let locked = tmp.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        if std::fs::write(locked.join("probe"), "x").is_ok() {
            // Running privileged (root in a container): permissions are not enforced.
            return;
        }
        for err in [
            StateStore::open(&locked.join("state")).unwrap_err(),
            StateStore::open(&locked).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(
                msg.contains("locked") && msg.contains("daemon.state_dir") && msg.contains("StateDirectory="),
                "{msg}"
            );
        }
        let err = AuditLog::open(&locked).unwrap_err();
        assert!(err.to_string().contains("StateDirectory="), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DB_FILE), vec![b'x'; 4096]).unwrap();
        let msg = StateStore::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains(DB_FILE) && msg.contains("move it aside"), "{msg}");
    }
}
