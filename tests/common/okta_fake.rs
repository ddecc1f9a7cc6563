//! A loopback fake of Okta's Users and Groups APIs, written from Okta's public API
//! reference: `SSWS` auth, cursor paging by `after` with `Link: <…>; rel="next"` (and
//! `rel="self"`), `/api/v1/users` leaving out DEPROVISIONED users unless
//! `filter=status eq "DEPROVISIONED"`, Okta's JSON error bodies (E0000011 invalid token,
//! E0000047 rate limit, E0000009 internal error) and `X-Rate-Limit-*` headers (the reset
//! is an epoch time). Test-only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// A failure injected on the `nth` (1-based) request whose path contains `path`: it
/// answers `status` from then on (a page that fails mid-way, persistently).
#[derive(Clone, Debug)]
pub struct Fail {
    pub path: String,
    pub nth: usize,
    pub status: u16,
}

#[derive(Default)]
pub struct OktaState {
    pub token: String,
    /// Full Okta user objects (`id`, `status`, `profile`).
    pub users: Vec<Value>,
    /// (group object, member user ids).
    pub groups: Vec<(Value, Vec<String>)>,
    /// Answer this many requests with 429 before serving normally.
    pub throttle: usize,
    /// Seconds to the rate-limit reset sent with a 429.
    pub throttle_reset_secs: i64,
    pub fail: Option<Fail>,
    /// Origin used in next links (default: the fake's own), to test cross-origin refusal.
    pub link_origin: Option<String>,
    /// A stuck cursor: every page is served as the first one, so the next link repeats.
    pub repeat_next: bool,
    /// Every request: (path?query, Authorization header).
    pub log: Vec<(String, String)>,
    hits: HashMap<String, usize>,
}

pub struct OktaFake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<OktaState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OktaFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn user(id: &str, login: &str, status: &str) -> Value {
    let local = login.split('@').next().unwrap_or(login);
    json!({
        "id": id,
        "status": status,
        "created": "2024-01-01T00:00:00.000Z",
        "profile": {"login": login, "email": login, "firstName": local, "lastName": "Test", "mobilePhone": null},
        "_links": {"self": {"href": format!("https://example.okta.com/api/v1/users/{id}")}}
    })
}

pub fn group(id: &str, name: &str) -> Value {
    json!({"id": id, "type": "OKTA_GROUP", "profile": {"name": name, "description": null}})
}

impl OktaFake {
    pub async fn start(state: OktaState) -> OktaFake {
        let state = Arc::new(Mutex::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/api/v1/users", get(users))
            .route("/api/v1/groups", get(groups))
            .route("/api/v1/groups/{id}/users", get(members))
            .with_state((state.clone(), addr));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OktaFake { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.iter().map(|(p, _)| p.clone()).collect()
    }
}

type St = State<(Arc<Mutex<OktaState>>, SocketAddr)>;

fn error(status: StatusCode, code: &str, summary: &str) -> Response {
    let body = json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeFAKE123", "errorCauses": []});
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

#[allow(clippy::result_large_err)]
/// Auth, logging, throttling and injected failures, common to every route.
fn gate(st: &mut OktaState, path_q: &str, headers: &HeaderMap) -> Result<(), Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    st.log.push((path_q.to_string(), auth.clone()));
    if auth != format!("SSWS {}", st.token) {
        return Err(error(StatusCode::UNAUTHORIZED, "E0000011", "Invalid token provided"));
    }
    if st.throttle > 0 {
        st.throttle -= 1;
        let reset = chrono::Utc::now().timestamp() + st.throttle_reset_secs.max(1);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        );
        let h = r.headers_mut();
        h.insert("x-rate-limit-limit", HeaderValue::from_static("600"));
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        h.insert("x-rate-limit-reset", HeaderValue::from_str(&reset.to_string()).unwrap());
        return Err(r);
    }
    if let Some(f) = st.fail.clone() {
        if path_q.contains(&f.path) {
            let n = st.hits.entry(f.path.clone()).or_insert(0);
            *n += 1;
            if *n >= f.nth {
                return Err(error(StatusCode::from_u16(f.status).unwrap(), "E0000009", "Internal Server Error"));
            }
        }
    }
    Ok(())
}

/// One page by `after` cursor (an item id) and `limit`, with Okta's headers.
fn page(items: Vec<Value>, q: &HashMap<String, String>, origin: &str, path: &str, max_limit: usize, repeat: bool) -> Response {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(max_limit)
        .clamp(1, max_limit);
    let start = match q.get("after").filter(|_| !repeat) {
        Some(a) => items
            .iter()
            .position(|u| u["id"] == a.as_str())
            .map(|i| i + 1)
            .unwrap_or(items.len()),
        None => 0,
    };
    let chunk: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let mut links = Vec::new();
    let mut query = format!("limit={limit}");
    if let Some(f) = q.get("filter") {
        query.push_str(&format!("&filter={}", urlencode(f)));
    }
    links.push(format!("<{origin}{path}?{query}>; rel=\"self\""));
    if start + chunk.len() < items.len() {
        let last = chunk.last().and_then(|u| u["id"].as_str()).unwrap_or("");
        links.push(format!("<{origin}{path}?after={last}&{query}>; rel=\"next\""));
    }
    let mut r = (
        StatusCode::OK,
        [("content-type", "application/json")],
        Value::Array(chunk).to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    for l in links {
        h.append("link", HeaderValue::from_str(&l).unwrap());
    }
    let reset = chrono::Utc::now().timestamp() + 60;
    h.insert("x-rate-limit-limit", HeaderValue::from_static("600"));
    h.insert("x-rate-limit-remaining", HeaderValue::from_static("599"));
    h.insert("x-rate-limit-reset", HeaderValue::from_str(&reset.to_string()).unwrap());
    r
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn path_q(path: &str, q: &HashMap<String, String>) -> String {
    let mut keys: Vec<_> = q.iter().collect();
    keys.sort();
    let qs: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", qs.join("&"))
}

fn origin(st: &OktaState, addr: SocketAddr) -> String {
    st.link_origin.clone().unwrap_or_else(|| format!("http://{addr}"))
}

async fn users(State((s, addr)): St, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(r) = gate(&mut st, &path_q("/api/v1/users", &q), &headers) {
        return r;
    }
    let deprovisioned = match q.get("filter").map(String::as_str) {
        None => false,
        Some("status eq \"DEPROVISIONED\"") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "E0000031",
                &format!("Invalid search criteria. filter: {other}"),
            )
        }
    };
    let items: Vec<Value> = st
        .users
        .iter()
        .filter(|u| (u["status"] == "DEPROVISIONED") == deprovisioned)
        .cloned()
        .collect();
    page(items, &q, &origin(&st, addr), "/api/v1/users", 200, st.repeat_next)
}

async fn groups(State((s, addr)): St, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    if let Err(r) = gate(&mut st, &path_q("/api/v1/groups", &q), &headers) {
        return r;
    }
    let items: Vec<Value> = st.groups.iter().map(|(g, _)| g.clone()).collect();
    page(items, &q, &origin(&st, addr), "/api/v1/groups", 10_000, st.repeat_next)
}

async fn members(State((s, addr)): St, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    let path = format!("/api/v1/groups/{id}/users");
    if let Err(r) = gate(&mut st, &path_q(&path, &q), &headers) {
        return r;
    }
    let Some((_, ids)) = st.groups.iter().find(|(g, _)| g["id"] == id.as_str()) else {
        return error(
            StatusCode::NOT_FOUND,
            "E0000007",
            &format!("Not found: Resource not found: {id} (UserGroup)"),
        );
    };
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|m| st.users.iter().find(|u| u["id"] == m.as_str()).cloned())
        .collect();
    page(items, &q, &origin(&st, addr), &path, 1000, st.repeat_next)
}

/// Shorthand for tests: the default 1-second reset.
pub fn state(token: &str, users: Vec<Value>, groups: Vec<(Value, Vec<String>)>) -> OktaState {
    OktaState {
        token: token.into(),
        users,
        groups,
        throttle_reset_secs: 1,
        ..OktaState::default()
    }
}
