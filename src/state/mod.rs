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

use std::path::Path;

mod actor;
mod audit;
mod backend;
mod error;
mod journal;
mod plan_state;
mod runs;
mod schema;
mod store;
#[cfg(test)]
mod test_support;

pub use actor::actor;
pub use audit::{AuditLog, AuditRecord, AUDIT_FILE};
pub use backend::StateBackend;
use error::io_err;
pub use error::StateError;
pub use journal::{JournalEntry, JournalState, Outcome};
pub use runs::RunRecord;
use store::ts;
pub use store::{StateStore, DB_FILE};

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

#[cfg(test)]
mod tests {
    use super::error::io_hint;
    use std::io;

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
