//! Who counts as an admin, end to end: the real binary against the sandbox. Service
//! accounts listed by `/Users` (issue 11 hole 8), in both shapes W&B might use (marked as a
//! service account, or without any email), are never counted, changed or removed; the live
//! re-check before each admin-reducing action counts like the plan does (hole 10).

mod common;

use common::*;
use idsync::plan::Deployment;
use idsync::sandbox::{SandboxOptions, ServiceAccountListing};
use serde_json::{json, Value};

/// root is the only human org admin (and ml's team admin), and has left the directory;
/// bob stays, alice is new. The org service account sa-deploy is an org admin, and both
/// service accounts (in a managed domain, in the marked shape) are in team ml.
async fn fixture(shape: ServiceAccountListing) -> Fixture {
    let mut seed = org(
        &[
            ("root@example.com", "admin", &[("ml", "admin")]),
            ("bob@example.com", "member", &[("ml", "member")]),
        ],
        &[],
    );
    seed["teams"] = json!([{"name": "ml", "service_accounts": ["sa-deploy", "sa-ci"]}]);
    seed["service_accounts"] = json!([
        {"name": "sa-deploy", "email": "sa-deploy@example.com", "org_role": "admin"},
        {"name": "sa-ci", "email": "sa-ci@example.com"}
    ]);
    Fixture::start(Setup {
        org: seed,
        ldif: ldif(&[P("bob", true), P("alice", true)], &[("ml", &["bob", "alice"])]),
        // Two humans hold seats: alice is the third. Counting the service accounts would
        // leave her no seat.
        guards: "max_seats = 3",
        tables: r#"
[[policy.teams]]
team = "ml"
group = "cn=ml,ou=groups,dc=example,dc=com"
role = "member"
"#,
        opts: SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Saas,
            service_accounts: shape,
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await
}

fn mentions_a_service_account(v: &Value) -> bool {
    v["user"].as_str().is_some_and(|u| u.starts_with("sa-"))
}

#[tokio::test(flavor = "multi_thread")]
async fn service_accounts_listed_in_users_are_never_counted_changed_or_removed() {
    for shape in [ServiceAccountListing::Marked, ServiceAccountListing::NoEmail] {
        let f = fixture(shape).await;
        let plan = f.run(&["plan", "--out", "plan.json"]).await;
        assert_eq!(code(&plan), 3, "{shape:?}: {}", text(&plan));
        let p = plan_json(&f, "plan.json");
        assert_eq!(p["target"]["users"], 2, "{shape:?}: service accounts are not users");
        let actions = p["actions"].as_array().unwrap();
        assert!(!actions.iter().any(mentions_a_service_account), "{shape:?}: {actions:#?}");
        assert!(
            !p["tombstones"].as_array().unwrap().iter().any(mentions_a_service_account),
            "{shape:?}: {:#?}",
            p["tombstones"]
        );
        let of = |kind: &str, user: &str| {
            actions
                .iter()
                .find(|a| a["kind"] == kind && a["user"] == user)
                .unwrap_or_else(|| panic!("{shape:?}: no {kind} for {user} in {actions:#?}"))
        };
        // The admin service account is no admin for the floor: root is the last one.
        let root = of("deprovision_user", "root@example.com");
        assert_eq!(
            (&root["status"], &root["guard"]),
            (&json!("held"), &json!("last-admin")),
            "{shape:?}"
        );
        assert!(
            root["held_reason"].as_str().unwrap().contains("would leave 0 active org admin(s)"),
            "{shape:?}: {root}"
        );
        // Nor do service accounts hold seats.
        assert_eq!(of("create_user", "alice@example.com")["status"], "ready", "{shape:?}");

        let apply = f.run(&["apply", "--yes"]).await;
        assert_eq!(code(&apply), 3, "{shape:?}: {}", text(&apply));
        let st = f.sb.state().await;
        assert_eq!(st.service_account_writes, 0, "{shape:?}: idsync wrote to a service account");
        let ml = st.team("ml").unwrap();
        assert_eq!(ml.service_accounts, ["sa-deploy", "sa-ci"], "{shape:?}");
        assert_eq!(st.user("root@example.com").unwrap().org_role, "admin", "{shape:?}");
        assert!(st.user("alice@example.com").is_some(), "{shape:?}: alice was created");
        assert!(
            !f.audit().iter().any(mentions_a_service_account),
            "{shape:?}: the audit log names a service account"
        );
        f.sb.shutdown().await;
    }
}

/// root, the only human org admin, has left the directory; alice, new, is in the admin
/// group. The plan counts alice's promotion first, so root's deprovision is ready; but W&B
/// has no seat for alice, her creation fails, and the live re-check before the deprovision
/// must refuse it. The org service account sa-deploy is an admin too, listed by /Users in
/// `shape`: the re-check must not count it either.
async fn failed_promotion_fixture(shape: ServiceAccountListing) -> Fixture {
    let mut seed = org(&[("root@example.com", "admin", &[])], &[]);
    seed["service_accounts"] = json!([{"name": "sa-deploy", "email": "sa-deploy@example.com", "org_role": "admin"}]);
    Fixture::start(Setup {
        org: seed,
        ldif: ldif(&[P("alice", true)], &[("wandb-admins", &["alice"])]),
        tables: r#"
[[policy.org_roles]]
group = "cn=wandb-admins,ou=groups,dc=example,dc=com"
role = "admin"
"#,
        opts: SandboxOptions {
            api_key: KEY.into(),
            deployment: Deployment::Saas,
            seat_limit: Some(1),
            service_accounts: shape,
            ..SandboxOptions::default()
        },
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_admin_re_check_refuses_what_a_failed_promotion_no_longer_covers() {
    for shape in [
        ServiceAccountListing::Off,
        ServiceAccountListing::Marked,
        ServiceAccountListing::NoEmail,
    ] {
        let f = failed_promotion_fixture(shape).await;
        let plan = f.run(&["plan", "--out", "plan.json"]).await;
        assert_eq!(code(&plan), 2, "{shape:?}: {}", text(&plan));
        let p = plan_json(&f, "plan.json");
        let root = p["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "deprovision_user" && a["user"] == "root@example.com")
            .unwrap_or_else(|| panic!("{shape:?}: no deprovision of root: {p:#}"));
        assert_eq!(root["status"], "ready", "{shape:?}: alice's promotion counts first");

        let apply = f.run(&["apply", "--yes"]).await;
        assert_eq!(code(&apply), 1, "{shape:?}: alice's creation fails: {}", text(&apply));
        let st = f.sb.state().await;
        let root_now = st.user("root@example.com");
        assert!(
            root_now.is_some_and(|u| u.active && u.org_role == "admin"),
            "{shape:?}: the last human admin was deprovisioned: {}",
            text(&apply)
        );
        let skip = f
            .audit()
            .into_iter()
            .find(|r| r["event"] == "skip" && r["user"] == "root@example.com")
            .unwrap_or_else(|| panic!("{shape:?}: no skip of root's deprovision in the audit log"));
        assert!(
            skip["detail"]
                .as_str()
                .unwrap()
                .contains("refused by the live admin re-check: W&B has 1 active org admin(s) now"),
            "{shape:?}: {skip}"
        );
        assert_eq!(st.service_account_writes, 0, "{shape:?}");
        f.sb.shutdown().await;
    }
}
