//! Undo, restore on return and history end to end: the real binary against the W&B
//! sandbox, in SaaS mode (a deprovision removes the person from the org with their teams)
//! and Dedicated mode (deactivate / reactivate).

mod common;

use common::*;
use idsync::plan::Deployment;
use idsync::sandbox::SandboxOptions;
use serde_json::Value;

const FIVE: [&str; 5] = ["p0", "p1", "p2", "p3", "p4"];

/// Team `ml` is managed (mapped from `cn=ml`, role member); `side` is not. p0 is admin of
/// `side`, p1 an org admin; root is the org admin idsync keeps.
fn setup(deployment: Deployment) -> (Value, &'static str, SandboxOptions) {
    let users: Vec<SeedUser> = vec![
        ("root@example.com", "admin", &[]),
        ("p0@example.com", "member", &[("ml", "member"), ("side", "admin")]),
        ("p1@example.com", "admin", &[("ml", "member"), ("side", "member")]),
        ("p2@example.com", "member", &[("ml", "member"), ("side", "member")]),
        ("p3@example.com", "member", &[("ml", "member")]),
        ("p4@example.com", "member", &[("ml", "member")]),
    ];
    let target = match deployment {
        Deployment::Saas => "",
        _ => r#"deployment = "dedicated""#,
    };
    let opts = SandboxOptions {
        api_key: KEY.into(),
        deployment,
        ..SandboxOptions::default()
    };
    (org(&users, &["ml", "side"]), target, opts)
}

const ML_TEAM: &str = r#"
[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"
"#;

fn everyone() -> String {
    let mut people: Vec<P> = FIVE.iter().map(|p| P(p, true)).collect();
    people.push(P("root", true));
    ldif(&people, &[("ml", &FIVE)])
}

/// The run id of the audit log's `end` lines for `kind`, the latest.
fn run_of(f: &Fixture, kind: &str) -> String {
    f.audit()
        .into_iter()
        .rev()
        .find(|r| r["event"] == "end" && r["kind"] == kind && r["result"] == "ok")
        .unwrap_or_else(|| panic!("no {kind} in the audit log"))["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Active users (SaaS: in the org; Dedicated: not deactivated) with their state.
async fn active(f: &Fixture) -> std::collections::BTreeMap<String, Value> {
    f.users().await
}

async fn a_mistaken_run_is_undone(deployment: Deployment) {
    let (org, target, opts) = setup(deployment);
    let f = Fixture::start(Setup {
        org,
        ldif: everyone(),
        target,
        // The mistake must get through: five of six leave at once.
        guards: "max_source_shrink_percent = 100",
        tables: ML_TEAM,
        opts,
        ..Setup::default()
    })
    .await;
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 0, "in sync to start with");
    // A filter mistake: the directory shows root alone.
    f.write_ldif(&ldif(&[P("root", true)], &[("ml", &[])]));
    let oops = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&oops), 0, "{}", text(&oops));
    let now = active(&f).await;
    assert!(FIVE.iter().all(|p| !now.contains_key(&format!("{p}@example.com"))), "{now:?}");
    let run = run_of(&f, "deprovision_user");

    let undo = f.run(&["undo", &run, "--out", "undo.json"]).await;
    assert_eq!(code(&undo), 2, "changes pending, as plan:\n{}", text(&undo));
    let out = text(&undo);
    assert!(out.contains(&format!("idsync undo of run {run}")), "{out}");
    // The directory still says they are gone: the next regular run would remove them again.
    assert!(
        out.contains("Warnings (5)") && out.contains("starts their grace clock again"),
        "{out}"
    );
    let saved = plan_json(&f, "undo.json");
    assert_eq!(saved["undo"]["run_id"], run.as_str());

    let apply = f.run(&["apply", "--plan", "undo.json", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let back = active(&f).await;
    for p in FIVE {
        let u = &back[&format!("{p}@example.com")];
        assert_eq!(u["teams"]["ml"], "member", "{p}: {u}");
    }
    assert_eq!(back["p0@example.com"]["teams"]["side"], "admin", "unmanaged team and its role back");
    assert_eq!(back["p2@example.com"]["teams"]["side"], "member");
    assert!(back["p3@example.com"]["teams"].get("side").is_none());
    assert_eq!(back["p1@example.com"]["org_role"], "admin", "org role back");
    assert_eq!(back["p0@example.com"]["org_role"], "member");

    // Undoing it again finds nothing left to do; the history tells the whole story.
    let again = f.run(&["undo", &run]).await;
    assert_eq!(code(&again), 0, "{}", text(&again));
    // The undo's own run changed them since: superseded, never reversed twice.
    assert!(
        text(&again).contains("Not undone (5)") && text(&again).contains("superseded: run"),
        "{}",
        text(&again)
    );
    let h = f.run(&["history", "P0@Example.com", "--format", "json"]).await;
    assert_eq!(code(&h), 0, "{}", text(&h));
    let h: Value = serde_json::from_slice(&h.stdout).unwrap();
    assert_eq!(h["version"], 1);
    let kinds: Vec<(&str, &str)> = h["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["result"].as_str().unwrap()))
        .collect();
    let readd = if deployment == Deployment::Saas {
        "create_user"
    } else {
        "reactivate_user"
    };
    assert_eq!(kinds[0], ("deprovision_user", "ok"), "{kinds:?}");
    assert!(kinds.contains(&(readd, "ok")), "{kinds:?}");
    assert!(
        kinds.contains(&("add_to_team", "ok")) || deployment != Deployment::Saas,
        "{kinds:?}"
    );
    assert!(h["changes"][0]["run_id"] == run.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn saas_a_run_that_deprovisioned_five_by_mistake_is_undone_with_their_teams_and_roles() {
    a_mistaken_run_is_undone(Deployment::Saas).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_a_run_that_deprovisioned_five_by_mistake_is_undone_with_their_teams_and_roles() {
    a_mistaken_run_is_undone(Deployment::Dedicated).await;
}

/// Moves a stored restore snapshot `days` days into the past (the clock is not ours).
fn age_snapshot(f: &Fixture, email: &str, days: i64) {
    let db = rusqlite::Connection::open(f.path("state/idsync.db")).unwrap();
    let at = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let n = db
        .execute(
            "UPDATE restore_snapshots SET taken_at = ?1, snapshot = json_set(snapshot, '$.taken_at', ?1) WHERE email = ?2",
            rusqlite::params![at, email],
        )
        .unwrap();
    assert_eq!(n, 1, "a snapshot of {email}");
}

async fn leave_and_return(deployment: Deployment) {
    let (org, target, opts) = setup(deployment);
    let f = Fixture::start(Setup {
        org,
        ldif: everyone(),
        target,
        // On Dedicated a deactivated user keeps their teams; a deleted one loses them, as
        // everyone does on SaaS.
        policy: if deployment == Deployment::Saas {
            ""
        } else {
            r#"deprovision = "delete""#
        },
        guards: "max_source_shrink_percent = 100",
        tables: ML_TEAM,
        opts,
    })
    .await;
    // p0 and p1 leave; both are deprovisioned.
    let rest = |with: &[&str]| {
        let mut people: Vec<P> = with.iter().map(|p| P(p, true)).collect();
        people.push(P("root", true));
        ldif(&people, &[("ml", with)])
    };
    f.write_ldif(&rest(&["p2", "p3", "p4"]));
    let leave = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&leave), 0, "{}", text(&leave));
    assert!(!active(&f).await.contains_key("p0@example.com"));
    // p1 was gone longer than the 90-day window.
    age_snapshot(&f, "p1@example.com", 91);

    f.write_ldif(&everyone());
    let plan = f.run(&["plan"]).await;
    assert!(
        text(&plan).contains("restore: had team side as admin until"),
        "the plan says why:\n{}",
        text(&plan)
    );
    let back = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&back), 0, "{}", text(&back));
    let users = active(&f).await;
    let p0 = &users["p0@example.com"];
    assert_eq!(p0["teams"]["side"], "admin", "restored within the window: {p0}");
    assert_eq!(p0["teams"]["ml"], "member", "policy.teams as always");
    let p1 = &users["p1@example.com"];
    assert_eq!(p1["teams"]["ml"], "member", "{p1}");
    // W&B re-adds a plain member: past the window nothing is restored.
    assert!(p1["teams"].get("side").is_none(), "past the window: {p1}");
    assert_eq!(p1["org_role"], "member", "past the window: {p1}");
    assert_eq!(code(&f.run(&["plan"]).await), 0, "converged");
}

#[tokio::test(flavor = "multi_thread")]
async fn saas_a_person_returning_within_the_window_gets_their_teams_back_and_after_it_not() {
    leave_and_return(Deployment::Saas).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_a_deleted_person_returning_within_the_window_gets_their_teams_back_and_after_it_not() {
    leave_and_return(Deployment::Dedicated).await;
}

async fn undo_dropping_the_last_admin(deployment: Deployment) {
    let target = match deployment {
        Deployment::Saas => "",
        _ => r#"deployment = "dedicated""#,
    };
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("alice@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[("admins", &["root", "alice"])]),
        target,
        guards: "max_source_shrink_percent = 100",
        tables: r#"
[[policy.org_roles]]
group = "cn=admins,ou=groups,dc=example,dc=com"
role = "admin"
"#,
        opts: SandboxOptions {
            api_key: KEY.into(),
            deployment,
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await;
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 0);
    let promoted = run_of(&f, "set_org_role");
    // root leaves; alice is the last admin.
    f.write_ldif(&ldif(&[P("alice", true)], &[("admins", &["alice"])]));
    assert_eq!(code(&f.run(&["apply", "--yes"]).await), 0);

    let undo = f.run(&["undo", &promoted, "--format", "json"]).await;
    assert_eq!(code(&undo), 3, "held, as plan:\n{}", text(&undo));
    let p: Value = serde_json::from_slice(&undo.stdout).unwrap();
    let held = held_by(&p, "last-admin");
    assert_eq!(held.len(), 1, "{p}");
    assert_eq!(
        (held[0]["kind"].as_str(), held[0]["user"].as_str()),
        (Some("set_org_role"), Some("alice@example.com"))
    );
    // Applying the saved undo changes nothing.
    assert_eq!(code(&f.run(&["undo", &promoted, "--out", "undo.json"]).await), 3);
    let apply = f.run(&["apply", "--plan", "undo.json", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    assert_eq!(active(&f).await["alice@example.com"]["org_role"], "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn saas_an_undo_that_would_drop_the_last_admin_is_held() {
    undo_dropping_the_last_admin(Deployment::Saas).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_an_undo_that_would_drop_the_last_admin_is_held() {
    undo_dropping_the_last_admin(Deployment::Dedicated).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_of_an_unknown_run_and_history_of_a_stranger_are_explained() {
    let (org, target, opts) = setup(Deployment::Saas);
    let f = Fixture::start(Setup {
        org,
        ldif: everyone(),
        target,
        tables: ML_TEAM,
        opts,
        ..Setup::default()
    })
    .await;
    let u = f.run(&["undo", "20990101T000000Z-abcdef"]).await;
    assert_eq!(code(&u), 1, "{}", text(&u));
    assert!(
        text(&u).contains("is not in the audit log") && text(&u).contains("idsync status"),
        "{}",
        text(&u)
    );
    let h = f.run(&["history", "nobody@example.com"]).await;
    assert_eq!(code(&h), 0, "{}", text(&h));
    assert!(text(&h).contains("holds nothing"), "{}", text(&h));
    assert_eq!(code(&f.run(&["history", "not-an-email"]).await), 1);
}
