//! `idsync explain EMAIL` and `idsync status --format json` end to end: the real binary
//! against the W&B sandbox.

mod common;

use common::*;
use serde_json::Value;

const TEAM_ML: &str = r#"
[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"
"#;

/// root (admin, in sync), alice (new hire in cn=ml), dana (another domain), ci-bot (a
/// pipeline-key owner who left the directory).
async fn fixture() -> Fixture {
    Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("ci-bot@example.com", "member", &[]),
                ("pat@partner.io", "member", &[("ml", "member")]),
            ],
            &["ml"],
        ),
        ldif: ldif(
            &[P("root", true), P("alice", true), P("dana@partner.io", true)],
            &[("ml", &["alice"])],
        ),
        guards: r#"pipeline_key_owners = ["ci-bot@example.com"]"#,
        tables: TEAM_ML,
        ..Setup::default()
    })
    .await
}

async fn explain_json(f: &Fixture, email: &str) -> (i32, Value) {
    let o = f.run(&["explain", email, "--format", "json"]).await;
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (code(&o), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_hire_shows_the_create_and_the_team_add_with_its_rule() {
    let f = fixture().await;
    let o = f.run(&["explain", "Alice@Example.COM"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 2, "actions pending:\n{t}");
    assert!(t.contains("alice@example.com: 2 action(s) pending."), "{t}");
    assert!(
        t.contains("uid=alice,ou=people,dc=example,dc=com (enabled"),
        "the directory entry:\n{t}"
    );
    assert!(
        t.contains("cn=ml,ou=groups,dc=example,dc=com -> policy.teams: team ml (member)"),
        "the group and the rule naming it:\n{t}"
    );
    assert!(
        t.contains(
            "team ml as member: policy.teams: uid=alice,ou=people,dc=example,dc=com is a member of cn=ml,ou=groups,dc=example,dc=com"
        ),
        "the desired team with its rule:\n{t}"
    );
    assert!(t.contains("create_user") && t.contains("add_to_team ml (as member)"), "{t}");
    assert!(t.contains("W&B:\n  no user with this email"), "{t}");

    // The same actions, ids and reasons as the plan.
    let (c, x) = explain_json(&f, "alice@example.com").await;
    assert_eq!(c, 2);
    let plan = f.run(&["plan", "--format", "json"]).await;
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mine: Vec<&Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["user"] == "alice@example.com")
        .collect();
    let explained: Vec<&Value> = x["actions"].as_array().unwrap().iter().collect();
    assert_eq!(explained, mine, "explain shows the plan's own actions");
    // Read-only like plan: no state store was created.
    assert!(
        !f.path("state/idsync.db").exists() && !f.path("state").exists(),
        "explain wrote state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_person_shows_the_guard_and_how_to_release_it() {
    let f = fixture().await;
    let o = f.run(&["explain", "ci-bot@example.com"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 3, "held:\n{t}");
    assert!(t.contains("[HELD by pipeline-key]"), "{t}");
    assert!(t.contains("held by pipeline-key: "), "the guard's reason:\n{t}");
    assert!(t.contains("Directory:\n  no entry with this email"), "{t}");
    assert!(
        t.contains("to release: idsync plan --out PLAN.json, review, then idsync approve PLAN.json --id"),
        "{t}"
    );
    assert!(t.contains("Tombstone: missing from the directory since"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_scope_and_in_sync_people_say_why_nothing_is_planned() {
    let f = fixture().await;
    for who in ["dana@partner.io", "pat@partner.io"] {
        let o = f.run(&["explain", who]).await;
        let t = text(&o);
        assert_eq!(code(&o), 0, "nothing planned:\n{t}");
        assert!(t.contains("nothing planned."), "{t}");
        assert!(
            t.contains("out of scope: domain partner.io is not in policy.managed_domains (example.com): never touched"),
            "{t}"
        );
        assert!(t.contains("In scope: no"), "{t}");
    }
    let o = f.run(&["explain", "root@example.com"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("already in sync"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_email_exits_1_with_a_suggestion() {
    let f = fixture().await;
    let o = f.run(&["explain", "alcie@example.com"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    assert!(t.contains("alcie@example.com: not found in the directory nor in W&B."), "{t}");
    assert!(t.contains("Did you mean: alice@example.com?"), "{t}");
    let (c, x) = explain_json(&f, "nobody@example.com").await;
    assert_eq!(c, 1);
    assert_eq!(x["verdict"], "unknown");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_has_a_stable_shape() {
    let f = fixture().await;
    let (c, x) = explain_json(&f, "ci-bot@example.com").await;
    assert_eq!(c, 3);
    let keys: Vec<&str> = x.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "version",
        "email",
        "verdict",
        "in_scope",
        "directory",
        "desired",
        "wandb",
        "actions",
        "tombstone",
        "why_nothing",
        "notes",
        "did_you_mean",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(x["version"], 1);
    assert_eq!(x["verdict"], "held");
    assert_eq!(x["in_scope"], true);
    assert!(x["desired"].is_null());
    let u = &x["wandb"][0];
    assert_eq!(u["email"], "ci-bot@example.com");
    assert_eq!(u["active"], true);
    assert_eq!(u["org_role"], "member");
    assert!(u["id"].as_str().is_some_and(|s| !s.is_empty()) && u["user_name"] == "ci-bot");
    let a = &x["actions"][0];
    assert_eq!(a["kind"], "deprovision_user");
    assert_eq!(a["status"], "held");
    assert_eq!(a["guard"], "pipeline-key");
    assert_eq!(a["holds"][0]["guard"], "pipeline-key");
    assert_eq!(x["tombstone"]["cause"], "missing");

    let (c, x) = explain_json(&f, "alice@example.com").await;
    assert_eq!(c, 2);
    assert_eq!(x["verdict"], "pending");
    let g = &x["directory"][0]["groups"][0];
    assert_eq!(g["dn"], "cn=ml,ou=groups,dc=example,dc=com");
    assert_eq!(g["via"], serde_json::json!([]));
    assert_eq!(g["rules"][0], "policy.teams: team ml (member)");
    assert_eq!(x["desired"]["teams"][0]["team"], "ml");
    assert!(x["desired"]["teams"][0]["rule"].as_str().unwrap().starts_with("policy.teams: "));
    assert!(x["desired"]["org_role"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_membership_shows_its_path() {
    // cn=research contains cn=ml, which contains alice; the policy maps cn=research.
    let mut dir = ldif(&[P("root", true), P("alice", true)], &[("ml", &["alice"])]);
    dir.push_str(
        "dn: cn=research,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: research\nmember: cn=ml,ou=groups,dc=example,dc=com\n\n",
    );
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &["research"]),
        ldif: dir,
        tables: r#"
[[policy.teams]]
team = "research"
group = "cn=research,ou=groups,dc=example,dc=com"
role = "member"
"#,
        ..Setup::default()
    })
    .await;
    let o = f.run(&["explain", "alice@example.com"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 2, "{t}");
    assert!(
        t.contains("cn=research,ou=groups,dc=example,dc=com (nested, via ml) -> policy.teams: team research (member)"),
        "{t}"
    );
    let (_, x) = explain_json(&f, "alice@example.com").await;
    let research = x["directory"][0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "research")
        .unwrap()
        .clone();
    assert_eq!(research["via"], serde_json::json!(["ml"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_tombstones_with_cause_and_deadline_and_approvals_with_their_action() {
    let f = pipeline_owner_left().await;
    let empty = f.run(&["status", "--format", "json"]).await;
    assert_eq!(code(&empty), 0, "{}", text(&empty));
    let v: Value = serde_json::from_slice(&empty.stdout).unwrap();
    assert_eq!(v["store_exists"], false);
    assert!(!f.path("state/idsync.db").exists(), "status created the store");

    // An apply starts ci-bot's tombstone (its deprovision is held); an approval follows.
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let id = held_by(&plan_json(&f, "plan.json"), "pipeline-key")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = f.run(&["approve", "plan.json", "--id", &id]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));

    let o = f.run(&["status", "--format", "json"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "approvals",
            "runs",
            "state_dir",
            "store_exists",
            "tombstones",
            "unsettled",
            "version"
        ]
    );
    assert_eq!(v["unsettled"], serde_json::json!([]), "nothing left open to settle");
    assert_eq!(v["version"], 1);
    assert_eq!(v["store_exists"], true);
    assert_eq!(v["runs"][0]["command"], "apply");
    assert_eq!(v["runs"][0]["result"], "held");
    let t = &v["tombstones"][0];
    assert_eq!(t["user"], "ci-bot@example.com");
    assert_eq!(t["cause"], "missing");
    assert!(t["since"].is_string() && t["deprovision_after"].is_string(), "{t}");
    let a = &v["approvals"][0];
    assert_eq!(a["action_id"], id.as_str());
    assert_eq!(a["kind"], "deprovision_user");
    assert_eq!(a["user"], "ci-bot@example.com");
    assert!(a["team"].is_null());
    assert_eq!(a["guards"], serde_json::json!(["pipeline-key"]));
    assert!(a["approved_by"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(a["expires_at"].is_string() && a["approved_at"].is_string());

    let o = f.run(&["status"]).await;
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(pending_approvals(&t), 1, "{t}");
    let tomb = t
        .lines()
        .find(|l| l.contains("ci-bot@example.com") && l.contains("since"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        tomb.contains("missing from the directory since") && tomb.contains(", deprovision after 20"),
        "{tomb}"
    );
    let appr = t.lines().find(|l| l.trim_start().starts_with(&id)).unwrap_or_else(|| panic!("{t}"));
    assert!(
        appr.contains("deprovision_user ci-bot@example.com over pipeline-key by ") && appr.contains(" until 20"),
        "{appr}"
    );
}
