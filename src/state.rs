//! The SQLite state store and the append-only audit log.
