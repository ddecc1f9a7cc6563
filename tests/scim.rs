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

const TABLES: &str = IDP_POLICY_TABLES;

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

/// A scripted SCIM server: `/Users` claims `total(startIndex)` results, `/Groups` lists
/// groups as given, `/Groups/{id}` answers from `detail`. Every request is logged.
struct Scripted {
    users: Vec<serde_json::Value>,
    total: fn(usize) -> u64,
    groups: Vec<serde_json::Value>,
    detail: std::collections::HashMap<String, serde_json::Value>,
    log: std::sync::Mutex<Vec<String>>,
}

struct ScriptedServer {
    url: String,
    state: std::sync::Arc<Scripted>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn list_page(all: &[serde_json::Value], total: u64, q: &std::collections::HashMap<String, String>) -> serde_json::Value {
    let start: usize = q.get("startIndex").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let count: usize = q.get("count").and_then(|s| s.parse().ok()).unwrap_or(100);
    let page: Vec<_> = all.iter().skip(start - 1).take(count).cloned().collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": total, "startIndex": start,
        "itemsPerPage": page.len(), "Resources": page})
}

impl ScriptedServer {
    async fn start(s: Scripted) -> ScriptedServer {
        use axum::extract::{Path, Query, State};
        use axum::http::{StatusCode, Uri};
        use axum::response::{IntoResponse, Response};
        use axum::routing::get;
        use std::collections::HashMap;
        use std::sync::Arc;
        type St = State<Arc<Scripted>>;
        async fn users(State(s): St, uri: Uri, Query(q): Query<HashMap<String, String>>) -> Response {
            s.log.lock().unwrap().push(uri.to_string());
            let start: usize = q.get("startIndex").and_then(|s| s.parse().ok()).unwrap_or(1);
            axum::Json(list_page(&s.users, (s.total)(start), &q)).into_response()
        }
        async fn groups(State(s): St, uri: Uri, Query(q): Query<HashMap<String, String>>) -> Response {
            s.log.lock().unwrap().push(uri.to_string());
            axum::Json(list_page(&s.groups, s.groups.len() as u64, &q)).into_response()
        }
        async fn group(State(s): St, uri: Uri, Path(id): Path<String>) -> Response {
            s.log.lock().unwrap().push(uri.to_string());
            match s.detail.get(&id) {
                Some(v) => axum::Json(v.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        let state = Arc::new(s);
        let app = axum::Router::new()
            .route("/Users", get(users))
            .route("/Groups", get(groups))
            .route("/Groups/{id}", get(group))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedServer { url, state, task }
    }

    fn source(&self, page_size: u32) -> ScimSource {
        ScimSource::new(&self.url, Secret::new(TOKEN), page_size, Duration::from_secs(5)).unwrap()
    }
}

fn scim_user(id: &str, name: &str) -> serde_json::Value {
    json!({"id": id, "userName": name, "active": true, "emails": [{"value": format!("{name}@example.com"), "primary": true}]})
}

/// Groups as AWS IAM Identity Center lists them: no `members` key. `detail_members`
/// says whether `GET /Groups/{id}` then brings them.
fn groups_without_members(detail_members: bool) -> Scripted {
    let mut detail = std::collections::HashMap::new();
    let with = |id: &str, name: &str, m: &[&str]| {
        let mut g = json!({"id": id, "displayName": name});
        if detail_members {
            g["members"] = m.iter().map(|u| json!({"value": u, "type": "User"})).collect();
        }
        g
    };
    detail.insert("g-ml".to_string(), with("g-ml", "ml", &["u1"]));
    detail.insert("g-adm".to_string(), with("g-adm", "wandb-admins", &["u2"]));
    Scripted {
        users: vec![scim_user("u1", "alice"), scim_user("u2", "root")],
        total: |_| 2,
        groups: vec![
            json!({"id": "g-ml", "displayName": "ml"}),
            json!({"id": "g-adm", "displayName": "wandb-admins"}),
        ],
        detail,
        log: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_groups_listed_without_members_are_read_one_by_one() {
    let s = ScriptedServer::start(groups_without_members(true)).await;
    let dir = s.source(10).read().await.unwrap();
    let members = |n: &str| dir.groups.iter().find(|g| g.name == n).unwrap().members.clone();
    assert_eq!(members("ml"), vec!["u1"]);
    assert_eq!(members("wandb-admins"), vec!["u2"]);
    let log = s.state.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l == "/Groups/g-ml?attributes=members"), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_group_whose_members_never_come_is_empty_when_other_groups_state_theirs() {
    // Like scim2-server: an empty group has no `members`, even on its own.
    let mut world = groups_without_members(false);
    world.groups[1] = json!({"id": "g-adm", "displayName": "wandb-admins", "members": [{"value": "u2", "type": "User"}]});
    let s = ScriptedServer::start(world).await;
    let dir = s.source(10).read().await.unwrap();
    let members = |n: &str| dir.groups.iter().find(|g| g.name == n).unwrap().members.clone();
    assert!(members("ml").is_empty());
    assert_eq!(members("wandb-admins"), vec!["u2"]);
    let log = s.state.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l == "/Groups/g-ml?attributes=members"),
        "asked before deciding: {log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_group_whose_members_never_come_fails_the_run_and_changes_nothing() {
    let s = ScriptedServer::start(groups_without_members(false)).await;
    let f = Fixture::start(Setup {
        org: org(
            &[
                ("root@example.com", "admin", &[]),
                ("alice@example.com", "member", &[("ml", "member")]),
            ],
            &["ml"],
        ),
        tables: TABLES,
        ..Setup::default()
    })
    .await;
    f.set_source(&format!(
        "[source]\nkind = \"scim\"\nurl = \"{}\"\ntoken_file = \"scim-token\"\npage_size = 10\ntimeout = \"5s\"\n",
        s.url
    ));
    f.write_secret("scim-token", TOKEN);
    let before = f.state().await;
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    let t = text(&plan);
    assert!(
        t.contains("GET /Groups/") && t.contains("no group comes with a members attribute"),
        "{t}"
    );
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    let after = f.state().await;
    assert_eq!(after["users"], before["users"], "no admin demoted, no team emptied");
    assert_eq!(f.users().await["root@example.com"]["org_role"], "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_member_without_a_value_is_malformed_not_skipped() {
    let mut world = groups_without_members(true);
    world.groups[0] = json!({"id": "g-ml", "displayName": "ml", "members": [{"value": "u1"}, {"display": "Bob", "type": "User"}]});
    let s = ScriptedServer::start(world).await;
    let e = s.source(10).read().await.unwrap_err().to_string();
    assert!(e.contains("ml (g-ml)") && e.contains("a member has no value"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_total_results_changing_between_pages_is_an_error() {
    let mut world = groups_without_members(true);
    world.users = (1..=4).map(|i| scim_user(&format!("u{i}"), &format!("user{i}"))).collect();
    world.total = |start| if start == 1 { 4 } else { 5 };
    let s = ScriptedServer::start(world).await;
    let e = s.source(2).read().await.unwrap_err().to_string();
    assert!(e.contains("totalResults changed from 4 to 5"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_more_distinct_resources_than_total_results_is_an_error() {
    let mut world = groups_without_members(true);
    world.users = (1..=3).map(|i| scim_user(&format!("u{i}"), &format!("user{i}"))).collect();
    world.total = |_| 2;
    let s = ScriptedServer::start(world).await;
    let e = s.source(3).read().await.unwrap_err().to_string();
    assert!(e.contains("received 3 distinct resources but totalResults is 2"), "{e}");
}
