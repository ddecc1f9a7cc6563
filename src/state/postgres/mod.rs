//! [`PgStore`], the PostgreSQL state backend (`[state] backend = "postgres"`): the same
//! [`StateBackend`](super::StateBackend) contract as the SQLite store, in a database
//! several idsync nodes can share. Connecting (a libpq URL or key=value string, TLS by
//! rustls), the session's settings and error mapping are here; the schema is in
//! `schema.rs`, the operations in `ops.rs`.
//!
//! Why a blocking client: the trait is synchronous, like rusqlite, and is called from
//! inside idsync's tokio runtime. The `postgres` crate (the blocking face of tokio-postgres)
//! drives each query on a private current-thread runtime, which must never be entered
//! from a runtime thread ("cannot start a runtime from within a runtime"). So every call
//! that touches the connection, closing it included, runs through [`off_runtime`]: on
//! idsync's multi-thread runtime inside `block_in_place` (the worker's other tasks move to
//! another thread, and the runtime context is exited, so the nested runtime may run);
//! on a current-thread runtime, which cannot do that, on a short-lived scoped thread;
//! elsewhere in place. Either way the caller blocks, exactly as on a SQLite write. No
//! shared pool, no channel to deadlock on, and the borrowed arguments need no copies.
//!
//! Invariants: every write has committed (with `synchronous_commit = on`, whatever the
//! server's default) before its method returns; a multi-row write is one transaction, or
//! part of the caller's [`atomically`](super::StateBackend::tx_begin) transaction; a
//! read-only open sets the session read-only, so nothing can be written through it, and
//! never creates or migrates the schema; error messages name the server and database
//! (never the URL, which may hold a password).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::StateError;
use crate::model::Email;

mod lease;
mod ops;
mod schema;
/// The throwaway server the integration tests use, for this crate's own tests.
#[cfg(test)]
#[path = "../../../tests/common/postgres.rs"]
pub(super) mod test_server;

pub use lease::{Fence, Lease};
pub(crate) use schema::MIGRATIONS;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL state store. See the module docs.
pub struct PgStore {
    /// `None` only while being dropped.
    client: RefCell<Option<Client>>,
    /// "PostgreSQL state database host:port/db", for messages (no credentials).
    label: String,
    /// Inside [`StateBackend::tx_begin`](super::StateBackend::tx_begin): writes join
    /// the open transaction instead of committing their own.
    in_tx: Cell<bool>,
    /// HA: every write transaction first checks this node still holds the lease.
    fence: Option<Fence>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("label", &self.label).finish_non_exhaustive()
    }
}

/// Runs `f` where the blocking client may run: outside any tokio runtime context (see the
/// module docs).
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Err(_) => f(),
        // idsync's own runtime: hand this worker's other tasks to another thread and run
        // here with the runtime context exited (as cheap as a direct call, measured; a
        // thread per call cost ~1.4 ms more on a loaded machine).
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        // A current-thread runtime (some tests) cannot do that: a scoped thread.
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// What a URL names, for messages: hosts, ports and database, never user or password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let host = match (hosts.is_empty(), ports.is_empty()) {
        (true, _) => "localhost".to_string(),
        (false, true) => hosts.join(","),
        (false, false) => format!("{}:{}", hosts.join(","), ports.join(",")),
    };
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("PostgreSQL state database {host}/{db}")
}

/// The TLS client config for `sslmode=prefer|require`: the CA file's certificates
/// (`[state] ca_file`) or the system's, and the aws-lc-rs provider (as reqwest and the
/// LDAP source use), verification always on.
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read [state] ca_file {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| format!("[state] ca_file {}: not a PEM certificate bundle ({e})", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("[state] ca_file {}: unusable certificate ({e})", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("[state] ca_file {} holds no PEM certificate", path.display()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // One bad system certificate should not disable the rest.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The message for a PostgreSQL error: the server's own words (code and message) or the
/// connection's, and what to do.
fn pg_msg(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let hint = match db.code().code() {
            // Wrong password or user, no such database, not allowed in pg_hba.conf.
            "28P01" | "28000" | "3D000" => "; check the user, password and database in [state] url_file / url_env",
            "25006" => "; this command opens the state read-only and must not write",
            "42501" => "; grant the idsync user CREATE and USAGE on its schema (or make it the database's owner)",
            _ => "",
        };
        return format!("{} ({}){hint}", db.message(), db.code().code());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    if e.is_closed() || msg.contains("connect") {
        msg.push_str("; check that the server is up and reachable, and [state] url_file / url_env");
    }
    msg
}

impl PgStore {
    /// Connects to the database `url` names and brings idsync's schema up to date.
    /// Fails on a schema written by a newer idsync.
    pub fn open(url: &str) -> Result<PgStore, StateError> {
        Self::open_with(url, None)
    }

    /// [`open`](Self::open), trusting the CA certificates in `ca_file` (PEM) for TLS
    /// instead of the system's.
    pub fn open_with(url: &str, ca_file: Option<&Path>) -> Result<PgStore, StateError> {
        let store = Self::connect(url, ca_file, false, None)?;
        store.with(schema::migrate)?.map_err(|e| e.at(&store.label))?;
        Ok(store)
    }

    /// [`open_with`](Self::open_with) for the HA lease thread: connecting, and any wait on
    /// a silent network (`tcp_user_timeout`), is bounded by `limit`, so one lost renewal
    /// never stalls the next for longer.
    pub fn open_for_lease(url: &str, ca_file: Option<&Path>, limit: Duration) -> Result<PgStore, StateError> {
        let store = Self::connect(url, ca_file, false, Some(limit))?;
        store.with(schema::migrate)?.map_err(|e| e.at(&store.label))?;
        store.lease_session(limit)?;
        Ok(store)
    }

    /// Connects without writing: the session is read-only and the schema is neither
    /// created nor migrated. `Ok(None)` when idsync has not created its schema there yet.
    pub fn open_read_only(url: &str, ca_file: Option<&Path>) -> Result<Option<PgStore>, StateError> {
        let store = Self::connect(url, ca_file, true, None)?;
        match store.with(schema::version)? {
            None => Ok(None),
            Some(found) => {
                let supported = MIGRATIONS.len() as i64;
                if found > supported {
                    return Err(StateError::PgTooNew {
                        target: store.label.clone(),
                        found,
                        supported,
                    });
                }
                if found < supported {
                    return Err(store.corrupt(format!(
                        "schema version {found} is older than this idsync's {supported}: run `idsync apply` (or let the daemon run) once to upgrade it (this command only reads the state)"
                    )));
                }
                Ok(Some(store))
            }
        }
    }

    fn connect(url: &str, ca_file: Option<&Path>, read_only: bool, limit: Option<Duration>) -> Result<PgStore, StateError> {
        let mut config: Config = url.trim().parse().map_err(|e: postgres::Error| StateError::Postgres {
            target: "PostgreSQL state database".into(),
            // The parser names the option at fault, never a value.
            msg: format!(
                "the [state] url_file / url_env value is not a libpq URL or key=value string ({e}); the value is not shown: it may hold a password"
            ),
            source: None,
        })?;
        let label = describe(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if let Some(limit) = limit {
            let t = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT).min(limit);
            config.connect_timeout(t);
            config.tcp_user_timeout(limit);
        }
        if config.get_application_name().is_none() {
            config.application_name("idsync");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(tls(ca_file).map_err(|msg| StateError::Postgres {
                target: label.clone(),
                msg,
                source: None,
            })?),
        };
        let client = off_runtime(|| match tls {
            Some(tls) => config.connect(tls),
            None => config.connect(NoTls),
        })
        .map_err(|e| StateError::Postgres {
            target: label.clone(),
            msg: format!("cannot connect: {}", pg_msg(&e)),
            source: Some(Box::new(e)),
        })?;
        let store = PgStore {
            client: RefCell::new(Some(client)),
            label,
            in_tx: Cell::new(false),
            fence: None,
        };
        // Durable on return, whatever the server's default; UTC for anything shown.
        let mut session = "SET synchronous_commit = on; SET TIME ZONE 'UTC';".to_string();
        if read_only {
            session.push_str(" SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;");
        }
        store.with(|c| c.batch_execute(&session))?;
        Ok(store)
    }

    /// What a URL names (server and database, no credentials), without connecting.
    pub fn describe_url(url: &str) -> String {
        match url.trim().parse::<Config>() {
            Ok(c) => describe(&c),
            Err(_) => "PostgreSQL state database (the URL does not parse)".into(),
        }
    }

    /// What the store is, for messages: server and database, no credentials.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` on the connection, off the runtime; maps its error.
    pub(super) fn with<T: Send>(&self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send) -> Result<T, StateError> {
        let mut guard = self.client.borrow_mut();
        let Some(client) = guard.as_mut() else {
            return Err(self.corrupt("the connection is closed".into()));
        };
        off_runtime(|| f(client)).map_err(|e| self.err(e))
    }

    /// Runs `f`'s statements as one transaction, or as part of the caller's open one. A
    /// fenced store checks its lease first (`lease.rs`).
    pub(super) fn write<T: Send>(&self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send) -> Result<T, StateError> {
        if self.in_tx.get() {
            return self.with(f);
        }
        let fence = self.fence.as_ref();
        let r = self.with(|c| {
            c.batch_execute("BEGIN")?;
            let fenced = match Self::check_fence(c, fence) {
                Ok(None) => None,
                Ok(Some(why)) => Some(why),
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    return Err(e);
                }
            };
            if let Some(why) = fenced {
                c.batch_execute("ROLLBACK")?;
                return Ok(Err(why));
            }
            match f(c) {
                Ok(v) => c.batch_execute("COMMIT").map(|()| Ok(v)),
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        })?;
        r.map_err(|why| self.fenced(why))
    }

    fn fenced(&self, why: String) -> StateError {
        let (node, token) = self.fence.as_ref().map(|f| (f.node.clone(), f.token)).unwrap_or_default();
        StateError::Fenced { node, token, why }
    }

    pub(super) fn tx_begin(&mut self) -> Result<(), StateError> {
        let fence = self.fence.as_ref();
        let fenced = self.with(|c| {
            c.batch_execute("BEGIN")?;
            match Self::check_fence(c, fence) {
                Ok(None) => Ok(None),
                Ok(Some(why)) => {
                    c.batch_execute("ROLLBACK")?;
                    Ok(Some(why))
                }
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        })?;
        if let Some(why) = fenced {
            return Err(self.fenced(why));
        }
        self.in_tx.set(true);
        Ok(())
    }

    pub(super) fn tx_commit(&mut self) -> Result<(), StateError> {
        self.in_tx.set(false);
        self.with(|c| c.batch_execute("COMMIT"))
    }

    pub(super) fn tx_rollback(&mut self) {
        self.in_tx.set(false);
        let _ = self.with(|c| c.batch_execute("ROLLBACK"));
    }

    pub(super) fn err(&self, e: postgres::Error) -> StateError {
        StateError::Postgres {
            target: self.label.clone(),
            msg: pg_msg(&e),
            source: Some(Box::new(e)),
        }
    }

    pub(super) fn corrupt(&self, msg: String) -> StateError {
        StateError::Corrupt {
            path: self.label.clone().into(),
            msg,
        }
    }

    pub(super) fn email(&self, s: &str) -> Result<Email, StateError> {
        Email::parse(s).ok_or_else(|| self.corrupt(format!("stored email {s:?} is not an email address")))
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing drives the client's private runtime too: off the caller's runtime.
        if let Some(client) = self.client.get_mut().take() {
            off_runtime(move || drop(client));
        }
    }
}

/// A timestamp as PostgreSQL stores it (microseconds), so what was written reads back equal.
pub(super) fn micros(t: &DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(*t)
}
