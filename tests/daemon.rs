//! The daemon (`idsync run`): the real binary against the W&B sandbox on loopback, its HTTP
//! endpoints scraped, signals sent with kill(1). Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use idsync::sandbox::SandboxOptions;
use serde_json::Value;

/// A port free right now on loopback.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Rewrites the fixture's `[daemon]` table: listen on `port`, run on `schedule`.
fn daemon_config(f: &Fixture, port: u16, schedule: &str) {
    let text = std::fs::read_to_string(&f.cfg).unwrap();
    let head = text.split("[daemon]").next().unwrap().to_string();
    let tail = text.split_once("state_dir = \"state\"").unwrap().1;
    let new = format!("{head}[daemon]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{port}\"\nschedule = \"{schedule}\"\n{tail}");
    std::fs::write(&f.cfg, new).unwrap();
}

struct Daemon {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(f: &Fixture, port: u16) -> Daemon {
        let log = f.path(&format!("daemon-{port}-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).unwrap();
        let child = f
            .command(&["run"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn idsync run");
        Daemon { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let r = reqwest::Client::new().get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.ok()?))
    }

    async fn status(&self) -> Value {
        let (code, body) = self.get("/status").await.expect("/status answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits (bounded) for the process to exit; its exit code.
    async fn wait_exit(&mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("idsync run did not exit within {limit:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos())
}

/// The value of one sample line (`name{labels} value`) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn promtool_check_metrics(scrape: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs the Debian prometheus package)");
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- scrape\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts `begin` and `end` audit events per action id.
fn audit_counts(f: &Fixture) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut begins = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for r in f.audit() {
        let id = r["action_id"].as_str().unwrap().to_string();
        match r["event"].as_str().unwrap() {
            "begin" => *begins.entry(id).or_default() += 1,
            "end" => *ends.entry(id).or_default() += 1,
            _ => {}
        }
    }
    (begins, ends)
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_run_exports_drift_held_actions_and_last_success() {
    let f = Fixture::start(Setup {
        // root is the only admin and gone from the directory: held by last-admin.
        org: org(&[("root@example.com", "admin", &[]), ("bob@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("bob", true), P("alice", true), P("carol", true)], &[]),
        ..Setup::default()
    })
    .await;
    let port = free_port();
    // run_on_start is off: the first run must come from the schedule.
    daemon_config(&f, port, "*/2 * * * * *");
    let cfg = std::fs::read_to_string(&f.cfg)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\nrun_on_start = false\n");
    std::fs::write(&f.cfg, cfg).unwrap();
    let d = Daemon::start(&f, port);

    let (code, body) = wait_for(Duration::from_secs(20), "/healthz", || d.get("/healthz")).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let scrape = wait_for(Duration::from_secs(30), "a scheduled run in /metrics", || async {
        let (_, m) = d.get("/metrics").await?;
        (sample(&m, "idsync_runs_total{result=\"success\"}")? >= 1.0).then_some(m)
    })
    .await;
    assert_eq!(sample(&scrape, "idsync_drift_actions{kind=\"create_user\"}"), Some(2.0), "{scrape}");
    assert_eq!(sample(&scrape, "idsync_held_actions{guard=\"last-admin\"}"), Some(1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, "idsync_held_actions{guard=\"pipeline-key\"}"),
        Some(0.0),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "idsync_source_users"), Some(3.0), "{scrape}");
    assert_eq!(sample(&scrape, "idsync_org_admins"), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "idsync_org_admins_floor"), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "idsync_tombstones"), Some(1.0), "{scrape}");
    // root is in scope and missing from the directory. No seed has an activity date, so
    // the sandbox serves `lastActiveAt: null`, W&B's "never active": both seats the read
    // saw (root and bob) are inactive ones.
    assert_eq!(sample(&scrape, "idsync_orphan_users"), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "idsync_inactive_users"), Some(2.0), "{scrape}");
    assert_eq!(
        sample(&scrape, "idsync_actions_applied_total{kind=\"create_user\",result=\"ok\"}"),
        Some(2.0),
        "{scrape}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_success = sample(&scrape, "idsync_last_success_timestamp_seconds").unwrap();
    assert!((now - last_success).abs() < 60.0, "last success {last_success} vs now {now}");
    assert!(sample(&scrape, "idsync_run_duration_seconds_count{phase=\"apply\"}").unwrap() >= 1.0);
    assert!(scrape.contains("idsync_build_info{version=\""), "{scrape}");
    assert!(
        scrape.contains("idsync_http_requests_total{code=\"200\",system=\"target\"}"),
        "{scrape}"
    );
    promtool_check_metrics(&scrape);

    // The run held root's deprovision: /status names it, with its id and guard.
    let st = d.status().await;
    let held = st["latest_plan"]["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{st:#}");
    assert_eq!(held[0]["guard"], "last-admin");
    assert_eq!(held[0]["user"], "root@example.com");
    assert!(held[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(st["last_run"]["result"], "held", "{st:#}");
    assert_eq!(st["tombstones"].as_array().unwrap().len(), 1, "{st:#}");
    assert!(!st["last_runs"].as_array().unwrap().is_empty());
    let (code, body) = d.get("/readyz").await.unwrap();
    assert_eq!(code, 200, "a held run is a successful run: {body}");
    let users = f.users().await;
    assert!(users.contains_key("alice@example.com") && users.contains_key("carol@example.com"));
    assert_eq!(users["root@example.com"]["org_role"], "admin");
    assert!(d.log().contains("run finished"), "one summary line per run:\n{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_unready_when_the_target_goes_down() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        target: "max_retries = 0\ntimeout = \"2s\"",
        ..Setup::default()
    })
    .await;
    let port = free_port();
    daemon_config(&f, port, "* * * * * *");
    // The fixture's own `timeout = "10s"` line would clash with ours.
    let cfg = std::fs::read_to_string(&f.cfg).unwrap().replace("timeout = \"10s\"\n", "");
    std::fs::write(&f.cfg, cfg).unwrap();
    let d = Daemon::start(&f, port);
    wait_for(Duration::from_secs(30), "/readyz 200", || async {
        let (code, _) = d.get("/readyz").await?;
        (code == 200).then_some(())
    })
    .await;

    let Fixture { sb, dir: _dir, .. } = f;
    sb.shutdown().await;
    let body = wait_for(Duration::from_secs(30), "/readyz 503", || async {
        let (code, body) = d.get("/readyz").await?;
        (code == 503).then_some(body)
    })
    .await;
    assert!(body.contains("failed"), "{body}");
    // Failed runs are retried at the next tick (every second), never in a tight loop.
    let failures = |m: &str| sample(m, "idsync_runs_total{result=\"failure\"}").unwrap();
    let before = failures(&d.get("/metrics").await.unwrap().1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let retried = failures(&d.get("/metrics").await.unwrap().1) - before;
    assert!((1.0..=5.0).contains(&retried), "{retried} failed runs in 3 s of a 1 s schedule");
    let (_, m) = d.get("/metrics").await.unwrap();
    assert!(sample(&m, "idsync_runs_total{result=\"failure\"}").unwrap() >= 1.0, "{m}");
    assert!(sample(&m, "idsync_last_success_timestamp_seconds").unwrap() < sample(&m, "idsync_last_run_timestamp_seconds").unwrap());
    let (code, _) = d.get("/healthz").await.unwrap();
    assert_eq!(code, 200, "alive though unready");
}

/// The sandbox's delay per request in the daemon's slow runs.
const SLOW: Duration = Duration::from_millis(250);

/// Starts the daemon on `f` and waits until some, not all, creates have landed.
async fn daemon_mid_apply(f: &Fixture) -> Daemon {
    let port = free_port();
    // Far-off schedule: only the run at start happens.
    daemon_config(f, port, "0 0 0 1 1 * 2099");
    let d = Daemon::start(f, port);
    wait_for(Duration::from_secs(60), "some creates to land", || async {
        (f.users().await.len() >= 4).then_some(())
    })
    .await;
    d
}

/// After a restart with `run --once`, the org converged and each action was audited once.
async fn assert_restart_converges(f: &Fixture) {
    f.sb.set_latency(Duration::ZERO);
    let once = f.run(&["run", "--once"]).await;
    assert_eq!(code(&once), 0, "{}", text(&once));
    assert_eq!(f.users().await.len(), 13);
    assert_eq!(code(&f.run(&["plan"]).await), 0, "converged");
    let (begins, ends) = audit_counts(f);
    assert_eq!(ends.len(), 12, "every create audited: {ends:?}");
    assert!(ends.values().all(|n| *n == 1), "each action ended once: {ends:?}");
    assert!(begins.values().all(|n| *n == 1), "each action begun once: {begins:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_apply_finishes_the_action_in_flight_and_exits_zero() {
    let f = slow_fixture(SLOW).await;
    let mut d = daemon_mid_apply(&f).await;
    d.signal("TERM");
    let code = d.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{}", d.log());
    let partial = f.users().await.len();
    assert!(partial < 13, "stopped before the end ({partial} users)");
    // Nothing left in flight: every begun action has its end.
    let (begins, ends) = audit_counts(&f);
    assert_eq!(begins.keys().collect::<Vec<_>>(), ends.keys().collect::<Vec<_>>(), "{}", d.log());
    assert_eq!(ends.len(), partial - 1, "each landed create is audited");
    assert!(d.log().contains("SIGTERM"), "{}", d.log());
    assert_restart_converges(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_apply_then_restart_converges_auditing_each_action_once() {
    let f = slow_fixture(SLOW).await;
    let mut d = daemon_mid_apply(&f).await;
    d.signal("KILL");
    let _ = d.wait_exit(Duration::from_secs(10)).await;
    assert!(f.users().await.len() < 13, "killed mid-apply");
    assert_restart_converges(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_keeps_the_old_config_when_the_new_one_is_broken_and_takes_a_good_one() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        ..Setup::default()
    })
    .await;
    let port = free_port();
    daemon_config(&f, port, "*/5 * * * * *");
    let good = std::fs::read_to_string(&f.cfg).unwrap();
    let mut d = Daemon::start(&f, port);
    wait_for(Duration::from_secs(30), "the first run", || async {
        let st = d.get("/status").await?.1;
        let v: Value = serde_json::from_str(&st).ok()?;
        v["last_run"].is_object().then_some(())
    })
    .await;

    std::fs::write(&f.cfg, good.replace("[daemon]\n", "[daemon]\nshedule = \"typo\"\n")).unwrap();
    d.signal("HUP");
    wait_for(Duration::from_secs(10), "the reload to be refused", || async {
        d.log().contains("keeping the running one").then_some(())
    })
    .await;
    assert!(d.log().contains("shedule"), "the log says what is wrong:\n{}", d.log());
    assert!(d.alive(), "still running on the old config");
    assert_eq!(d.status().await["config"]["schedule"], "*/5 * * * * *");
    assert_eq!(d.get("/readyz").await.unwrap().0, 200);

    std::fs::write(&f.cfg, good.replace("*/5 * * * * *", "*/7 * * * * *")).unwrap();
    d.signal("HUP");
    wait_for(Duration::from_secs(10), "the new schedule", || async {
        (d.status().await["config"]["schedule"] == "*/7 * * * * *").then_some(())
    })
    .await;
    assert!(d.alive());
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).await, 0, "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_once_logs_one_json_summary_line_and_exits_like_apply() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("gone@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[]),
        tables: "[log]\nformat = \"json\"\nlevel = \"info\"\n",
        ..Setup::default()
    })
    .await;
    let out = tokio::task::spawn_blocking({
        let mut cmd = f.command(&["run", "--once"]);
        move || cmd.env_remove("RUST_LOG").output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summaries: Vec<&Value> = lines.iter().filter(|l| l["message"] == "run finished").collect();
    assert_eq!(summaries.len(), 1, "{stderr}");
    let s = summaries[0];
    assert_eq!(s["result"], "success", "{s}");
    assert_eq!(s["applied"], 2, "alice created, gone deprovisioned: {s}");
    assert_eq!(s["held"], 0, "{s}");
    assert!(s["duration_ms"].as_i64().is_some(), "{s}");
    let users = f.users().await;
    assert!(users.contains_key("alice@example.com") && !users.contains_key("gone@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_never_applies_while_another_holds_the_state_directory() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[]),
        ..Setup::default()
    })
    .await;
    std::fs::create_dir_all(f.path("state")).unwrap();
    let lock = std::fs::File::create(f.path("state/apply.lock")).unwrap();
    lock.try_lock().unwrap();
    let requests = f.sb.request_count();
    let out = f.run(&["run", "--once"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("another idsync run"), "{}", text(&out));
    assert!(!f.users().await.contains_key("alice@example.com"), "nothing applied");
    // The lock is taken before reading: a refused run did not even read W&B.
    assert_eq!(f.sb.request_count(), requests, "a locked-out run read nothing");
    let out = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("another idsync run"), "{}", text(&out));
    assert_eq!(f.sb.request_count(), requests, "a locked-out apply read nothing");
    drop(lock);
    let out = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(f.users().await.contains_key("alice@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tells_systemd_ready_status_and_watchdog() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[]),
        ..Setup::default()
    })
    .await;
    let port = free_port();
    daemon_config(&f, port, "0 0 0 1 1 * 2099");
    let sock_path = f.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let log = f.path("notify-daemon.log");
    let mut child = f
        .command(&["run"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let status_after_run = got.iter().any(|m| m.starts_with("STATUS=last run"));
        if status_after_run && got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 2 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "{got:?}");
    let status = got
        .iter()
        .find(|m| m.starts_with("STATUS=last run"))
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(status.contains("success") && status.contains("1 applied"), "{status}");
    assert!(got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 2, "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_idsync_apply_finishes_the_action_in_flight_and_says_so() {
    let f = slow_fixture(SLOW).await;
    let log = f.path("apply.log");
    let child = f
        .command(&["apply", "--yes"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon { child, port: 0, log };
    wait_for(Duration::from_secs(60), "some creates to land", || async {
        (f.users().await.len() >= 4).then_some(())
    })
    .await;
    d.signal("INT");
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).await,
        1,
        "not everything was applied:\n{}",
        d.log()
    );
    assert!(d.log().contains("interrupted: stopped by a signal"), "{}", d.log());
    let partial = f.users().await.len();
    assert!(partial < 13, "stopped before the end ({partial} users)");
    let (begins, ends) = audit_counts(&f);
    assert_eq!(
        begins.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>(),
        "nothing left in flight"
    );
    assert_restart_converges(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_the_read_abandons_the_run_at_once_and_exits_zero() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[]),
        opts: SandboxOptions {
            api_key: KEY.into(),
            // Every W&B request takes 10 s: the run is still reading when TERM comes.
            latency: Duration::from_secs(10),
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let port = free_port();
    daemon_config(&f, port, "0 0 0 1 1 * 2099");
    let mut d = Daemon::start(&f, port);
    wait_for(Duration::from_secs(30), "the run at start to be reading", || async {
        let v: Value = serde_json::from_str(&d.get("/status").await?.1).ok()?;
        (v["running"] == true && f.sb.request_count() > 0).then_some(())
    })
    .await;
    let t = Instant::now();
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(8)).await, 0, "{}", d.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "exited in {:?}, not after the read",
        t.elapsed()
    );
    assert!(d.log().contains("stopped by a signal while reading"), "{}", d.log());
    assert_eq!(f.sb.write_request_count(), 0, "nothing written to W&B");
    let store = idsync::state::StateStore::open(&f.path("state")).unwrap();
    let runs = store.last_runs(5).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].result, "failure");
    assert!(runs[0].error.as_deref().unwrap_or("").contains("nothing was changed"), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_exits_at_once_and_says_so() {
    let f = slow_fixture(SLOW).await;
    let mut d = daemon_mid_apply(&f).await;
    // The next create takes 5 s: the first TERM waits for it, the second does not.
    f.sb.set_latency(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(600)).await;
    d.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(d.alive(), "the first TERM waits for the action in flight:\n{}", d.log());
    let t = Instant::now();
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)).await, 1, "{}", d.log());
    assert!(t.elapsed() < Duration::from_secs(2), "exited in {:?}", t.elapsed());
    assert!(d.log().contains("second SIGTERM: exiting at once"), "{}", d.log());
    assert!(f.users().await.len() < 13, "cut short");
    assert_restart_converges(&f).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_is_ready_at_once_from_the_stored_last_run() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[]),
        ..Setup::default()
    })
    .await;
    let once = f.run(&["run", "--once"]).await;
    assert_eq!(code(&once), 0, "{}", text(&once));
    let port = free_port();
    // A run every minute; none at start: only the state store can make it ready now.
    daemon_config(&f, port, "0 * * * * *");
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    std::fs::write(&f.cfg, cfg.replace("[daemon]\n", "[daemon]\nrun_on_start = false\n")).unwrap();
    let d = Daemon::start(&f, port);
    let (code, body) = wait_for(Duration::from_secs(20), "the HTTP server", || async { d.get("/readyz").await }).await;
    assert_eq!(code, 200, "ready at once after a restart: {body}\n{}", d.log());
    let st = d.status().await;
    assert_eq!(st["last_run"]["result"], "success", "{st}");
    assert!(st["running"] == false, "{st}");
    let (_, m) = d.get("/metrics").await.unwrap();
    let now = chrono::Utc::now().timestamp() as f64;
    let success = sample(&m, "idsync_last_success_timestamp_seconds").unwrap();
    assert!(now - success < 60.0, "seeded from the store, not 0: {m}");
    assert_eq!(sample(&m, "idsync_last_run_timestamp_seconds"), Some(success), "{m}");
}
