//! The PostgreSQL schema: ordered SQL scripts in [`MIGRATIONS`], counted in the one-row
//! table `idsync_schema`, and [`migrate`], which applies the pending ones.
//!
//! Invariants: append only (a released script never changes; a new schema is a new script
//! at the end); each script runs in one transaction with its version bump, under a
//! transaction-scoped advisory lock, so a failed script leaves the previous version intact
//! and nodes starting at once migrate once; a schema from a newer idsync is refused, never
//! guessed at. The tables mirror the SQLite ones (same names and meaning), with
//! PostgreSQL's types: `timestamptz` for times, `boolean`, `bigint`.

use postgres::Client;

use super::StateError;

/// The advisory lock every migrating idsync takes ("idsync" in ASCII), so two nodes
/// opening an empty database at once do not both create the tables.
const MIGRATION_LOCK: i64 = 0x6964_7379_6e63;

/// Schema migrations, oldest first; migration `i` takes the version from `i` to `i + 1`.
/// Append only: a released script never changes.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migrations 1-5, at once.
    "
    CREATE TABLE tombstones (
        email TEXT PRIMARY KEY,
        since TIMESTAMPTZ NOT NULL,
        deprovision_after TIMESTAMPTZ,
        cause TEXT NOT NULL CHECK (cause IN ('missing', 'disabled'))
    );
    CREATE TABLE healthy_reads (
        seq BIGSERIAL PRIMARY KEY,
        read_at TIMESTAMPTZ NOT NULL,
        people BIGINT NOT NULL,
        groups TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX healthy_reads_at ON healthy_reads (read_at);
    CREATE TABLE anchors (
        anchor TEXT PRIMARY KEY,
        email TEXT NOT NULL
    );
    CREATE TABLE ledger (
        email TEXT NOT NULL,
        team TEXT NOT NULL,
        granted_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (email, team)
    );
    CREATE TABLE approvals (
        action_id TEXT PRIMARY KEY,
        approved_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        approved_by TEXT NOT NULL DEFAULT '',
        guards TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL DEFAULT '',
        action_kind TEXT NOT NULL DEFAULT '',
        action_user TEXT NOT NULL DEFAULT '',
        action_team TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE journal (
        seq BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL,
        action_id TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('begun', 'ended')),
        begun_at TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ,
        ok BOOLEAN,
        detail TEXT,
        UNIQUE (run_id, action_id)
    );
    CREATE INDEX journal_open ON journal (seq) WHERE state = 'begun';
    CREATE TABLE runs (
        seq BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        command TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ NOT NULL,
        result TEXT NOT NULL,
        summary TEXT NOT NULL,
        error TEXT
    );
    CREATE TABLE notified (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        held TEXT NOT NULL,
        sent_at TIMESTAMPTZ NOT NULL
    );
    ",
    // 2: the audit trail, shared by every node (each also keeps its own audit.jsonl): one
    // row per audit line, the line itself in `record`.
    "
    CREATE TABLE audit (
        seq BIGSERIAL PRIMARY KEY,
        ts TIMESTAMPTZ NOT NULL,
        run_id TEXT NOT NULL,
        event TEXT NOT NULL,
        action_id TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX audit_action ON audit (action_id, run_id);
    ",
    // 3: as SQLite's 6: where each entry's audit lines start (`audit_at`, the local audit
    // log's length when it was begun), and why an entry sent with an unknown outcome stays
    // open (`unknown`).
    "
    ALTER TABLE journal ADD COLUMN audit_at BIGINT;
    ALTER TABLE journal ADD COLUMN unknown TEXT;
    ",
    // 4: as SQLite's 7: restore snapshots (what a deprovisioned person had), one per email,
    // the snapshot as JSON.
    "
    CREATE TABLE restore_snapshots (
        email TEXT PRIMARY KEY,
        taken_at TIMESTAMPTZ NOT NULL,
        snapshot TEXT NOT NULL
    );
    CREATE INDEX restore_snapshots_at ON restore_snapshots (taken_at);
    ",
    // 5: the HA leader lease (`lease.rs`), one row: who holds it (node name and the
    // process's random instance id), the fencing token, raised on every change of
    // holder, and when it expires by the database's clock.
    "
    CREATE TABLE ha_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL DEFAULT '',
        instance TEXT NOT NULL DEFAULT '',
        token BIGINT NOT NULL DEFAULT 0,
        expires_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
        acquired_at TIMESTAMPTZ
    );
    INSERT INTO ha_lease (id) VALUES (1);
    ",
];

/// Why a schema is not used.
pub(super) enum Refused {
    TooNew { found: i64, supported: i64 },
    Bad(i64),
}

impl Refused {
    pub(super) fn at(self, target: &str) -> StateError {
        match self {
            Refused::TooNew { found, supported } => StateError::PgTooNew {
                target: target.to_string(),
                found,
                supported,
            },
            Refused::Bad(found) => StateError::Corrupt {
                path: target.into(),
                msg: format!("schema version {found} is not one idsync writes"),
            },
        }
    }
}

/// The stored schema version, without creating anything: `None` when idsync's schema is
/// not there yet (or no migration ran).
pub(super) fn version(c: &mut Client) -> Result<Option<i64>, postgres::Error> {
    let exists: bool = c.query_one("SELECT to_regclass('idsync_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = c.query_opt("SELECT version FROM idsync_schema WHERE id = 1", &[])?;
    Ok(row.map(|r| r.get::<_, i64>(0)).filter(|v| *v != 0))
}

/// Applies the pending migrations of [`MIGRATIONS`].
pub(super) fn migrate(c: &mut Client) -> Result<Result<(), Refused>, postgres::Error> {
    migrate_with(c, MIGRATIONS)
}

pub(super) fn migrate_with(c: &mut Client, migrations: &[&str]) -> Result<Result<(), Refused>, postgres::Error> {
    let supported = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    loop {
        let mut tx = c.transaction()?;
        tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        // Only when missing: IF NOT EXISTS alone logs a NOTICE at every open (every node,
        // every run and lease reconnect).
        let exists: bool = tx.query_one("SELECT to_regclass('idsync_schema') IS NOT NULL", &[])?.get(0);
        if !exists {
            tx.batch_execute("CREATE TABLE IF NOT EXISTS idsync_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)")?;
        }
        let found: i64 = tx
            .query_opt("SELECT version FROM idsync_schema WHERE id = 1", &[])?
            .map_or(0, |r| r.get(0));
        if found > supported {
            return Ok(Err(Refused::TooNew { found, supported }));
        }
        let Some(script) = usize::try_from(found).ok().and_then(|v| migrations.get(v)) else {
            if found < 0 {
                return Ok(Err(Refused::Bad(found)));
            }
            tx.commit()?;
            return Ok(Ok(()));
        };
        tx.batch_execute(script)?;
        tx.execute(
            "INSERT INTO idsync_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &[&(found + 1)],
        )?;
        tx.commit()?;
    }
}
