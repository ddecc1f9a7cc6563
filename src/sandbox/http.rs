//! The sandbox's HTTP side: routing, auth, fault injection, helper endpoints, logging.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::seed::{SandboxOrg, SandboxState};
use super::store::{Config, Reply, Request, ScimError, Store, Verb, Version};
use super::{SandboxError, SandboxOptions};

const SCIM_JSON: &str = "application/scim+json";

/// Fault settings and the seeded RNG that draws them.
pub(crate) struct FaultState {
    pub latency: Duration,
    pub fail_rate: f64,
    pub throttle_rate: f64,
    pub malformed_rate: f64,
    pub lost_response_rate: f64,
    pub retry_after_secs: Option<u64>,
    rng: StdRng,
}

/// The faults drawn for one request.
#[derive(Debug, Clone, Copy, Default)]
struct Roll {
    throttle: bool,
    fail: bool,
    lost: bool,
    malformed: bool,
}

fn rate(r: f64) -> f64 {
    if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl FaultState {
    pub fn set(&mut self, fail_rate: f64, throttle_rate: f64, malformed_rate: f64) {
        self.fail_rate = rate(fail_rate);
        self.throttle_rate = rate(throttle_rate);
        self.malformed_rate = rate(malformed_rate);
    }

    pub fn set_lost(&mut self, lost_response_rate: f64) {
        self.lost_response_rate = rate(lost_response_rate);
    }

    /// Always draws four numbers so the sequence for a seed does not depend on the rates.
    fn roll(&mut self) -> Roll {
        let mut draw = |p: f64| self.rng.random::<f64>() < p;
        Roll {
            throttle: draw(self.throttle_rate),
            fail: draw(self.fail_rate),
            lost: draw(self.lost_response_rate),
            malformed: draw(self.malformed_rate),
        }
    }

    fn view(&self) -> FaultView {
        FaultView {
            fail_rate: self.fail_rate,
            throttle_rate: self.throttle_rate,
            malformed_rate: self.malformed_rate,
            lost_response_rate: self.lost_response_rate,
            latency_ms: self.latency.as_millis() as u64,
            retry_after_secs: self.retry_after_secs,
        }
    }
}

/// Everything the server tasks share.
pub(crate) struct Shared {
    store: Mutex<Store>,
    fault: Mutex<FaultState>,
    pub requests: AtomicU64,
    /// SCIM requests other than GET.
    pub writes: AtomicU64,
    api_key: String,
    /// More accepted keys (`SandboxOptions::extra_api_keys`): key `i + 1` of the write log.
    extra_api_keys: Vec<String>,
    /// Every SCIM write that passed auth, in arrival order, with the key that made it.
    write_log: Mutex<Vec<WriteRecord>>,
    /// Normalised: no trailing slash; empty means the root.
    scim_path: String,
    bearer_allowed: bool,
}

impl Shared {
    pub fn new(opts: SandboxOptions, org: SandboxOrg) -> Result<Shared, SandboxError> {
        let bad = |m: String| SandboxError::Options(m);
        if opts.api_key.trim().is_empty() || opts.extra_api_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(bad("api_key is empty".into()));
        }
        let scim_path = opts.scim_path.trim().trim_end_matches('/').to_string();
        if !scim_path.is_empty() && !scim_path.starts_with('/') {
            return Err(bad(format!("scim_path {:?} must start with /", opts.scim_path)));
        }
        if scim_path.starts_with("/_sandbox") {
            return Err(bad("scim_path may not be under /_sandbox".into()));
        }
        let version = match opts.server_version.as_deref() {
            None => None,
            Some(v) => Some(Version::parse(v).ok_or_else(|| bad(format!("server_version {v:?} is not a version like 0.84.0")))?),
        };
        for (name, r) in [
            ("fail_rate", opts.fail_rate),
            ("throttle_rate", opts.throttle_rate),
            ("malformed_rate", opts.malformed_rate),
            ("lost_response_rate", opts.lost_response_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(bad(format!("{name} {r} is not between 0 and 1")));
            }
        }
        let cfg = Config {
            deployment: opts.deployment,
            version,
            honour_paging: opts.honour_paging,
            page_cap: opts.page_cap,
            seat_limit: opts.seat_limit,
            activity: opts.activity,
            service_accounts: opts.service_accounts,
        };
        let bearer_allowed = cfg.bearer_allowed();
        let store = Store::new(cfg, org)?;
        Ok(Shared {
            store: Mutex::new(store),
            fault: Mutex::new(FaultState {
                latency: opts.latency,
                fail_rate: opts.fail_rate,
                throttle_rate: opts.throttle_rate,
                malformed_rate: opts.malformed_rate,
                lost_response_rate: opts.lost_response_rate,
                retry_after_secs: opts.retry_after_secs,
                rng: StdRng::seed_from_u64(opts.seed),
            }),
            requests: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            api_key: opts.api_key,
            extra_api_keys: opts.extra_api_keys,
            write_log: Mutex::new(Vec::new()),
            scim_path,
            bearer_allowed,
        })
    }

    // A panic while holding a lock leaves consistent-enough data for a test server.
    pub fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> SandboxState {
        let mut s = self.store().snapshot(self.requests.load(Ordering::Relaxed));
        s.write_request_count = self.writes.load(Ordering::Relaxed);
        s.write_log = self.write_log();
        s
    }

    pub fn write_log(&self) -> Vec<WriteRecord> {
        self.write_log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Which accepted key `key` is: 0 for `api_key`, `i + 1` for `extra_api_keys[i]`.
    fn key_index(&self, key: &str) -> Option<usize> {
        if key == self.api_key {
            return Some(0);
        }
        self.extra_api_keys.iter().position(|k| k == key).map(|i| i + 1)
    }

    /// Checks the credentials as W&B does; see WANDB.md "SCIM base and auth".
    /// `Ok(key)`: which accepted key the request carried (see [`Self::key_index`]).
    fn authenticate(&self, headers: &HeaderMap) -> Result<usize, ScimError> {
        let unauthorized = |m: &str| ScimError::new(401, m);
        let raw = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| unauthorized("missing Authorization header: use Basic base64(\":\" + API key)"))?;
        let (scheme, cred) = raw.split_once(' ').unwrap_or((raw, ""));
        let cred = cred.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(cred)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
            let (user, key) = decoded
                .split_once(':')
                .ok_or_else(|| unauthorized("malformed Basic credentials: expected user:key"))?;
            let Some(index) = self.key_index(key) else {
                return Err(unauthorized("invalid API key"));
            };
            if user.is_empty() {
                return Ok(index);
            }
            match self.store().admin_status(user) {
                Some(true) => Ok(index),
                Some(false) => Err(ScimError::new(403, format!("user {user:?} is not an admin of this organization"))),
                None => Err(unauthorized("unknown user")),
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if !self.bearer_allowed {
                return Err(unauthorized(
                    "Bearer tokens need server 0.79.0 or later; use Basic base64(\":\" + API key)",
                ));
            }
            self.key_index(cred).ok_or_else(|| unauthorized("invalid API key"))
        } else {
            Err(unauthorized("unsupported Authorization scheme; use Basic or Bearer"))
        }
    }
}

/// One SCIM write the sandbox answered: which key made it (0: `api_key`, `i + 1`:
/// `extra_api_keys[i]`), so a test with several clients sees who wrote what and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    pub key: usize,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sandbox/state", get(state_dump))
        .route("/_sandbox/faults", get(get_faults).post(set_faults))
        .fallback(scim)
        .layer(middleware::from_fn(log_request))
        .with_state(shared)
}

/// One log line per request.
async fn log_request(req: HttpRequest, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    tracing::info!(
        method = %method,
        uri = %uri,
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "sandbox request"
    );
    resp
}

async fn state_dump(State(shared): State<Arc<Shared>>) -> Json<SandboxState> {
    Json(shared.state())
}

/// `POST /_sandbox/faults` body; absent fields keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultUpdate {
    fail_rate: Option<f64>,
    throttle_rate: Option<f64>,
    malformed_rate: Option<f64>,
    lost_response_rate: Option<f64>,
    latency_ms: Option<u64>,
    retry_after_secs: Option<u64>,
}

#[derive(Debug, Serialize)]
struct FaultView {
    fail_rate: f64,
    throttle_rate: f64,
    malformed_rate: f64,
    lost_response_rate: f64,
    latency_ms: u64,
    retry_after_secs: Option<u64>,
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<FaultView> {
    Json(shared.faults().view())
}

async fn set_faults(State(shared): State<Arc<Shared>>, Json(update): Json<FaultUpdate>) -> Json<FaultView> {
    let mut f = shared.faults();
    let fail = update.fail_rate.unwrap_or(f.fail_rate);
    let throttle = update.throttle_rate.unwrap_or(f.throttle_rate);
    let malformed = update.malformed_rate.unwrap_or(f.malformed_rate);
    f.set(fail, throttle, malformed);
    if let Some(lost) = update.lost_response_rate {
        f.set_lost(lost);
    }
    if let Some(ms) = update.latency_ms {
        f.latency = Duration::from_millis(ms);
    }
    if update.retry_after_secs.is_some() {
        f.retry_after_secs = update.retry_after_secs;
    }
    Json(f.view())
}

/// The part of `path` under the SCIM base, if it is under it.
fn under_scim<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn verb(method: &Method) -> Verb {
    match *method {
        Method::GET => Verb::Get,
        Method::POST => Verb::Post,
        Method::PUT => Verb::Put,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => Verb::Other,
    }
}

async fn scim(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(rel) = under_scim(uri.path(), &shared.scim_path) else {
        let base = if shared.scim_path.is_empty() { "/" } else { &shared.scim_path };
        return respond(Reply::error(&ScimError::new(
            404,
            format!("no such endpoint {}; the SCIM API is under {base}", uri.path()),
        )));
    };
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if method != Method::GET && method != Method::HEAD {
        shared.writes.fetch_add(1, Ordering::Relaxed);
    }

    // Draw faults in arrival order, then wait outside the lock so latency overlaps.
    let (latency, roll, retry_after) = {
        let mut f = shared.faults();
        (f.latency, f.roll(), f.retry_after_secs)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if roll.throttle {
        return throttled(retry_after);
    }
    if roll.fail {
        return respond(Reply::error(&ScimError::new(
            500,
            "internal server error (injected by the sandbox)",
        )));
    }

    let key = match shared.authenticate(&headers) {
        Ok(key) => key,
        Err(e) => {
            let mut resp = respond(Reply::error(&e));
            if e.status == 401 {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"wandb\""));
            }
            return resp;
        }
    };

    let verb = verb(&method);
    if matches!(verb, Verb::Post | Verb::Put | Verb::Patch) {
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            let media = ct
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if media != SCIM_JSON && media != "application/json" {
                return respond(Reply::error(&ScimError::new(
                    415,
                    format!("unsupported content type {media:?}: use {SCIM_JSON}"),
                )));
            }
        }
    }

    let query: BTreeMap<String, String> = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(pairs)) => pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        Err(e) => return respond(Reply::error(&ScimError::new(400, format!("invalid query string: {e}")))),
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());

    let mut reply = shared.store().handle(&Request {
        verb,
        path: rel,
        query: &query,
        if_match,
        body: &body,
    });

    let ok = (200..300).contains(&reply.status);
    if verb != Verb::Get {
        shared.write_log.lock().unwrap_or_else(|e| e.into_inner()).push(WriteRecord {
            key,
            method: method.to_string(),
            path: rel.to_string(),
            status: reply.status,
            at: chrono::Utc::now(),
        });
    }
    if roll.lost && ok && verb != Verb::Get {
        // The change happened; the client only sees an error.
        reply = Reply::error(&ScimError::new(
            500,
            "internal server error (injected by the sandbox after applying the change)",
        ));
    }
    if roll.malformed && ok {
        if let Some(full) = reply.body.as_mut() {
            // Any strict prefix of a JSON object is invalid JSON.
            full.truncate(full.len() / 2);
        }
    }
    respond(reply)
}

fn throttled(retry_after: Option<u64>) -> Response {
    let mut resp = respond(Reply::error(&ScimError::new(429, "rate limit exceeded (injected by the sandbox)")));
    let h = resp.headers_mut();
    h.insert(HeaderName::from_static("ratelimit-remaining"), HeaderValue::from_static("0"));
    h.insert(HeaderName::from_static("ratelimit-reset"), HeaderValue::from_static("0"));
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match reply.body {
        Some(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
            r
        }
        None => status.into_response(),
    };
    if let Some(tag) = reply.etag.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}
