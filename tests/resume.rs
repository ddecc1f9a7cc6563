//! Resuming an interrupted apply (SPEC §5): an action begun and never ended is settled
//! against a fresh read of W&B, never recorded `ok` unchecked.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use idsync::plan::Deployment;
use idsync::sandbox::SandboxOptions;
use serde_json::Value;

fn journal_db(f: &Fixture) -> rusqlite::Connection {
    rusqlite::Connection::open(f.path("state/idsync.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_action_now_held_is_recorded_not_applied_and_keeps_its_state() {
    let f = pipeline_owner_left().await;
    // The first apply starts ci-bot's tombstone; its deprovision is held by pipeline-key.
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 3);
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let saved = plan_json(&f, "plan.json");
    let action: &Value = saved["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "deprovision_user")
        .unwrap();
    let id = action["id"].as_str().unwrap().to_string();
    let ok = f.run(&["approve", "plan.json", "--id", &id]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));

    // An apply of the approved action was killed after journaling it and before sending
    // it (the journal entry is durable before the request goes out).
    journal_db(&f)
        .execute(
            "INSERT INTO journal (run_id, action_id, action, state, begun_at) VALUES ('20261201T000000Z-dead00', ?1, ?2, 'begun', '2026-12-01T00:00:00Z')",
            rusqlite::params![id, action.to_string()],
        )
        .unwrap();
    // Before the resume, another guard holds it too (mass-deprovision at 0).
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    std::fs::write(
        &f.cfg,
        cfg.replace(
            "max_deprovision_percent = 100",
            "max_deprovision_percent = 100\nmax_deprovisions = 0",
        ),
    )
    .unwrap();

    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    assert!(f.users().await.contains_key("ci-bot@example.com"), "nothing was sent");
    let ends: Vec<Value> = f
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "end" && r["action_id"] == id.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["result"], "not_applied", "{ends:?}");
    assert_eq!(ends[0]["run_id"], "20261201T000000Z-dead00");
    let open: i64 = journal_db(&f)
        .query_row("SELECT count(*) FROM journal WHERE state = 'begun'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(open, 0, "no begin is left without an end");
    // The approval, the tombstone clock and the ledger stay as they were.
    let status = text(&f.run(&["status"]).await);
    assert_eq!(pending_approvals(&status), 1, "{status}");
    assert!(
        status.contains("tombstones: 1") && status.contains("ci-bot@example.com"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_action_that_landed_is_confirmed_ok_once() {
    let f = root_and_alice().await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let saved = plan_json(&f, "plan.json");
    let action = saved["actions"][0].clone();
    assert_eq!(action["kind"], "create_user");
    let id = action["id"].as_str().unwrap().to_string();
    // The create landed but the process died before journaling its end.
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 0);
    let db = journal_db(&f);
    db.execute("DELETE FROM journal", []).unwrap();
    db.execute(
        "INSERT INTO journal (run_id, action_id, action, state, begun_at) VALUES ('20261201T000000Z-beef00', ?1, ?2, 'begun', '2026-12-01T00:00:00Z')",
        rusqlite::params![id, action.to_string()],
    )
    .unwrap();
    std::fs::write(f.path("state/audit.jsonl"), "").unwrap();
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let ends: Vec<Value> = f.audit().into_iter().filter(|r| r["event"] == "end").collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["result"], "ok");
    assert!(ends[0]["detail"].as_str().unwrap().contains("W&B shows this change"), "{ends:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_prunes_runs_approvals_and_restore_snapshots_past_the_retention_and_keeps_the_rest() {
    use chrono::{Duration as D, Utc};
    use idsync::plan::{ActionId, Approval};
    use idsync::state::{RunRecord, StateStore};
    let f = root_and_alice().await;
    let state = f.dir.path().join("state");
    let now = Utc::now();
    {
        let mut s = StateStore::open(&state).unwrap();
        for (id, age) in [("old-run", 91), ("recent-run", 89)] {
            s.record_run(&RunRecord {
                run_id: id.into(),
                command: "apply".into(),
                started_at: now - D::days(age),
                finished_at: now - D::days(age),
                result: "success".into(),
                summary: Default::default(),
                error: None,
            })
            .unwrap();
        }
        let approval = |id: &str, expired_days_ago: i64| Approval {
            action_id: ActionId(id.into()),
            approved_at: now - D::days(expired_days_ago + 1),
            expires_at: now - D::days(expired_days_ago),
            approved_by: "alice".into(),
            guards: vec![],
            fingerprint: String::new(),
            kind: None,
            user: None,
            team: None,
        };
        s.add_approvals(&[approval("aaaaaaaaaaaa", 100), approval("bbbbbbbbbbbb", 1)])
            .unwrap();
        for (who, age) in [("old@example.com", 91), ("recent@example.com", 89)] {
            s.record_restore_snapshot(&idsync::plan::RestoreSnapshot {
                user: idsync::model::Email::parse(who).unwrap(),
                anchor: None,
                taken_at: now - D::days(age),
                org_role: "member".into(),
                teams: [("ml".to_string(), "admin".to_string())].into(),
            })
            .unwrap();
        }
    }
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let s = StateStore::open(&state).unwrap();
    let runs: Vec<String> = s.last_runs(10).unwrap().into_iter().map(|r| r.run_id).collect();
    assert!(!runs.contains(&"old-run".to_string()), "{runs:?}");
    assert!(runs.contains(&"recent-run".to_string()), "{runs:?}");
    assert_eq!(runs.len(), 2, "this apply's run and the recent one: {runs:?}");
    let approvals: Vec<String> = s.approvals().unwrap().into_iter().map(|a| a.action_id.0).collect();
    assert_eq!(
        approvals,
        ["bbbbbbbbbbbb"],
        "the approval expired 100 days ago is gone, yesterday's stays"
    );
    let snaps: Vec<String> = s.restore_snapshots().unwrap().into_iter().map(|r| r.user.to_string()).collect();
    assert_eq!(snaps, ["recent@example.com"], "restore snapshots follow the retention too");
}

/// W&B has root (admin), m0..m5 (members; m0 and m1 in `ops`) and g0..g2, who have left
/// the directory (grace 0: deprovisioned). The directory adds n0..n19, makes m0 an org
/// admin, puts n0..n9, m2 and m3 in `ml` and makes `ops` (m0, m1, n10..n14) admins: 43
/// changes of every kind but team removals, 20 of them creates.
async fn many_changes(opts: SandboxOptions, target: &str) -> Fixture {
    let new: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let old: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    let mut people: Vec<P> = new.iter().chain(&old).map(|p| P(p, true)).collect();
    people.push(P("root", true));
    let ml: Vec<&str> = new[..10].iter().map(String::as_str).chain(["m2", "m3"]).collect();
    let ops: Vec<&str> = new[10..15].iter().map(String::as_str).chain(["m0", "m1"]).collect();
    let seed_emails: Vec<String> = old
        .iter()
        .chain(&["g0".into(), "g1".into(), "g2".into()])
        .map(|u| format!("{u}@example.com"))
        .collect();
    let mut seed: Vec<SeedUser> = vec![("root@example.com", "admin", &[])];
    for e in &seed_emails {
        let teams: &[(&str, &str)] = if e.starts_with("m0") || e.starts_with("m1") {
            &[("ops", "member")]
        } else {
            &[]
        };
        seed.push((e.as_str(), "member", teams));
    }
    Fixture::start(Setup {
        org: org(&seed, &["ml", "ops"]),
        ldif: ldif(&people, &[("admins", &["root", "m0"]), ("ml", &ml), ("ops", &ops)]),
        target,
        tables: r#"
[[policy.org_roles]]
group = "cn=admins,ou=groups,dc=example,dc=com"
role = "admin"

[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"

[[policy.teams]]
team = "ops"
group = "cn=ops,ou=groups,dc=example,dc=com"
role = "admin"
"#,
        opts,
        ..Setup::default()
    })
    .await
}

/// What the audit trail says, checked against the final-result rule (README, "Audit
/// log"): per run and action, one `begin`, one `end` and, after an `unknown` end, one
/// `settle`; an action's final result is its last `end` or `settle`. Returns the final
/// result per action id (the latest run's) and how many `ok` each got.
fn final_results(audit: &[Value]) -> (BTreeMap<String, String>, BTreeMap<String, usize>, usize) {
    let mut steps: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut oks: BTreeMap<String, usize> = BTreeMap::new();
    let mut unknown = 0;
    for r in audit {
        let (event, id) = (r["event"].as_str().unwrap(), r["action_id"].as_str().unwrap().to_string());
        if !matches!(event, "begin" | "end" | "settle") {
            continue;
        }
        let result = r["result"].as_str().unwrap_or("").to_string();
        steps
            .entry((r["run_id"].as_str().unwrap().to_string(), id.clone()))
            .or_default()
            .push((event.to_string(), result.clone()));
        if event != "begin" {
            if result == "unknown" {
                unknown += 1;
            }
            if result == "ok" {
                *oks.entry(id.clone()).or_default() += 1;
            }
            last.insert(id, result);
        }
    }
    for (key, s) in &steps {
        let shape: Vec<(&str, &str)> = s.iter().map(|(e, r)| (e.as_str(), r.as_str())).collect();
        let ok = match shape.as_slice() {
            [("begin", ""), ("end", r)] => *r != "unknown",
            [("begin", ""), ("end", "unknown"), ("settle", r)] => matches!(*r, "ok" | "not_applied"),
            _ => false,
        };
        assert!(
            ok,
            "{key:?} has audit steps {shape:?}: one begin, one end, and a settle after unknown"
        );
    }
    (last, oks, unknown)
}

/// After convergence: W&B shows every change, so every action's final result is `ok`,
/// and each was audited `ok` once; nobody was created twice; the journal is empty.
async fn assert_exact_record(f: &Fixture) -> usize {
    f.sb.set_faults(0.0, 0.0, 0.0);
    f.sb.set_lost_response_rate(0.0);
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 0, "W&B converged: {}", text(&plan));
    let st = f.state().await;
    let emails: Vec<String> = st["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_lowercase())
        .collect();
    let unique: BTreeSet<&String> = emails.iter().collect();
    assert_eq!(emails.len(), unique.len(), "no user created twice: {emails:?}");
    assert!(["n0", "n19"].iter().all(|n| unique.contains(&format!("{n}@example.com"))));
    let audit = f.audit();
    let (last, oks, unknown) = final_results(&audit);
    // 43 changes, plus a set_team_role for each add whose role did not land with it.
    let kinds: BTreeMap<&str, BTreeSet<&str>> = audit.iter().fold(BTreeMap::new(), |mut m, r| {
        if let (Some(k), Some(id)) = (r["kind"].as_str(), r["action_id"].as_str()) {
            m.entry(k).or_default().insert(id);
        }
        m
    });
    let count = |k: &str| kinds.get(k).map_or(0, BTreeSet::len);
    assert_eq!(
        (
            count("create_user"),
            count("add_to_team"),
            count("set_org_role"),
            count("deprovision_user")
        ),
        (20, 17, 1, 3),
        "{kinds:?}"
    );
    assert!(count("set_team_role") >= 2, "{kinds:?}");
    assert_eq!(last.len(), 41 + count("set_team_role"), "every change audited: {last:?}");
    for (id, result) in &last {
        assert_eq!(result, "ok", "action {id}'s final result matches W&B, which shows it");
        assert_eq!(oks[id], 1, "action {id} audited ok exactly once");
    }
    let open: i64 = journal_db(f)
        .query_row("SELECT count(*) FROM journal WHERE state = 'begun'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(open, 0, "the journal has no open entries");
    unknown
}

#[tokio::test(flavor = "multi_thread")]
async fn under_throttling_failures_and_lost_responses_apply_converges_with_an_exact_record() {
    let started = std::time::Instant::now();
    // One retry only, so that outcomes idsync cannot know are common: a write answered
    // 500 after it landed, then throttled, must be `unknown` and settled, never `error`.
    let f = many_changes(
        SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Saas,
            throttle_rate: 0.3,
            fail_rate: 0.1,
            lost_response_rate: 0.1,
            latency: Duration::from_millis(1),
            seed: 13,
            ..SandboxOptions::default()
        },
        "max_retries = 1",
    )
    .await;
    let mut applies = 0;
    let mut codes = Vec::new();
    loop {
        applies += 1;
        assert!(applies <= 15, "converged within 15 applies: exit codes {codes:?}");
        let apply = f.run(&["apply", "--yes"]).await;
        codes.push(code(&apply));
        let out = text(&apply);
        if out.contains("unknown outcome") {
            assert_eq!(code(&apply), 1, "an unknown outcome is not success: {out}");
            let status = text(&f.run(&["status"]).await);
            assert!(
                status.contains("unsettled actions: ") && status.contains(" unknown in run "),
                "status shows what the next run settles: {status}"
            );
        }
        if code(&apply) == 0 {
            break;
        }
        assert_eq!(code(&apply), 1, "{out}");
    }
    let unknown = assert_exact_record(&f).await;
    assert!(unknown > 0, "the faults produced unknown outcomes to settle ({codes:?})");
    let settled = f.audit().iter().filter(|r| r["event"] == "settle").count();
    assert_eq!(settled, unknown, "every unknown was settled");
    eprintln!(
        "faults: {applies} applies {codes:?}, {unknown} unknown outcomes settled, {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_killed_at_random_moments_then_finished_leaves_an_exact_record() {
    let started = std::time::Instant::now();
    let f = many_changes(
        SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Saas,
            latency: Duration::from_millis(2),
            throttle_rate: 0.1,
            lost_response_rate: 0.05,
            seed: 5,
            ..SandboxOptions::default()
        },
        "max_concurrency = 2\nmax_retries = 2",
    )
    .await;
    // Seeded kill moments (xorshift), so a failure replays the same schedule.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = Vec::new();
    for _ in 0..5 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Killed once the audit log has grown by 1–12 lines (not after a fixed time, which
        // on a loaded machine can come before the first action or after the last).
        let lines = || {
            std::fs::read_to_string(f.path("state/audit.jsonl"))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        let after = lines() + 1 + (x % 12) as usize;
        let mut child = f
            .command(&["apply", "--yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while lines() < after && std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        // How far it got: users in W&B, and journal entries the kill left open.
        let open: i64 = journal_db(&f)
            .query_row("SELECT count(*) FROM journal WHERE state = 'begun'", [], |r| r.get(0))
            .unwrap_or(0);
        kills.push((after, finished, f.users().await.len(), open));
    }
    let mut applies = 0;
    loop {
        applies += 1;
        assert!(applies <= 5, "finished within 5 applies after the kills ({kills:?})");
        let apply = f.run(&["apply", "--yes"]).await;
        if code(&apply) == 0 {
            break;
        }
        assert_eq!(code(&apply), 1, "{}", text(&apply));
    }
    assert!(
        kills.iter().filter(|k| !k.1).count() >= 3,
        "most kills came before the apply ended: {kills:?}"
    );
    assert!(kills.iter().any(|k| k.3 > 0), "some kill left actions open to resume: {kills:?}");
    assert_exact_record(&f).await;
    eprintln!("kills: {kills:?} then {applies} applies, {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_audit_end_and_before_the_journal_commit_is_closed_without_a_second_line() {
    let f = root_and_alice().await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let action = plan_json(&f, "plan.json")["actions"][0].clone();
    let id = action["id"].as_str().unwrap().to_string();
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 0);
    // Re-open the entry as a crash between the audit `end` line and the journal commit
    // would leave it, its offset pointing at a log holding other lines before its own.
    let audit = std::fs::read_to_string(f.path("state/audit.jsonl")).unwrap();
    let filler = "{\"note\":\"not an action line\"}\n".repeat(50);
    std::fs::write(f.path("state/audit.jsonl"), format!("{filler}{audit}")).unwrap();
    let run_id = f.audit()[50]["run_id"].as_str().unwrap().to_string();
    journal_db(&f)
        .execute(
            "UPDATE journal SET state = 'begun', ended_at = NULL, ok = NULL, audit_at = ?1 WHERE run_id = ?2 AND action_id = ?3",
            rusqlite::params![filler.len() as i64, run_id, id],
        )
        .unwrap();
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let lines: Vec<Value> = f.audit().into_iter().filter(|r| r["action_id"] == id.as_str()).collect();
    assert_eq!(lines.len(), 2, "begin and end, no second end: {lines:?}");
    let open: i64 = journal_db(&f)
        .query_row("SELECT count(*) FROM journal WHERE state = 'begun'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(open, 0);
    let ok: bool = journal_db(&f)
        .query_row(
            "SELECT ok FROM journal WHERE run_id = ?1 AND action_id = ?2",
            rusqlite::params![run_id, id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(ok, "closed with the audited result");
}
