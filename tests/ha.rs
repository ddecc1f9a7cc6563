//! High availability (`[ha] enabled = true`): two or three real `idsync run` nodes sharing
//! one throwaway PostgreSQL server (tests/common/postgres.rs) against one W&B sandbox.
//! Each node has its own API key, so the sandbox's write log shows which node wrote what.
//! Short leases (6 s) keep the tests fast; every wait is bounded. Skipped, saying so,
//! where PostgreSQL is not installed, unless IDSYNC_REQUIRE_POSTGRES=1.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::postgres::Pg;
use common::*;
use idsync::sandbox::{SandboxOptions, WriteRecord};
use serde_json::Value;

const TTL_SECS: u64 = 6;
const TTL: Duration = Duration::from_secs(TTL_SECS);
/// The schedule's tick.
const TICK: Duration = Duration::from_secs(2);
const NODES: [&str; 3] = ["a", "b", "c"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The sandbox key of node `name` (index `i + 1` in the write log).
fn key_of(name: &str) -> String {
    format!("key-of-node-{name}")
}

fn key_index(name: &str) -> usize {
    NODES.iter().position(|n| *n == name).unwrap() + 1
}

/// [`slow_fixture`] with a sandbox that accepts one key per node.
async fn fixture(latency: Duration) -> Fixture {
    slow_fixture_with(SandboxOptions {
        api_key: KEY.into(),
        extra_api_keys: NODES.iter().map(|n| key_of(n)).collect(),
        latency,
        ..SandboxOptions::default()
    })
    .await
}

struct Node {
    name: &'static str,
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Node {
    /// Writes node `name`'s config (the fixture's, with its own key, state directory,
    /// port and node name, the shared database, HA on) and starts `idsync run` with it.
    fn start(f: &Fixture, name: &'static str) -> Node {
        let port = free_port();
        f.write_secret(&format!("key-{name}"), &key_of(name));
        let text = std::fs::read_to_string(&f.cfg).unwrap();
        let text = text
            .replace("api_key_file = \"key\"", &format!("api_key_file = \"key-{name}\""))
            .replace("timeout = \"10s\"", "timeout = \"2s\"")
            .replace(
                "state_dir = \"state\"",
                &format!(
                    "state_dir = \"state-{name}\"\nlisten = \"127.0.0.1:{port}\"\nschedule = \"*/{} * * * * *\"",
                    TICK.as_secs()
                ),
            );
        let text = format!(
            "{text}\n[state]\nbackend = \"postgres\"\nurl_file = \"pg-url\"\n\n[ha]\nenabled = true\nlease_ttl = \"{TTL_SECS}s\"\nnode_name = \"{name}\"\n"
        );
        let cfg = f.path(&format!("node-{name}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let log = f.path(&format!("node-{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_idsync"))
            .args(["run", "-c"])
            .arg(&cfg)
            .current_dir(f.path(""))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("IDSYNC_CONFIG")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn idsync run");
        Node { name, child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let r = reqwest::Client::new().get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.ok()?))
    }

    async fn status(&self) -> Option<Value> {
        let (code, body) = self.get("/status").await?;
        (code == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    async fn role(&self) -> Option<String> {
        Some(self.status().await?["ha"]["role"].as_str()?.to_string())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.signal_quiet("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn signal_quiet(&self, sig: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status()
    }
}

fn count(pg: &Pg, sql: &str) -> i64 {
    pg.sql("ha", sql).parse().unwrap_or(-1)
}

fn schema_ready(pg: &Pg) -> bool {
    count(pg, "SELECT count(*) FROM pg_tables WHERE tablename = 'ha_lease'") == 1
}

/// The node whose name the lease row holds, unexpired.
fn lease_holder(pg: &Pg) -> Option<String> {
    let h = pg.sql("ha", "SELECT holder FROM ha_lease WHERE expires_at > now()");
    (!h.is_empty()).then_some(h)
}

fn created(f: &Fixture, log: &[WriteRecord]) -> BTreeMap<usize, usize> {
    let _ = f;
    let mut by_key = BTreeMap::new();
    for w in log.iter().filter(|w| w.method == "POST" && w.path.starts_with("/Users")) {
        *by_key.entry(w.key).or_default() += 1;
    }
    by_key
}

/// Every action in the shared audit trail was begun at most once and ended exactly once.
fn audited_once(pg: &Pg) {
    let rows = pg.sql(
        "ha",
        "SELECT action_id || ' ' || sum((event = 'begin')::int) || ' ' || sum((event IN ('end', 'settle'))::int) FROM audit GROUP BY action_id",
    );
    assert!(!rows.is_empty(), "the shared audit trail is empty");
    for line in rows.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(parts[1] == "1" || parts[1] == "0", "begun more than once: {line}\n{rows}");
        assert_eq!(parts[2], "1", "not ended exactly once: {line}\n{rows}");
    }
}

async fn all_created(f: &Fixture) -> bool {
    let users = f.users().await;
    (0..12).all(|i| users.contains_key(&format!("k{i}@example.com")))
}

/// Waits until node a holds the lease (the schema exists by then).
async fn a_leads(pg: &Pg) {
    wait_for(Duration::from_secs(30), "a to lead", || async {
        (schema_ready(pg) && lease_holder(pg).as_deref() == Some("a")).then_some(())
    })
    .await;
}

/// Waits until the journal has at least `n` ended entries: the leader is mid-apply.
async fn ended_at_least(pg: &Pg, n: i64) {
    wait_for(Duration::from_secs(30), &format!("{n} ended journal entries"), || async {
        (count(pg, "SELECT count(*) FROM journal WHERE state = 'ended'") >= n).then_some(())
    })
    .await;
}

/// Exactly twelve creates succeeded at W&B, whichever node sent them.
fn each_created_once(log: &[WriteRecord]) {
    let ok = log
        .iter()
        .filter(|w| w.method == "POST" && w.path.starts_with("/Users") && w.status < 300)
        .count();
    assert_eq!(ok, 12, "{log:?}");
}

fn setup_db(f: &Fixture, pg: &Pg) {
    f.write_secret("pg-url", &pg.create_db("ha"));
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_elect_one_leader_and_the_standbys_write_nothing() {
    let Some(pg) = Pg::start() else { return };
    let f = fixture(Duration::from_millis(20)).await;
    setup_db(&f, &pg);
    let nodes: Vec<Node> = NODES.iter().map(|n| Node::start(&f, n)).collect();
    wait_for(Duration::from_secs(60), "every person created", || async {
        all_created(&f).await.then_some(())
    })
    .await;
    // Exactly one leader, the one the lease names; the others are healthy standbys.
    let holder = lease_holder(&pg).expect("a leader holds the lease");
    let mut roles = BTreeMap::new();
    for n in &nodes {
        let role = wait_for(Duration::from_secs(10), "a role on /status", || n.role()).await;
        roles.insert(n.name, role);
    }
    let leaders: Vec<_> = roles.iter().filter(|(_, r)| *r == "leader").map(|(n, _)| *n).collect();
    assert_eq!(leaders, [holder.as_str()], "{roles:?}");
    // Only the leader's key wrote to W&B, each person once.
    let log = f.sb.write_log();
    let by_key = created(&f, &log);
    assert_eq!(by_key, BTreeMap::from([(key_index(&holder), 12)]), "{log:?}");
    assert!(log.iter().all(|w| w.key == key_index(&holder)), "a standby wrote to W&B: {log:?}");
    audited_once(&pg);
    for n in nodes.iter().filter(|n| n.name != holder) {
        // A healthy standby is ready and says it is not the leader.
        let (code, body) = wait_for(Duration::from_secs(10), "a standby's /readyz", || async {
            n.get("/readyz").await.filter(|(c, _)| *c == 200)
        })
        .await;
        assert_eq!(code, 200, "{body}");
        let (_, metrics) = n.get("/metrics").await.unwrap();
        assert!(metrics.contains(&format!("idsync_ha_leader{{node=\"{}\"}} 0", n.name)), "{metrics}");
        let s = n.status().await.unwrap();
        assert_eq!(s["ha"]["leader"], holder.as_str(), "{s}");
        // It recorded nothing: no audit line of its own, no run in the shared state.
        let audit = std::fs::read_to_string(f.path(&format!("state-{}/audit.jsonl", n.name))).unwrap_or_default();
        assert!(audit.is_empty(), "standby {} audited: {audit}", n.name);
    }
    let leader = nodes.iter().find(|n| n.name == holder).unwrap();
    let (_, metrics) = leader.get("/metrics").await.unwrap();
    assert!(metrics.contains(&format!("idsync_ha_leader{{node=\"{holder}\"}} 1")), "{metrics}");
    // Audit lines name the node that wrote them.
    let audit = std::fs::read_to_string(f.path(&format!("state-{holder}/audit.jsonl"))).unwrap();
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first["node"], holder.as_str(), "{first}");
    assert_eq!(
        count(
            &pg,
            &format!("SELECT count(*) FROM audit WHERE record::json->>'node' <> '{holder}'")
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_leader_mid_apply_a_standby_takes_over_and_applies_each_change_once() {
    let Some(pg) = Pg::start() else { return };
    let f = fixture(Duration::from_millis(300)).await;
    setup_db(&f, &pg);
    let mut a = Node::start(&f, "a");
    a_leads(&pg).await;
    let b = Node::start(&f, "b");
    ended_at_least(&pg, 3).await;
    assert!(!all_created(&f).await, "a finished before the kill: make the run longer");
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let killed = Instant::now();
    // b takes over within the TTL and one tick (plus a read of both sides), and finishes.
    wait_for(TTL + TICK + Duration::from_secs(4), "b to write", || async {
        f.sb.write_log().iter().any(|w| w.key == key_index("b")).then_some(())
    })
    .await;
    let took = killed.elapsed();
    wait_for(Duration::from_secs(40), "every person created", || async {
        all_created(&f).await.then_some(())
    })
    .await;
    // Each person created once, by a or b; a's writes all came before the kill.
    let log = f.sb.write_log();
    each_created_once(&log);
    wait_for(Duration::from_secs(10), "b's run to close every journal entry", || async {
        (count(&pg, "SELECT count(*) FROM journal WHERE state = 'begun'") == 0).then_some(())
    })
    .await;
    audited_once(&pg);
    let (_, metrics) = b.get("/metrics").await.unwrap();
    assert!(metrics.contains("idsync_ha_failovers_total 1"), "{metrics}");
    assert!(metrics.contains("idsync_ha_leader{node=\"b\"} 1"), "{metrics}");
    eprintln!("takeover after kill -9: first write by b {took:?} after the kill (ttl {TTL:?}, tick {TICK:?})");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_paused_past_its_lease_is_fenced_when_it_resumes_and_steps_down() {
    let Some(pg) = Pg::start() else { return };
    let f = fixture(Duration::from_millis(300)).await;
    setup_db(&f, &pg);
    let a = Node::start(&f, "a");
    a_leads(&pg).await;
    let b = Node::start(&f, "b");
    ended_at_least(&pg, 2).await;
    a.signal("STOP");
    wait_for(TTL * 2 + TICK + Duration::from_secs(4), "b to take over", || async {
        (lease_holder(&pg).as_deref() == Some("b")).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(40), "every person created", || async {
        all_created(&f).await.then_some(())
    })
    .await;
    let writes_before = f.sb.write_log().len();
    let runs_before = pg.sql("ha", "SELECT string_agg(run_id, ',' ORDER BY seq) FROM runs");
    let journal_before = pg.sql("ha", "SELECT string_agg(seq || state, ',' ORDER BY seq) FROM journal");
    let resumed = chrono::Utc::now();
    a.signal("CONT");
    // a learns it lost the lease and steps down; it writes nothing more anywhere.
    wait_for(TTL + TICK * 2, "a to step down", || async {
        (a.role().await.as_deref() == Some("standby")).then_some(())
    })
    .await;
    tokio::time::sleep(TICK * 2).await;
    let log = f.sb.write_log();
    let late: Vec<&WriteRecord> = log.iter().filter(|w| w.key == key_index("a") && w.at > resumed).collect();
    assert!(late.is_empty(), "a wrote to W&B after it resumed: {late:?}\n{}", a.log());
    assert!(
        log[writes_before..].iter().all(|w| w.key != key_index("a")),
        "{:?}",
        &log[writes_before..]
    );
    // b goes on recording its own runs; none of a's runs is recorded after the pause.
    let runs_after = pg.sql("ha", "SELECT string_agg(run_id, ',' ORDER BY seq) FROM runs");
    let alog = a.log();
    for id in alog.split("run_id=").skip(1).filter_map(|t| t.split_whitespace().next()) {
        assert!(
            !runs_after.contains(id) || runs_before.contains(id),
            "a recorded run {id} after it resumed: {runs_after}\n{alog}"
        );
    }
    assert_eq!(
        pg.sql("ha", "SELECT string_agg(seq || state, ',' ORDER BY seq) FROM journal"),
        journal_before,
        "a changed the journal"
    );
    assert_eq!(b.role().await.as_deref(), Some("leader"));
    each_created_once(&log);
    let alog = a.log();
    assert!(alog.contains("steps down") || alog.contains("stepping down"), "{alog}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_mid_run_fails_that_run_cleanly_and_the_nodes_recover_unaided() {
    let Some(pg) = Pg::start() else { return };
    let f = fixture(Duration::from_millis(200)).await;
    setup_db(&f, &pg);
    let _a = Node::start(&f, "a");
    a_leads(&pg).await;
    let _b = Node::start(&f, "b");
    ended_at_least(&pg, 3).await;
    // The run in flight now: the one whose entries are in the journal.
    let cut = pg.sql("ha", "SELECT run_id FROM journal ORDER BY seq LIMIT 1");
    pg.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.restart();
    wait_for(Duration::from_secs(60), "every person created", || async {
        all_created(&f).await.then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "a successful run after the restart", || async {
        (count(&pg, "SELECT count(*) FROM runs WHERE result = 'success'") >= 1
            && count(&pg, "SELECT count(*) FROM journal WHERE state = 'begun'") == 0)
            .then_some(())
    })
    .await;
    // The cut-short run is recorded as a failure (the database was back in time) or not
    // at all, never as a success with actions missing; each action ended exactly once.
    let result = pg.sql("ha", &format!("SELECT result FROM runs WHERE run_id = '{cut}'"));
    assert!(
        result.is_empty() || result == "failure",
        "the cut-short run {cut} was recorded {result:?}"
    );
    assert!(
        count(&pg, &format!("SELECT count(*) FROM journal WHERE run_id = '{cut}'")) < 12,
        "the cut-short run did not apply everything"
    );
    audited_once(&pg);
    let log = f.sb.write_log();
    each_created_once(&log);
    assert!(lease_holder(&pg).is_some(), "a node leads again");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_once_beside_a_leader_only_reads_and_plans_and_idsync_apply_is_refused() {
    let Some(pg) = Pg::start() else { return };
    let f = fixture(Duration::from_millis(20)).await;
    setup_db(&f, &pg);
    let mut a = Node::start(&f, "a");
    wait_for(Duration::from_secs(60), "every person created by a", || async {
        all_created(&f).await.then_some(())
    })
    .await;
    // a dies just renewed: its lease stays a's for seconds more, and nothing applies.
    wait_for(Duration::from_secs(10), "a fresh renewal", || async {
        (count(&pg, "SELECT count(*) FROM ha_lease WHERE expires_at > now() + interval '5 seconds'") == 1).then_some(())
    })
    .await;
    a.child.kill().unwrap();
    let _ = a.child.wait();
    // b's config, from a node that is not started: `run --once` is one tick of a node.
    let b = Node::start(&f, "b");
    drop(b);
    let people: Vec<String> = (0..12).map(|i| format!("k{i}")).chain(["root".into(), "late".into()]).collect();
    f.write_ldif(&ldif(&people.iter().map(|p| P(p, true)).collect::<Vec<_>>(), &[]));
    let writes = f.sb.write_log().len();
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["run", "--once", "-c"])
        .arg(f.path("node-b.toml"))
        .current_dir(f.path(""))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("another node holds the leader lease"), "{}", text(&out));
    assert!(text(&out).contains("ready=1"), "it planned the new person: {}", text(&out));
    assert!(
        f.sb.write_log()[writes..].iter().all(|w| w.key != key_index("b")),
        "a standby's run --once wrote to W&B"
    );
    let apply = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["apply", "--yes", "-c"])
        .arg(f.path("node-b.toml"))
        .current_dir(f.path(""))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("only the daemon that holds the leader lease applies"),
        "{}",
        text(&apply)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopped_cleanly_releases_the_lease_and_a_standby_takes_over_before_it_would_expire() {
    let Some(pg) = Pg::start() else { return };
    let f = fixture(Duration::from_millis(20)).await;
    setup_db(&f, &pg);
    let mut a = Node::start(&f, "a");
    a_leads(&pg).await;
    let b = Node::start(&f, "b");
    wait_for(Duration::from_secs(10), "b to be a standby", || async {
        (b.role().await.as_deref() == Some("standby")).then_some(())
    })
    .await;
    a.signal("TERM");
    let start = Instant::now();
    let exited = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "a did not exit:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exited, Some(0), "{}", a.log());
    assert!(a.log().contains("leader lease released"), "{}", a.log());
    // Released, not left to expire: b holds it within a quarter TTL (plus slack).
    wait_for(TTL / 4 + Duration::from_secs(2), "b to take the released lease", || async {
        (lease_holder(&pg).as_deref() == Some("b")).then_some(())
    })
    .await;
    let took = start.elapsed();
    assert!(took < TTL, "took {took:?}: the lease was not released");
    wait_for(Duration::from_secs(5), "b's metrics", || async {
        let (_, m) = b.get("/metrics").await?;
        m.contains("idsync_ha_failovers_total 1").then_some(())
    })
    .await;
}
