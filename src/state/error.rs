//! [`StateError`]: why the state store or the audit log failed, and the helpers that turn
//! an `io::Error` or a SQLite error into one.
//!
//! Invariant: every message says what failed and what to do; one about a file names the
//! file, with a hint chosen from the error's kind (permissions, a full disk, another
//! idsync holding the lock, a file that is not an idsync database).

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Why the state store or audit log failed; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {what} {}: {source}; {hint}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
        hint: String,
    },
    #[error("{}: {msg}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: Box<rusqlite::Error>,
        /// SQLite's message (without the path it sometimes repeats) and what to do.
        msg: String,
    },
    #[error("{} was written by a newer idsync (schema version {found}; this idsync knows up to {supported}): upgrade idsync, or point daemon.state_dir at another directory", path.display())]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("{}: {msg}", path.display())]
    Corrupt { path: PathBuf, msg: String },
    #[error("journal: {0}")]
    Journal(String),
    /// The PostgreSQL backend: `target` names server and database, never credentials.
    #[error("{target}: {msg}")]
    Postgres {
        target: String,
        msg: String,
        #[source]
        source: Option<Box<postgres::Error>>,
    },
    /// HA: this node's lease token is no longer the lease's (or the lease expired), so
    /// the write was rolled back.
    #[error("this node ({node}) no longer holds the HA leader lease it wrote under (token {token}): {why}; another node took over (or will): this node steps down to standby and writes nothing more")]
    Fenced { node: String, token: i64, why: String },
    #[error("{target} holds a schema from a newer idsync (version {found}; this idsync knows up to {supported}): upgrade idsync on every node that uses it, or point [state] url_file / url_env at another database")]
    PgTooNew { target: String, found: i64, supported: i64 },
}

const DIR_HINT: &str = "check daemon.state_dir in the config";
const PERMISSION_HINT: &str = "check daemon.state_dir in the config and that the user idsync runs as may write there (under systemd, StateDirectory=idsync creates it with the right owner)";

/// What to tell the user about an I/O failure in the state directory.
pub(super) fn io_hint(kind: io::ErrorKind) -> String {
    match kind {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => PERMISSION_HINT.into(),
        io::ErrorKind::StorageFull => "free some disk space".into(),
        _ => DIR_HINT.into(),
    }
}

pub(super) fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        hint: io_hint(source.kind()),
        source,
    }
}

pub(super) fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| {
        let hint = match source.sqlite_error_code() {
            Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => format!("; {PERMISSION_HINT}"),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "; another idsync process is using the state store: let it finish and retry".into(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                "; the file is not a healthy idsync database: move it aside to start afresh (tombstone clocks, approvals and the ledger are then forgotten)".into()
            }
            Some(ErrorCode::DiskFull) => "; free some disk space".into(),
            _ => String::new(),
        };
        let detail = source.to_string().replace(&format!(": {}", path.display()), "");
        StateError::Db {
            path: path.to_path_buf(),
            source: Box::new(source),
            msg: format!("{detail}{hint}"),
        }
    }
}
