//! Client tests against tiny in-process fake servers that answer with W&B's shapes.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::config::TargetConfig;
use crate::model::DeprovisionMode;
use crate::model::{Email, OrgRole, TeamRole};
use crate::secret::Secret;

const KEY: &str = "sekrit-api-key-0123456789";

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Raw (still percent-encoded) path.
    path: String,
    query: String,
    auth: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    if_match: Option<String>,
    body: String,
}

impl Seen {
    fn param(&self, key: &str) -> Option<String> {
        let u = reqwest::Url::parse(&format!("http://x/?{}", self.query)).ok()?;
        u.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

struct Out {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Option<Duration>,
}

fn out(status: u16, body: Value) -> Out {
    Out {
        status,
        headers: vec![],
        body: if body.is_null() { String::new() } else { body.to_string() },
        delay: None,
    }
}

fn raw(status: u16, body: &str) -> Out {
    Out {
        status,
        headers: vec![],
        body: body.to_string(),
        delay: None,
    }
}

fn scim_error(status: u16, detail: &str) -> Out {
    out(
        status,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "detail": detail, "status": status.to_string()}),
    )
}

fn list(resources: Vec<Value>, total: usize) -> Out {
    out(
        200,
        json!({"Resources": resources, "totalResults": total, "itemsPerPage": 9999, "startIndex": 1,
               "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]}),
    )
}

type Handler = dyn Fn(&Seen, usize) -> Out + Send + Sync;

struct FakeState {
    log: Mutex<Vec<Seen>>,
    handler: Box<Handler>,
}

struct Fake {
    url: String,
    state: Arc<FakeState>,
}

impl Fake {
    fn requests(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }
}

async fn serve(State(st): State<Arc<FakeState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        auth: h("authorization"),
        content_type: h("content-type"),
        accept: h("accept"),
        if_match: h("if-match"),
        body: String::new(),
    };
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    seen.body = String::from_utf8_lossy(&bytes).into_owned();
    let n = {
        let mut log = st.log.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let o = (st.handler)(&seen, n);
    if let Some(d) = o.delay {
        tokio::time::sleep(d).await;
    }
    let mut b = Response::builder().status(o.status);
    for (k, v) in &o.headers {
        b = b.header(*k, v);
    }
    b.header("content-type", "application/scim+json").body(Body::from(o.body)).unwrap()
}

/// Starts a fake W&B on 127.0.0.1:0; `handler` gets each request and its 0-based index.
async fn fake(handler: impl Fn(&Seen, usize) -> Out + Send + Sync + 'static) -> Fake {
    let state = Arc::new(FakeState {
        log: Mutex::new(Vec::new()),
        handler: Box::new(handler),
    });
    let app = Router::new().fallback(serve).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake {
        url: format!("http://{addr}"),
        state,
    }
}

fn cfg(url: &str, extra: &str) -> TargetConfig {
    let mut text = format!("url = \"{url}\"\n{extra}\n");
    if !extra.contains("max_retries") {
        text.push_str("max_retries = 3\n");
    }
    if !extra.contains("timeout") {
        text.push_str("timeout = \"5s\"\n");
    }
    toml::from_str(&text).unwrap()
}

fn client_with(f: &Fake, extra: &str) -> WandbClient {
    WandbClient::new(&cfg(&f.url, extra), Secret::new(KEY))
        .unwrap()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn client(f: &Fake) -> WandbClient {
    client_with(f, "")
}

/// Every test is bounded: a client bug must fail the test, not hang it.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("test timed out")
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn user(id: &str, mail: &str) -> Value {
    json!({"id": id, "userName": id, "emails": {"Value": mail, "Display": "", "Type": "work", "Primary": true},
           "active": true, "organizationRole": "member", "teamRoles": []})
}

// ---- reading ---------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_reads_both_email_shapes_capitalised_members_and_null_members() {
    bounded(async {
        let f = fake(|r, _| match r.path.as_str() {
            "/scim/Users" => list(
                vec![
                    json!({"id": "u1", "userName": "alice", "emails": {"Value": "Alice@Example.com", "Display": "", "Type": "work", "Primary": true},
                           "organizationRole": "admin", "teamRoles": [{"teamName": "ml", "roleName": "admin"}],
                           "lastActiveAt": null, "daysActive": 3, "unknown": {"x": 1}}),
                    json!({"id": "u2", "userName": "bob", "emails": [{"value": "bob@old.com"}, {"value": "bob@example.com", "primary": true}],
                           "active": false}),
                ],
                2,
            ),
            "/scim/Groups" => list(
                vec![
                    json!({"id": "g1", "displayName": "ml", "members": [{"Value": "u1", "Ref": "r", "Type": "User", "Display": "alice"}, {"Value": "sa-1"}]}),
                    json!({"id": "g2", "displayName": "empty", "members": null}),
                    json!({"id": "g3", "displayName": "cv", "members": [{"value": "u2"}]}),
                ],
                3,
            ),
            _ => raw(404, ""),
        })
        .await;
        let snap = client(&f).snapshot().await.unwrap();
        assert_eq!(snap.users.len(), 2);
        let alice = &snap.users[0];
        assert_eq!(alice.email, "Alice@Example.com");
        assert_eq!(alice.org_role, OrgRole::Admin);
        assert!(alice.active);
        assert_eq!(alice.teams["ml"], TeamRole::admin());
        assert_eq!(alice.days_active, Some(3));
        let bob = &snap.users[1];
        assert_eq!(bob.email, "bob@example.com");
        assert!(!bob.active);
        assert_eq!(bob.org_role, OrgRole::Member);
        // Membership from /Groups fills in a team missing from teamRoles, as a guess:
        // the role there is not stated.
        assert_eq!(bob.teams["cv"], TeamRole::member());
        assert!(bob.unstated_team_roles.contains("cv"));
        assert!(alice.unstated_team_roles.is_empty());
        assert_eq!(snap.team("ml").unwrap().members, vec!["u1", "sa-1"]);
        assert!(snap.team("empty").unwrap().members.is_empty());
        for r in f.requests() {
            assert_eq!(r.param("startIndex").as_deref(), Some("1"));
            assert_eq!(r.param("count").as_deref(), Some("9999"));
        }
    })
    .await;
}

#[tokio::test]
async fn a_short_list_is_an_error_never_a_smaller_org() {
    bounded(async {
        // Honours startIndex, but the page after the first is empty.
        let f = fake(|r, _| {
            if r.param("startIndex").as_deref() == Some("1") {
                list(vec![user("u1", "a@x.com"), user("u2", "b@x.com")], 3)
            } else {
                list(vec![], 3)
            }
        })
        .await;
        let e = client(&f).list_users().await.unwrap_err();
        assert_eq!(
            e,
            TargetError::IncompleteList {
                what: "users".into(),
                got: 2,
                total: 3
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("2 distinct users") && msg.contains("= 3") && msg.contains("partial"),
            "{msg}"
        );
        assert_eq!(f.count(), 2);

        // More distinct resources than totalResults is just as wrong.
        let f = fake(|_, _| list(vec![user("u1", "a@x.com"), user("u2", "b@x.com")], 1)).await;
        let e = client(&f).list_users().await.unwrap_err();
        assert!(matches!(e, TargetError::IncompleteList { got: 2, total: 1, .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn paging_honoured_reads_every_page() {
    bounded(async {
        let all: Vec<Value> = (1..=5).map(|i| user(&format!("u{i}"), &format!("p{i}@x.com"))).collect();
        let f = fake(move |r, _| {
            let start: usize = r.param("startIndex").unwrap().parse().unwrap();
            let page: Vec<Value> = all.iter().skip(start - 1).take(2).cloned().collect();
            list(page, 5)
        })
        .await;
        let users = client(&f).list_users().await.unwrap();
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["u1", "u2", "u3", "u4", "u5"]);
        let starts: Vec<String> = f.requests().iter().map(|r| r.param("startIndex").unwrap()).collect();
        assert_eq!(starts, ["1", "3", "5"]);
    })
    .await;
}

#[tokio::test]
async fn a_short_page_in_a_concurrent_batch_is_refetched_from_where_it_ended() {
    bounded(async {
        // Pages of 2, except that the page at startIndex 3 brings only one user: the page
        // fetched at once from 5 would skip user 4, so it must not be taken.
        let all: Vec<Value> = (1..=6).map(|i| user(&format!("u{i}"), &format!("p{i}@x.com"))).collect();
        let f = fake(move |req, _| {
            let start: usize = req.param("startIndex").and_then(|s| s.parse().ok()).unwrap_or(1);
            let take = if start == 3 { 1 } else { 2 };
            list(all.iter().skip(start - 1).take(take).cloned().collect(), 6)
        })
        .await;
        let users = client(&f).list_users().await.unwrap();
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["u1", "u2", "u3", "u4", "u5", "u6"]);
        let mut starts: Vec<String> = f.requests().iter().map(|r| r.param("startIndex").unwrap()).collect();
        starts.sort();
        assert_eq!(starts, ["1", "3", "4", "5", "6"]);
    })
    .await;
}

#[tokio::test]
async fn a_list_claiming_more_than_the_item_cap_is_refused_after_one_request() {
    bounded(async {
        let f = fake(|_, _| list(vec![user("u1", "a@x.com")], 4_000_000_000)).await;
        let e = client(&f).list_users().await.unwrap_err();
        assert!(e.to_string().contains("more than idsync reads"), "{e}");
        assert_eq!(f.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn paging_ignored_with_everything_in_one_page_stops_after_one_request() {
    bounded(async {
        let all: Vec<Value> = (1..=5).map(|i| user(&format!("u{i}"), &format!("p{i}@x.com"))).collect();
        let f = fake(move |_, _| list(all.clone(), 5)).await;
        assert_eq!(client(&f).list_users().await.unwrap().len(), 5);
        assert_eq!(f.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_server_repeating_the_same_page_forever_fails_instead_of_looping() {
    bounded(async {
        let f = fake(|_, _| list(vec![user("u1", "a@x.com"), user("u2", "b@x.com")], 5)).await;
        let e = client(&f).list_users().await.unwrap_err();
        assert!(matches!(e, TargetError::IncompleteList { got: 2, total: 5, .. }), "{e:?}");
        // The first page, then one batch of later pages fetched at once.
        assert!(f.count() <= 1 + 4, "{} requests", f.count());
    })
    .await;
}

#[tokio::test]
async fn total_results_changing_between_pages_is_an_error() {
    bounded(async {
        let f = fake(|_, n| {
            if n == 0 {
                list(vec![user("u1", "a@x.com")], 2)
            } else {
                list(vec![user("u2", "b@x.com")], 3)
            }
        })
        .await;
        let e = client(&f).list_users().await.unwrap_err();
        assert!(matches!(e, TargetError::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("changed"), "{e}");
    })
    .await;
}

#[tokio::test]
async fn malformed_json_and_unusable_resources_are_malformed_errors() {
    bounded(async {
        let f = fake(|r, _| match r.path.as_str() {
            "/scim/Users" => raw(200, "{\"Resources\": [oops"),
            "/scim/Groups" => out(200, json!([1, 2])),
            _ => raw(200, "<html>hello</html>"),
        })
        .await;
        let c = client(&f);
        let e = c.list_users().await.unwrap_err();
        assert!(matches!(e, TargetError::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("GET /Users (list users)"), "{e}");
        let e = c.list_teams().await.unwrap_err();
        assert!(matches!(e, TargetError::Malformed { .. }), "{e:?}");
        let e = c.get_user("u1").await.unwrap_err();
        assert!(matches!(e, TargetError::Malformed { .. }), "{e:?}");
        // Malformed answers are not retried.
        assert_eq!(f.count(), 3);

        let f = fake(|_, _| list(vec![json!({"userName": "ghost", "emails": {"Value": "g@x.com"}})], 1)).await;
        let e = client(&f).list_users().await.unwrap_err();
        assert!(matches!(e, TargetError::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("ghost"), "{e}");
    })
    .await;
}

#[tokio::test]
async fn get_user_maps_404_to_none_and_encodes_ids() {
    bounded(async {
        let f = fake(|r, _| {
            if r.path == "/scim/Users/VXN%2Flcj+x=" {
                out(200, user("VXN/lcj+x=", "a@x.com"))
            } else {
                scim_error(404, "not found")
            }
        })
        .await;
        let c = client(&f);
        assert_eq!(c.get_user("nope").await.unwrap(), None);
        let u = c.get_user("VXN/lcj+x=").await.unwrap().unwrap();
        assert_eq!(u.id, "VXN/lcj+x=");
        assert_eq!(f.count(), 2);
    })
    .await;
}

#[tokio::test]
async fn find_user_by_email_filters_and_rechecks_locally() {
    bounded(async {
        // This server ignores the filter and lists everyone.
        let f = fake(|_, _| list(vec![user("u1", "a@x.com"), user("u2", "B@X.com")], 2)).await;
        let c = client(&f);
        let u = c.find_user_by_email(&email("b@x.com")).await.unwrap().unwrap();
        assert_eq!(u.id, "u2");
        assert_eq!(c.find_user_by_email(&email("z@x.com")).await.unwrap(), None);
        assert_eq!(f.requests()[0].param("filter").as_deref(), Some(r#"emails.value eq "b@x.com""#));
    })
    .await;
}

// ---- retries ---------------------------------------------------------------------------

#[tokio::test]
async fn retry_after_on_429_is_honoured_then_the_request_succeeds() {
    bounded(async {
        let f = fake(|_, n| {
            if n == 0 {
                let mut o = scim_error(429, "slow down");
                o.headers.push(("retry-after", "1".into()));
                o
            } else {
                list(vec![], 0)
            }
        })
        .await;
        let c = client(&f);
        let t = Instant::now();
        assert!(c.list_users().await.unwrap().is_empty());
        let took = t.elapsed();
        // Backoff alone is at most 5 ms here: the wait came from Retry-After.
        assert!(took >= Duration::from_millis(950), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let s = c.http_stats();
        assert_eq!(s.retries, 1);
        assert_eq!(s.requests_by_code.get("429"), Some(&1));
        assert_eq!(s.requests_by_code.get("200"), Some(&1));
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    bounded(async {
        let f = fake(|_, n| {
            if n < 2 {
                scim_error(500, "boom")
            } else {
                out(200, user("u1", "a@x.com"))
            }
        })
        .await;
        let c = client(&f);
        assert_eq!(c.get_user("u1").await.unwrap().unwrap().id, "u1");
        assert_eq!(f.count(), 3);
        let s = c.http_stats();
        assert_eq!(s.retries, 2);
        assert_eq!(s.requests_by_code.get("500"), Some(&2));
    })
    .await;
}

#[tokio::test]
async fn retries_stop_at_max_retries() {
    bounded(async {
        // A read: nothing can have changed, so giving up is a plain error.
        let f = fake(|_, _| scim_error(503, "maintenance")).await;
        let e = client(&f).get_user("u1").await.unwrap_err();
        assert_eq!(f.count(), 4, "1 try + max_retries = 3");
        match &e {
            TargetError::RetriesExhausted { attempts, last, .. } => {
                assert_eq!(*attempts, 4);
                assert_eq!(last.status(), Some(503));
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_outcome_unknown());
        let msg = e.to_string();
        assert!(msg.contains("GET /Users/u1") && msg.contains("maintenance"), "{msg}");
        assert!(!e.is_retryable());
    })
    .await;
}

#[tokio::test]
async fn a_closed_write_guard_stops_every_attempt_retries_included_but_never_reads() {
    bounded(async {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Open for the first attempt only (HA: the lease is lost while the request hangs).
        let f = fake(|_, _| scim_error(503, "maintenance")).await;
        let checks = Arc::new(AtomicUsize::new(0));
        let seen = checks.clone();
        let c = client(&f).with_write_guard(Arc::new(move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(())
            } else {
                Err("the lease is gone".into())
            }
        }));
        let e = c.set_org_role("u1", &OrgRole::Admin).await.unwrap_err();
        assert_eq!(f.count(), 1, "the retry is not sent once the guard closes");
        assert!(e.is_outcome_unknown(), "the first attempt may have landed: {e:?}");
        assert!(e.to_string().contains("the lease is gone"), "{e}");

        // Closed from the start: nothing is sent, and it is a plain refusal.
        let f = fake(|_, _| out(200, json!({}))).await;
        let c = client(&f).with_write_guard(Arc::new(|| Err("standby".into())));
        let e = c.set_org_role("u1", &OrgRole::Admin).await.unwrap_err();
        assert_eq!(f.count(), 0);
        assert!(!e.is_outcome_unknown() && !e.may_have_landed(), "{e:?}");
        assert!(e.to_string().contains("not sent: standby"), "{e}");
        // Reads are not guarded.
        let f = fake(|_, _| list(vec![], 0)).await;
        let c = client(&f).with_write_guard(Arc::new(|| Err("standby".into())));
        assert!(c.find_user_by_email(&email("a@x.com")).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_write_that_gave_up_on_5xx_has_an_unknown_outcome() {
    bounded(async {
        let f = fake(|_, _| scim_error(503, "maintenance")).await;
        let e = client(&f).set_org_role("u1", &OrgRole::Admin).await.unwrap_err();
        assert_eq!(f.count(), 4, "still retried: 1 try + max_retries = 3");
        assert!(e.is_outcome_unknown(), "{e:?}");
        assert_eq!(e.status(), Some(503));
        assert!(!e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.contains("PATCH /Users/u1 (set org role admin)") && msg.contains("maintenance") && msg.contains("next run reads W&B"),
            "{msg}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_write_refused_or_throttled_throughout_is_a_definite_error() {
    bounded(async {
        let f = fake(|_, _| scim_error(429, "slow down")).await;
        let e = client(&f).add_to_team("g1", "u1").await.unwrap_err();
        assert_eq!(f.count(), 4);
        assert!(
            matches!(e, TargetError::RetriesExhausted { .. }) && !e.is_outcome_unknown(),
            "{e:?}"
        );
        for status in [400, 404, 422, 501] {
            let f = fake(move |_, _| scim_error(status, "no")).await;
            let e = client(&f).add_to_team("g1", "u1").await.unwrap_err();
            assert!(!e.is_outcome_unknown(), "{status}: {e:?}");
            assert_eq!(e.status(), Some(status));
        }
        // Nothing was sent: connecting failed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = WandbClient::new(&cfg(&format!("http://{addr}"), "max_retries = 1"), Secret::new(KEY))
            .unwrap()
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        let e = c.set_org_role("u1", &OrgRole::Admin).await.unwrap_err();
        assert!(!e.is_outcome_unknown() && !e.may_have_landed(), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn a_5xx_then_throttling_or_a_refusal_leaves_the_write_unknown() {
    bounded(async {
        // The issue's case: one attempt landed behind a 500, the retries then ran out on 429s.
        let f = fake(|_, n| {
            if n == 0 {
                scim_error(500, "lost")
            } else {
                scim_error(429, "slow down")
            }
        })
        .await;
        let e = client(&f).add_to_team("g1", "u1").await.unwrap_err();
        assert!(e.is_outcome_unknown(), "{e:?}");
        assert_eq!(e.status(), Some(429), "the last answer is kept for the message");
        // A refusal after it may be W&B answering the change it already made.
        let f = fake(|_, n| {
            if n == 0 {
                scim_error(502, "bad gateway")
            } else {
                scim_error(404, "not found")
            }
        })
        .await;
        let e = client(&f).remove_from_team("g1", "u1").await.unwrap_err();
        assert!(e.is_outcome_unknown(), "{e:?}");
        // A later success settles it: no error at all.
        let f = fake(|_, n| if n == 0 { scim_error(500, "lost") } else { out(204, Value::Null) }).await;
        client(&f).add_to_team("g1", "u1").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_write_that_timed_out_has_an_unknown_outcome() {
    bounded(async {
        let f = fake(|_, _| {
            let mut o = out(204, Value::Null);
            o.delay = Some(Duration::from_secs(3));
            o
        })
        .await;
        let e = client_with(&f, "timeout = \"200ms\"\nmax_retries = 1")
            .set_org_role("u1", &OrgRole::Member)
            .await
            .unwrap_err();
        assert!(e.is_outcome_unknown(), "{e:?}");
        assert!(matches!(&e, TargetError::OutcomeUnknown { last, .. } if matches!(**last, TargetError::Timeout { .. })));
    })
    .await;
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    bounded(async {
        let f = fake(|_, _| scim_error(400, "invalid filter")).await;
        let c = client(&f);
        let e = c.set_team_role("u1", "ml", &TeamRole::admin()).await.unwrap_err();
        assert_eq!(
            e,
            TargetError::Http {
                op: "PATCH /Users/u1 (set team role ml:admin)".into(),
                status: 400,
                detail: "invalid filter".into()
            }
        );
        assert_eq!(f.count(), 1);
        assert_eq!(c.http_stats().retries, 0);
        let f = fake(|_, _| scim_error(403, "not an admin")).await;
        let e = client(&f).add_to_team("g1", "u1").await.unwrap_err();
        assert!(matches!(e, TargetError::Forbidden { .. }), "{e:?}");
        assert_eq!(f.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn timeouts_are_retried() {
    bounded(async {
        let f = fake(|_, n| {
            let mut o = out(200, user("u1", "a@x.com"));
            if n == 0 {
                o.delay = Some(Duration::from_secs(3));
            }
            o
        })
        .await;
        let c = client_with(&f, "timeout = \"300ms\"");
        assert!(c.get_user("u1").await.unwrap().is_some());
        let s = c.http_stats();
        assert_eq!(s.requests_by_code.get("error"), Some(&1));
        assert_eq!(s.retries, 1);
    })
    .await;
}

#[tokio::test]
async fn connection_refused_names_the_url_and_the_setting() {
    bounded(async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = WandbClient::new(&cfg(&format!("http://{addr}"), "max_retries = 1"), Secret::new(KEY))
            .unwrap()
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        let e = c.list_users().await.unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, TargetError::RetriesExhausted { last, .. } if matches!(**last, TargetError::Transport { .. })),
            "{e:?}"
        );
        assert!(msg.contains(&format!("http://{addr}/scim/Users")), "{msg}");
        assert!(msg.contains("target.url"), "{msg}");
        assert_eq!(c.http_stats().requests_by_code.get("error"), Some(&2));
    })
    .await;
}

// ---- auth and secrets ------------------------------------------------------------------

#[tokio::test]
async fn auth_header_forms() {
    bounded(async {
        let f = fake(|_, _| list(vec![], 0)).await;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        client(&f).check_connection().await.unwrap();
        client_with(&f, "username = \"alice\"").check_connection().await.unwrap();
        client_with(&f, "auth = \"bearer\"").check_connection().await.unwrap();
        let auths: Vec<String> = f.requests().into_iter().map(|r| r.auth.unwrap()).collect();
        assert_eq!(
            auths,
            [
                format!("Basic {}", b64(&format!(":{KEY}"))),
                format!("Basic {}", b64(&format!("alice:{KEY}"))),
                format!("Bearer {KEY}"),
            ]
        );
        let r = &f.requests()[0];
        assert!(r.accept.as_deref().unwrap().contains("application/scim+json"));
        assert_eq!(r.path, "/scim/Users");
    })
    .await;
}

#[tokio::test]
async fn scim_path_is_configurable() {
    bounded(async {
        let f = fake(|_, _| list(vec![], 0)).await;
        let url = format!("{}/", f.url);
        let c = WandbClient::new(&cfg(&url, "scim_path = \"/scim/v2/\""), Secret::new(KEY)).unwrap();
        c.check_connection().await.unwrap();
        assert_eq!(f.requests()[0].path, "/scim/v2/Users");
        assert!(c.base_url().ends_with("/scim/v2"));
    })
    .await;
}

#[tokio::test]
async fn unauthorized_says_what_to_check_and_is_not_retried() {
    bounded(async {
        let f = fake(|_, _| scim_error(401, &format!("bad key {KEY}"))).await;
        let e = client(&f).list_users().await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TargetError::Unauthorized { .. }), "{e:?}");
        assert!(msg.contains("W&B rejected the API key (401) at"), "{msg}");
        assert!(msg.contains(&f.url), "{msg}");
        assert!(msg.contains("target.api_key_file") && msg.contains("team-scoped"), "{msg}");
        assert!(!format!("{e:?}").contains(KEY), "{e:?}");
        assert_eq!(f.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_key_never_shows_in_debug_output_or_errors() {
    bounded(async {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!(":{KEY}"));
        // A server echoing credentials back in its error detail.
        let echo = format!("Authorization: Basic {b64} / {KEY}");
        let f = fake(move |_, _| scim_error(400, &echo)).await;
        let c = client(&f);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(KEY) && !dbg.contains(&b64), "{dbg}");
        assert!(dbg.contains("WandbClient"));
        let e = c.get_user("u1").await.unwrap_err();
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(KEY) && !text.contains(&b64), "{text}");
        }
        for odd in ["line\nbreak", "sp ace", "tab\t"] {
            let bad = WandbClient::new(&cfg(&f.url, ""), Secret::new(odd)).unwrap_err();
            assert!(matches!(bad, TargetError::Config(_)), "{bad:?}");
            assert!(!bad.to_string().contains(odd));
        }
        assert!(WandbClient::new(&cfg(&f.url, ""), Secret::new("")).is_err());
    })
    .await;
}

// ---- writes ----------------------------------------------------------------------------

#[tokio::test]
async fn create_user_posts_scim_json_and_returns_the_user() {
    bounded(async {
        let f = fake(|r, _| {
            let mut u = user("new1", "a@x.com");
            u["organizationRole"] = json!("member");
            assert_eq!(r.method, "POST");
            out(201, u)
        })
        .await;
        let created = client(&f)
            .create_user_outcome(&email("a@x.com"), "alice", "Alice", &["ml".into()])
            .await
            .unwrap();
        assert!(!created.existed());
        assert_eq!(created.get().id, "new1");
        let r = &f.requests()[0];
        assert_eq!(r.content_type.as_deref(), Some("application/scim+json"));
        let b = r.json();
        assert_eq!(b["emails"], json!([{"value": "a@x.com", "primary": true}]));
        assert_eq!(b["userName"], "alice");
        assert_eq!(b["urn:ietf:params:scim:schemas:extension:teams:2.0:User"], json!({"teams": ["ml"]}));

        // Not on Dedicated: the teams extension is SaaS-only.
        let f = fake(|_, _| out(201, user("new1", "a@x.com"))).await;
        client_with(&f, "deployment = \"dedicated\"")
            .create_user(&email("a@x.com"), "alice", "Alice", &["ml".into()])
            .await
            .unwrap();
        let b = f.requests()[0].json();
        assert!(b.get("urn:ietf:params:scim:schemas:extension:teams:2.0:User").is_none());
        assert_eq!(b["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    })
    .await;
}

#[tokio::test]
async fn create_user_409_rereads_the_existing_user() {
    bounded(async {
        let f = fake(|r, _| match r.method.as_str() {
            "POST" => scim_error(409, "User already exists"),
            // The email decides, whatever userName the account has.
            _ => list(vec![named_user("old", "a.smith", "a@x.com")], 1),
        })
        .await;
        let created = client(&f).create_user_outcome(&email("a@x.com"), "alice", "", &[]).await.unwrap();
        assert_eq!(created, Created::Existing(created.get().clone()));
        assert_eq!(created.get().id, "old");
        let reqs = f.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].param("filter").as_deref(), Some(r#"emails.value eq "a@x.com""#));
    })
    .await;
}

/// A W&B user whose userName differs from its id, as real W&B ids are opaque.
fn named_user(id: &str, username: &str, mail: &str) -> Value {
    let mut u = user(id, mail);
    u["userName"] = json!(username);
    u
}

/// The userName a POST asked for.
fn posted_name(r: &Seen) -> String {
    r.json()["userName"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn create_user_409_for_another_persons_username_is_never_linked() {
    bounded(async {
        // john's directory uid `jsmith` is jane's W&B userName; the server also ignores
        // the email filter and lists jane, so only the local email check stands between
        // john and jane's account.
        let jane = named_user("VXNlcjo5", "jsmith", "jane.smith@x.com");
        let f = fake(move |r, _| match r.method.as_str() {
            "POST" if posted_name(r) == "jsmith" => scim_error(409, "userName \"jsmith\" is taken"),
            "POST" => out(201, named_user("new1", &posted_name(r), "john.smith@x.com")),
            _ => list(vec![jane.clone()], 1),
        })
        .await;
        let created = client(&f)
            .create_user_outcome(&email("john.smith@x.com"), "jsmith", "John", &[])
            .await
            .unwrap();
        assert!(!created.existed(), "{created:?}");
        assert_eq!(created.get().id, "new1", "never jane's account");
        assert_eq!(created.get().username, "john.smith@x.com", "the chosen userName is reported");
        let reqs = f.requests();
        let methods: Vec<&str> = reqs.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["POST", "GET", "POST"], "{reqs:?}");
        assert_eq!(reqs[1].param("filter").as_deref(), Some(r#"emails.value eq "john.smith@x.com""#));
        assert_eq!(posted_name(&reqs[0]), "jsmith");
        assert_eq!(posted_name(&reqs[2]), "john.smith@x.com");
    })
    .await;
}

#[tokio::test]
async fn create_user_with_every_username_taken_fails_naming_both_accounts() {
    bounded(async {
        let f = fake(|r, _| match (r.method.as_str(), r.param("filter")) {
            ("POST", _) => scim_error(409, "userName is taken"),
            (_, Some(f)) if f == r#"userName eq "jsmith""# => list(vec![named_user("VXNlcjo5", "jsmith", "jane.smith@x.com")], 1),
            _ => list(vec![], 0),
        })
        .await;
        let e = client(&f)
            .create_user(&email("john.smith@x.com"), "jsmith", "", &[])
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.status(), Some(409), "{e:?}");
        assert!(msg.contains("john.smith@x.com"), "{msg}");
        assert!(
            msg.contains("userName jsmith is held by W&B user VXNlcjo5 (jane.smith@x.com)"),
            "{msg}"
        );
        let reqs = f.requests();
        let posts: Vec<String> = reqs.iter().filter(|r| r.method == "POST").map(posted_name).collect();
        assert_eq!(
            posts,
            ["jsmith", "john.smith@x.com", "john.smith-2", "john.smith-3", "john.smith-4"],
            "a bounded, deterministic list of userNames"
        );
        // Each POST is followed by a re-read by email: a landed retry is found, not duplicated.
        for (i, _) in reqs.iter().enumerate().filter(|(_, r)| r.method == "POST") {
            assert_eq!(
                reqs[i + 1].param("filter").as_deref(),
                Some(r#"emails.value eq "john.smith@x.com""#),
                "{reqs:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn saas_readd_409_for_another_persons_username_is_not_ok() {
    bounded(async {
        // Every userName is held by someone else and nobody has this email: an error.
        let f = fake(|r, _| match (r.method.as_str(), r.param("filter")) {
            ("POST", _) => scim_error(409, "userName is taken"),
            (_, Some(f)) if f == r#"userName eq "alice""# => list(vec![named_user("VXNlcjo5", "alice", "alice.b@x.com")], 1),
            _ => list(vec![], 0),
        })
        .await;
        let e = client(&f).reactivate_user("u1", &email("a@x.com"), "alice").await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("a@x.com") && msg.contains("VXNlcjo5 (alice.b@x.com)"), "{msg}");

        // A free userName further down the list re-adds the user.
        let f = fake(|r, _| match r.method.as_str() {
            "POST" if posted_name(r) == "alice" => scim_error(409, "userName is taken"),
            "POST" => out(201, named_user("u1", &posted_name(r), "a@x.com")),
            _ => list(vec![], 0),
        })
        .await;
        client(&f).reactivate_user("u1", &email("a@x.com"), "alice").await.unwrap();
        let posts: Vec<String> = f.requests().iter().filter(|r| r.method == "POST").map(posted_name).collect();
        assert_eq!(posts, ["alice", "a@x.com"]);

        // A 409 with the user listed but inactive did not bring them back.
        let f = fake(|r, _| match r.method.as_str() {
            "POST" => scim_error(409, "exists"),
            _ => {
                let mut u = user("u1", "a@x.com");
                u["active"] = json!(false);
                list(vec![u], 1)
            }
        })
        .await;
        let e = client(&f).reactivate_user("u1", &email("a@x.com"), "alice").await.unwrap_err();
        assert!(e.to_string().contains("inactive"), "{e}");
    })
    .await;
}

#[tokio::test]
async fn a_post_retried_after_a_5xx_that_landed_does_not_duplicate() {
    bounded(async {
        let f = fake(|r, n| match (r.method.as_str(), n) {
            ("POST", 0) => scim_error(502, "bad gateway"),
            ("POST", _) => scim_error(409, "User already exists"),
            _ => list(vec![user("u9", "a@x.com")], 1),
        })
        .await;
        let created = client(&f).create_user_outcome(&email("a@x.com"), "a", "", &[]).await.unwrap();
        assert!(created.existed());
        assert_eq!(created.get().id, "u9");
    })
    .await;
}

#[tokio::test]
async fn seat_limit_is_its_own_error() {
    bounded(async {
        let f = fake(|_, _| scim_error(400, "Seat limit reached for organization")).await;
        let e = client(&f).create_user(&email("a@x.com"), "a", "", &[]).await.unwrap_err();
        assert!(matches!(e, TargetError::SeatLimit { .. }), "{e:?}");
        assert!(e.to_string().contains("seat"), "{e}");
        assert_eq!(f.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn reactivation_patches_on_dedicated_and_reposts_on_saas() {
    bounded(async {
        let f = fake(|_, _| out(200, user("u1", "a@x.com"))).await;
        client_with(&f, "deployment = \"dedicated\"")
            .reactivate_user("u1", &email("a@x.com"), "alice")
            .await
            .unwrap();
        let r = &f.requests()[0];
        assert!(r.is("PATCH", "/scim/Users/u1"));
        assert_eq!(r.json()["Operations"], json!([{"op": "replace", "value": {"active": true}}]));

        // 409 on SaaS is "already back" only once the user is listed, active, by email.
        let f = fake(|r, _| match r.method.as_str() {
            "POST" => scim_error(409, "exists"),
            _ => list(vec![user("u1", "a@x.com")], 1),
        })
        .await;
        client(&f).reactivate_user("u1", &email("a@x.com"), "alice").await.unwrap();
        let reqs = f.requests();
        assert!(reqs[0].is("POST", "/scim/Users"));
        assert_eq!(reqs[0].json()["userName"], "alice");
        assert_eq!(reqs[1].param("filter").as_deref(), Some(r#"emails.value eq "a@x.com""#));
        assert_eq!(f.count(), 2);
    })
    .await;
}

#[tokio::test]
async fn org_role_patch_and_viewer_refused_without_a_request() {
    bounded(async {
        let f = fake(|_, _| out(200, json!({}))).await;
        let c = client(&f);
        for bad in [OrgRole::Viewer, OrgRole::Other("billing".into())] {
            let e = c.set_org_role("u1", &bad).await.unwrap_err();
            assert!(matches!(e, TargetError::Refused(_)), "{e:?}");
            assert!(e.to_string().contains("viewer"), "{e}");
        }
        let e = c.deprovision("u1", DeprovisionMode::Off).await.unwrap_err();
        assert!(matches!(e, TargetError::Refused(_)), "{e:?}");
        assert_eq!(f.count(), 0);

        c.set_org_role("u1", &OrgRole::Member).await.unwrap();
        let r = &f.requests()[0];
        assert!(r.is("PATCH", "/scim/Users/u1"));
        assert_eq!(
            r.json(),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "organizationRole", "value": "member"}]})
        );
    })
    .await;
}

#[tokio::test]
async fn team_membership_and_role_bodies() {
    bounded(async {
        let f = fake(|_, _| raw(204, "")).await;
        let c = client(&f);
        c.add_to_team("g1", "u1").await.unwrap();
        c.set_team_role("u1", "ml", &TeamRole::new("viewer")).await.unwrap();
        let reqs = f.requests();
        assert!(reqs[0].is("PATCH", "/scim/Groups/g1"));
        assert_eq!(
            reqs[0].json()["Operations"],
            json!([{"op": "add", "path": "members", "value": [{"value": "u1"}]}])
        );
        assert!(reqs[1].is("PATCH", "/scim/Users/u1"));
        assert_eq!(
            reqs[1].json()["Operations"],
            json!([{"op": "replace", "path": "teamRoles", "value": [{"teamName": "ml", "roleName": "viewer"}]}])
        );
    })
    .await;
}

#[tokio::test]
async fn remove_from_team_always_filters_to_one_member() {
    bounded(async {
        let f = fake(|_, _| raw(204, "")).await;
        let c = client(&f);
        c.remove_from_team("g1", "VXNlcjox").await.unwrap();
        let r = &f.requests()[0];
        assert!(r.is("PATCH", "/scim/Groups/g1"));
        assert_eq!(
            r.json(),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "remove", "path": "members[value eq \"VXNlcjox\"]"}]})
        );
        for bad in ["", " ", "a\"]", "x\\", "u\n1"] {
            let e = c.remove_from_team("g1", bad).await.unwrap_err();
            assert!(matches!(e, TargetError::Refused(_)), "{bad:?}: {e:?}");
        }
        assert!(c.remove_from_team("", "u1").await.is_err());
        // Nothing but the one valid request went out, and no request is a bare removal.
        assert_eq!(f.count(), 1);
        for r in f.requests() {
            for op in r.json()["Operations"].as_array().unwrap() {
                assert_ne!(op["path"], json!("members"));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn deprovision_deactivates_or_deletes_and_gone_is_done() {
    bounded(async {
        let f = fake(|r, _| match r.method.as_str() {
            "DELETE" if r.path.ends_with("/gone") => scim_error(404, "no such user"),
            "DELETE" => raw(204, ""),
            _ => out(200, user("u1", "a@x.com")),
        })
        .await;
        let c = client(&f);
        c.deprovision("u1", DeprovisionMode::Deactivate).await.unwrap();
        c.deprovision("u1", DeprovisionMode::Delete).await.unwrap();
        c.deprovision("gone", DeprovisionMode::Delete).await.unwrap();
        let reqs = f.requests();
        assert!(reqs[0].is("PATCH", "/scim/Users/u1"));
        assert_eq!(reqs[0].json()["Operations"], json!([{"op": "replace", "value": {"active": false}}]));
        assert!(reqs[1].is("DELETE", "/scim/Users/u1"));
        assert!(reqs[1].body.is_empty());
        assert!(reqs[2].is("DELETE", "/scim/Users/gone"));
    })
    .await;
}

#[tokio::test]
async fn a_412_rereads_the_etag_and_retries_once_with_if_match() {
    bounded(async {
        let f = fake(|r, _| match (r.method.as_str(), r.if_match.as_deref()) {
            ("PATCH", None) => scim_error(412, "etag mismatch"),
            ("PATCH", Some("W/\"v2\"")) => out(200, json!({})),
            ("PATCH", Some(_)) => scim_error(412, "etag mismatch"),
            _ => {
                let mut o = out(200, user("u1", "a@x.com"));
                o.headers.push(("etag", "W/\"v2\"".into()));
                o
            }
        })
        .await;
        client(&f).set_org_role("u1", &OrgRole::Admin).await.unwrap();
        let methods: Vec<String> = f.requests().iter().map(|r| r.method.clone()).collect();
        assert_eq!(methods, ["PATCH", "GET", "PATCH"]);

        // A second mismatch is reported, not looped on.
        let f = fake(|r, _| match r.method.as_str() {
            "PATCH" => scim_error(412, "etag mismatch"),
            _ => out(200, json!({"id": "u1", "meta": {"version": "W/\"v3\""}})),
        })
        .await;
        let e = client(&f).set_org_role("u1", &OrgRole::Admin).await.unwrap_err();
        assert_eq!(e.status(), Some(412));
        assert_eq!(f.count(), 3);
        assert_eq!(f.requests()[2].if_match.as_deref(), Some("W/\"v3\""));
    })
    .await;
}

#[tokio::test]
async fn create_team_and_409_rereads_by_display_name() {
    bounded(async {
        let f = fake(|_, _| out(201, json!({"id": "g7", "displayName": "ml", "members": null}))).await;
        let t = client(&f).create_team("ml").await.unwrap();
        assert_eq!((t.id.as_str(), t.name.as_str()), ("g7", "ml"));
        assert_eq!(
            f.requests()[0].json(),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "ml", "members": []})
        );

        let f = fake(|r, _| match r.method.as_str() {
            "POST" => scim_error(409, "team exists"),
            _ => list(
                vec![
                    json!({"id": "g1", "displayName": "ml-other"}),
                    json!({"id": "g2", "displayName": "ml", "members": [{"Value": "u1"}]}),
                ],
                2,
            ),
        })
        .await;
        let created = client(&f).create_team_outcome("ml").await.unwrap();
        assert!(created.existed());
        assert_eq!(created.get().id, "g2");
        assert_eq!(f.requests()[1].param("filter").as_deref(), Some(r#"displayName eq "ml""#));
    })
    .await;
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    bounded(async {
        let f = fake(|_, _| {
            let mut o = raw(301, "");
            o.headers.push(("location", "https://elsewhere.example.com/scim/Users".into()));
            o
        })
        .await;
        let e = client(&f).list_users().await.unwrap_err();
        assert_eq!(e.status(), Some(301));
        assert!(
            e.to_string().contains("elsewhere.example.com") && e.to_string().contains("target.url"),
            "{e}"
        );
        assert_eq!(f.count(), 1);
    })
    .await;
}

#[test]
fn http_stats_since_gives_the_requests_counted_in_between() {
    use crate::http::HttpStats;
    let before = HttpStats {
        requests_by_code: [("200".to_string(), 5u64), ("429".to_string(), 1)].into_iter().collect(),
        retries: 1,
    };
    let after = HttpStats {
        requests_by_code: [("200".to_string(), 9u64), ("429".to_string(), 1), ("500".to_string(), 2)]
            .into_iter()
            .collect(),
        retries: 3,
    };
    let d = after.since(&before);
    assert_eq!(
        d.requests_by_code,
        [("200".to_string(), 4u64), ("500".to_string(), 2)].into_iter().collect()
    );
    assert_eq!(d.retries, 2);
    assert_eq!(before.since(&after).retries, 0, "never negative");
}
