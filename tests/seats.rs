//! `idsync report seats` end to end: the real binary against the W&B sandbox on loopback.
//! Counts, classification, cost, the four formats, servers without activity fields, and
//! proof that the report never writes to W&B or to the state store.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Duration, SecondsFormat, Utc};
use common::*;
use idsync::plan::Deployment;
use idsync::report::seats::CSV_HEADER;
use idsync::sandbox::SandboxOptions;
use serde_json::{json, Value};

/// `n` days before now, RFC 3339. Values in the tests sit far from the thresholds: the
/// exact edges are unit-tested in the pure core, where `now` is an input.
fn days_ago(n: i64) -> String {
    (Utc::now() - Duration::days(n)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the sandbox serves as a user's `lastActiveAt`.
#[derive(Clone, Copy)]
enum Seen {
    /// This many days ago.
    DaysAgo(i64),
    /// `null`: W&B's "never active".
    Never,
    /// No key at all: the server does not say (unknown).
    Unreported,
}
use Seen::*;

/// Sets activity (and `active`) on seeded users: email -> (last activity, active).
fn with_activity(mut org: Value, activity: &[(&str, Seen, bool)]) -> Value {
    for u in org["users"].as_array_mut().unwrap() {
        let email = u["email"].as_str().unwrap().to_string();
        if let Some((_, seen, active)) = activity.iter().find(|(e, _, _)| *e == email) {
            match seen {
                DaysAgo(d) => {
                    u["last_active_at"] = json!(days_ago(*d));
                    u["days_active"] = json!(d / 2 + 1);
                }
                Never => {}
                Unreported => u["omit_activity"] = json!(true),
            }
            u["active"] = json!(active);
        }
    }
    org
}

/// Dedicated, so that a deactivated user stays listed (on SaaS it leaves the org).
fn dedicated(activity: bool) -> SandboxOptions {
    SandboxOptions {
        api_key: KEY.into(),
        deployment: Deployment::Dedicated,
        activity,
        ..SandboxOptions::default()
    }
}

const PRICES: &str = "[report]\nseat_price = { member = 20, admin = 50 }\n";

/// root (admin, recent), bob (200 d), carol (activity not reported), nina (never active:
/// `null`), dave (not in the directory, 400 d), erin (disabled in the directory), old
/// (deactivated, not in the directory), ci (pipeline-key owner), pat and lee at partner.io
/// (lee 100 d).
async fn world(activity: bool, tables: &'static str) -> Fixture {
    let seed = org(
        &[
            ("root@example.com", "admin", &[]),
            ("bob@example.com", "member", &[("ml", "member")]),
            ("carol@example.com", "member", &[]),
            ("nina@example.com", "member", &[]),
            ("dave@example.com", "member", &[("ml", "admin")]),
            ("erin@example.com", "member", &[]),
            ("old@example.com", "member", &[]),
            ("ci@example.com", "member", &[("ml", "member")]),
            ("pat@partner.io", "member", &[("ml", "member")]),
            ("lee@partner.io", "member", &[]),
        ],
        &["ml"],
    );
    let seed = with_activity(
        seed,
        &[
            ("root@example.com", DaysAgo(2), true),
            ("bob@example.com", DaysAgo(200), true),
            ("carol@example.com", Unreported, true),
            ("nina@example.com", Never, true),
            ("dave@example.com", DaysAgo(400), true),
            ("erin@example.com", DaysAgo(5), true),
            ("old@example.com", DaysAgo(300), false),
            ("ci@example.com", DaysAgo(1), true),
            ("pat@partner.io", DaysAgo(10), true),
            ("lee@partner.io", DaysAgo(100), true),
        ],
    );
    Fixture::start(Setup {
        org: seed,
        ldif: ldif(
            &[
                P("root", true),
                P("bob", true),
                P("carol", true),
                P("nina", true),
                P("erin", false),
                P("ci", true),
            ],
            &[],
        ),
        guards: "pipeline_key_owners = [\"ci@example.com\"]",
        tables,
        opts: dedicated(activity),
        ..Setup::default()
    })
    .await
}

async fn report(f: &Fixture, args: &[&str]) -> String {
    let mut all = vec!["report", "seats"];
    all.extend_from_slice(args);
    let out = f.run(&all).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

async fn report_json(f: &Fixture, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&report(f, &all).await).expect("report seats --format json is JSON")
}

fn user<'v>(r: &'v Value, email: &str) -> &'v Value {
    r["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("{email} not in the report"))
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_classification_and_cost_come_from_the_live_org() {
    let f = world(true, PRICES).await;
    let r = report_json(&f, &[]).await;
    let s = &r["summary"];
    assert_eq!(
        (s["users"].as_u64(), s["active"].as_u64(), s["deactivated"].as_u64()),
        (Some(10), Some(9), Some(1))
    );
    assert_eq!(s["by_role"]["admin"], json!({"active": 1, "deactivated": 0, "inactive": 0}));
    assert_eq!(s["by_role"]["member"], json!({"active": 8, "deactivated": 1, "inactive": 4}));
    assert_eq!(s["inactive_days"], 90);
    assert_eq!(s["inactive"], 4, "bob, dave, lee and nina (never active): {s}");
    assert_eq!(s["never_active"], 1, "nina: {s}");
    assert_eq!(s["activity_unknown"], 1, "carol only: {s}");
    assert_eq!(
        s["orphans"], 1,
        "dave only: old is deactivated, erin is disabled, partner.io is external"
    );
    assert_eq!(s["disabled_in_directory"], 1);
    assert_eq!(s["in_scope"], 8);
    assert_eq!(s["externals"], json!({"partner.io": {"users": 2, "active": 2}}));
    assert_eq!(s["pipeline_key_owners"], 1);
    // 1 admin × 50 + 8 active members × 20; inactive: bob, dave, lee, nina.
    assert_eq!(s["cost"]["monthly_total"], 210.0);
    assert_eq!(s["cost"]["inactive_monthly"], 80.0);

    let dave = user(&r, "dave@example.com");
    assert_eq!(
        (dave["orphan"].as_bool(), dave["in_directory"].as_bool(), dave["inactive"].as_bool()),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!(dave["teams"], json!({"ml": "admin"}));
    assert_eq!(dave["tombstone"]["cause"], "missing");
    assert!(dave["days_since_active"].as_i64().unwrap() >= 399);
    let erin = user(&r, "erin@example.com");
    assert_eq!(
        (erin["directory"].as_str(), erin["directory_disabled"].as_bool()),
        (Some("disabled"), Some(true))
    );
    assert_eq!(erin["tombstone"]["cause"], "disabled");
    let old = user(&r, "old@example.com");
    assert_eq!((old["active"].as_bool(), old["orphan"].as_bool()), (Some(false), Some(false)));
    assert!(old["monthly_price"].is_null(), "deactivated users hold no seat");
    let carol = user(&r, "carol@example.com");
    assert!(carol["last_active_at"].is_null() && carol["inactive"].is_null());
    assert_eq!(carol["never_active"], false);
    let nina = user(&r, "nina@example.com");
    assert!(nina["last_active_at"].is_null(), "{nina}");
    assert_eq!(
        (nina["never_active"].as_bool(), nina["inactive"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(old["inactive"], false, "deactivated: no seat, never an inactive one");
    assert_eq!(user(&r, "pat@partner.io")["scope"], "external");
    assert_eq!(user(&r, "ci@example.com")["pipeline_key_owner"], true);
    assert_eq!(user(&r, "root@example.com")["org_role"], "admin");

    // --inactive-days overrides the default: at 150 days lee (100 d) is no longer inactive.
    let r = report_json(&f, &["--inactive-days", "150"]).await;
    assert_eq!(
        (r["summary"]["inactive_days"].as_u64(), r["summary"]["inactive"].as_u64()),
        (Some(150), Some(3))
    );
    let bad = f.run(&["report", "seats", "--inactive-days", "0"]).await;
    assert_eq!(code(&bad), 1, "a usage error exits 1 (SPEC §2): {}", text(&bad));

    // The text and markdown reports say the same.
    let t = report(&f, &[]).await;
    assert!(t.contains("4 active users inactive for more than 90 days"), "{t}");
    assert!(t.contains("1 active user never active"), "{t}");
    assert!(t.contains("activity unknown for 1 active user ("), "{t}");
    assert!(t.contains("1 orphan (") && !t.contains("1 orphans"), "{t}");
    assert!(t.contains("2 external collaborators in 1 domain;"), "{t}");
    assert!(t.contains("estimated monthly cost 210.00 (of which 80.00"), "{t}");
    let line = t.lines().rfind(|l| l.trim_start().starts_with("carol@example.com")).unwrap();
    assert!(line.contains("unknown"), "{line}");
    let line = t.lines().rfind(|l| l.trim_start().starts_with("nina@example.com")).unwrap();
    assert!(line.contains("never"), "{line}");
    assert!(t.lines().all(|l| l.chars().count() <= 100), "{t}");
    // --wide: one line per user, every column (DAYS ACTIVE and TEAMS too).
    let wide = report(&f, &["--wide"]).await;
    let header = wide.lines().rfind(|l| l.contains("EMAIL")).unwrap();
    assert!(header.contains("DAYS ACTIVE") && header.contains("TEAMS"), "{header}");
    let dave = wide.lines().rfind(|l| l.trim_start().starts_with("dave@example.com")).unwrap();
    assert!(dave.contains("ml:admin") && dave.contains("missing since"), "{dave}");
    let md = report(&f, &["--format", "markdown"]).await;
    assert!(md.contains("## Seat report") && md.contains("| dave@example.com |"), "{md}");
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_threshold_is_used_without_the_flag() {
    let f = world(true, "[report]\ninactive_days = 300\n").await;
    let r = report_json(&f, &[]).await;
    assert_eq!(
        (r["summary"]["inactive_days"].as_u64(), r["summary"]["inactive"].as_u64()),
        (Some(300), Some(2))
    );
    assert!(r["summary"]["cost"].is_null(), "no seat_price, no cost");
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_has_a_header_and_one_parseable_row_per_user() {
    let f = world(true, PRICES).await;
    let out = report(&f, &["--format", "csv"]).await;
    let mut rd = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, CSV_HEADER);
    let rows: Vec<BTreeMap<String, String>> = rd
        .records()
        .map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_string)).collect())
        .collect();
    assert_eq!(rows.len(), 10);
    let row = |email: &str| rows.iter().find(|r| r["email"] == email).unwrap();
    assert_eq!(row("dave@example.com")["orphan"], "true");
    assert_eq!(row("dave@example.com")["teams"], "ml:admin");
    assert_eq!(row("carol@example.com")["last_active_at"], "unknown");
    assert_eq!(row("carol@example.com")["inactive"], "unknown");
    assert_eq!(row("nina@example.com")["last_active_at"], "never");
    assert_eq!(row("nina@example.com")["inactive"], "true");
    assert_eq!(row("root@example.com")["monthly_price"], "50.00");
    assert_eq!(row("old@example.com")["monthly_price"], "");
    assert_eq!(row("lee@partner.io")["scope"], "external");
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_server_without_activity_fields_gives_unknown_not_inactive() {
    let f = world(false, "").await;
    let r = report_json(&f, &[]).await;
    let s = &r["summary"];
    assert_eq!(s["inactive"], 0, "nothing is guessed: {s}");
    assert_eq!(s["activity_unknown"], s["active"]);
    for u in r["users"].as_array().unwrap() {
        assert!(u["last_active_at"].is_null() && u["days_active"].is_null(), "{u}");
        assert_eq!(u["never_active"], false, "a missing key is unknown, never \"never\": {u}");
        // Unknown for a seat; a deactivated user holds none, so it is simply not inactive.
        let expected = if u["active"] == true { Value::Null } else { json!(false) };
        assert_eq!(u["inactive"], expected, "{u}");
    }
    // Orphans do not depend on activity.
    assert_eq!(s["orphans"], 1);
    let t = report(&f, &[]).await;
    assert!(t.contains("activity unknown for 9 active users"), "{t}");
    let csv = report(&f, &["--format", "csv"]).await;
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let col = CSV_HEADER.iter().position(|h| *h == "days_active").unwrap();
    for rec in rd.records() {
        assert_eq!(&rec.unwrap()[col], "unknown");
    }
    f.sb.shutdown().await;
}

/// The state directory's files and a digest of their bytes (short to print on a failure).
fn snapshot_dir(dir: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            let digest: String = Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
            (
                e.file_name().to_string_lossy().into_owned(),
                format!("{} bytes {digest}", bytes.len()),
            )
        })
        .collect()
}

/// The sandbox state without the request counters.
async fn org_state(f: &Fixture) -> Value {
    let mut s = f.state().await;
    s["request_count"] = json!(0);
    s["write_request_count"] = json!(0);
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_never_writes_to_w_and_b_or_the_state_store() {
    let f = world(true, PRICES).await;
    let before = org_state(&f).await;
    for format in ["text", "markdown", "json", "csv"] {
        report(&f, &["--format", format]).await;
    }
    assert!(f.sb.request_count() > 0, "the report read the org");
    assert_eq!(f.sb.write_request_count(), 0, "no POST, PATCH, PUT or DELETE");
    assert_eq!(org_state(&f).await, before);
    assert!(!f.path("state").exists(), "no state store is created by a report");

    // With a store (an apply of a reviewed plan with nothing in it recorded the
    // tombstones, changing nothing in W&B), the report reads it and changes nothing.
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let mut empty = plan_json(&f, "plan.json");
    empty["actions"] = json!([]);
    empty["summary"] = json!({});
    std::fs::write(f.path("plan.json"), empty.to_string()).unwrap();
    let apply = f.run(&["apply", "--plan", "plan.json", "--yes"]).await;
    assert_eq!(code(&apply), 2, "nothing reviewed, nothing applied: {}", text(&apply));
    assert_eq!(f.sb.write_request_count(), 0);
    let store = snapshot_dir(&f.path("state"));
    assert!(store.contains_key("idsync.db"), "{:?}", store.keys());
    let status = f.run(&["status"]).await;
    // A second later, a clock started now would differ from the stored one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = report_json(&f, &[]).await;
    let since = user(&r, "dave@example.com")["tombstone"]["since"].as_str().unwrap().to_string();
    report(&f, &["--format", "csv"]).await;
    let after = snapshot_dir(&f.path("state"));
    assert_eq!(after["idsync.db"], store["idsync.db"], "the database is byte-for-byte unchanged");
    // SQLite's read-only reader of a WAL database may leave its shared-memory index and an
    // empty log beside it; it writes nothing else, and the next writer tidies them up.
    for (name, digest) in &after {
        match name.as_str() {
            "idsync.db" | "idsync.db-shm" => {}
            "idsync.db-wal" => assert!(digest.starts_with("0 bytes"), "the log stays empty: {digest}"),
            other => assert_eq!(store.get(other), Some(digest), "{other} changed"),
        }
    }
    assert_eq!(f.run(&["status"]).await.stdout, status.stdout, "no run recorded by the report");
    let status_text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status_text
            .lines()
            .any(|l| l.trim_start().starts_with("dave@example.com ") && l.contains(&format!(" since {since},"))),
        "the report shows the stored tombstone clock ({since}):\n{status_text}"
    );
    assert_eq!(f.sb.write_request_count(), 0);

    // The counter does see writes: an apply makes some.
    let apply = f.run(&["apply", "--yes"]).await;
    assert_ne!(code(&apply), 1, "{}", text(&apply));
    assert!(f.sb.write_request_count() > 0, "apply writes, so the zero above means something");
    f.sb.shutdown().await;
}
