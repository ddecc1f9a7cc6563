//! The HTTP side: one `send` with the retry policy, and the SCIM operations on top.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, Url};
use serde_json::Value;

use base64::Engine;

use super::error::TargetError;
use super::wire;
use crate::config::{TargetAuth, TargetConfig};
use crate::http::retry::{next_attempt, retryable_status, server_wait, Backoff, Next};
use crate::http::transport::{classify, may_have_been_sent, read_body, BodyError, Failure};
use crate::http::{Counters, HttpStats};
use crate::model::{Deployment, DeprovisionMode};
use crate::model::{Email, OrgRole, OrgSnapshot, OrgUser, Team, TeamRole};
use crate::secret::Secret;

/// W&B answers at most 9999 resources per list request.
const PAGE_SIZE: u64 = 9999;
/// Hard stop for paging, far above any real org (100k pages): a server that keeps
/// inventing new ids must not keep idsync busy forever.
const MAX_PAGES: u32 = 100_000;
/// Most resources a list may claim: far above any real org, low enough that a server
/// claiming billions never has idsync paging and allocating for them.
const MAX_ITEMS: u64 = 5_000_000;
/// Pages of one list fetched at once once their start is known (bounded, in order).
const PAGE_FETCHES: u32 = 4;
/// Largest response body accepted; a 50,000-user page is a few tens of MiB.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Used when `target.timeout` is zero: a request without any limit could hang a run.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(30);
const ACCEPT_VALUE: &str = "application/scim+json, application/json";
const SCIM_JSON: &str = "application/scim+json";

/// The outcome of `create_user` / `create_team`: new, or already there (409 "exists",
/// which is also what a retried POST whose first attempt landed gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<T> {
    New(T),
    Existing(T),
}

impl<T> Created<T> {
    pub fn existed(&self) -> bool {
        matches!(self, Created::Existing(_))
    }
    pub fn get(&self) -> &T {
        match self {
            Created::New(t) | Created::Existing(t) => t,
        }
    }
    pub fn into_inner(self) -> T {
        match self {
            Created::New(t) | Created::Existing(t) => t,
        }
    }
}

/// How many userNames a user POST tries before giving up.
const USERNAME_TRIES: usize = 5;

/// The userNames to try, in order: the directory's (or the email when it has none), the
/// email, then `<local part>-2`, `-3`, ... up to [`USERNAME_TRIES`]. Deterministic, so a
/// rerun asks for the same names and finds by email what an earlier run created.
fn username_candidates(email: &Email, username: &str) -> Vec<String> {
    fn push(out: &mut Vec<String>, name: String) {
        // W&B compares userNames case-insensitively.
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&name)) {
            out.push(name);
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(USERNAME_TRIES);
    if !username.trim().is_empty() {
        push(&mut out, username.to_string());
    }
    push(&mut out, email.to_string());
    let local = email.as_str().split_once('@').map_or(email.as_str(), |(l, _)| l);
    let mut n = 2;
    while out.len() < USERNAME_TRIES {
        push(&mut out, format!("{local}-{n}"));
        n += 1;
    }
    out
}

/// What a user POST came to: it landed under `username`, or the user with that email
/// was already there.
enum Posted {
    Landed { reply: Reply, username: String },
    Existing(OrgUser),
}

/// A client for W&B's SCIM API. Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct WandbClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    auth_kind: TargetAuth,
    username: String,
    /// Kept only to scrub it from server-supplied text that ends up in errors.
    key: Secret,
    deployment: Deployment,
    max_retries: u32,
    backoff: Backoff,
    stats: Arc<Counters>,
    /// Checked before every attempt of every write, retries included (HA: the leader
    /// lease); `Err(why)` and the attempt is not sent.
    write_guard: Option<WriteGuard>,
}

/// See [`WandbClient::with_write_guard`].
pub type WriteGuard = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl fmt::Debug for WandbClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("WandbClient")
            .field("base", &i.base.as_str())
            .field("auth", &i.auth_kind)
            .field("username", &i.username)
            .field("key", &i.key)
            .field("deployment", &i.deployment)
            .field("max_retries", &i.max_retries)
            .field("backoff", &i.backoff)
            .finish()
    }
}

/// A response, read completely, with the headers the client uses.
struct Reply {
    status: u16,
    body: Vec<u8>,
    etag: Option<String>,
    location: Option<String>,
    retry_after: Option<String>,
    ratelimit_reset: Option<String>,
    ratelimit_remaining: Option<String>,
    /// An earlier attempt of this write may have changed W&B (see
    /// [`TargetError::may_have_landed`]): an error made of this reply is then an
    /// outcome idsync cannot know, not a refusal.
    landed_before: bool,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(|s| s.to_string())
}

impl WandbClient {
    pub fn new(cfg: &TargetConfig, api_key: Secret) -> Result<WandbClient, TargetError> {
        let base = base_url(&cfg.url, &cfg.scim_path)?;
        if api_key.expose().trim().is_empty() {
            return Err(TargetError::Config(
                "the W&B API key is empty: check target.api_key_file / target.api_key_env".into(),
            ));
        }
        // Basic auth base64-encodes the key, so a stray space or line break would not be
        // caught by header validation and would surface later as a puzzling 401.
        if api_key.expose().chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TargetError::Config(
                "the W&B API key contains spaces, line breaks or control characters: check \
                 target.api_key_file / target.api_key_env (one trailing newline is trimmed)"
                    .into(),
            ));
        }
        if cfg.username.contains(':') || cfg.username.chars().any(char::is_control) {
            return Err(TargetError::Config(
                "target.username must not contain ':' or control characters".into(),
            ));
        }
        let raw = match cfg.auth {
            TargetAuth::Basic => {
                let pair = format!("{}:{}", cfg.username, api_key.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
            }
            TargetAuth::Bearer => format!("Bearer {}", api_key.expose()),
        };
        let mut auth = HeaderValue::from_str(&raw).map_err(|_| {
            TargetError::Config(
                "the W&B API key or target.username contains characters not allowed in an \
                 HTTP header (stray whitespace or newlines in target.api_key_file?)"
                    .into(),
            )
        })?;
        // Keeps the value out of any header dump reqwest or hyper might produce.
        auth.set_sensitive(true);
        let timeout = if cfg.timeout.0.is_zero() { FALLBACK_TIMEOUT } else { cfg.timeout.0 };
        // Every request goes to `base`, so a plain-http URL never needs the CA roots.
        let tls = base.scheme() != "http";
        let http = crate::http::client(timeout, tls).map_err(|e| TargetError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(WandbClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                auth_kind: cfg.auth,
                username: cfg.username.clone(),
                key: api_key,
                deployment: cfg.deployment,
                max_retries: cfg.max_retries,
                backoff: Backoff::default(),
                stats: Arc::new(Counters::new()),
                write_guard: None,
            }),
        })
    }

    /// Replaces the backoff bounds (tests use milliseconds).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> WandbClient {
        Arc::make_mut(&mut self.inner).backoff = Backoff { base, cap };
        self
    }

    /// `<target.url><target.scim_path>`, as requests use it.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    pub fn deployment(&self) -> Deployment {
        self.inner.deployment
    }

    pub fn http_stats(&self) -> HttpStats {
        self.inner.stats.snapshot()
    }

    // ---- reads -------------------------------------------------------------------------

    /// Everything W&B has now: all users and all teams, complete or an error.
    ///
    /// Team membership from `/Groups` fills in `teams` for users whose `teamRoles` omit
    /// the team (older servers), with the default `member` role, recorded as not stated:
    /// such a member may be an admin, so the admin floors never count on it.
    pub async fn snapshot(&self) -> Result<OrgSnapshot, TargetError> {
        let (mut users, teams) = tokio::try_join!(self.list_users(), self.list_teams())?;
        let index: BTreeMap<String, usize> = users.iter().enumerate().map(|(i, u)| (u.id.clone(), i)).collect();
        for t in &teams {
            for m in &t.members {
                if let Some(&i) = index.get(m) {
                    let u = &mut users[i];
                    if !u.teams.contains_key(&t.name) {
                        u.teams.insert(t.name.clone(), TeamRole::member());
                        u.unstated_team_roles.insert(t.name.clone());
                    }
                }
            }
        }
        Ok(OrgSnapshot { users, teams })
    }

    pub async fn list_users(&self) -> Result<Vec<OrgUser>, TargetError> {
        self.list("Users", "users", None, |u: &OrgUser| &u.id).await
    }

    pub async fn list_teams(&self) -> Result<Vec<Team>, TargetError> {
        self.list("Groups", "teams", None, |t: &Team| &t.id).await
    }

    /// `None` when W&B answers 404.
    pub async fn get_user(&self, id: &str) -> Result<Option<OrgUser>, TargetError> {
        check_id("user", id)?;
        let op = format!("GET /Users/{id} (read user)");
        let reply = self.send(&op, Method::GET, self.url(&["Users", id]), &[], None, None).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let v = self.json(&op, reply)?;
        wire::parse_user(&v)
            .map(Some)
            .map_err(|detail| TargetError::Malformed { op, detail })
    }

    /// Looks a user up by email. Matching is re-done locally, so a server that ignores
    /// the filter (and lists everyone) cannot make this return the wrong user.
    pub async fn find_user_by_email(&self, email: &Email) -> Result<Option<OrgUser>, TargetError> {
        let filter = wire::filter_eq("emails.value", email.as_str());
        let users = self.list("Users", "users", Some(filter), |u: &OrgUser| &u.id).await?;
        // A service account with this email is nobody's account to link to (SPEC §4).
        Ok(users
            .into_iter()
            .find(|u| !u.service_account && Email::parse(&u.email).as_ref() == Some(email)))
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<OrgUser>, TargetError> {
        let filter = wire::filter_eq("userName", username);
        let users = self.list("Users", "users", Some(filter), |u: &OrgUser| &u.id).await?;
        Ok(users.into_iter().find(|u| u.username.eq_ignore_ascii_case(username)))
    }

    pub async fn find_team_by_name(&self, name: &str) -> Result<Option<Team>, TargetError> {
        let filter = wire::filter_eq("displayName", name);
        let teams = self.list("Groups", "teams", Some(filter), |t: &Team| &t.id).await?;
        Ok(teams.into_iter().find(|t| t.name == name))
    }

    /// One cheap authenticated read, for `check-config --connect`.
    pub async fn check_connection(&self) -> Result<(), TargetError> {
        let op = "GET /Users (connection check)".to_string();
        let query = [("startIndex", "1".to_string()), ("count", "1".to_string())];
        let url = self.url(&["Users"]);
        let reply = self.send(&op, Method::GET, url.clone(), &query, None, None).await?;
        let reply = self.collection_found(&op, &url, reply)?;
        let v = self.json(&op, reply)?;
        wire::parse_list(v)
            .map(|_| ())
            .map_err(|detail| TargetError::Malformed { op, detail })
    }

    /// Reads every page of a list and checks that the distinct resources received add up
    /// to `totalResults`. Works whether or not the server honours `startIndex`/`count`,
    /// and fails (rather than loops) when a page brings nothing new or the server claims
    /// more than [`MAX_ITEMS`].
    ///
    /// Once the first page has said how many resources a page holds, where the next pages
    /// start is known: up to [`PAGE_FETCHES`] are fetched at once and taken in order. A
    /// page is only taken when it starts where the previous one ended (a short page sends
    /// the rest of its batch back to be fetched again from the right place).
    async fn list<T: wire::Resource>(
        &self,
        resource: &str,
        what: &str,
        filter: Option<String>,
        id_of: fn(&T) -> &String,
    ) -> Result<Vec<T>, TargetError> {
        let op = match &filter {
            Some(f) => format!("GET /{resource}?filter={f} (find {what})"),
            None => format!("GET /{resource} (list {what})"),
        };
        let url = self.url(&[resource]);
        let fetch = |start: u64| {
            let mut query = vec![("startIndex", start.to_string()), ("count", PAGE_SIZE.to_string())];
            if let Some(f) = &filter {
                query.push(("filter", f.clone()));
            }
            let (op, url) = (&op, url.clone());
            async move {
                let reply = self.send(op, Method::GET, url.clone(), &query, None, None).await?;
                let reply = self.collection_found(op, &url, reply)?;
                let reply = self.expect_ok(op, reply)?;
                // Straight from the bytes: a page is megabytes, not worth a Value tree.
                wire::read_list::<T>(&reply.body).map_err(|e| match e {
                    wire::PageError::Json(e) => self.invalid_json(op, e, &reply.body),
                    wire::PageError::List(detail) => TargetError::Malformed { op: op.clone(), detail },
                })
            }
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut out: Vec<T> = Vec::new();
        let mut start: u64 = 1;
        let mut total: Option<u64> = None;
        // How many resources a page holds, learnt from the first one. (A server whose
        // later pages are all shorter costs up to four requests per page taken: bounded
        // by MAX_PAGES, and no such server is known.)
        let mut per_page: u64 = 0;
        let mut requests: u32 = 0;
        while requests < MAX_PAGES {
            let batch = if per_page == 0 { 1 } else { PAGE_FETCHES.min(MAX_PAGES - requests) };
            let starts: Vec<u64> = (0..u64::from(batch))
                .map(|k| start.saturating_add(k.saturating_mul(per_page)))
                .take_while(|&s| in_batch(s, start, total))
                .collect();
            requests += starts.len() as u32;
            let pages = futures_util::future::try_join_all(starts.iter().map(|&s| fetch(s))).await?;
            for (page_start, page) in starts.into_iter().zip(pages) {
                if page_start != start {
                    // An earlier page of this batch was short: fetch again from `start`.
                    break;
                }
                match total {
                    Some(t) if t != page.total => {
                        return Err(TargetError::Malformed {
                            op,
                            detail: format!(
                                "totalResults changed from {t} to {} between pages (the org changed \
                                 during the read); retry",
                                page.total
                            ),
                        })
                    }
                    Some(_) => {}
                    None if page.total > MAX_ITEMS => {
                        return Err(TargetError::Malformed {
                            op,
                            detail: format!(
                                "the server claims {} {what}, more than idsync reads ({MAX_ITEMS}); \
                                 refusing to page through it",
                                page.total
                            ),
                        })
                    }
                    None => total = Some(page.total),
                }
                let items = page.items.map_err(|detail| TargetError::Malformed { op: op.clone(), detail })?;
                let received = items.len() as u64;
                let mut fresh = 0u64;
                for item in items {
                    if seen.insert(id_of(&item).clone()) {
                        out.push(item);
                        fresh += 1;
                    }
                }
                let got = seen.len() as u64;
                if got >= page.total || fresh == 0 || got > MAX_ITEMS {
                    // Done, or the server stopped making progress (an empty page, or the
                    // same page again because it ignores startIndex): the count check
                    // decides.
                    return finish(what, out, page.total);
                }
                if per_page == 0 {
                    per_page = received;
                }
                start = start.saturating_add(received);
            }
        }
        Err(TargetError::Malformed {
            op,
            detail: format!("still paging after {MAX_PAGES} pages; refusing to continue"),
        })
    }

    // ---- writes ------------------------------------------------------------------------

    /// Creates a user; an existing one (409) is returned instead, never duplicated.
    pub async fn create_user(&self, email: &Email, username: &str, display_name: &str, teams: &[String]) -> Result<OrgUser, TargetError> {
        let created = self.create_user_outcome(email, username, display_name, teams).await?;
        if created.existed() {
            tracing::info!(email = %email, id = %created.get().id, "W&B user already existed; using it");
        }
        Ok(created.into_inner())
    }

    /// Like [`WandbClient::create_user`], telling whether the user already existed. The
    /// returned user's `username` is the userName W&B has, which differs from `username`
    /// when that one was held by another account (see [`username_candidates`]).
    pub async fn create_user_outcome(
        &self,
        email: &Email,
        username: &str,
        display_name: &str,
        teams: &[String],
    ) -> Result<Created<OrgUser>, TargetError> {
        let op = format!("POST /Users (create user {email})");
        // The teams extension is SaaS-only; elsewhere memberships are added afterwards.
        let with_teams = self.inner.deployment == Deployment::Saas;
        let body = |name: &str| wire::create_user_body(email, name, display_name, teams, with_teams);
        let (reply, chosen) = match self.post_user(&op, email, username, false, body).await? {
            Posted::Existing(u) => return Ok(Created::Existing(u)),
            Posted::Landed { reply, username } => (reply, username),
        };
        let parsed = serde_json::from_slice::<Value>(&reply.body)
            .map_err(|e| e.to_string())
            .and_then(|v| wire::parse_user(&v));
        let mut user = match parsed {
            Ok(u) => u,
            // The user exists now; an unusable echo is not worth failing the action for.
            // W&B said 2xx, so a failure to find the user is an unknown outcome.
            Err(detail) => match self.find_user_by_email(email).await.map_err(|e| unknown(&op, e))? {
                Some(u) => u,
                None => return Err(unknown(&op, TargetError::Malformed { op: op.clone(), detail })),
            },
        };
        if user.username.is_empty() {
            user.username = chosen;
        }
        Ok(Created::New(user))
    }

    /// Brings a deactivated user back. On SaaS deactivation removed the user from the org
    /// and W&B does not support reactivation there, so the user is added again instead.
    pub async fn reactivate_user(&self, user_id: &str, email: &Email, username: &str) -> Result<(), TargetError> {
        match self.inner.deployment {
            Deployment::Saas => {
                let op = format!("POST /Users (re-add user {email})");
                let body = |name: &str| wire::create_user_body(email, name, "", &[], false);
                self.post_user(&op, email, username, true, body).await.map(|_| ())
            }
            Deployment::Dedicated | Deployment::SelfManaged => {
                check_id("user", user_id)?;
                let op = format!("PATCH /Users/{user_id} (reactivate)");
                let body = wire::patch_body(vec![wire::set_active_op(true)]);
                self.patch(&op, self.url(&["Users", user_id]), &body, false).await
            }
        }
    }

    /// POSTs a user under the first free userName of [`username_candidates`]. A 409 means
    /// "exists" only when a user with this email is listed (with `need_active`, listed
    /// active): W&B also answers 409 when the userName belongs to someone else, and that
    /// account is never this person. The email re-read after each 409 also finds a user
    /// an earlier, retried POST created, so nothing is duplicated. `body` builds the
    /// request for one userName.
    async fn post_user(
        &self,
        op: &str,
        email: &Email,
        username: &str,
        need_active: bool,
        body: impl Fn(&str) -> Value,
    ) -> Result<Posted, TargetError> {
        let candidates = username_candidates(email, username);
        let mut detail = String::new();
        for name in &candidates {
            let reply = self
                .send(op, Method::POST, self.url(&["Users"]), &[], Some(&body(name)), None)
                .await?;
            if reply.status != 409 {
                let reply = self.expect_ok(op, reply)?;
                if let Some(wanted) = candidates.first().filter(|w| *w != name) {
                    tracing::warn!(
                        email = %email, wanted = %wanted, chosen = %name,
                        "W&B userName {wanted} is held by another account; {email} got userName {name} instead"
                    );
                }
                return Ok(Posted::Landed {
                    reply,
                    username: name.clone(),
                });
            }
            detail = self.scrub(&wire::error_detail(&reply.body));
            // After an attempt that may have landed, the 409 may be this very user: if the
            // re-read fails, the outcome is unknown.
            let found = self.find_user_by_email(email).await;
            let found = if reply.landed_before {
                found.map_err(|e| unknown(op, e))
            } else {
                found
            };
            match found? {
                Some(u) if u.active || !need_active => return Ok(Posted::Existing(u)),
                Some(u) => {
                    return Err(TargetError::Http {
                        op: op.to_string(),
                        status: 409,
                        detail: format!("{detail}; W&B lists user {} with this email as inactive, so it is not back", u.id),
                    })
                }
                None => tracing::info!(email = %email, username = %name, "W&B userName taken by another account; trying the next"),
            }
        }
        let mut holders = Vec::with_capacity(candidates.len());
        for name in &candidates {
            holders.push(match self.find_user_by_username(name).await {
                Ok(Some(u)) if u.email.is_empty() => format!("userName {name} is held by W&B user {} (no email)", u.id),
                Ok(Some(u)) => format!("userName {name} is held by W&B user {} ({})", u.id, u.email),
                // On SaaS userNames are global: the holder may be outside this org.
                Ok(None) => format!("userName {name} is held by no user listed in this org"),
                Err(e) => format!("userName {name}: its holder could not be looked up ({e})"),
            });
        }
        Err(TargetError::UsernameTaken {
            op: op.to_string(),
            email: email.to_string(),
            detail,
            holders,
        })
    }

    /// Sets the org role to admin or member. Viewer (deprecated: it resets every team
    /// role of the user) and unknown roles are refused without sending anything.
    pub async fn set_org_role(&self, user_id: &str, role: &OrgRole) -> Result<(), TargetError> {
        if !matches!(role, OrgRole::Admin | OrgRole::Member) {
            return Err(TargetError::Refused(format!(
                "refusing to set org role {role:?} for W&B user {user_id}: idsync only sends admin \
                 or member (W&B's viewer org role is deprecated and resets all the user's team roles)",
                role = role.as_str()
            )));
        }
        check_id("user", user_id)?;
        let op = format!("PATCH /Users/{user_id} (set org role {})", role.as_str());
        let body = wire::patch_body(vec![wire::org_role_op(role.as_str())]);
        self.patch(&op, self.url(&["Users", user_id]), &body, false).await
    }

    pub async fn add_to_team(&self, team_id: &str, user_id: &str) -> Result<(), TargetError> {
        check_id("team", team_id)?;
        check_id("user", user_id)?;
        let op = format!("PATCH /Groups/{team_id} (add member {user_id})");
        let body = wire::patch_body(vec![wire::add_member_op(user_id)]);
        self.patch(&op, self.url(&["Groups", team_id]), &body, false).await
    }

    /// Sets the user's role in one team (one team per operation, as W&B requires).
    pub async fn set_team_role(&self, user_id: &str, team: &str, role: &TeamRole) -> Result<(), TargetError> {
        check_id("user", user_id)?;
        if team.trim().is_empty() || role.as_str().trim().is_empty() {
            return Err(TargetError::Refused(format!(
                "refusing to set a team role for W&B user {user_id} without a team name and a role"
            )));
        }
        let op = format!("PATCH /Users/{user_id} (set team role {team}:{role})");
        let body = wire::patch_body(vec![wire::team_role_op(team, role.as_str())]);
        self.patch(&op, self.url(&["Users", user_id]), &body, false).await
    }

    /// Removes one member, always through a `members[value eq "<id>"]` filter: a bare
    /// remove of `members` would empty the team.
    pub async fn remove_from_team(&self, team_id: &str, user_id: &str) -> Result<(), TargetError> {
        check_id("team", team_id)?;
        let op_json = wire::remove_member_op(user_id)
            .map_err(|why| TargetError::Refused(format!("refusing to remove a member from W&B team {team_id}: {why}")))?;
        let op = format!("PATCH /Groups/{team_id} (remove member {user_id})");
        let body = wire::patch_body(vec![op_json]);
        self.patch(&op, self.url(&["Groups", team_id]), &body, false).await
    }

    /// Deactivates (on SaaS: removes from the org) or deletes a user. A user already gone
    /// (404) counts as done.
    pub async fn deprovision(&self, user_id: &str, mode: DeprovisionMode) -> Result<(), TargetError> {
        match mode {
            DeprovisionMode::Off => Err(TargetError::Refused(format!(
                "refusing to deprovision W&B user {user_id}: policy.deprovision is \"off\""
            ))),
            DeprovisionMode::Deactivate => {
                check_id("user", user_id)?;
                let op = format!("PATCH /Users/{user_id} (deactivate)");
                let body = wire::patch_body(vec![wire::set_active_op(false)]);
                self.patch(&op, self.url(&["Users", user_id]), &body, true).await
            }
            DeprovisionMode::Delete => {
                check_id("user", user_id)?;
                let op = format!("DELETE /Users/{user_id} (delete user)");
                let reply = self
                    .send(&op, Method::DELETE, self.url(&["Users", user_id]), &[], None, None)
                    .await?;
                if reply.status == 404 {
                    return Ok(());
                }
                self.expect_ok(&op, reply).map(|_| ())
            }
        }
    }

    /// Creates a team; an existing one (409) is returned instead.
    pub async fn create_team(&self, name: &str) -> Result<Team, TargetError> {
        let created = self.create_team_outcome(name).await?;
        if created.existed() {
            tracing::info!(team = name, id = %created.get().id, "W&B team already existed; using it");
        }
        Ok(created.into_inner())
    }

    pub async fn create_team_outcome(&self, name: &str) -> Result<Created<Team>, TargetError> {
        if name.trim().is_empty() {
            return Err(TargetError::Refused("refusing to create a W&B team without a name".into()));
        }
        let op = format!("POST /Groups (create team {name})");
        let body = wire::create_team_body(name);
        let reply = self.send(&op, Method::POST, self.url(&["Groups"]), &[], Some(&body), None).await?;
        if reply.status == 409 {
            let detail = wire::error_detail(&reply.body);
            let found = self.find_team_by_name(name).await;
            let found = if reply.landed_before {
                found.map_err(|e| unknown(&op, e))
            } else {
                found
            };
            return match found? {
                Some(t) => Ok(Created::Existing(t)),
                None => Err(TargetError::Http {
                    op,
                    status: 409,
                    detail: format!("{}; but no team with that name can be found", self.scrub(&detail)),
                }),
            };
        }
        let reply = self.expect_ok(&op, reply)?;
        let parsed = serde_json::from_slice::<Value>(&reply.body)
            .map_err(|e| e.to_string())
            .and_then(|v| wire::parse_team(&v));
        match parsed {
            Ok(t) => Ok(Created::New(t)),
            Err(detail) => match self.find_team_by_name(name).await.map_err(|e| unknown(&op, e))? {
                Some(t) => Ok(Created::New(t)),
                None => Err(unknown(&op, TargetError::Malformed { op: op.clone(), detail })),
            },
        }
    }

    // ---- plumbing ----------------------------------------------------------------------

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.inner.base.clone();
        // `new` only accepts http(s) URLs, which always have path segments; ids are
        // percent-encoded here, so an id with `/` or `?` stays one segment.
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        u
    }

    /// A PATCH; on 412 (ETag mismatch) the resource's current ETag is read and the PATCH
    /// sent once more with `If-Match`.
    async fn patch(&self, op: &str, url: Url, body: &Value, not_found_is_done: bool) -> Result<(), TargetError> {
        let mut reply = self.send(op, Method::PATCH, url.clone(), &[], Some(body), None).await?;
        if reply.status == 412 {
            let get_op = format!("{op}: re-read after 412");
            let current = self.send(&get_op, Method::GET, url.clone(), &[], None, None).await?;
            let current = self.expect_ok(&get_op, current)?;
            let etag = current.etag.clone().or_else(|| {
                serde_json::from_slice::<Value>(&current.body)
                    .ok()
                    .and_then(|v| wire::field(&v, "meta").and_then(|m| wire::field(m, "version")).cloned())
                    .and_then(|v| v.as_str().map(str::to_string))
            });
            if let Some(tag) = etag {
                reply = self.send(op, Method::PATCH, url, &[], Some(body), Some(&tag)).await?;
            }
        }
        if not_found_is_done && reply.status == 404 {
            return Ok(());
        }
        self.expect_ok(op, reply).map(|_| ())
    }

    fn json(&self, op: &str, reply: Reply) -> Result<Value, TargetError> {
        let reply = self.expect_ok(op, reply)?;
        serde_json::from_slice(&reply.body).map_err(|e| self.invalid_json(op, e, &reply.body))
    }

    fn invalid_json(&self, op: &str, e: serde_json::Error, body: &[u8]) -> TargetError {
        TargetError::Malformed {
            op: op.to_string(),
            detail: format!(
                "invalid JSON ({e}): {}",
                self.scrub(&wire::truncate(&String::from_utf8_lossy(body), 200))
            ),
        }
    }

    /// A 404 on `/Users` or `/Groups` means the base address is wrong (a list is never
    /// "not found"): say which setting to check.
    fn collection_found(&self, op: &str, url: &Url, reply: Reply) -> Result<Reply, TargetError> {
        if reply.status != 404 {
            return Ok(reply);
        }
        Err(TargetError::NoScimApi {
            op: op.to_string(),
            url: url.to_string(),
            detail: self.scrub(&wire::error_detail(&reply.body)),
        })
    }

    /// Passes 2xx through; turns anything else into the matching error (an unknown
    /// outcome when an earlier attempt may have landed: a 404 or 400 may then answer the
    /// change W&B already made).
    fn expect_ok(&self, op: &str, reply: Reply) -> Result<Reply, TargetError> {
        if reply.ok() {
            return Ok(reply);
        }
        let err = self.error_from(op, &reply);
        Err(if reply.landed_before { unknown(op, err) } else { err })
    }

    fn error_from(&self, op: &str, reply: &Reply) -> TargetError {
        let op = op.to_string();
        let detail = self.scrub(&wire::error_detail(&reply.body));
        if detail.contains("Seat limit reached") {
            return TargetError::SeatLimit { op, detail };
        }
        match reply.status {
            401 => TargetError::Unauthorized {
                op,
                url: self.inner.base.to_string(),
                detail,
            },
            403 => TargetError::Forbidden { op, detail },
            s @ 300..=399 => TargetError::Http {
                op,
                status: s,
                detail: format!(
                    "redirected to {}; set target.url / target.scim_path to the final address",
                    reply.location.as_deref().unwrap_or("(no Location)")
                ),
            },
            status => TargetError::Http { op, status, detail },
        }
    }

    /// Removes the key from server-supplied text, in case a server echoes credentials.
    fn scrub(&self, text: &str) -> String {
        let mut t = text.to_string();
        let key = self.inner.key.expose();
        if !key.is_empty() {
            t = t.replace(key, "[redacted]");
        }
        if let Ok(h) = self.inner.auth.to_str() {
            if let Some((_, cred)) = h.split_once(' ') {
                t = t.replace(cred, "[redacted]");
            }
        }
        t
    }

    /// The same client (same counters) that calls `guard` before sending each attempt of a
    /// write, retries included, and sends nothing once it says `Err`: a refused first
    /// attempt is a plain refusal (nothing was sent); after an attempt that may have
    /// landed, the outcome is unknown.
    pub fn with_write_guard(&self, guard: WriteGuard) -> WandbClient {
        WandbClient {
            inner: Arc::new(Inner {
                write_guard: Some(guard),
                ..(*self.inner).clone()
            }),
        }
    }

    /// Sends one request with the retry policy. Returns the first response that is not
    /// worth retrying (callers interpret its status) or the final error.
    async fn send(
        &self,
        op: &str,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, TargetError> {
        let body = match body {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| TargetError::Malformed {
                op: op.to_string(),
                detail: format!("cannot encode the request: {e}"),
            })?),
            None => None,
        };
        let if_match = if_match.and_then(|t| HeaderValue::from_str(t).ok());
        let max = self.inner.max_retries;
        // Reads change nothing; a write's outcome is unknown once any attempt may have
        // landed and no later answer succeeded.
        let write = !matches!(method, Method::GET | Method::HEAD);
        let mut landed = false;
        let mut attempt: u32 = 0;
        loop {
            if let Some(why) = self.inner.write_guard.as_ref().filter(|_| write).and_then(|g| g().err()) {
                let refused = TargetError::Refused(format!("{op}: not sent: {why}"));
                return Err(if landed { unknown(op, refused) } else { refused });
            }
            let (err, hint) = match self.attempt(op, &method, &url, query, body.as_deref(), if_match.as_ref()).await {
                Ok(mut reply) => {
                    self.inner.stats.count(&reply.status.to_string());
                    tracing::debug!(op, status = reply.status, "W&B request");
                    if !retryable_status(reply.status) {
                        reply.landed_before = landed;
                        return Ok(reply);
                    }
                    let hint = server_wait(
                        reply.status,
                        reply.retry_after.as_deref(),
                        reply.ratelimit_reset.as_deref(),
                        reply.ratelimit_remaining.as_deref(),
                        chrono::Utc::now(),
                    );
                    (self.error_from(op, &reply), hint)
                }
                Err(e) => {
                    if matches!(e, TargetError::Transport { .. } | TargetError::Timeout { .. }) {
                        self.inner.stats.count("error");
                    }
                    (e, None)
                }
            };
            let retryable = err.is_retryable();
            landed |= write && err.may_have_landed();
            let exhausted = |last| TargetError::RetriesExhausted {
                op: op.to_string(),
                attempts: attempt + 1,
                last: Box::new(last),
            };
            let delay = match next_attempt(err, retryable, attempt, max, &self.inner.backoff, hint, exhausted) {
                Next::Fail(err) if landed => {
                    let last = match err {
                        TargetError::RetriesExhausted { last, .. } => *last,
                        e => e,
                    };
                    return Err(unknown(op, last));
                }
                Next::Fail(err) => return Err(err),
                Next::Retry(delay, err) => {
                    tracing::warn!(op, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %err, "retrying W&B request");
                    delay
                }
            };
            self.inner.stats.count_retry();
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        op: &str,
        method: &Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        if_match: Option<&HeaderValue>,
    ) -> Result<Reply, TargetError> {
        let mut rb = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, self.inner.auth.clone())
            .header(ACCEPT, ACCEPT_VALUE);
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(b) = body {
            rb = rb.header(CONTENT_TYPE, SCIM_JSON).body(b.to_vec());
        }
        if let Some(tag) = if_match {
            rb = rb.header(IF_MATCH, tag.clone());
        }
        let transport = |e: reqwest::Error| self.transport_error(op, url, e);
        let mut resp = rb.send().await.map_err(transport)?;
        let h = resp.headers();
        let mut reply = Reply {
            status: resp.status().as_u16(),
            body: Vec::new(),
            etag: header(h, "etag"),
            location: header(h, "location"),
            retry_after: header(h, "retry-after"),
            ratelimit_reset: header(h, "ratelimit-reset"),
            ratelimit_remaining: header(h, "ratelimit-remaining"),
            landed_before: false,
        };
        reply.body = read_body(&mut resp, MAX_BODY).await.map_err(|e| match e {
            BodyError::Transport(e) => transport(e),
            BodyError::TooLarge { limit } => TargetError::Malformed {
                op: op.to_string(),
                detail: BodyError::too_large_detail(limit),
            },
        })?;
        Ok(reply)
    }

    fn transport_error(&self, op: &str, url: &Url, e: reqwest::Error) -> TargetError {
        let mut shown = url.clone();
        shown.set_query(None);
        let (op, url) = (op.to_string(), shown.to_string());
        match classify(&e) {
            Failure::Timeout => TargetError::Timeout { op, url },
            Failure::Build(cause) => TargetError::Config(format!("{op}: cannot build the request for {url}: {cause}")),
            Failure::Connection(cause) => TargetError::Transport {
                op,
                url,
                cause: self.scrub(&cause),
                sent: may_have_been_sent(&e),
            },
        }
    }
}

/// An outcome idsync cannot know: `last` is what it saw last (SPEC §5).
fn unknown(op: &str, last: TargetError) -> TargetError {
    match last {
        e @ TargetError::OutcomeUnknown { .. } => e,
        last => TargetError::OutcomeUnknown {
            op: op.to_string(),
            last: Box::new(last),
        },
    }
}

/// Whether a page starting at `s` belongs in a batch that starts at `first`: the first
/// page always; later ones only while they start within what the server says it has.
fn in_batch(s: u64, first: u64, total: Option<u64>) -> bool {
    s == first || total.is_some_and(|t| s <= t)
}

fn finish<T>(what: &str, out: Vec<T>, total: u64) -> Result<Vec<T>, TargetError> {
    let got = out.len() as u64;
    if got != total {
        return Err(TargetError::IncompleteList {
            what: what.to_string(),
            got,
            total,
        });
    }
    Ok(out)
}

/// Ids go into URL paths (encoded) and filters; an empty one would address the collection.
fn check_id(kind: &str, id: &str) -> Result<(), TargetError> {
    if id.trim().is_empty() {
        return Err(TargetError::Refused(format!("refusing a W&B request with an empty {kind} id")));
    }
    Ok(())
}

fn base_url(url: &str, scim_path: &str) -> Result<Url, TargetError> {
    let root = url.trim().trim_end_matches('/');
    let path = scim_path.trim().trim_matches('/');
    let joined = if path.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{path}")
    };
    // A URL with credentials in it is refused below; never echo one back.
    let shown = if root.contains('@') {
        "(not shown: it contains '@')".to_string()
    } else {
        format!("{root:?}")
    };
    let u = Url::parse(&joined).map_err(|e| {
        TargetError::Config(format!(
            "target.url {shown} with target.scim_path {scim_path:?} is not a valid URL ({e}); \
             expected something like \"https://api.wandb.ai\""
        ))
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() || u.host().is_none() {
        return Err(TargetError::Config(format!(
            "target.url {shown} must be an http:// or https:// address"
        )));
    }
    if u.password().is_some() || !u.username().is_empty() {
        return Err(TargetError::Config(
            "target.url must not contain credentials: put the key in target.api_key_file or \
             target.api_key_env and the user in target.username"
                .into(),
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(TargetError::Config(format!(
            "target.url {shown} must not contain a query or fragment"
        )));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_candidates_are_bounded_distinct_and_deterministic() {
        let e = Email::parse("john.smith@x.com").unwrap();
        let names = |u| username_candidates(&e, u);
        assert_eq!(
            names("jsmith"),
            ["jsmith", "john.smith@x.com", "john.smith-2", "john.smith-3", "john.smith-4"]
        );
        // No blank userName, no name twice (case-insensitively), always five.
        assert_eq!(
            names(" "),
            ["john.smith@x.com", "john.smith-2", "john.smith-3", "john.smith-4", "john.smith-5"]
        );
        assert_eq!(
            names("John.Smith@x.com"),
            ["John.Smith@x.com", "john.smith-2", "john.smith-3", "john.smith-4", "john.smith-5"]
        );
        assert_eq!(
            names("john.smith-2"),
            ["john.smith-2", "john.smith@x.com", "john.smith-3", "john.smith-4", "john.smith-5"]
        );
    }

    #[test]
    fn base_url_joins_url_and_scim_path() {
        let u = |a, b| base_url(a, b).map(|u| u.to_string());
        assert_eq!(u("https://api.wandb.ai/", "/scim").unwrap(), "https://api.wandb.ai/scim");
        assert_eq!(u("https://api.wandb.ai", "scim/v2/").unwrap(), "https://api.wandb.ai/scim/v2");
        assert_eq!(u("http://127.0.0.1:8080//", "/scim").unwrap(), "http://127.0.0.1:8080/scim");
        assert!(u("api.wandb.ai", "/scim").is_err());
        assert!(u("ftp://x.com", "/scim").is_err());
        assert!(u("https://u:p@x.com", "/scim").is_err());
        assert!(u("", "/scim").is_err());
        for bad in ["https://u:hunter2@x.com", "https://u:hunter2@x .com", "ftp://u:hunter2@x"] {
            let e = u(bad, "/scim").unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
