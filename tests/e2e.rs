//! End to end: the real `idsync` binary against the W&B sandbox over HTTP on loopback.

mod common;

use std::time::Duration;

use common::*;
use idsync::plan::Deployment;
use idsync::sandbox::SandboxOptions;
use serde_json::Value;

const TEAM_ML: &str = r#"
[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_the_whole_loop() {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
            .arg("demo")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let t = text(&out);
    assert_eq!(code(&out), 0, "{t}");
    assert!(t.contains("pipeline-key"), "the demo shows a held pipeline-key owner:\n{t}");
    assert!(t.contains("The org is in sync"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_auto_add_and_outsiders_untouched() {
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("pat@partner.io", "member", &[("ml", "member")]),
            ],
            &["ml"],
        ),
        ldif: ldif(
            &[P("root", true), P("alice", true), P("dana@partner.io", true)],
            &[("ml", &["alice", "dana"])],
        ),
        tables: TEAM_ML,
        ..Setup::default()
    })
    .await;
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let users = f.users().await;
    assert_eq!(users["alice@example.com"]["teams"]["ml"], "member");
    assert!(!users.contains_key("dana@partner.io"), "out-of-domain people are never created");
    assert_eq!(
        users["pat@partner.io"]["teams"]["ml"], "member",
        "external collaborators stay in their teams"
    );
    let again = f.run(&["plan"]).await;
    assert_eq!(code(&again), 0, "converged:\n{}", text(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn team_add_remove_and_role_change() {
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[("ml", "admin")]),
                ("bob@example.com", "member", &[("ml", "member")]),
                ("carol@example.com", "member", &[("ml", "member")]),
            ],
            &["ml"],
        ),
        ldif: ldif(
            &[P("root", true), P("alice", true), P("bob", true), P("carol", true)],
            &[("ml", &["root", "alice"]), ("ml-leads", &["bob", "root"])],
        ),
        tables: r#"
[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"
[[policy.teams]]
team = "ml"
group = "cn=ml-leads,ou=groups,dc=example,dc=com"
role = "admin"
"#,
        ..Setup::default()
    })
    .await;
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let users = f.users().await;
    assert_eq!(users["alice@example.com"]["teams"]["ml"], "member");
    assert_eq!(users["bob@example.com"]["teams"]["ml"], "admin");
    assert!(users["carol@example.com"]["teams"].get("ml").is_none(), "carol removed from ml");
    assert_eq!(users["root@example.com"]["teams"]["ml"], "admin");
    assert_eq!(code(&f.run(&["plan"]).await), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_only_admin_missing_is_held_and_stays_admin() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("bob@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("bob", true)], &[]),
        ..Setup::default()
    })
    .await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    assert!(text(&plan).contains("last-admin"));
    let p = plan_json(&f, "plan.json");
    assert_eq!(held_by(&p, "last-admin").len(), 1);
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    let users = f.users().await;
    assert_eq!(users["root@example.com"]["org_role"], "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn idsyncs_own_identity_is_never_changed() {
    let f = Fixture::start(Setup {
        org: org(&[("svc-idsync@example.com", "admin", &[]), ("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        target: r#"username = "svc-idsync""#,
        ..Setup::default()
    })
    .await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let p = plan_json(&f, "plan.json");
    assert!(p["actions"].as_array().unwrap().is_empty());
    assert!(p["tombstones"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_key_owner_is_held_until_approved_and_approval_expires() {
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("ci-bot@example.com", "member", &[]),
                ("ci-2@example.com", "member", &[]),
            ],
            &[],
        ),
        ldif: ldif(&[P("root", true)], &[]),
        guards: r#"pipeline_key_owners = ["ci-bot@example.com", "ci-2@example.com"]
approval_ttl = "2s""#,
        ..Setup::default()
    })
    .await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let p = plan_json(&f, "plan.json");
    let held = held_by(&p, "pipeline-key");
    assert_eq!(held.len(), 2);
    let ci_bot = held.iter().find(|a| a["user"] == "ci-bot@example.com").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // An approval that expires releases nothing.
    let ok = f.run(&["approve", "plan.json", "--id", &ci_bot]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    assert!(
        f.users().await.contains_key("ci-bot@example.com"),
        "expired approval released nothing"
    );

    // A fresh approval releases exactly the approved action.
    let ok = f.run(&["approve", "plan.json", "--id", &ci_bot]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "still one held:\n{}", text(&apply));
    let users = f.users().await;
    assert!(!users.contains_key("ci-bot@example.com"), "approved deprovision applied");
    assert!(users.contains_key("ci-2@example.com"), "unapproved one still held");
}

#[tokio::test(flavor = "multi_thread")]
async fn six_of_twenty_missing_with_max_five_holds_all_six() {
    let f = twenty_with_missing(6, "max_deprovisions = 5").await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    assert_eq!(held_by(&plan_json(&f, "plan.json"), "mass-deprovision").len(), 6);
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3);
    assert_eq!(f.users().await.len(), 21, "nobody deprovisioned");
}

#[tokio::test(flavor = "multi_thread")]
async fn grace_period_tombstone_first_then_deprovision_and_return_cancels() {
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("gone@example.com", "member", &[]),
                ("back@example.com", "member", &[]),
            ],
            &[],
        ),
        ldif: ldif(&[P("root", true)], &[]),
        policy: r#"grace_period = "2s""#,
        ..Setup::default()
    })
    .await;
    let first = f.run(&["plan", "--out", "p1.json"]).await;
    assert_eq!(code(&first), 0, "only tombstones, no actions:\n{}", text(&first));
    assert_eq!(plan_json(&f, "p1.json")["tombstones"].as_array().unwrap().len(), 2);
    // `plan` is a dry run: the clocks start with the first apply, which has nothing to do.
    let start = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&start), 0, "{}", text(&start));
    tokio::time::sleep(Duration::from_millis(2300)).await;
    // back@ returns before apply: its tombstone is dropped; gone@ is deprovisioned.
    f.write_ldif(&ldif(&[P("root", true), P("back", true)], &[]));
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let users = f.users().await;
    assert!(!users.contains_key("gone@example.com"));
    assert!(users.contains_key("back@example.com"));
    let status = f.run(&["status"]).await;
    assert!(text(&status).contains("tombstones: 0"), "{}", text(&status));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspicious_read_exits_3_says_why_and_starts_no_tombstone_clock() {
    let names: Vec<String> = (0..10).map(|i| format!("p{i}")).chain(["root".to_string()]).collect();
    let emails: Vec<String> = names.iter().map(|n| format!("{n}@example.com")).collect();
    let seed: Vec<SeedUser> = emails
        .iter()
        .map(|e| (e.as_str(), if e.starts_with("root") { "admin" } else { "member" }, &[][..]))
        .collect();
    let everyone: Vec<P> = names.iter().map(|n| P(n, true)).collect();
    let f = Fixture::start(Setup {
        org: org(&seed, &[]),
        ldif: ldif(&everyone, &[]),
        policy: r#"grace_period = "1h""#,
        ..Setup::default()
    })
    .await;
    // A healthy read of 11 people: the baseline.
    let first = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&first), 0, "{}", text(&first));

    // The source loses a subtree: 5 of 11 come back. Nothing is due yet (1h grace), but
    // the read is not "in sync".
    let few: Vec<P> = ["root", "p0", "p1", "p2", "p3"].iter().map(|n| P(n, true)).collect();
    f.write_ldif(&ldif(&few, &[]));
    let plan = f.run(&["plan"]).await;
    let out = text(&plan);
    assert_eq!(code(&plan), 3, "{out}");
    assert!(
        out.contains("SUSPICIOUS DIRECTORY READ") && out.contains("shrank from 11 to 5"),
        "{out}"
    );
    assert!(!out.contains("In sync"), "{out}");
    let json = f.run(&["plan", "--format", "json"]).await;
    assert_eq!(code(&json), 3, "{}", text(&json));
    let p: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(p["source"]["suspicious"].as_str().unwrap().contains("shrank from 11 to 5"), "{p}");
    assert_eq!(p["tombstones"].as_array().unwrap().len(), 0, "no clock starts: {p}");

    let apply = f.run(&["apply", "--yes"]).await;
    let out = text(&apply);
    assert_eq!(code(&apply), 3, "{out}");
    assert!(
        out.contains("suspicious directory read, nothing from it stored: the directory shrank from 11 to 5"),
        "{out}"
    );
    let status = text(&f.run(&["status"]).await);
    assert!(status.contains("tombstones: 0"), "the suspicious apply started no clock:\n{status}");
    assert!(status.contains("held"), "the run is recorded as held:\n{status}");
    assert_eq!(f.users().await.len(), 11, "nobody removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_team_group_holds_its_removals() {
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("a@example.com", "member", &[("ml", "member")]),
                ("b@example.com", "member", &[("ml", "member")]),
            ],
            &["ml"],
        ),
        ldif: ldif(&[P("root", true), P("a", true), P("b", true)], &[("ml", &["a", "b"])]),
        tables: TEAM_ML,
        ..Setup::default()
    })
    .await;
    let first = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&first), 0, "{}", text(&first));
    // Everyone is still there, but the group that feeds team ml comes back empty.
    f.write_ldif(&ldif(&[P("root", true), P("a", true), P("b", true)], &[("ml", &[])]));
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let p = plan_json(&f, "plan.json");
    let held = held_by(&p, "source-health");
    assert_eq!(held.len(), 2, "{p}");
    assert!(held.iter().all(|a| a["kind"] == "remove_from_team"));
    assert!(
        held[0]["held_reason"]
            .as_str()
            .unwrap()
            .contains("cn=ml,ou=groups,dc=example,dc=com"),
        "{p}"
    );
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 3, "{}", text(&apply));
    let users = f.users().await;
    assert!(users["a@example.com"]["teams"].get("ml").is_some(), "{users:?}");
}

/// Every file under `dir` with its bytes, to show that a command changed nothing.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.insert(p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_status_are_dry_runs_that_write_nothing() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("gone@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        policy: r#"grace_period = "1h""#,
        ..Setup::default()
    })
    .await;
    // Before any apply: no state directory, no database, no lock file.
    for args in [&["plan"][..], &["plan", "--format", "json"], &["status"]] {
        let out = f.run(args).await;
        assert!(matches!(code(&out), 0 | 2), "{args:?}: {}", text(&out));
        assert!(!f.path("state").exists(), "{args:?} created the state directory");
    }
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let status = text(&f.run(&["status"]).await);
    assert!(status.contains("tombstones: 1") && status.contains("gone@example.com"), "{status}");
    let before = files_under(&f.path("state"));

    // gone@ is back and another one vanished: a plan shows it, and persists none of it.
    f.write_ldif(&ldif(&[P("gone", true)], &[]));
    let plan = f.run(&["plan", "--format", "json"]).await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let p: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let shown: Vec<&str> = p["tombstones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["user"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["root@example.com"], "{p}");
    assert_eq!(files_under(&f.path("state")), before, "plan changed the state directory");
    let status_after = text(&f.run(&["status"]).await);
    assert!(
        status_after.contains("tombstones: 1") && status_after.contains("gone@example.com"),
        "{status_after}"
    );
    assert_eq!(files_under(&f.path("state")), before, "status changed the state directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_directory_plans_no_ready_removals() {
    let f = Fixture::start(Setup {
        org: org(
            &[("root@example.com", "admin", &[]), ("a@example.com", "member", &[("ml", "member")])],
            &["ml"],
        ),
        ldif: ldif(&[], &[("ml", &[])]),
        tables: TEAM_ML,
        ..Setup::default()
    })
    .await;
    let plan = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let p = plan_json(&f, "plan.json");
    assert!(p["actions"].as_array().unwrap().iter().all(|a| a["status"] == "held"));
    assert!(!held_by(&p, "source-health").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dedicated_deprovision_deactivates_and_converges() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("gone@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        target: r#"deployment = "dedicated""#,
        opts: SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Dedicated,
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let st = f.state().await;
    let gone = st["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "gone@example.com")
        .unwrap();
    assert_eq!(gone["active"], false, "dedicated keeps the user, inactive");
    assert_eq!(code(&f.run(&["plan"]).await), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn saas_deprovision_converges() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("gone@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        ..Setup::default()
    })
    .await;
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(!f.users().await.contains_key("gone@example.com"));
    assert_eq!(code(&f.run(&["plan"]).await), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_server_errors_converge_without_duplicates() {
    let people: Vec<String> = (0..15).map(|i| format!("n{i}")).collect();
    let mut ps: Vec<P> = people.iter().map(|p| P(p, true)).collect();
    ps.push(P("root", true));
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[("ml", "member")])], &["ml"]),
        ldif: ldif(
            &ps,
            &[("ml", &people.iter().map(String::as_str).chain(["root"]).collect::<Vec<_>>())],
        ),
        tables: TEAM_ML,
        target: "max_retries = 12",
        opts: SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Saas,
            throttle_rate: 0.3,
            fail_rate: 0.1,
            seed: 7,
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await;
    // Faults may fail a run; it must converge within a few runs and never duplicate.
    let mut converged = false;
    for _ in 0..5 {
        let apply = f.run(&["apply", "--yes"]).await;
        if code(&apply) == 0 {
            converged = true;
            break;
        }
        eprintln!("apply under faults did not finish cleanly (retrying):\n{}", text(&apply));
    }
    assert!(converged, "apply converged under 30% 429 and 10% 500");
    f.sb.set_faults(0.0, 0.0, 0.0);
    assert_eq!(code(&f.run(&["plan"]).await), 0);
    let st = f.state().await;
    let emails: Vec<&str> = st["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<_> = emails.iter().collect();
    assert_eq!(emails.len(), unique.len(), "no duplicate users");
    assert_eq!(emails.len(), 16);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_apply_resumes_and_audits_each_action_once() {
    let f = slow_fixture(Duration::from_millis(150)).await;
    let mut child = f
        .command(&["apply", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some, not all, creates landed, then kill -9.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = f.users().await.len();
        if n >= 4 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let partial = f.users().await.len();
    assert!(partial > 1 && partial < 13, "killed mid-apply ({partial} users)");

    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(f.users().await.len(), 13);
    assert_eq!(code(&f.run(&["plan"]).await), 0);
    let audit = f.audit();
    let mut ends: std::collections::BTreeMap<String, usize> = Default::default();
    let mut begins: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &audit {
        let id = r["action_id"].as_str().unwrap().to_string();
        match r["event"].as_str().unwrap() {
            "end" => *ends.entry(id).or_default() += 1,
            "begin" => *begins.entry(id).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(ends.len(), 12, "every create audited: {audit:#?}");
    assert!(ends.values().all(|n| *n == 1), "each action ended once: {ends:?}");
    assert!(begins.values().all(|n| *n == 1), "each action begun once: {begins:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_clear_errors_and_change_nothing() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("dup@example.com", "member", &[])], &[]),
        ldif: "version: 1\n\ndn: uid=x,ou=people,dc=example,dc=com\nmail:: !!!notbase64\n".into(),
        ..Setup::default()
    })
    .await;
    let before = f.state().await;
    let out = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("directory.ldif:4"), "names file and line:\n{}", text(&out));
    assert_eq!(f.state().await["users"], before["users"]);

    // Duplicate emails and people without email: reported, nothing driven by them.
    let mut dup = ldif(&[P("root", true), P("dup", true)], &[]);
    dup.push_str("dn: uid=dup2,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: dup2\ncn: d\nsn: d\nmail: DUP@example.com\nentryUUID: anchor-dup2\n\n");
    dup.push_str(
        "dn: uid=nomail,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: nomail\ncn: n\nsn: n\nentryUUID: anchor-nomail\n\n",
    );
    f.write_ldif(&dup);
    let out = f.run(&["plan", "--out", "plan.json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let p = plan_json(&f, "plan.json");
    let skipped = p["skipped"].as_array().unwrap();
    assert_eq!(
        skipped
            .iter()
            .filter(|s| s["why"].as_str().unwrap().contains("directory entries"))
            .count(),
        2
    );
    assert!(skipped.iter().any(|s| s["entry"].as_str().unwrap().contains("nomail")));

    // A target answering malformed JSON: an error naming W&B, nothing applied.
    f.sb.set_faults(0.0, 0.0, 1.0);
    let out = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("W&B"), "{}", text(&out));
    f.sb.set_faults(0.0, 0.0, 0.0);
    assert_eq!(f.state().await["users"], before["users"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capped_user_list_is_an_error_not_a_smaller_org() {
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("a@example.com", "member", &[]),
                ("b@example.com", "member", &[]),
            ],
            &[],
        ),
        ldif: ldif(&[P("root", true)], &[]),
        opts: SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Saas,
            page_cap: Some(2),
            honour_paging: false,
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let out = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(f.users().await.len(), 3, "nobody deprovisioned on a partial list");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_api_key_is_a_clear_error() {
    let f = Fixture::start(Setup::default()).await;
    std::fs::write(f.path("key"), "wrong-key\n").unwrap();
    let out = f.run(&["plan"]).await;
    assert_eq!(code(&out), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("api_key"), "{err}");
    assert!(!err.contains("wrong-key"), "the key never appears in errors");
}

#[tokio::test(flavor = "multi_thread")]
async fn example_config_loads_unchanged() {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
            .args(["check-config", "-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_piped_into_a_closed_reader_ends_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let f = root_and_alice().await;
    let mut cmd = f.command(&["plan"]);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Like `idsync plan | head -0`: the reader is gone before the report is written.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ended by SIGPIPE, as Unix tools do: {:?} {stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_username_never_links_to_another_person() {
    // jane's W&B userName is `jsmith`, which is also john's directory uid: the 409 on
    // john's create is about jane's account, and nothing of john's may land on her.
    let mut directory = ldif(
        &[P("root", true), P("jane.smith@example.com", true)],
        &[
            ("admins", &["root", "jsmith"]),
            ("ml", &["root", "jane.smith", "jsmith"]),
            ("ml-leads", &["root", "jsmith"]),
        ],
    );
    directory.push_str(
        "dn: uid=jsmith,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: jsmith\ncn: John Smith\n\
         sn: Smith\nmail: john.smith@example.com\nentryUUID: anchor-jsmith\n\n",
    );
    let f = Fixture::start(Setup {
        org: serde_json::json!({
            "users": [
                {"email": "root@example.com", "username": "root", "org_role": "admin", "teams": {"ml": "admin"}},
                {"email": "jane.smith@example.com", "username": "jsmith", "org_role": "member", "teams": {"ml": "member"}}
            ],
            "teams": [{"name": "ml"}]
        }),
        ldif: directory,
        tables: r#"
[[policy.org_roles]]
group = "cn=admins,ou=groups,dc=example,dc=com"
role = "admin"
[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"
[[policy.teams]]
team = "ml"
group = "cn=ml-leads,ou=groups,dc=example,dc=com"
role = "admin"
"#,
        ..Setup::default()
    })
    .await;
    let before = f.users().await;
    let jane_before = before["jane.smith@example.com"].clone();

    let apply = f.run(&["apply", "--yes"]).await;
    let t = text(&apply);
    assert_eq!(code(&apply), 0, "{t}");
    let users = f.users().await;
    let jane = &users["jane.smith@example.com"];
    assert_eq!(jane, &jane_before, "jane's account is untouched:\n{t}");
    assert_eq!(jane["org_role"], "member");
    assert_eq!(jane["teams"], serde_json::json!({"ml": "member"}));

    let john = &users["john.smith@example.com"];
    assert_ne!(john["id"], jane["id"], "john has his own W&B user");
    assert_eq!(john["username"], "john.smith@example.com", "the next userName candidate");
    assert_eq!(john["org_role"], "admin");
    assert_eq!(john["teams"], serde_json::json!({"ml": "admin"}));
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert!(
        stderr.contains("W&B userName jsmith is held by another account") && stderr.contains("got userName john.smith@example.com instead"),
        "the run says which userName was wanted and which was used:\n{t}"
    );
    let st = f.state().await;
    assert_eq!(st["user_creates"]["john.smith@example.com"], 1, "one create, no duplicate");
    let again = f.run(&["plan"]).await;
    assert_eq!(code(&again), 0, "converged:\n{}", text(&again));
}
