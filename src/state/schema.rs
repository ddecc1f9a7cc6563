//! The SQLite schema: ordered SQL scripts in [`MIGRATIONS`], counted in `PRAGMA
//! user_version`, and [`migrate`], which applies the pending ones.
//!
//! Invariants: append only (a released script never changes; a new schema is a new
//! script at the end); each script runs in its own immediate transaction together with
//! its version bump, so a failed script leaves the previous version intact and two
//! idsync processes opening at once migrate once; a database from a newer idsync is
//! refused ([`StateError::TooNew`]), never guessed at.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::db_err;
use super::StateError;

/// Schema migrations, oldest first; migration `i` takes `user_version` from `i` to
/// `i + 1`. Append only: a released script never changes.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "
    CREATE TABLE tombstones (
        email TEXT PRIMARY KEY,
        since TEXT NOT NULL,
        deprovision_after TEXT,
        cause TEXT NOT NULL DEFAULT 'missing'
    );
    CREATE TABLE source_health (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_good_size INTEGER NOT NULL,
        read_at TEXT NOT NULL
    );
    CREATE TABLE anchors (
        anchor TEXT PRIMARY KEY,
        email TEXT NOT NULL
    );
    CREATE TABLE ledger (
        email TEXT NOT NULL,
        team TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        PRIMARY KEY (email, team)
    );
    CREATE TABLE approvals (
        action_id TEXT PRIMARY KEY,
        approved_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        approved_by TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        action_id TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('begun', 'ended')),
        begun_at TEXT NOT NULL,
        ended_at TEXT,
        ok INTEGER,
        detail TEXT,
        UNIQUE (run_id, action_id)
    );
    CREATE INDEX journal_open ON journal (seq) WHERE state = 'begun';
    CREATE TABLE runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        command TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        result TEXT NOT NULL,
        summary TEXT NOT NULL,
        error TEXT
    );
    ",
    // 2: approvals bind to what was reviewed (SPEC §4). Older rows keep empty values and
    // match nothing, so an approval given before the upgrade releases nothing.
    "
    ALTER TABLE approvals ADD COLUMN guards TEXT NOT NULL DEFAULT '';
    ALTER TABLE approvals ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
    ",
    // 3: source-health compares with the largest healthy read within a window, people and
    // each mapped group (SPEC §4). The one stored read stays a healthy read at its time,
    // without group counts (groups then start from their first healthy read).
    "
    CREATE TABLE healthy_reads (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        read_at TEXT NOT NULL,
        people INTEGER NOT NULL,
        groups TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX healthy_reads_at ON healthy_reads (read_at);
    INSERT INTO healthy_reads (read_at, people) SELECT read_at, last_good_size FROM source_health;
    DROP TABLE source_health;
    ",
    // 4: approvals say what they approve (kind, user, team) for `status`. Older rows keep
    // empty values, shown as unknown; the id and fingerprint still bind them.
    "
    ALTER TABLE approvals ADD COLUMN action_kind TEXT NOT NULL DEFAULT '';
    ALTER TABLE approvals ADD COLUMN action_user TEXT NOT NULL DEFAULT '';
    ALTER TABLE approvals ADD COLUMN action_team TEXT NOT NULL DEFAULT '';
    ",
    // 5: `[notify]` remembers which held actions its last message listed, so a message goes
    // out when that set changes, not on every run.
    "
    CREATE TABLE notified (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        held TEXT NOT NULL,
        sent_at TEXT NOT NULL
    );
    ",
    // 6: resume from the journal alone (no whole audit-log read). `audit_at` is the audit
    // log's length when the entry was begun: its audit lines are at or after it. An entry
    // whose outcome idsync could not know stays open (`state = 'begun'`) with `unknown`
    // saying why, until the next run settles it against W&B. Older rows have neither.
    "
    ALTER TABLE journal ADD COLUMN audit_at INTEGER;
    ALTER TABLE journal ADD COLUMN unknown TEXT;
    ",
    // 7: restore snapshots: what a deprovisioned person had (org role, teams and roles),
    // for restore on return and `idsync undo`; one per email, pruned with retention.
    "
    CREATE TABLE restore_snapshots (
        email TEXT PRIMARY KEY,
        taken_at TEXT NOT NULL,
        snapshot TEXT NOT NULL
    );
    CREATE INDEX restore_snapshots_at ON restore_snapshots (taken_at);
    ",
];

/// Applies the pending `migrations`, each in its own immediate transaction together with
/// its `user_version` bump, so a failed script leaves the previous version intact.
pub(super) fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StateError> {
    let e = db_err(path);
    let supported = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    loop {
        // Immediate: a second idsync opening at the same time waits, then sees the bump.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(&e)?;
        if found > supported {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found,
                supported,
            });
        }
        let Some(script) = usize::try_from(found).ok().and_then(|v| migrations.get(v)) else {
            if found < 0 {
                return Err(StateError::Corrupt {
                    path: path.to_path_buf(),
                    msg: format!("schema version {found} is not one idsync writes"),
                });
            }
            return Ok(());
        };
        tx.execute_batch(script).map_err(&e)?;
        tx.pragma_update(None, "user_version", found + 1).map_err(&e)?;
        tx.commit().map_err(&e)?;
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::super::test_support::*;
    use super::super::{ts, StateStore, DB_FILE};
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_with_advice() {
        let tmp = tempfile::tempdir().unwrap();
        drop(StateStore::open(tmp.path()).unwrap());
        Connection::open(tmp.path().join(DB_FILE))
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = StateStore::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("upgrade idsync") && msg.contains(DB_FILE), "{msg}");
    }

    #[test]
    fn a_failing_migration_rolls_back_to_the_previous_version() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(DB_FILE);
        let mut c = Connection::open(&path).unwrap();
        let bad = [MIGRATIONS[0], "CREATE TABLE extra (x INTEGER); THIS IS NOT SQL;"];
        let err = migrate(&mut c, &path, &bad).unwrap_err();
        assert!(err.to_string().contains(DB_FILE), "{err}");
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1, "the first migration stays, the failed one is undone");
        let extra: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'extra'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(extra, 0);
    }

    #[test]
    fn migration_3_keeps_the_last_good_read_as_a_healthy_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(DB_FILE);
        {
            // A store as idsync wrote it before migration 3.
            let mut c = Connection::open(&path).unwrap();
            migrate(&mut c, &path, &MIGRATIONS[..2]).unwrap();
            c.execute(
                "INSERT INTO source_health (id, last_good_size, read_at) VALUES (1, 57, ?1)",
                params![ts(&t(3))],
            )
            .unwrap();
        }
        let s = StateStore::open(tmp.path()).unwrap();
        assert_eq!(user_version(tmp.path()), MIGRATIONS.len() as i64);
        assert_eq!(s.load_plan_state().unwrap().healthy_reads, vec![healthy(3, 57, &[])]);
        let old: i64 = s
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'source_health'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(old, 0, "the one-row table is gone, its row moved");
    }
}
