//! HTTP plumbing shared by the identity-provider sources (`scim`, `okta`, `entra`).
//!
//! One client per server: timeouts, no redirects (a redirect could carry the credential
//! to another host), bounded retries of 429/5xx/timeouts through the one retry policy of
//! [`crate::http::retry`] (honouring `Retry-After`, `RateLimit-Reset` and Okta's
//! `X-Rate-Limit-Reset`), request counters for the daemon's metrics, and errors that name
//! the server, the operation and the credential to check. Secrets are never logged: auth
//! headers are marked sensitive and server-supplied text is scrubbed before it reaches an
//! error.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Method, Url};
use serde_json::Value;

use super::SourceError;
use crate::config::{SourceConfig, SourceKind};
use crate::http::retry::{next_attempt, retryable_status, server_wait, Backoff, Next};
use crate::http::transport::{classify, read_body, BodyError, Failure};
use crate::http::{Counters, HttpStats};
use crate::secret::Secret;

/// Retries per request after the first attempt: with the default backoff and honoured
/// server hints this rides out a throttling window, and still fails a run in minutes.
pub const MAX_RETRIES: u32 = 5;
/// Hard stop for paging, far above any real directory: a server that keeps handing out
/// new `next` links must not keep idsync busy forever.
pub const MAX_PAGES: u32 = 100_000;
/// Consecutive empty pages that still name a next page before a listing is abandoned:
/// a server stuck handing out empty pages must not keep idsync paging for hours.
pub const MAX_EMPTY_PAGES: u32 = 3;
/// Most items one listing may bring, far above any real directory or group.
pub const MAX_ITEMS: usize = 10_000_000;
/// Groups whose members are read at once (Okta, Entra): a few requests in flight cut a
/// read of thousands of groups several-fold without provoking the IdPs' rate limits.
pub const GROUP_CONCURRENCY: usize = 4;
/// Largest response body accepted (one page).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Shortest secret scrubbed from error text.
const MIN_SCRUB: usize = 6;
/// Longest server text quoted in an error.
const MAX_DETAIL: usize = 300;

/// Why an identity provider could not be read. Every message names the server and the
/// operation, and says what to check; none carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdpError {
    #[error("{0}")]
    Config(String),

    #[error("{server} rejected the credential (401) during {op}: {detail}; check {credential}")]
    Unauthorized {
        server: String,
        op: String,
        detail: String,
        credential: String,
    },

    #[error("{server} refused {op} (403): {detail}; {advice}")]
    Forbidden {
        server: String,
        op: String,
        detail: String,
        advice: String,
    },

    #[error("{server} answered {status} to {op}: {detail}")]
    Http {
        server: String,
        op: String,
        status: u16,
        detail: String,
    },

    #[error("{op}: cannot reach {server}: {cause}; check the source url and the network")]
    Transport { server: String, op: String, cause: String },

    #[error("{op}: {server} did not answer in time; check the source url and source.timeout")]
    Timeout { server: String, op: String },

    #[error("{op}: {server} sent a response idsync cannot use: {detail}")]
    Malformed { server: String, op: String, detail: String },

    /// Reads as the last failure (which names the operation), then how often it was tried.
    #[error("{last} (gave up after {attempts} attempts)")]
    RetriesExhausted { op: String, attempts: u32, last: Box<IdpError> },
}

impl IdpError {
    /// Whether sending the same request again may succeed: 429, 5xx (not 501), timeouts
    /// and connection failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            IdpError::Http { status, .. } => retryable_status(*status),
            IdpError::Transport { .. } | IdpError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status behind the error, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            IdpError::Unauthorized { .. } => Some(401),
            IdpError::Forbidden { .. } => Some(403),
            IdpError::Http { status, .. } => Some(*status),
            IdpError::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}

impl From<IdpError> for SourceError {
    fn from(e: IdpError) -> SourceError {
        SourceError::Other(e.to_string())
    }
}

/// Process-wide counters (the daemon exports `idsync_http_requests_total{system="source",code}`
/// from [`http_stats`]); each client also counts its own (tests look at one read).
static GLOBAL: Counters = Counters::new();

/// Every request any identity-provider source sent in this process, by status code
/// (`"error"` for transport failures and timeouts), and the retries among them.
pub fn http_stats() -> HttpStats {
    GLOBAL.snapshot()
}

/// A response read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a request is sent: its method, URL, auth header and optional form body.
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub auth: Option<&'a HeaderValue>,
    pub form: Option<&'a [(&'a str, &'a str)]>,
}

impl<'a> Request<'a> {
    pub fn get(url: Url, auth: &'a HeaderValue) -> Request<'a> {
        Request {
            method: Method::GET,
            url,
            auth: Some(auth),
            form: None,
        }
    }
}

/// One HTTP client for one identity-provider server.
pub struct SourceHttp {
    http: reqwest::Client,
    /// How errors name the server, e.g. `Okta at https://acme.okta.com`.
    server: String,
    /// The config keys a 401 should send the admin to.
    credential: String,
    /// What a 403 usually means for this server.
    forbidden_advice: String,
    /// Values scrubbed from any server text before it lands in an error.
    scrub: Vec<Secret>,
    max_retries: u32,
    backoff: Backoff,
    stats: Arc<Counters>,
}

impl std::fmt::Debug for SourceHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceHttp")
            .field("server", &self.server)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl SourceHttp {
    pub fn new(server: String, credential: &str, forbidden_advice: &str, timeout: Duration) -> Result<SourceHttp, IdpError> {
        let timeout = if timeout.is_zero() { Duration::from_secs(30) } else { timeout };
        // Always with TLS: token endpoints (Okta, Entra) may be https when `server` is not.
        let http = crate::http::client(timeout, true).map_err(|e| IdpError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(SourceHttp {
            http,
            server,
            credential: credential.to_string(),
            forbidden_advice: forbidden_advice.to_string(),
            scrub: Vec::new(),
            max_retries: MAX_RETRIES,
            backoff: Backoff::default(),
            stats: Arc::new(Counters::new()),
        })
    }

    /// Replaces the retry bounds (tests use milliseconds).
    pub fn with_retries(mut self, max_retries: u32, backoff: Backoff) -> SourceHttp {
        self.max_retries = max_retries;
        self.backoff = backoff;
        self
    }

    /// Registers a secret to scrub from server text quoted in errors. Values shorter
    /// than [`MIN_SCRUB`] are not real credentials and would garble every message.
    pub fn scrub_secret(&mut self, s: Secret) {
        if s.expose().len() >= MIN_SCRUB {
            self.scrub.push(s);
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// This client's requests by status code, and its retries.
    pub fn stats(&self) -> HttpStats {
        self.stats.snapshot()
    }

    fn count(&self, code: &str) {
        self.stats.count(code);
        GLOBAL.count(code);
    }

    fn count_retry(&self) {
        self.stats.count_retry();
        GLOBAL.count_retry();
    }

    /// Sends a request, retrying 429/5xx/timeouts/connection failures with backoff and
    /// the server's hints. Returns any other response as it is (callers decide what a
    /// 401 means); an exhausted retry budget is an error.
    pub async fn send(&self, op: &str, req: &Request<'_>) -> Result<Reply, IdpError> {
        let mut attempt: u32 = 0;
        loop {
            let (err, hint) = match self.attempt(op, req).await {
                Ok(reply) => {
                    self.count(&reply.status.to_string());
                    tracing::debug!(op, status = reply.status, server = %self.server, "source request");
                    if !retryable_status(reply.status) {
                        return Ok(reply);
                    }
                    (self.error_from(op, &reply), wait_hint(&reply))
                }
                Err(e) => {
                    self.count("error");
                    (e, None)
                }
            };
            let retryable = err.is_retryable();
            let exhausted = |last| IdpError::RetriesExhausted {
                op: op.to_string(),
                attempts: attempt + 1,
                last: Box::new(last),
            };
            let delay = match next_attempt(err, retryable, attempt, self.max_retries, &self.backoff, hint, exhausted) {
                Next::Fail(err) => return Err(err),
                Next::Retry(delay, err) => {
                    tracing::warn!(op, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %err, "retrying source request");
                    delay
                }
            };
            self.count_retry();
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// [`SourceHttp::send`], then any non-2xx answer becomes an error.
    pub async fn send_ok(&self, op: &str, req: &Request<'_>) -> Result<Reply, IdpError> {
        let reply = self.send(op, req).await?;
        if reply.ok() {
            Ok(reply)
        } else {
            Err(self.error_from(op, &reply))
        }
    }

    /// GETs a JSON document (2xx only).
    pub async fn get_json(&self, op: &str, url: Url, auth: &HeaderValue) -> Result<(Value, Reply), IdpError> {
        let reply = self.send_ok(op, &Request::get(url, auth)).await?;
        let v = self.json(op, &reply)?;
        Ok((v, reply))
    }

    pub fn json(&self, op: &str, reply: &Reply) -> Result<Value, IdpError> {
        serde_json::from_slice(&reply.body).map_err(|e| self.malformed(op, format!("the body is not JSON ({e})")))
    }

    pub fn malformed(&self, op: &str, detail: impl Into<String>) -> IdpError {
        IdpError::Malformed {
            server: self.server.clone(),
            op: op.to_string(),
            detail: self.scrubbed(&detail.into()),
        }
    }

    /// The typed error for a non-2xx reply.
    pub fn error_from(&self, op: &str, reply: &Reply) -> IdpError {
        let detail = self.scrubbed(&error_detail(reply));
        let (server, op) = (self.server.clone(), op.to_string());
        match reply.status {
            401 => IdpError::Unauthorized {
                server,
                op,
                detail,
                credential: self.credential.clone(),
            },
            403 => IdpError::Forbidden {
                server,
                op,
                detail,
                advice: self.forbidden_advice.clone(),
            },
            s @ 300..=399 => IdpError::Http {
                server,
                op,
                status: s,
                detail: format!(
                    "a redirect to {} (idsync does not follow redirects, so the credential never goes elsewhere); put the final address in the config",
                    reply.header("location").unwrap_or("?")
                ),
            },
            status => IdpError::Http { server, op, status, detail },
        }
    }

    fn scrubbed(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in &self.scrub {
            t = t.replace(s.expose(), "[redacted]");
        }
        t
    }

    async fn attempt(&self, op: &str, req: &Request<'_>) -> Result<Reply, IdpError> {
        let mut rb = self
            .http
            .request(req.method.clone(), req.url.clone())
            .header(ACCEPT, "application/scim+json, application/json");
        if let Some(a) = req.auth {
            rb = rb.header(AUTHORIZATION, a.clone());
        }
        if let Some(form) = req.form {
            rb = rb.form(form);
        }
        let transport = |e: reqwest::Error| self.transport_error(op, e);
        let mut resp = rb.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_body(&mut resp, MAX_BODY).await.map_err(|e| match e {
            BodyError::Transport(e) => transport(e),
            BodyError::TooLarge { limit } => self.malformed(op, BodyError::too_large_detail(limit)),
        })?;
        Ok(Reply { status, headers, body })
    }

    fn transport_error(&self, op: &str, e: reqwest::Error) -> IdpError {
        let (server, op) = (self.server.clone(), op.to_string());
        match classify(&e) {
            Failure::Timeout => IdpError::Timeout { server, op },
            Failure::Build(cause) => IdpError::Config(format!("{op}: cannot build the request for {server}: {cause}")),
            Failure::Connection(cause) => IdpError::Transport {
                server,
                op,
                cause: self.scrubbed(&cause),
            },
        }
    }
}

/// How one paged listing is followed: which operation, which origin the credential may go
/// to, how the server names its next-page link, and which config key sets the origin.
pub struct Pager<'a> {
    pub op: &'a str,
    pub base: &'a Url,
    /// e.g. `the next link` (Okta's `Link` header) or `@odata.nextLink`.
    pub link_name: &'a str,
    pub config_key: &'a str,
    pub max_items: usize,
}

impl Pager<'_> {
    /// Every item of a paged listing. `fetch` reads one page and returns its items and
    /// the next-page link, if any (absolute, or relative to `base`). A link to another
    /// origin, one already followed, too many pages, too many consecutive empty pages or
    /// too many items is an error: never a silently shorter list, never a credential sent
    /// elsewhere.
    pub async fn collect<F, Fut>(&self, http: &SourceHttp, first: Url, mut fetch: F) -> Result<Vec<Value>, IdpError>
    where
        F: FnMut(Url) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<Value>, Option<String>), IdpError>>,
    {
        let (op, link) = (self.op, self.link_name);
        let mut out = Vec::new();
        let mut url = first;
        let mut followed: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut empty_in_a_row = 0u32;
        for _ in 0..MAX_PAGES {
            followed.insert(url.to_string());
            let (items, next) = fetch(url).await?;
            empty_in_a_row = if items.is_empty() { empty_in_a_row + 1 } else { 0 };
            if out.len().saturating_add(items.len()) > self.max_items {
                return Err(http.malformed(
                    op,
                    format!("more than {} items in one listing; refusing to continue", self.max_items),
                ));
            }
            out.extend(items);
            let Some(next) = next else {
                return Ok(out);
            };
            if empty_in_a_row >= MAX_EMPTY_PAGES {
                return Err(http.malformed(
                    op,
                    format!("{empty_in_a_row} empty pages in a row that still name a next page; refusing to continue"),
                ));
            }
            let next = Url::parse(&next)
                .or_else(|_| self.base.join(&next))
                .map_err(|_| http.malformed(op, format!("unusable {link} {next:?}")))?;
            if !same_origin(self.base, &next) {
                return Err(http.malformed(
                    op,
                    format!(
                        "{link} leads to another origin ({}); idsync sends the credential only to {} (check {})",
                        next.origin().ascii_serialization(),
                        self.base.origin().ascii_serialization(),
                        self.config_key
                    ),
                ));
            }
            if followed.contains(next.as_str()) {
                return Err(http.malformed(op, format!("{link} points to a page already read (a paging loop)")));
            }
            url = next;
        }
        Err(http.malformed(op, "still paging after too many pages; refusing to continue"))
    }
}

/// Policy matches groups by name: several groups sharing a name are merged, which an
/// admin should know about (and can avoid by referencing the id).
pub(crate) fn warn_duplicate_names(groups: &[crate::model::Group], kind: &str) {
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in groups {
        by_name.entry(g.name.as_str()).or_default().push(g.anchor.as_str());
    }
    for (name, ids) in by_name.into_iter().filter(|(_, ids)| ids.len() > 1) {
        tracing::warn!(
            group = name,
            ids = ids.join(", "),
            "several {kind} groups share this name; a policy rule naming it covers all of them (name one by its id instead)"
        );
    }
}

/// The wait a throttled or failing reply asks for: `Retry-After`, and the rate-limit
/// reset (`RateLimit-Reset`, or Okta's `X-Rate-Limit-Reset`, an epoch time) when the
/// quota is the problem.
fn wait_hint(reply: &Reply) -> Option<Duration> {
    let reset = reply.header("ratelimit-reset").or_else(|| reply.header("x-rate-limit-reset"));
    let remaining = reply
        .header("ratelimit-remaining")
        .or_else(|| reply.header("x-rate-limit-remaining"));
    server_wait(reply.status, reply.header("retry-after"), reset, remaining, chrono::Utc::now())
}

/// The useful part of an error body: SCIM `detail`, Okta `errorSummary`, Graph
/// `error.message`, OAuth `error_description`, or the start of the text.
pub fn error_detail(reply: &Reply) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(&reply.body) {
        let s = |v: &Value| v.as_str().map(str::to_string);
        let found = s(&v["detail"])
            .or_else(|| {
                s(&v["errorSummary"]).map(|sum| match s(&v["errorCode"]) {
                    Some(code) => format!("{sum} ({code})"),
                    None => sum,
                })
            })
            .or_else(|| {
                s(&v["error"]["message"]).map(|m| match s(&v["error"]["code"]) {
                    Some(code) => format!("{m} ({code})"),
                    None => m,
                })
            })
            .or_else(|| s(&v["error_description"]))
            .or_else(|| s(&v["error"]))
            .or_else(|| s(&v["message"]));
        if let Some(d) = found {
            return truncate(d.trim());
        }
    }
    let text = String::from_utf8_lossy(&reply.body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {} with an empty body", reply.status)
    } else {
        truncate(text)
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_DETAIL {
        return s.to_string();
    }
    let mut t: String = s.chars().take(MAX_DETAIL).collect();
    t.push('…');
    t
}

/// Whether `link` may receive the credential meant for `base`: same scheme, host and port.
pub fn same_origin(base: &Url, link: &Url) -> bool {
    base.scheme() == link.scheme() && base.host_str() == link.host_str() && base.port_or_known_default() == link.port_or_known_default()
}

/// Parses a configured base URL, dropping one trailing slash so paths join cleanly.
pub fn parse_base(key: &str, raw: &str) -> Result<Url, IdpError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|e| IdpError::Config(format!("source.{key} = {raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(IdpError::Config(format!(
            "source.{key} = {raw:?} must be an http(s) URL with a host"
        )));
    }
    Ok(url)
}

/// `base` with path segments appended (each escaped).
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut p) = url.path_segments_mut() {
        p.pop_if_empty();
        p.extend(segments);
    }
    url
}

/// An `Authorization` header value that never shows up in a header dump.
pub fn auth_header(scheme: &str, secret: &Secret, what: &str) -> Result<HeaderValue, IdpError> {
    let mut v = HeaderValue::from_str(&format!("{scheme} {}", secret.expose())).map_err(|_| {
        IdpError::Config(format!(
            "{what} contains characters not allowed in an HTTP header (stray whitespace or line breaks in the file?)"
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The source's credential, read from `*_file` / `*_env` as the config says.
pub fn source_secret(cfg: &SourceConfig, config_dir: &std::path::Path) -> Result<Secret, SourceError> {
    let (key, file, env) = match cfg.kind {
        SourceKind::Entra => ("client_secret", cfg.client_secret_file.as_deref(), cfg.client_secret_env.as_deref()),
        _ => ("token", cfg.token_file.as_deref(), cfg.token_env.as_deref()),
    };
    let secret =
        crate::config::read_secret(file, env, &format!("[source] {key}"), config_dir).map_err(|e| SourceError::Other(e.to_string()))?;
    if secret.expose().trim().is_empty() || secret.expose().chars().any(|c| c.is_control()) {
        return Err(SourceError::Other(format!(
            "[source] {key}: the secret is blank or contains line breaks or control characters; check source.{key}_file / source.{key}_env"
        )));
    }
    Ok(secret)
}

/// Where an identity-provider source reads from, for `check-config`; `None` for other kinds.
pub fn describe(cfg: &SourceConfig) -> Option<String> {
    let url = cfg.url.as_deref().unwrap_or("?");
    match cfg.kind {
        SourceKind::Scim => Some(format!("SCIM server {url}, pages of {}", cfg.page_size)),
        SourceKind::Okta => Some(format!("Okta org {url}")),
        SourceKind::Entra => Some(format!(
            "Entra ID tenant {}, app {}, token from {}, Graph at {}",
            cfg.tenant_id.as_deref().unwrap_or("?"),
            cfg.client_id.as_deref().unwrap_or("?"),
            cfg.authority.as_deref().unwrap_or(super::entra::DEFAULT_AUTHORITY),
            cfg.graph_url.as_deref().unwrap_or(super::entra::DEFAULT_GRAPH_URL)
        )),
        SourceKind::Ldap | SourceKind::Ldif => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn error_details_come_from_each_vendors_error_body() {
        let scim = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"Authorization failure"}"#;
        assert_eq!(error_detail(&reply(401, scim)), "Authorization failure");
        let okta =
            r#"{"errorCode":"E0000011","errorSummary":"Invalid token provided","errorLink":"E0000011","errorId":"oae1","errorCauses":[]}"#;
        assert_eq!(error_detail(&reply(401, okta)), "Invalid token provided (E0000011)");
        let graph = r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#;
        assert_eq!(
            error_detail(&reply(403, graph)),
            "Insufficient privileges to complete the operation. (Authorization_RequestDenied)"
        );
        let oauth = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
        assert_eq!(error_detail(&reply(401, oauth)), "AADSTS7000215: Invalid client secret provided.");
        assert_eq!(error_detail(&reply(502, "")), "HTTP 502 with an empty body");
        let long = "x".repeat(1000);
        assert_eq!(error_detail(&reply(500, &long)).chars().count(), MAX_DETAIL + 1);
    }

    #[test]
    fn errors_name_the_server_operation_and_credential_and_scrub_secrets() {
        let mut h = SourceHttp::new(
            "Okta at https://acme.okta.com".into(),
            "source.token_file / source.token_env",
            "use an admin token",
            Duration::from_secs(5),
        )
        .unwrap();
        h.scrub_secret(Secret::new("s3cr3t-token"));
        let e = h.error_from(
            "GET /api/v1/users (list users)",
            &reply(401, r#"{"errorSummary":"bad token s3cr3t-token"}"#),
        );
        let m = e.to_string();
        assert!(
            m.contains("Okta at https://acme.okta.com") && m.contains("GET /api/v1/users"),
            "{m}"
        );
        assert!(m.contains("source.token_file"), "{m}");
        assert!(!m.contains("s3cr3t-token"), "{m}");
        assert_eq!(e.status(), Some(401));
        assert!(!e.is_retryable());
        let e = h.error_from("op", &reply(403, "{}"));
        assert!(e.to_string().contains("use an admin token"), "{e}");
        let mut r = reply(302, "");
        r.headers
            .insert("location", HeaderValue::from_static("https://elsewhere.example/x"));
        let e = h.error_from("op", &r);
        assert!(
            e.to_string().contains("elsewhere.example") && e.to_string().contains("redirect"),
            "{e}"
        );
        assert!(h.error_from("op", &reply(503, "")).is_retryable());
        assert!(!h.error_from("op", &reply(501, "")).is_retryable());
        assert!(!format!("{h:?}").contains("s3cr3t"));
    }

    #[test]
    fn okta_rate_limit_reset_is_an_epoch_time_and_only_counts_when_throttled() {
        let now = chrono::Utc::now().timestamp();
        let mut r = reply(429, "");
        r.headers
            .insert("x-rate-limit-reset", HeaderValue::from_str(&(now + 30).to_string()).unwrap());
        let w = wait_hint(&r).unwrap();
        assert!(w >= Duration::from_secs(28) && w <= Duration::from_secs(31), "{w:?}");
        r.status = 503;
        r.headers.insert("x-rate-limit-remaining", HeaderValue::from_static("17"));
        assert_eq!(wait_hint(&r), None);
        r.headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(wait_hint(&r), Some(Duration::from_secs(2)));
    }

    #[test]
    fn same_origin_compares_scheme_host_and_port() {
        let base = Url::parse("https://acme.okta.com").unwrap();
        assert!(same_origin(
            &base,
            &Url::parse("https://acme.okta.com/api/v1/users?after=x").unwrap()
        ));
        assert!(same_origin(&base, &Url::parse("https://acme.okta.com:443/x").unwrap()));
        assert!(!same_origin(&base, &Url::parse("http://acme.okta.com/x").unwrap()));
        assert!(!same_origin(&base, &Url::parse("https://evil.example/x").unwrap()));
        assert!(!same_origin(&base, &Url::parse("https://acme.okta.com:8443/x").unwrap()));
    }

    #[test]
    fn base_urls_join_path_segments_with_escaping() {
        let b = parse_base("url", "https://idp.example.com/scim/v2/").unwrap();
        assert_eq!(join(&b, &["Users"]).as_str(), "https://idp.example.com/scim/v2/Users");
        assert_eq!(
            join(&b, &["Groups", "a/b c"]).as_str(),
            "https://idp.example.com/scim/v2/Groups/a%2Fb%20c"
        );
        let root = parse_base("url", "https://acme.okta.com").unwrap();
        assert_eq!(join(&root, &["api", "v1", "users"]).as_str(), "https://acme.okta.com/api/v1/users");
        assert!(parse_base("url", "ftp://x").is_err());
        assert!(parse_base("url", "not a url").is_err());
    }

    /// Runs a [`Pager`] over canned pages: `page(n)` is what the n-th fetch returns.
    fn run_pager(
        max_items: usize,
        page: impl Fn(usize, &Url) -> (Vec<Value>, Option<String>),
    ) -> (Result<Vec<Value>, IdpError>, Vec<String>) {
        let http = SourceHttp::new("Okta at https://acme.okta.com".into(), "cred", "advice", Duration::from_secs(5)).unwrap();
        let base = Url::parse("https://acme.okta.com").unwrap();
        let pager = Pager {
            op: "GET /api/v1/users (list users)",
            base: &base,
            link_name: "the next link",
            config_key: "source.url",
            max_items,
        };
        let fetched = std::sync::Mutex::new(Vec::new());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = rt.block_on(pager.collect(&http, base.join("/api/v1/users").unwrap(), |url| {
            let mut f = fetched.lock().unwrap();
            f.push(url.to_string());
            let out = page(f.len(), &url);
            async move { Ok(out) }
        }));
        (r, fetched.into_inner().unwrap())
    }

    #[test]
    fn pager_follows_same_origin_links_absolute_or_relative() {
        let (r, fetched) = run_pager(MAX_ITEMS, |n, _| match n {
            1 => (vec![Value::from(1)], Some("https://acme.okta.com/api/v1/users?after=a".into())),
            2 => (vec![Value::from(2)], Some("/api/v1/users?after=b".into())),
            _ => (vec![Value::from(3)], None),
        });
        assert_eq!(r.unwrap(), vec![Value::from(1), Value::from(2), Value::from(3)]);
        assert_eq!(fetched[2], "https://acme.okta.com/api/v1/users?after=b");
    }

    #[test]
    fn pager_refuses_loops_other_origins_empty_runs_and_endless_items() {
        let (r, fetched) = run_pager(MAX_ITEMS, |n, _| {
            (vec![Value::from(n)], Some("https://acme.okta.com/api/v1/users?after=same".into()))
        });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("a paging loop") && e.contains("GET /api/v1/users"), "{e}");
        assert_eq!(fetched.len(), 2);

        let (r, fetched) = run_pager(MAX_ITEMS, |_, _| {
            (vec![Value::from(1)], Some("https://evil.example/api/v1/users".into()))
        });
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("another origin (https://evil.example)") && e.contains("check source.url"),
            "{e}"
        );
        assert_eq!(fetched.len(), 1, "the credential never went to the other origin");

        let (r, fetched) = run_pager(MAX_ITEMS, |n, _| {
            let items = if n == 1 { vec![Value::from(1)] } else { vec![] };
            (items, Some(format!("https://acme.okta.com/api/v1/users?after={n}")))
        });
        let e = r.unwrap_err().to_string();
        assert!(e.contains("3 empty pages in a row"), "{e}");
        assert_eq!(fetched.len(), 1 + MAX_EMPTY_PAGES as usize);
        // Empty pages that end the listing, or are followed by content, are fine.
        let (r, _) = run_pager(MAX_ITEMS, |n, _| match n {
            1 | 2 => (vec![], Some(format!("/api/v1/users?after={n}"))),
            3 => (vec![Value::from(3)], Some("/api/v1/users?after=3".into())),
            _ => (vec![], None),
        });
        assert_eq!(r.unwrap(), vec![Value::from(3)]);

        let (r, fetched) = run_pager(5, |n, _| (vec![Value::from(n); 2], Some(format!("/api/v1/users?after={n}"))));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("more than 5 items"), "{e}");
        assert_eq!(fetched.len(), 3);
    }

    #[test]
    fn auth_headers_are_sensitive_and_reject_line_breaks() {
        let h = auth_header("SSWS", &Secret::new("abc"), "the token").unwrap();
        assert!(h.is_sensitive());
        assert!(auth_header("Bearer", &Secret::new("a\nb"), "the token").is_err());
    }
}
