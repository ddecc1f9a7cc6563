//! The SCIM source against the real third-party SCIM server (`scim2-server` from PyPI,
//! installed by scripts/test.sh), planning and applying into the W&B sandbox; plus the
//! completeness check against a server that under-delivers.

mod common;

use std::time::Duration;

use common::scim_server::ScimServer;
use common::*;
use idsync::secret::Secret;
use idsync::source::scim::ScimSource;
use serde_json::json;

const TOKEN: &str = "scim-bearer-4d2e81";

const TABLES: &str = r#"
[[policy.org_roles]]
group = "wandb-admins"
role = "admin"

[[policy.teams]]
team = "ml"
group = "ml"
role = "member"
"#;

/// Seeds people and groups; returns the id of `gone` (deleted after being put in `ml`).
async fn seed(s: &ScimServer) {
    let alice = s.user("alice", Some("alice@example.com"), true).await;
    let bob = s.user("bob", Some("bob@example.com"), true).await;
    let carol = s.user("carol", Some("carol@example.com"), true).await;
    let dave = s.user("dave", Some("dave@example.com"), false).await;
    let root = s.user("root", Some("root@example.com"), true).await;
    let gone = s.user("gone", Some("gone@example.com"), true).await;
    s.user("nomail", None, true).await;
    for i in 0..5 {
        s.user(&format!("extra{i}"), Some(&format!("extra{i}@example.com")), true).await;
    }
    let inner = s.group("ml-inner", &[(&carol, "User")]).await;
    s.group(
        "ml",
        &[
            (&alice, "User"),
            (&bob, "User"),
            (&dave, "User"),
            (&gone, "User"),
            (&inner, "Group"),
        ],
    )
    .await;
    s.group("wandb-admins", &[(&root, "User")]).await;
    // scim2-server keeps a deleted user in its groups' members.
    s.delete_user(&gone).await;
}

fn block(s: &ScimServer, page_size: u32) -> String {
    format!(
        "[source]\nkind = \"scim\"\nurl = \"{}\"\ntoken_file = \"scim-token\"\npage_size = {page_size}\ntimeout = \"10s\"\n",
        s.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_reads_every_page_in_a_stable_order() {
    let s = ScimServer::start(TOKEN).await;
    seed(&s).await;
    let src = ScimSource::new(&s.url(), Secret::new(TOKEN), 3, Duration::from_secs(10)).unwrap();
    let dir = src.read().await.unwrap();
    assert_eq!(dir.kind, "scim");
    assert_eq!(dir.people.len(), 11, "every user across 4 pages of 3");
    let by_name = |n: &str| dir.people.iter().find(|p| p.username == n).unwrap();
    assert_eq!(by_name("alice").email.as_deref(), Some("alice@example.com"), "primary email wins");
    assert!(!by_name("dave").enabled, "active: false is disabled");
    assert_eq!(by_name("nomail").email, None);
    let ml = dir.groups.iter().find(|g| g.name == "ml").unwrap();
    let mut want: Vec<String> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| by_name(n).anchor.clone())
        .collect();
    want.sort();
    assert_eq!(ml.members, want, "nested ml-inner flattened, the deleted user ignored");
    let stats = src.http_stats();
    // ServiceProviderConfig + 4 user pages + 1 group page.
    assert_eq!(stats.requests_by_code.get("200"), Some(&6), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_plan_and_apply_into_the_sandbox() {
    let s = ScimServer::start(TOKEN).await;
    seed(&s).await;
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("dave@example.com", "member", &[("ml", "member")]),
                ("gone@example.com", "member", &[("ml", "member")]),
            ],
            &["ml"],
        ),
        tables: TABLES,
        ..Setup::default()
    })
    .await;
    f.set_source(&block(&s, 2));
    f.write_secret("scim-token", TOKEN);
    let plan = f
        .run_with_env(&["plan", "--format", "json", "--out", "plan.json"], &[("RUST_LOG", "debug")])
        .await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    assert!(text(&plan).contains("source request"), "debug logging is on");
    assert!(!text(&plan).contains(TOKEN), "{}", text(&plan));
    let p = plan_json(&f, "plan.json");
    assert_eq!(p["source"], json!({"kind": "scim", "users": 11, "groups": 3}));
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let users = f.users().await;
    for n in ["alice", "bob", "carol"] {
        assert_eq!(users[&format!("{n}@example.com")]["teams"]["ml"], "member", "{n}: {users:#?}");
    }
    assert!(users.contains_key("extra3@example.com"), "auto_add by domain");
    assert!(!users.contains_key("dave@example.com"), "disabled in SCIM: deprovisioned");
    assert!(
        !users.contains_key("gone@example.com"),
        "deleted from SCIM: deprovisioned (grace 0s)"
    );
    assert_eq!(users["root@example.com"]["org_role"], "admin");
    let again = f.run(&["plan"]).await;
    assert_eq!(code(&again), 0, "converged:\n{}", text(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_bad_token_is_a_clear_error_without_the_token() {
    let s = ScimServer::start(TOKEN).await;
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ..Setup::default()
    })
    .await;
    f.set_source(&block(&s, 100));
    f.write_secret("scim-token", "wrong-scim-token-31");
    let out = f.run_with_env(&["plan"], &[("RUST_LOG", "debug")]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("SCIM server at http://127.0.0.1") && t.contains("401") && t.contains("source.token_file"),
        "{t}"
    );
    assert!(!t.contains("wrong-scim-token-31"), "{t}");
}

/// A SCIM server whose pages come up short of `totalResults` must fail the read.
#[tokio::test(flavor = "multi_thread")]
async fn scim_short_read_is_an_error_not_a_smaller_directory() {
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap;
    async fn users(Query(q): Query<HashMap<String, String>>) -> axum::Json<serde_json::Value> {
        let start: usize = q.get("startIndex").and_then(|s| s.parse().ok()).unwrap_or(1);
        // Claims 5 users, serves 3, then empty pages.
        let all: Vec<_> = (1..=3)
            .map(|i| json!({"id": format!("u{i}"), "userName": format!("u{i}")}))
            .collect();
        let page: Vec<_> = all.into_iter().skip(start - 1).take(2).collect();
        axum::Json(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 5, "startIndex": start, "itemsPerPage": page.len(), "Resources": page}),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    async fn groups() -> axum::Json<serde_json::Value> {
        axum::Json(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}))
    }
    let app = axum::Router::new().route("/Users", get(users)).route("/Groups", get(groups));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let src = ScimSource::new(&format!("http://{addr}"), Secret::new("t"), 2, Duration::from_secs(5)).unwrap();
    let e = src.read().await.unwrap_err().to_string();
    assert!(e.contains("short read") && e.contains("3 of totalResults = 5"), "{e}");
    task.abort();
}
