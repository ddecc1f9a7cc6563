//! Approvals end to end: `approve`, `apply --approve` and `apply --plan` through the real
//! binary against the W&B sandbox. An approval releases only what a human reviewed.

mod common;

use common::*;
use serde_json::Value;

fn id_of(plan: &Value, guard: &str, user: &str) -> String {
    held_by(plan, guard)
        .into_iter()
        .find(|a| a["user"] == user)
        .unwrap_or_else(|| panic!("no {guard} hold for {user} in {plan}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_apply_approve_records_no_approval() {
    let f = pipeline_owner_left().await;
    let plan = f.run(&["plan", "--format", "json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let id = id_of(&serde_json::from_slice(&plan.stdout).unwrap(), "pipeline-key", "ci-bot@example.com");

    let (code_, out) = tokio::task::block_in_place(|| run_on_terminal(&f, &["apply", "--approve", &id], "no\n"));
    assert!(out.contains("Only 'yes' is accepted"), "it asked:\n{out}");
    assert!(out.contains("Apply cancelled"), "{out}");
    assert_eq!(code_, 2, "{out}");
    let status = text(&f.run(&["status"]).await);
    assert_eq!(pending_approvals(&status), 0, "the refused approval was kept:\n{status}");
    // The daemon's next run (here: an unattended apply) must not do what was refused.
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    assert!(f.users().await.contains_key("ci-bot@example.com"), "refused deprovision applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_approve_applies_the_action_and_uses_up_its_approval() {
    let f = pipeline_owner_left().await;
    let plan = f.run(&["plan", "--format", "json"]).await;
    let id = id_of(&serde_json::from_slice(&plan.stdout).unwrap(), "pipeline-key", "ci-bot@example.com");
    let apply = f.run(&["apply", "--approve", &id, "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("1 applied, 0 failed, 0 skipped, 0 held, 0 stale"),
        "{}",
        text(&apply)
    );
    assert!(!f.users().await.contains_key("ci-bot@example.com"));
    let status = text(&f.run(&["status"]).await);
    assert_eq!(pending_approvals(&status), 0, "used up when applied:\n{status}");
    let ended: Vec<Value> = f.audit().into_iter().filter(|r| r["event"] == "end").collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["action_id"], id.as_str());
    assert_eq!(ended[0]["result"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_without_ids_on_a_terminal_lists_and_asks() {
    let f = pipeline_owner_left().await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let (c, out) = tokio::task::block_in_place(|| run_on_terminal(&f, &["approve", "plan.json"], "no\n"));
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("ci-bot@example.com") && out.contains("pipeline-key"),
        "lists what it releases:\n{out}"
    );
    assert!(out.contains("Nothing approved"), "{out}");
    assert_eq!(pending_approvals(&text(&f.run(&["status"]).await)), 0);
    let (c, out) = tokio::task::block_in_place(|| run_on_terminal(&f, &["approve", "plan.json"], "yes\n"));
    assert_eq!(c, 0, "{out}");
    assert_eq!(pending_approvals(&text(&f.run(&["status"]).await)), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_plan_never_applies_what_was_held_when_reviewed() {
    // Six of twenty leave with max_deprovisions = 5: all six are held in the reviewed plan.
    let f = twenty_with_missing(6, "max_deprovisions = 5").await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    assert_eq!(held_by(&plan_json(&f, "plan.json"), "mass-deprovision").len(), 6);

    // p0 comes back: five leave, within the limit, so the fresh plan has them ready. The
    // human saw them held; nothing of that is applied, and the command says so.
    let present: Vec<String> = (0..1).chain(6..20).map(|i| format!("p{i}")).chain(["root".to_string()]).collect();
    f.write_ldif(&ldif(&present.iter().map(|u| P(u, true)).collect::<Vec<_>>(), &[]));
    let apply = f.run(&["apply", "--plan", "plan.json", "--yes"]).await;
    assert_eq!(code(&apply), 2, "ready actions left out mean changes pending:\n{}", text(&apply));
    assert!(text(&apply).contains("were held in plan.json"), "{}", text(&apply));
    assert!(
        text(&apply).contains("0 applied, 0 failed, 0 skipped, 0 held, 0 stale, 5 not reviewed"),
        "{}",
        text(&apply)
    );
    assert_eq!(f.users().await.len(), 21, "nobody deprovisioned");

    // A plan reviewed with them ready applies them.
    let plan = f.run(&["plan", "--out", "plan2.json"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let apply = f.run(&["apply", "--plan", "plan2.json", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(f.users().await.len(), 16);
    // Applying the same reviewed plan again: each action is already done, not "changed".
    let again = f.run(&["apply", "--plan", "plan2.json", "--yes"]).await;
    assert_eq!(code(&again), 0, "{}", text(&again));
    let t = text(&again);
    assert_eq!(t.matches("already done: ").count(), 5, "{t}");
    assert!(!t.contains("changed since review"), "{t}");
    assert!(t.contains("0 applied, 0 failed, 0 skipped, 0 held, 5 stale"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_plan_leaves_out_unreviewed_actions_and_exits_2() {
    let f = root_and_alice().await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    // bob joins after the review: his creation was never reviewed.
    f.write_ldif(&ldif(&[P("root", true), P("alice", true), P("bob", true)], &[]));
    let apply = f.run(&["apply", "--plan", "plan.json", "--yes"]).await;
    assert_eq!(code(&apply), 2, "{}", text(&apply));
    let users = f.users().await;
    assert!(users.contains_key("alice@example.com"), "the reviewed create is applied");
    assert!(!users.contains_key("bob@example.com"), "the unreviewed one is not");
    let again = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&again), 0, "{}", text(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_plan_approve_binds_to_the_guards_of_the_reviewed_plan() {
    // ci-bot (a pipeline-key owner) left; twenty others and root stay.
    let mut seed: Vec<String> = (0..20).map(|i| format!("p{i}@example.com")).collect();
    seed.extend(["root@example.com".to_string(), "ci-bot@example.com".to_string()]);
    let users: Vec<SeedUser> = seed
        .iter()
        .map(|u| (u.as_str(), if u.starts_with("root") { "admin" } else { "member" }, &[][..]))
        .collect();
    let everyone: Vec<String> = (0..20).map(|i| format!("p{i}")).chain(["root".to_string()]).collect();
    let f = Fixture::start(Setup {
        org: org(&users, &[]),
        ldif: ldif(&everyone.iter().map(|u| P(u, true)).collect::<Vec<_>>(), &[]),
        guards: r#"pipeline_key_owners = ["ci-bot@example.com"]"#,
        policy: r#"grace_period = "1h""#,
        ..Setup::default()
    })
    .await;
    // A first apply records a healthy read of 21 people and starts ci-bot's clock; an
    // hour later (here: a zero grace in the reviewed config) its deprovision is held by
    // pipeline-key alone.
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 0);
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    std::fs::write(&f.cfg, cfg.replace(r#"grace_period = "1h""#, r#"grace_period = "0s""#)).unwrap();
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let saved = plan_json(&f, "plan.json");
    let d = id_of(&saved, "pipeline-key", "ci-bot@example.com");
    assert_eq!(held_by(&saved, "source-health").len(), 0, "the reviewed read was healthy");

    // Before the apply the directory loses a quarter of its people: source-health now
    // holds ci-bot's deprovision too. Approving it over pipeline-key releases nothing.
    let rest: Vec<String> = (5..20).map(|i| format!("p{i}")).chain(["root".to_string()]).collect();
    f.write_ldif(&ldif(&rest.iter().map(|u| P(u, true)).collect::<Vec<_>>(), &[]));
    let apply = f.run(&["apply", "--plan", "plan.json", "--approve", &d, "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    assert!(
        text(&apply).contains("approval no longer matches: new guard source-health"),
        "{}",
        text(&apply)
    );
    assert!(
        f.users().await.contains_key("ci-bot@example.com"),
        "nobody reviewed the suspicious read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_lists_who_approved_what_over_which_guard_until_when() {
    let f = pipeline_owner_left().await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let id = id_of(&plan_json(&f, "plan.json"), "pipeline-key", "ci-bot@example.com");
    let none = f.run(&["approvals"]).await;
    assert_eq!(code(&none), 0, "{}", text(&none));
    assert_eq!(pending_approvals(&text(&none)), 0);

    // A human ran it through sudo as the service user: the audit names the human.
    let approve = f
        .run_with_env(
            &["approve", "plan.json", "--id", &id, "--reason", "CHG-1234 ci-bot retired"],
            &[("USER", "idsync"), ("SUDO_USER", "alice")],
        )
        .await;
    assert_eq!(code(&approve), 0, "{}", text(&approve));

    let list = f.run(&["approvals"]).await;
    assert_eq!(code(&list), 0, "{}", text(&list));
    let t = text(&list);
    assert_eq!(pending_approvals(&t), 1, "{t}");
    let row = t
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{t}"));
    assert!(
        row.contains("deprovision_user ci-bot@example.com over pipeline-key by alice until "),
        "{row}"
    );
    let json = f.run(&["approvals", "--format", "json"]).await;
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    let a = &v["approvals"][0];
    assert_eq!(a["action_id"], id.as_str());
    assert_eq!(
        (a["kind"].as_str(), a["user"].as_str()),
        (Some("deprovision_user"), Some("ci-bot@example.com"))
    );
    assert_eq!(a["guards"], serde_json::json!(["pipeline-key"]));
    assert_eq!(a["approved_by"], "alice", "never the service identity sudo ran it as");
    let expires = chrono::DateTime::parse_from_rfc3339(a["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24),
        "approval_ttl 24h: {left}"
    );

    let audit: Vec<Value> = f.audit().into_iter().filter(|r| r["event"] == "approve").collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let line = &audit[0];
    assert_eq!(line["action_id"], id.as_str());
    assert_eq!(line["by"], "alice");
    assert!(line["actor"].as_str().unwrap().contains("alice via sudo as idsync"), "{line}");
    assert_eq!(line["reason"], "CHG-1234 ci-bot retired");
    assert_eq!(line["guards"], serde_json::json!(["pipeline-key"]));
    assert_eq!(line["expires_at"], a["expires_at"]);
    assert!(
        line["detail"].as_str().unwrap().contains("pipeline"),
        "the hold the human saw: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_approval_releases_nothing_and_is_audited() {
    let f = pipeline_owner_left().await;
    assert_eq!(code(&f.run(&["plan", "--out", "plan.json"]).await), 3);
    let id = id_of(&plan_json(&f, "plan.json"), "pipeline-key", "ci-bot@example.com");
    let approve = f.run_with_env(&["approve", "plan.json", "--id", &id], &[("USER", "bob")]).await;
    assert_eq!(code(&approve), 0, "{}", text(&approve));

    // An unknown id is named, and nothing is revoked (all or nothing).
    let bad = f.run(&["revoke", &id, "0123456789ab"]).await;
    assert_eq!(code(&bad), 1, "{}", text(&bad));
    assert!(text(&bad).contains("0123456789ab"), "{}", text(&bad));
    assert_eq!(pending_approvals(&text(&f.run(&["approvals"]).await)), 1);

    let revoke = f
        .run_with_env(
            &["revoke", &id, "--reason", "wrong ticket"],
            &[("USER", "carol"), ("SUDO_USER", "")],
        )
        .await;
    assert_eq!(code(&revoke), 0, "{}", text(&revoke));
    assert!(
        text(&revoke).contains(&format!("revoked {id} deprovision_user ci-bot@example.com")),
        "{}",
        text(&revoke)
    );
    assert_eq!(pending_approvals(&text(&f.run(&["approvals"]).await)), 0);
    assert_eq!(pending_approvals(&text(&f.run(&["status"]).await)), 0);

    // The next apply (the daemon's next run alike) keeps the deprovision held.
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    assert!(f.users().await.contains_key("ci-bot@example.com"), "a revoked approval was used");

    let audit = f.audit();
    let approved: Vec<&Value> = audit.iter().filter(|r| r["event"] == "approve").collect();
    let revoked: Vec<&Value> = audit.iter().filter(|r| r["event"] == "revoke").collect();
    assert_eq!((approved.len(), revoked.len()), (1, 1), "{audit:?}");
    assert_eq!(approved[0]["by"], "bob");
    assert_eq!(approved[0]["reason"], "");
    let r = revoked[0];
    assert_eq!(r["action_id"], id.as_str());
    assert_eq!(r["by"], "carol");
    assert_eq!(r["reason"], "wrong ticket");
    assert_eq!(r["guards"], serde_json::json!(["pipeline-key"]));
    assert_eq!(r["user"], "ci-bot@example.com");
    assert_eq!(r["expires_at"], approved[0]["expires_at"], "until when it would have held");
    // Revoking it again: nothing pending by that id.
    let again = f.run(&["revoke", &id]).await;
    assert_eq!(code(&again), 1, "{}", text(&again));
    assert!(text(&again).contains(&format!("no pending approval for {id}")), "{}", text(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_approve_audits_the_approval_with_its_reason() {
    let f = pipeline_owner_left().await;
    let plan = f.run(&["plan", "--format", "json"]).await;
    let id = id_of(&serde_json::from_slice(&plan.stdout).unwrap(), "pipeline-key", "ci-bot@example.com");
    let apply = f
        .run_with_env(
            &["apply", "--approve", &id, "--reason", "offboarded", "--yes"],
            &[("SUDO_USER", "dave")],
        )
        .await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let audit = f.audit();
    let approve: Vec<&Value> = audit.iter().filter(|r| r["event"] == "approve").collect();
    assert_eq!(approve.len(), 1, "{audit:?}");
    assert_eq!(
        (approve[0]["by"].as_str(), approve[0]["reason"].as_str()),
        (Some("dave"), Some("offboarded"))
    );
    assert_eq!(approve[0]["guards"], serde_json::json!(["pipeline-key"]));
    // The approval line comes before the action it released.
    let pos = |ev: &str| {
        audit
            .iter()
            .position(|r| r["event"] == ev && r["action_id"] == id.as_str())
            .unwrap()
    };
    assert!(pos("approve") < pos("begin"));
    // --reason needs something to approve.
    let bare = f.run(&["apply", "--reason", "x", "--yes"]).await;
    assert_eq!(code(&bare), 1, "{}", text(&bare));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_waits_for_no_run_it_fails_at_once_while_one_applies() {
    let f = pipeline_owner_left().await;
    assert_eq!(code(&f.run(&["plan", "--out", "plan.json"]).await), 3);
    let id = id_of(&plan_json(&f, "plan.json"), "pipeline-key", "ci-bot@example.com");
    assert_eq!(code(&f.run(&["approve", "plan.json", "--id", &id]).await), 0);
    // Another run holds the apply lock (as the daemon does while it applies).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(f.path("state/apply.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let revoke = f.run(&["revoke", &id]).await;
    assert_eq!(code(&revoke), 1, "{}", text(&revoke));
    assert!(text(&revoke).contains("another idsync run"), "{}", text(&revoke));
    assert_eq!(pending_approvals(&text(&f.run(&["approvals"]).await)), 1, "nothing revoked");
    assert!(!f.audit().iter().any(|r| r["event"] == "revoke"));
    drop(lock);
    assert_eq!(code(&f.run(&["revoke", &id]).await), 0);
}
