//! A loopback fake of the Microsoft identity platform's token endpoint and the parts of
//! Microsoft Graph v1.0 idsync reads, written from Microsoft's public docs: the
//! client-credentials grant (`AADSTS` error bodies for a wrong secret or tenant), Graph's
//! `{"error":{"code","message"}}` bodies (401 `InvalidAuthenticationToken` for an expired
//! token, 429 `TooManyRequests` with `Retry-After`), `$top` paging with an absolute
//! `@odata.nextLink` carrying `$skiptoken`, and `transitiveMembers` returning users,
//! groups and devices with their `@odata.type`. Test-only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{json, Value};

pub use super::okta_fake::Fail;

/// A group: id, displayName, direct members as (`@odata.type`, id).
pub type FakeGroup = (String, String, Vec<(String, String)>);

#[derive(Default)]
pub struct EntraState {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens.
    pub token_lifetime_secs: u64,
    /// Tokens are rejected (401, expired) after this many Graph uses each, as if revoked
    /// or expired early on the server side.
    pub token_max_uses: Option<usize>,
    /// Graph users: `id`, `userPrincipalName`, `mail`, `displayName`, `accountEnabled`.
    pub users: Vec<Value>,
    /// (id, displayName, direct members as (odata type, id)).
    pub groups: Vec<FakeGroup>,
    /// Answer this many Graph requests with 429 before serving normally.
    pub throttle: usize,
    pub fail: Option<Fail>,
    /// Delay before each Graph answer.
    pub latency: Duration,
    /// Origin used in next links (default: the fake's own).
    pub link_origin: Option<String>,
    /// A stuck cursor: every page is served as the first one, so the nextLink repeats.
    pub repeat_next: bool,
    /// Issued tokens: value, issued at, Graph uses.
    pub tokens: Vec<(String, Instant, usize)>,
    pub token_requests: usize,
    /// Every Graph request: path?query.
    pub log: Vec<String>,
    hits: HashMap<String, usize>,
}

pub struct EntraFake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<EntraState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EntraFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn user(id: &str, email: &str, enabled: bool) -> Value {
    let local = email.split('@').next().unwrap_or(email);
    json!({
        "@odata.type": "#microsoft.graph.user",
        "id": id,
        "userPrincipalName": format!("{local}@contoso.onmicrosoft.com"),
        "mail": email,
        "displayName": format!("{local} Test"),
        "accountEnabled": enabled
    })
}

pub fn state(tenant: &str, client_id: &str, secret: &str, users: Vec<Value>, groups: Vec<FakeGroup>) -> EntraState {
    EntraState {
        tenant: tenant.into(),
        client_id: client_id.into(),
        client_secret: secret.into(),
        token_lifetime_secs: 3599,
        users,
        groups,
        ..EntraState::default()
    }
}

impl EntraFake {
    pub async fn start(state: EntraState) -> EntraFake {
        let state = Arc::new(Mutex::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/users", get(users))
            .route("/v1.0/groups", get(groups))
            .route("/v1.0/groups/{id}/transitiveMembers", get(members))
            .with_state((state.clone(), addr));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EntraFake { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.iter().map(|t| t.0.clone()).collect()
    }
}

type St = State<(Arc<Mutex<EntraState>>, SocketAddr)>;

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    json_response(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 0000 Correlation ID: 1111 Timestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "0000",
            "correlation_id": "1111"
        }),
    )
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"date": "2026-01-01T00:00:00", "request-id": "r1", "client-request-id": "c1"}}}),
    )
}

async fn token(State((s, addr)): St, Path(tenant): Path<String>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut st = s.lock().unwrap();
    st.token_requests += 1;
    if tenant != st.tenant {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
        );
    }
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if f.get("scope").map(String::as_str) != Some(format!("http://{addr}/.default").as_str()) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid.",
        );
    }
    if f.get("client_id") != Some(&st.client_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application with identifier was not found in the directory.",
        );
    }
    if f.get("client_secret") != Some(&st.client_secret) {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    let value = format!("eyJ0eXAiOiJKV1Qi.fake-access-{}-{}", st.tokens.len() + 1, rand::random::<u32>());
    st.tokens.push((value.clone(), Instant::now(), 0));
    json_response(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": st.token_lifetime_secs, "ext_expires_in": st.token_lifetime_secs, "access_token": value}),
    )
}

#[allow(clippy::result_large_err)]
/// Auth (valid, unexpired, not over its use budget), throttling, failures, latency.
async fn gate(s: &Arc<Mutex<EntraState>>, path_q: &str, headers: &HeaderMap) -> Result<(), Response> {
    let latency = s.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut st = s.lock().unwrap();
    st.log.push(path_q.to_string());
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(tok) = auth.strip_prefix("Bearer ") else {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        ));
    };
    let lifetime = Duration::from_secs(st.token_lifetime_secs);
    let max_uses = st.token_max_uses;
    let Some(entry) = st.tokens.iter_mut().find(|t| t.0 == tok) else {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "IDX14100: JWT is not well formed.",
        ));
    };
    entry.2 += 1;
    if entry.1.elapsed() >= lifetime || max_uses.is_some_and(|m| entry.2 > m) {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        ));
    }
    if st.throttle > 0 {
        st.throttle -= 1;
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please try again later.",
        );
        r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        return Err(r);
    }
    if let Some(f) = st.fail.clone() {
        if path_q.contains(&f.path) {
            let n = st.hits.entry(f.path.clone()).or_insert(0);
            *n += 1;
            if *n >= f.nth {
                return Err(graph_error(
                    StatusCode::from_u16(f.status).unwrap(),
                    "UnknownError",
                    "An internal server error occurred.",
                ));
            }
        }
    }
    Ok(())
}

fn path_q(path: &str, q: &HashMap<String, String>) -> String {
    let mut keys: Vec<_> = q.iter().collect();
    keys.sort();
    let qs: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", qs.join("&"))
}

/// One `$top` page from `$skiptoken` (an opaque offset), with an absolute nextLink.
fn page(items: Vec<Value>, q: &HashMap<String, String>, origin: &str, path: &str, context: &str, repeat: bool) -> Response {
    let top = q.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(100).clamp(1, 999);
    let skip = q
        .get("$skiptoken")
        .filter(|_| !repeat)
        .and_then(|t| t.strip_prefix("RFNwdAIAAQAAAB"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let chunk: Vec<Value> = items.iter().skip(skip).take(top).cloned().collect();
    let mut body = json!({"@odata.context": format!("{origin}/v1.0/$metadata#{context}"), "value": chunk});
    if skip + top < items.len() {
        let mut next = format!("{origin}{path}?$top={top}&$skiptoken=RFNwdAIAAQAAAB{}", skip + top);
        if let Some(sel) = q.get("$select") {
            next.push_str(&format!("&$select={sel}"));
        }
        body["@odata.nextLink"] = json!(next);
    }
    json_response(StatusCode::OK, body)
}

fn origin(st: &EntraState, addr: SocketAddr) -> String {
    st.link_origin.clone().unwrap_or_else(|| format!("http://{addr}"))
}

fn select(v: &Value, q: &HashMap<String, String>) -> Value {
    let Some(sel) = q.get("$select") else { return v.clone() };
    let mut out = serde_json::Map::new();
    if let Some(t) = v.get("@odata.type") {
        out.insert("@odata.type".into(), t.clone());
    }
    for k in sel.split(',') {
        out.insert(k.to_string(), v.get(k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

async fn users(State((s, addr)): St, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &path_q("/v1.0/users", &q), &headers).await {
        return r;
    }
    let st = s.lock().unwrap();
    let items: Vec<Value> = st.users.iter().map(|u| select(u, &q)).collect();
    page(items, &q, &origin(&st, addr), "/v1.0/users", "users", st.repeat_next)
}

async fn groups(State((s, addr)): St, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &path_q("/v1.0/groups", &q), &headers).await {
        return r;
    }
    let st = s.lock().unwrap();
    let items: Vec<Value> = st
        .groups
        .iter()
        .map(|(id, name, _)| select(&json!({"@odata.type": "#microsoft.graph.group", "id": id, "displayName": name}), &q))
        .collect();
    page(items, &q, &origin(&st, addr), "/v1.0/groups", "groups", st.repeat_next)
}

async fn members(State((s, addr)): St, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let path = format!("/v1.0/groups/{id}/transitiveMembers");
    if let Err(r) = gate(&s, &path_q(&path, &q), &headers).await {
        return r;
    }
    let st = s.lock().unwrap();
    if !st.groups.iter().any(|g| g.0 == id) {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        );
    }
    // Transitive closure, like Graph: users, nested groups and devices, each once.
    let mut out: Vec<(String, String)> = Vec::new();
    let mut stack = vec![id.clone()];
    let mut seen = vec![id.clone()];
    while let Some(g) = stack.pop() {
        for (t, m) in st.groups.iter().find(|x| x.0 == g).map(|x| x.2.clone()).unwrap_or_default() {
            if !out.iter().any(|(_, x)| *x == m) {
                out.push((t.clone(), m.clone()));
            }
            if t == "#microsoft.graph.group" && !seen.contains(&m) {
                seen.push(m.clone());
                stack.push(m);
            }
        }
    }
    let items: Vec<Value> = out
        .into_iter()
        .map(|(t, m)| {
            // An empty id stands for a member Graph sends without one.
            let v = if m.is_empty() {
                json!({"@odata.type": t})
            } else {
                json!({"@odata.type": t, "id": m})
            };
            select(&v, &q)
        })
        .collect();
    page(items, &q, &origin(&st, addr), &path, "directoryObjects", st.repeat_next)
}
