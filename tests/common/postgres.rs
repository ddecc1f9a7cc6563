//! A throwaway PostgreSQL server for the state-backend tests: `initdb` in a temp dir and
//! `pg_ctl` on a free loopback port, as the `postgres` user when running as root (the
//! server refuses root), trust authentication, fsync off (a test server: speed over
//! durability across power loss). Stopped on drop. Also compiled into the library's unit
//! tests (`src/state/postgres/tests.rs`), so it uses std and tempfile only.
//!
//! [`Pg::start`] returns `None`, after saying why, when PostgreSQL is not installed,
//! unless `IDSYNC_REQUIRE_POSTGRES=1` (scripts/test.sh sets it), when it panics instead.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    /// Serving TLS (`ssl = on`) with the certificate and key in the data directory.
    tls: bool,
}

/// The newest installed server's binaries (Debian: `/usr/lib/postgresql/N/bin`).
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    /// Starts a server, or `None` (skip) when PostgreSQL is not installed here.
    pub fn start() -> Option<Pg> {
        Self::start_with(None)
    }

    /// Starts a server that accepts TCP clients over TLS only, with this certificate and
    /// key (PEM).
    pub fn start_tls(cert: &Path, key: &Path) -> Option<Pg> {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Option<Pg> {
        let Some(bin) = bin_dir() else {
            if std::env::var("IDSYNC_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL is required (IDSYNC_REQUIRE_POSTGRES=1) but not installed: apt-get install postgresql");
            }
            eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh does)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        let pg = Pg {
            dir,
            bin,
            port: free_port(),
            as_postgres,
            tls: tls.is_some(),
        };
        if as_postgres {
            pg.run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.dir.path()), "chown");
        }
        let data = pg.data();
        pg.run(
            pg.tool("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "--no-instructions",
                    "-E",
                    "UTF8",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        );
        if let Some((cert, key)) = tls {
            // The server reads them as its own user, and refuses a key others can read.
            std::fs::copy(cert, data.join("server.crt")).unwrap();
            std::fs::copy(key, data.join("server.key")).unwrap();
            std::fs::set_permissions(data.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            // TLS or nothing over TCP, so a client that connects has used it.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            if as_postgres {
                pg.run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data), "chown");
            }
        }
        pg.start_server();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for a server tool, as the postgres user when running as root.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, cmd: &mut Command, what: &str) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_server(&self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            opts.push_str(" -c ssl=on");
        }
        self.run(
            self.tool("pg_ctl")
                .args(["-w", "-t", "30", "-D"])
                .arg(self.data())
                .args(["-o", &opts, "-l"])
                .arg(self.dir.path().join("log"))
                .arg("start"),
            "pg_ctl start",
        );
    }

    /// Stops the server at once (as a crash or failover would look to a client).
    pub fn stop(&self) {
        self.run(
            self.tool("pg_ctl")
                .args(["-w", "-D"])
                .arg(self.data())
                .args(["-m", "immediate", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts it again on the same port after [`stop`](Self::stop).
    pub fn restart(&self) {
        self.start_server();
    }

    /// Creates database `name` (idsync's schema is not there until idsync opens it).
    pub fn create_db(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// Runs SQL in database `db` with psql, returning its unaligned output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A libpq URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-w", "-t", "10", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
        // Bounded: the server's files must not outlive it, but never hang a test run.
        let t = Instant::now();
        while self.data().join("postmaster.pid").exists() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
