//! What idsync keeps between runs, in `daemon.state_dir`: the state store (`idsync.db`)
//! and the append-only audit log (`audit.jsonl`). One file per job:
//!
//! - `backend.rs`: [`StateBackend`], the operations the shell uses on the store, and the
//!   invariants any backend keeps (a journal entry is durable before the request is
//!   sent). SQLite's [`StateStore`] and PostgreSQL's [`PgStore`] (`postgres/`, with the HA
//!   leader lease and fencing in `postgres/lease.rs`) implement it.
//! - `store.rs`: [`StateStore`], opening the SQLite file (read-write or read-only), its
//!   connection settings (`WAL`, `synchronous = FULL`) and shared encodings.
//! - `schema.rs`: the ordered migrations, counted in `PRAGMA user_version`; a database
//!   from a newer idsync is refused rather than guessed at.
//! - `plan_state.rs`: what the plan core reads back ([`PlanState`](crate::plan::PlanState):
//!   tombstone clocks, healthy reads, anchors, the ledger, approvals) and its writes.
//! - `journal.rs`: the apply journal, begun before and ended after each action.
//! - `runs.rs`: run history for `status` and `/status`, and pruning it.
//! - `notified.rs`: which held actions the last `[notify]` message listed.
//! - `restore.rs`: restore snapshots, what a deprovisioned person had (restore on return,
//!   `idsync undo`), pruned with `[state] retention`.
//! - `audit.rs`: [`AuditLog`], one JSON line per journaled step, kept apart from the
//!   store on purpose: append-only, never migrated, readable with `jq` alone. The apply
//!   step writes the journal first and the audit line second.
//! - `actor.rs`: [`actor()`] and [`human()`], who is acting (the command, and the OS user
//!   or the sudoer behind it), for the audit lines and approvals.
//! - `error.rs`: [`StateError`], whose messages say what failed and what to do.
//!
//! This file creates the state directory both share. Invariants: a directory idsync
//! creates is mode 0700 (tombstones, approvals and the audit trail are nobody else's
//! business); every public item is re-exported here, so callers name `crate::state::X`
//! whichever file holds `X`.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

mod actor;
mod audit;
mod backend;
mod error;
mod journal;
mod notified;
mod plan_state;
mod postgres;
mod restore;
mod runs;
mod schema;
mod store;
#[cfg(test)]
mod test_support;
mod transfer;

pub use actor::{actor, human};
pub use audit::{AuditLog, AuditRecord, Steps, AUDIT_FILE};
pub use backend::{StateBackend, Store};
use error::io_err;
pub use error::StateError;
pub use journal::{JournalEntry, JournalState, Outcome};
pub use postgres::{Fence, Lease, PgStore};
pub use runs::RunRecord;
use store::ts;
pub use store::{StateStore, DB_FILE};
pub use transfer::{sqlite_to_postgres, Copied};

/// Where the state lives (`[state] backend`).
#[derive(Debug, Clone)]
pub enum Backend {
    /// `<dir>/idsync.db`, the default.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database; the URL is a secret (it may hold the password). `ca_file`:
    /// the CA certificates (PEM) to trust for TLS instead of the system's.
    Postgres { url: Secret, ca_file: Option<PathBuf> },
}

/// Opens (creating or migrating as needed) the state `b` names.
pub fn open(b: &Backend) -> Result<Store, StateError> {
    Ok(match b {
        Backend::Sqlite { dir } => Box::new(StateStore::open(dir)?),
        Backend::Postgres { url, ca_file } => Box::new(PgStore::open_with(url.expose(), ca_file.as_deref())?),
    })
}

/// Opens the state without writing anything (read-only commands); `Ok(None)` when none
/// has been recorded yet (no SQLite file; no idsync schema in the database).
pub fn open_read_only(b: &Backend) -> Result<Option<Store>, StateError> {
    Ok(match b {
        Backend::Sqlite { dir } => StateStore::open_read_only(dir)?.map(|s| Box::new(s) as Store),
        Backend::Postgres { url, ca_file } => PgStore::open_read_only(url.expose(), ca_file.as_deref())?.map(|s| Box::new(s) as Store),
    })
}

/// Creates the state directory (mode 0700 on unix) when missing. With PostgreSQL it still
/// holds the node's own files: the audit log and the apply lock.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
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

#[cfg(test)]
mod tests {
    use std::io;

    use super::error::io_hint;
    use super::*;

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
}
