//! Resuming an interrupted apply (SPEC §5): an action begun and never ended is settled
//! against a fresh read of W&B, never recorded `ok` unchecked.

mod common;

use common::*;
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
