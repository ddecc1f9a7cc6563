//! The PostgreSQL state backend end to end (`[state] backend = "postgres"`): the real
//! binary against the W&B sandbox and a throwaway PostgreSQL server (tests/common/postgres.rs).
//! Skipped, saying so, where PostgreSQL is not installed, unless IDSYNC_REQUIRE_POSTGRES=1.

mod common;

use std::time::{Duration, Instant};

use common::postgres::Pg;
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
}
