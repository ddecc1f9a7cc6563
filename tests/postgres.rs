//! The PostgreSQL state backend end to end (`[state] backend = "postgres"`): the real
//! binary against the W&B sandbox and a throwaway PostgreSQL server (tests/common/postgres.rs).
//! Skipped, saying so, where PostgreSQL is not installed, unless IDSYNC_REQUIRE_POSTGRES=1.

mod common;

use std::time::{Duration, Instant};

use common::postgres::Pg;
use common::slapd;
use common::*;
use serde_json::Value;

/// Points the fixture's state at database `db` of `pg` (the URL in a secret file).
fn use_postgres(f: &Fixture, pg: &Pg, db: &str) {
    f.write_secret("pg-url", &pg.create_db(db));
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    std::fs::write(&f.cfg, format!("{cfg}\n[state]\nbackend = \"postgres\"\nurl_file = \"pg-url\"\n")).unwrap();
}

fn count(pg: &Pg, db: &str, sql: &str) -> i64 {
    pg.sql(db, sql).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_run_and_status_keep_their_state_in_postgres() {
    let Some(pg) = Pg::start() else { return };
    let f = root_and_alice().await;
    use_postgres(&f, &pg, "e2e");

    // Read-only commands create nothing, not even the schema.
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 2, "changes pending: {}", text(&plan));
    let status = f.run(&["status"]).await;
    assert_eq!(code(&status), 0, "{}", text(&status));
    assert_eq!(count(&pg, "e2e", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 0);

    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(f.users().await.contains_key("alice@example.com"));
    assert!(!f.path("state/idsync.db").exists(), "no SQLite store beside PostgreSQL");
    assert!(f.audit().iter().any(|r| r["event"] == "end"), "the audit log stays a local file");
    assert_eq!(count(&pg, "e2e", "SELECT count(*) FROM runs WHERE result = 'success'"), 1);
    assert_eq!(count(&pg, "e2e", "SELECT count(*) FROM journal WHERE state = 'ended' AND ok"), 1);
    // The shared audit trail holds the same steps as the file.
    assert_eq!(pg.sql("e2e", "SELECT string_agg(event, ',' ORDER BY seq) FROM audit"), "begin,end");
    let row: Value = serde_json::from_str(&pg.sql("e2e", "SELECT record FROM audit WHERE event = 'end'")).unwrap();
    assert_eq!(row["user"], "alice@example.com");
    assert_eq!(row["result"], "ok");

    let once = f.run(&["run", "--once"]).await;
    assert_eq!(code(&once), 0, "{}", text(&once));
    let status = f.run(&["status", "--format", "json"]).await;
    assert_eq!(code(&status), 0, "{}", text(&status));
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["runs"].as_array().map(Vec::len), Some(2), "{s}");
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 0, "in sync: {}", text(&plan));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_mid_apply_fails_the_run_cleanly_and_the_next_run_finishes() {
    let Some(pg) = Pg::start() else { return };
    let f = slow_fixture(Duration::from_millis(150)).await;
    use_postgres(&f, &pg, "restart");
    let mut child = f
        .command(&["apply", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Cut the database once a few creates have been journaled (bounded wait).
    let start = Instant::now();
    while count(&pg, "restart", "SELECT count(*) FROM pg_tables WHERE tablename = 'journal'") == 0
        || count(&pg, "restart", "SELECT count(*) FROM journal WHERE state = 'ended'") < 3
    {
        if start.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the apply never got going: {}", text(&child.wait_with_output().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.stop();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(code(&out), 1, "the cut-short run fails: {}", text(&out));
    let err = text(&out);
    assert!(err.contains("PostgreSQL state database 127.0.0.1"), "names the database: {err}");
    let created = f.users().await.len();
    assert!(created < 13, "the run stopped: {created} users");

    pg.restart();
    let again = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&again), 0, "{}", text(&again));
    let users = f.users().await;
    assert_eq!(users.len(), 13, "root and k0..k11");
    // Each create was sent and audited as applied exactly once, the interrupted one too.
    let audit = f.audit();
    for i in 0..12 {
        let who = format!("k{i}@example.com");
        let ends = audit
            .iter()
            .filter(|r| r["event"] == "end" && r["user"] == who.as_str() && r["result"] == "ok")
            .count();
        assert_eq!(ends, 1, "{who}: {audit:?}");
    }
    // The cut-short run is not half-recorded: either absent, or recorded as a failure.
    assert_eq!(count(&pg, "restart", "SELECT count(*) FROM runs WHERE result = 'success'"), 1);
    assert_eq!(count(&pg, "restart", "SELECT count(*) FROM journal WHERE state = 'begun'"), 0);
    assert_eq!(
        count(
            &pg,
            "restart",
            "SELECT count(DISTINCT action_id) FROM audit WHERE event = 'end' AND record LIKE '%\"result\":\"ok\"%'"
        ),
        12,
        "the shared audit trail has every end, the interrupted one settled on resume too"
    );
    assert_eq!(
        count(&pg, "restart", "SELECT count(*) FROM audit WHERE event = 'end'"),
        12,
        "once each"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_migrate_moves_a_sqlite_state_with_its_clock_and_approval_and_refuses_a_full_target() {
    let Some(pg) = Pg::start() else { return };
    let f = pipeline_owner_left().await;
    // On SQLite: ci-bot's tombstone clock starts, its deprovision is held and approved.
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 3);
    assert_eq!(code(&f.run(&["plan", "--out", "plan.json"]).await), 3);
    let saved = plan_json(&f, "plan.json");
    let id = saved["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "deprovision_user")
        .and_then(|a| a["id"].as_str())
        .unwrap()
        .to_string();
    let ok = f.run(&["approve", "plan.json", "--id", &id]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    let sqlite = std::fs::read(f.path("state/idsync.db")).unwrap();

    use_postgres(&f, &pg, "moved");
    let moved = f.run(&["state", "migrate", "--to", "postgres"]).await;
    assert_eq!(code(&moved), 0, "{}", text(&moved));
    let out = String::from_utf8_lossy(&moved.stdout).to_string();
    assert!(
        out.contains("tombstones: 1") && out.contains("approvals: 1") && out.contains("runs: 1"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(f.path("state/idsync.db")).unwrap(),
        sqlite,
        "the SQLite file is only read"
    );
    assert!(
        count(&pg, "moved", "SELECT count(*) FROM audit WHERE event = 'approve'") >= 1,
        "the audit file is copied too"
    );

    // A second copy is refused; --replace copies again.
    let again = f.run(&["state", "migrate", "--to", "postgres"]).await;
    assert_eq!(code(&again), 1);
    assert!(text(&again).contains("already holds idsync state"), "{}", text(&again));
    assert_eq!(code(&f.run(&["state", "migrate", "--to", "postgres", "--replace"]).await), 0);

    // On PostgreSQL now: the approval and the clock carried over, so the held deprovision
    // goes ahead (grace period 0), once.
    let pending = f.run(&["approvals"]).await;
    assert!(text(&pending).contains(&id), "{}", text(&pending));
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        !f.users().await.contains_key("ci-bot@example.com"),
        "deprovisioned (SaaS: removed from the org)"
    );
    assert_eq!(count(&pg, "moved", "SELECT count(*) FROM approvals"), 0, "the approval is used up");
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_require_verifies_the_server_against_the_configured_ca() {
    if !slapd::available() {
        return; // openssl makes the certificates (installed with the LDAP tools)
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca, ca_key) = slapd::make_ca(certs.path(), "pg-ca");
    let (cert, key) = slapd::make_server_cert(certs.path(), &ca, &ca_key);
    // The server takes TLS clients only: a connection proves idsync used TLS.
    let Some(pg) = Pg::start_tls(&cert, &key) else { return };
    let f = root_and_alice().await;
    pg.create_db("tls");
    f.write_secret(
        "pg-url",
        &format!("host=127.0.0.1 port={} user=postgres dbname=tls sslmode=require", pg.port),
    );
    std::fs::copy(&ca, f.path("pg-ca.pem")).unwrap();
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    let tls = format!("{cfg}\n[state]\nbackend = \"postgres\"\nurl_file = \"pg-url\"\nca_file = \"pg-ca.pem\"\n");
    std::fs::write(&f.cfg, &tls).unwrap();
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(count(&pg, "tls", "SELECT count(*) FROM runs WHERE result = 'success'"), 1);

    // Without the CA the server is not trusted: refused, nothing written.
    std::fs::write(&f.cfg, tls.replace("ca_file = \"pg-ca.pem\"\n", "")).unwrap();
    let refused = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(text(&refused).contains("cannot connect"), "{}", text(&refused));
    assert_eq!(count(&pg, "tls", "SELECT count(*) FROM runs"), 1);
}
