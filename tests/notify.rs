//! `[notify]` end to end: the real binary against the W&B sandbox, posting to a webhook
//! receiver on loopback. A message goes out when the held set changes, on the first
//! failure, and when something was applied; never on an unchanged run; and a webhook that
//! fails never fails the run or shows its URL.

mod common;

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A webhook on loopback: records every request body, answers `status`.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering (a slow or hung webhook).
    delay_ms: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> Receiver {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (b, s, d) = (bodies.clone(), status.clone(), delay_ms.clone());
        let app = axum::Router::new().route(
            "/hook/{token}",
            axum::routing::post(move |body: String| {
                let (b, s, d) = (b.clone(), s.clone(), d.clone());
                async move {
                    b.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
                    tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                    axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hook/SECRETTOKEN"),
            bodies,
            status,
            delay_ms,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// root (admin) stays, ci-bot (a pipeline-key owner) left: its deprovision is held. The
/// config posts to `rx` in `format` for the events `on`.
async fn held_fixture(rx: &Receiver, format: &str, on: &str) -> Fixture {
    let notify = format!("[notify]\nwebhook_url_file = \"hook\"\nformat = \"{format}\"\non = {on}\n");
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("ci-bot@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        guards: r#"pipeline_key_owners = ["ci-bot@example.com"]"#,
        tables: &notify,
        ..Setup::default()
    })
    .await;
    f.write_secret("hook", &rx.url);
    f
}

fn assert_no_secret(o: &std::process::Output) {
    let t = text(o);
    assert!(!t.contains("SECRETTOKEN"), "the webhook URL leaked:\n{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_held_set_is_posted_once_and_an_unchanged_one_never() {
    let rx = Receiver::start().await;
    let f = held_fixture(&rx, "json", r#"["held", "failed", "applied"]"#).await;

    let first = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&first), 3, "{}", text(&first));
    assert_no_secret(&first);
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let m = &bodies[0];
    assert_eq!(m["events"], serde_json::json!(["held"]));
    assert_eq!((m["command"].as_str(), m["result"].as_str()), (Some("apply"), Some("held")));
    assert_eq!(m["held_total"], 1);
    let held = &m["held"][0];
    assert_eq!(
        (held["kind"].as_str(), held["user"].as_str()),
        (Some("deprovision_user"), Some("ci-bot@example.com"))
    );
    assert_eq!(held["guard"], "pipeline-key");
    assert!(held["reason"].as_str().unwrap().contains("pipeline"), "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    let t = m["text"].as_str().unwrap();
    assert!(
        t.contains(&format!("`{id}` deprovision_user ci-bot@example.com — pipeline-key: ")),
        "{t}"
    );
    assert!(
        t.contains("--out plan.json") && t.contains("idsync approve"),
        "the commands to review: {t}"
    );

    // Nothing changed: a second run (and a third) says nothing.
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 3);
    assert_eq!(code(&f.run(&["run", "--once"]).await), 3);
    assert_eq!(rx.bodies().len(), 1, "unchanged held set was posted again: {:?}", rx.bodies());

    // Approved and applied: the held set emptied and something was applied.
    let apply = f.run(&["apply", "--approve", &id, "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[1]["events"], serde_json::json!(["held", "applied"]));
    assert_eq!(bodies[1]["summary"]["applied"], 1);
    assert!(
        bodies[1]["text"].as_str().unwrap().contains("No action is held any more"),
        "{}",
        bodies[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_format_posts_only_text() {
    let rx = Receiver::start().await;
    let f = held_fixture(&rx, "slack", r#"["held"]"#).await;
    let check = f.run(&["check-config"]).await;
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert!(
        text(&check).contains("notify: slack message on held (URL from webhook_url_file)"),
        "{}",
        text(&check)
    );
    assert_no_secret(&check);
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    assert!(rx.bodies().is_empty(), "plan is a dry run: it never posts");
    assert_eq!(code(&f.run(&["run", "--once"]).await), 3);
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let obj = bodies[0].as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"], "Slack's shape: {obj:?}");
    let t = obj["text"].as_str().unwrap();
    assert!(t.starts_with("idsync run "), "{t}");
    assert!(t.contains("ci-bot@example.com") && t.contains("pipeline-key"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_failure_after_a_success_is_posted_and_then_quiet_while_failing() {
    let rx = Receiver::start().await;
    let f = held_fixture(&rx, "json", r#"["failed"]"#).await;
    assert_eq!(code(&f.run(&["run", "--once"]).await), 3, "a held run is no failure");
    assert!(rx.bodies().is_empty(), "only failures were asked for: {:?}", rx.bodies());

    // W&B goes away: point the target at a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    std::fs::write(&f.cfg, cfg.replace(&f.sb.url(), &format!("http://127.0.0.1:{dead}"))).unwrap();
    let failed = f.run(&["run", "--once"]).await;
    assert_eq!(code(&failed), 1, "{}", text(&failed));
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["events"], serde_json::json!(["failed"]));
    assert_eq!(bodies[0]["result"], "failure");
    assert!(bodies[0]["held"].is_null(), "a failed read knows no holds: {}", bodies[0]);
    assert!(bodies[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", bodies[0]);

    // Still failing (the daemon's run or an apply): no second message.
    assert_eq!(code(&f.run(&["run", "--once"]).await), 1);
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 1);
    assert_eq!(rx.bodies().len(), 1, "{:?}", rx.bodies());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_answering_500_never_fails_the_run_nor_shows_its_url() {
    let rx = Receiver::start().await;
    rx.status.store(500, Ordering::SeqCst);
    let f = held_fixture(&rx, "json", r#"["held"]"#).await;
    let t = Instant::now();
    // Even the HTTP stack's own trace logs must not show the URL's credential (its path).
    let apply = f.run_with_env(&["apply", "--yes"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&apply), 3, "the run's own exit code:\n{}", text(&apply));
    assert!(t.elapsed() < Duration::from_secs(20), "bounded: {:?}", t.elapsed());
    assert_no_secret(&apply);
    let err = String::from_utf8_lossy(&apply.stderr);
    assert!(
        err.contains("warning: notification not sent (held): the webhook answered HTTP 500 after 3 attempt(s)"),
        "{err}"
    );
    assert_eq!(rx.bodies().len(), 3, "three attempts, then give up");
    assert_eq!(runs_recorded(&f).await, 1, "the run is recorded as it was");

    // Not delivered, so not remembered: the next run tries again, and gets through.
    rx.status.store(200, Ordering::SeqCst);
    let again = f.run(&["run", "--once"]).await;
    assert_eq!(code(&again), 3, "{}", text(&again));
    assert_no_secret(&again);
    assert_eq!(rx.bodies().len(), 4);
    assert_eq!(rx.bodies()[3]["events"], serde_json::json!(["held"]));
}

/// Runs `idsync status` and counts the runs it lists.
async fn runs_recorded(f: &Fixture) -> usize {
    let status = f.run(&["status", "--format", "json"]).await;
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    v["runs"].as_array().unwrap().len()
}

/// The daemon's runs, counted from its /metrics.
async fn daemon_runs(port: u16) -> Option<f64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let count = |result: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("idsync_runs_total{{result=\"{result}\"}} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some(count("success")? + count("failure")?)
}

/// Polls until the daemon on `port` has finished `n` runs (bounded).
async fn wait_runs(port: u16, n: f64, limit: Duration) {
    let start = Instant::now();
    while daemon_runs(port).await.unwrap_or(0.0) < n {
        assert!(start.elapsed() < limit, "the daemon did not finish {n} runs within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_posts_once_for_a_held_set_and_a_hung_webhook_never_delays_its_runs() {
    let rx = Receiver::start().await;
    // Every answer takes longer than idsync waits (5 s a try): the webhook looks hung.
    rx.delay_ms.store(30_000, Ordering::SeqCst);
    let f = held_fixture(&rx, "json", r#"["held"]"#).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&f.cfg).unwrap().replace(
        "[daemon]\nstate_dir = \"state\"\n",
        &format!("[daemon]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{port}\"\nschedule = \"* * * * * *\"\n"),
    );
    std::fs::write(&f.cfg, cfg).unwrap();
    let log = f.path("daemon.log");
    let mut child = f
        .command(&["run"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn idsync run");

    // Runs go on every second while the first message waits on the hung webhook.
    let t = Instant::now();
    wait_runs(port, 4.0, Duration::from_secs(30)).await;
    let first_four = t.elapsed();
    assert_eq!(
        rx.bodies().len(),
        1,
        "the first try hangs, and one message is sent at a time: {:?}",
        rx.bodies()
    );
    // The webhook recovers: the next try (or the next run's message) gets through.
    rx.delay_ms.store(0, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("notification sent (held") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no notification sent:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = rx.bodies().len();
    let runs = daemon_runs(port).await.unwrap();
    wait_runs(port, runs + 3.0, Duration::from_secs(30)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        first_four < Duration::from_secs(15),
        "a hung webhook slowed the runs: {first_four:?}\n{text}"
    );
    assert!(!text.contains("SECRETTOKEN"), "the webhook URL leaked:\n{text}");
    assert_eq!(
        rx.bodies().len(),
        delivered,
        "an unchanged held set is not posted again: {:?}",
        rx.bodies()
    );
    assert_eq!(text.matches("notification sent (held").count(), 1, "{text}");
}
