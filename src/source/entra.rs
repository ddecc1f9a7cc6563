//! The Microsoft Entra ID source: Microsoft Graph with an OAuth2 client-credentials token.
//!
//! The token comes from `{authority}/{tenant_id}/oauth2/v2.0/token` with scope
//! `{graph origin}/.default`; it is renewed shortly before it expires, and once more if
//! Graph answers 401 (a token revoked or expired early). Graph is read with
//! `GET /v1.0/users?$select=…`, `GET /v1.0/groups` and
//! `GET /v1.0/groups/{id}/transitiveMembers` (users only, by `@odata.type`; nesting is
//! flattened by Graph), each paged by `@odata.nextLink` (same origin only).
//! `accountEnabled: false` = disabled; the email is `mail` (never guessed from the UPN).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde_json::Value;
use tokio::sync::Mutex;

use super::http::{auth_header, join, parse_base, source_secret, warn_duplicate_names, IdpError, Pager, Request, SourceHttp, MAX_ITEMS};
use super::SourceError;
use crate::config::SourceConfig;
use crate::http::retry::Backoff;
use crate::http::HttpStats;
use crate::model::{DirectorySnapshot, Group, Person};
use crate::secret::Secret;

pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// Graph's largest `$top` for these collections.
const MAX_TOP: u32 = 999;
/// Renew a token this long before it expires (at most half its lifetime).
const RENEW_MARGIN: Duration = Duration::from_secs(120);
/// Bounds on a token's `expires_in`: a tiny one would fetch a token per request, a huge
/// one would keep a revoked token (and could overflow the clock arithmetic).
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

const CREDENTIAL: &str = "source.tenant_id, source.client_id and source.client_secret_file / source.client_secret_env \
     (a client secret of the app registration; secrets expire)";

pub async fn read(cfg: &SourceConfig, config_dir: &Path) -> Result<DirectorySnapshot, SourceError> {
    let need = |v: &Option<String>, key: &str| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| SourceError::Other(format!("source.{key} is required when source.kind = \"entra\"")))
    };
    let tenant = need(&cfg.tenant_id, "tenant_id")?;
    let client_id = need(&cfg.client_id, "client_id")?;
    let secret = source_secret(cfg, config_dir)?;
    let src = EntraSource::new(EntraSettings {
        tenant_id: &tenant,
        client_id: &client_id,
        client_secret: secret,
        authority: cfg.authority.as_deref().unwrap_or(DEFAULT_AUTHORITY),
        graph_url: cfg.graph_url.as_deref().unwrap_or(DEFAULT_GRAPH_URL),
        page_size: cfg.page_size,
        timeout: cfg.timeout.0,
    })?;
    Ok(src.read().await?)
}

pub struct EntraSettings<'a> {
    pub tenant_id: &'a str,
    pub client_id: &'a str,
    pub client_secret: Secret,
    pub authority: &'a str,
    pub graph_url: &'a str,
    pub page_size: u32,
    pub timeout: Duration,
}

struct Token {
    header: HeaderValue,
    renew_at: Instant,
}

/// A client for one tenant's Graph directory.
pub struct EntraSource {
    login: SourceHttp,
    graph: SourceHttp,
    token_url: Url,
    graph_base: Url,
    client_id: String,
    secret: Secret,
    scope: String,
    top: u32,
    token: Mutex<Option<Token>>,
    lifetime_floor: Duration,
}

impl std::fmt::Debug for EntraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraSource")
            .field("token_url", &self.token_url.as_str())
            .field("graph_base", &self.graph_base.as_str())
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl EntraSource {
    pub fn new(s: EntraSettings<'_>) -> Result<EntraSource, IdpError> {
        let authority = parse_base("authority", s.authority)?;
        let tenant = s.tenant_id.trim();
        if tenant.is_empty() || tenant.contains(['/', '?', '#']) {
            return Err(IdpError::Config(format!(
                "source.tenant_id = {:?} is not a tenant id or domain",
                s.tenant_id
            )));
        }
        let token_url = join(&authority, &[tenant, "oauth2", "v2.0", "token"]);
        let mut graph_base = parse_base("graph_url", s.graph_url)?;
        // Accept graph_url with or without the version segment.
        if graph_base.path().trim_end_matches('/').ends_with("/v1.0") {
            if let Ok(mut p) = graph_base.path_segments_mut() {
                p.pop();
            }
        }
        let scope = format!("{}/.default", graph_base.origin().ascii_serialization());
        let mut login = SourceHttp::new(
            format!("the Entra ID token endpoint at {token_url}"),
            CREDENTIAL,
            "the app registration may not use the client-credentials flow",
            s.timeout,
        )?;
        login.scrub_secret(s.client_secret.clone());
        let mut graph = SourceHttp::new(
            format!("Microsoft Graph at {graph_base}"),
            CREDENTIAL,
            "grant the app registration the Microsoft Graph application permissions User.Read.All and GroupMember.Read.All, with admin consent",
            s.timeout,
        )?;
        graph.scrub_secret(s.client_secret.clone());
        Ok(EntraSource {
            login,
            graph,
            token_url,
            graph_base,
            client_id: s.client_id.trim().to_string(),
            secret: s.client_secret,
            scope,
            top: s.page_size.clamp(1, MAX_TOP),
            token: Mutex::new(None),
            lifetime_floor: MIN_TOKEN_LIFETIME,
        })
    }

    pub fn with_retries(mut self, max_retries: u32, backoff: Backoff) -> EntraSource {
        self.login = self.login.with_retries(max_retries, backoff);
        self.graph = self.graph.with_retries(max_retries, backoff);
        self
    }

    /// Lowers the shortest token lifetime honoured (tests renew tokens within seconds).
    pub fn with_token_lifetime_floor(mut self, floor: Duration) -> EntraSource {
        self.lifetime_floor = floor;
        self
    }

    /// Graph's requests and the token endpoint's, added up.
    pub fn http_stats(&self) -> HttpStats {
        let mut s = self.graph.stats();
        let l = self.login.stats();
        for (k, v) in l.requests_by_code {
            *s.requests_by_code.entry(k).or_insert(0) += v;
        }
        s.retries += l.retries;
        s
    }

    /// A usable token: the cached one unless it is near expiry or is `refused` (the token
    /// Graph just answered 401 to; when a concurrent request already renewed it, the new
    /// one is used without asking again).
    async fn token(&self, refused: Option<&HeaderValue>) -> Result<HeaderValue, IdpError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if Instant::now() < t.renew_at && refused != Some(&t.header) {
                return Ok(t.header.clone());
            }
        }
        let op = "POST /oauth2/v2.0/token (client-credentials token)";
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let req = Request {
            method: Method::POST,
            url: self.token_url.clone(),
            auth: None,
            form: Some(&form),
        };
        let reply = self.login.send(op, &req).await?;
        if !reply.ok() {
            let e = self.login.error_from(op, &reply);
            // Entra answers a wrong secret, client or tenant with 400 or 401: both are
            // credential problems.
            return Err(match e {
                IdpError::Http {
                    server,
                    op,
                    status: 400,
                    detail,
                } => IdpError::Unauthorized {
                    server,
                    op,
                    detail,
                    credential: CREDENTIAL.into(),
                },
                e => e,
            });
        }
        let v = self.login.json(op, &reply)?;
        let access = v["access_token"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.login.malformed(op, "no access_token in the token response"))?;
        let lifetime = token_lifetime(&v["expires_in"], self.lifetime_floor).map_err(|d| self.login.malformed(op, d))?;
        let header = auth_header("Bearer", &Secret::new(access), "the access token")?;
        let margin = RENEW_MARGIN.min(lifetime / 2);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "Entra ID access token obtained");
        let now = Instant::now();
        *slot = Some(Token {
            header: header.clone(),
            // The lifetime is clamped, so this cannot overflow; renewing at once is the safe fallback.
            renew_at: now.checked_add(lifetime.saturating_sub(margin)).unwrap_or(now),
        });
        Ok(header)
    }

    /// One Graph GET: with a fresh token, and once more with a renewed one on a 401.
    async fn get(&self, op: &str, url: &Url) -> Result<Value, IdpError> {
        let token = self.token(None).await?;
        let mut reply = self.graph.send(op, &Request::get(url.clone(), &token)).await?;
        if reply.status == 401 {
            tracing::debug!(op, "Graph answered 401; renewing the token once");
            let token = self.token(Some(&token)).await?;
            reply = self.graph.send(op, &Request::get(url.clone(), &token)).await?;
        }
        if !reply.ok() {
            return Err(self.graph.error_from(op, &reply));
        }
        self.graph.json(op, &reply)
    }

    /// Every item of a collection, following `@odata.nextLink` by [`Pager`]'s rules (same
    /// origin only, no loops, bounded).
    async fn pages(&self, op: &str, first: Url) -> Result<Vec<Value>, IdpError> {
        let pager = Pager {
            op,
            base: &self.graph_base,
            link_name: "@odata.nextLink",
            config_key: "source.graph_url",
            max_items: MAX_ITEMS,
        };
        pager
            .collect(&self.graph, first, |url| async move {
                let mut v = self.get(op, &url).await?;
                let Some(Value::Array(items)) = v.get_mut("value").map(Value::take) else {
                    return Err(self.graph.malformed(op, "the response has no \"value\" list"));
                };
                Ok((items, v.get("@odata.nextLink").and_then(Value::as_str).map(str::to_string)))
            })
            .await
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut all = vec!["v1.0"];
        all.extend_from_slice(segments);
        let mut url = join(&self.graph_base, &all);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    pub async fn read(&self) -> Result<DirectorySnapshot, IdpError> {
        let top = self.top.to_string();
        let (users, raw) = tokio::try_join!(
            self.pages(
                "GET /v1.0/users (list users)",
                self.url(
                    &["users"],
                    &[("$select", "id,userPrincipalName,mail,displayName,accountEnabled"), ("$top", &top)],
                ),
            ),
            self.pages(
                "GET /v1.0/groups (list groups)",
                self.url(&["groups"], &[("$select", "id,displayName"), ("$top", &top)]),
            ),
        )?;
        let people = users
            .iter()
            .map(parse_user)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|d| self.graph.malformed("GET /v1.0/users (read users)", d))?;
        let known: HashSet<&str> = people.iter().map(|p| p.anchor.as_str()).collect();
        let mut parsed = Vec::with_capacity(raw.len());
        for g in &raw {
            let id = g["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| self.graph.malformed("GET /v1.0/groups (read groups)", "a group has no id"))?;
            let name = g["displayName"].as_str().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(id);
            parsed.push((id.to_string(), name.to_string()));
        }
        // A few groups at a time; the first failure fails the read.
        let groups: Vec<Group> = stream::iter(parsed.into_iter().map(|(id, name)| self.group(id, name, &known, &top)))
            .buffered(super::http::GROUP_CONCURRENCY)
            .try_collect()
            .await?;
        warn_duplicate_names(&groups, "Entra ID");
        Ok(DirectorySnapshot {
            kind: "entra".into(),
            people,
            groups,
        })
    }
}

impl EntraSource {
    /// One group with its transitive user members (those listed by `/users`).
    async fn group(&self, id: String, name: String, known: &HashSet<&str>, top: &str) -> Result<Group, IdpError> {
        let op = format!("GET /v1.0/groups/{id}/transitiveMembers (members of {name})");
        let members = self
            .pages(
                &op,
                self.url(&["groups", &id, "transitiveMembers"], &[("$select", "id"), ("$top", top)]),
            )
            .await?;
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for m in members
            .iter()
            .filter(|m| m["@odata.type"].as_str() == Some("#microsoft.graph.user"))
        {
            // A user member without an id cannot be matched: dropping it would shrink the group.
            let mid = m["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| self.graph.malformed(&op, "a user member has no id"))?;
            if known.contains(mid) {
                ids.insert(mid.to_string());
            }
        }
        Ok(Group {
            anchor: id,
            name,
            dn: None,
            members: ids.into_iter().collect(),
            // Entra reads transitive members: the path is not recorded.
            subgroups: Vec::new(),
        })
    }
}

/// A token's `expires_in` (seconds, a number or a numeric string), clamped to
/// `floor` ([`MIN_TOKEN_LIFETIME`] outside tests)..[`MAX_TOKEN_LIFETIME`]; zero or
/// negative is taken as the floor. Missing or non-numeric is an error (the detail for a malformed response).
pub fn token_lifetime(v: &Value, floor: Duration) -> Result<Duration, String> {
    let secs: f64 = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Null => return Err("no expires_in in the token response".into()),
        _ => None,
    }
    .filter(|f| f.is_finite())
    .ok_or_else(|| format!("expires_in {v} in the token response is not a number of seconds"))?;
    let max = MAX_TOKEN_LIFETIME.as_secs_f64();
    let min = floor.min(MAX_TOKEN_LIFETIME).as_secs_f64();
    Ok(Duration::from_secs_f64(secs.clamp(min, max)))
}

/// One Graph user as a directory person.
pub fn parse_user(v: &Value) -> Result<Person, String> {
    let s = |k: &str| v[k].as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let id = s("id").ok_or("a user has no id")?;
    let upn = s("userPrincipalName").unwrap_or_default();
    // A missing accountEnabled is not a reason to remove anyone.
    let enabled = v["accountEnabled"].as_bool().unwrap_or(true);
    Ok(Person {
        anchor: id.clone(),
        email: s("mail"),
        display_name: s("displayName").unwrap_or_else(|| upn.clone()),
        source_ref: format!("{} (entra id {id})", if upn.is_empty() { "?" } else { &upn }),
        username: upn,
        enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_map_mail_upn_and_account_enabled() {
        let p = parse_user(&json!({"id": "u1", "userPrincipalName": "alice@corp.onmicrosoft.com",
            "mail": "alice@example.com", "displayName": "Alice", "accountEnabled": false}))
        .unwrap();
        assert_eq!(p.anchor, "u1");
        assert_eq!(p.email.as_deref(), Some("alice@example.com"));
        assert_eq!(p.username, "alice@corp.onmicrosoft.com");
        assert!(!p.enabled);
        let p = parse_user(&json!({"id": "u2", "userPrincipalName": "bob@example.com", "mail": null})).unwrap();
        assert_eq!(p.email, None, "the UPN is never taken for the email");
        assert!(p.enabled);
        assert!(parse_user(&json!({"mail": "x@y.z"})).is_err());
    }

    #[test]
    fn scope_and_token_url_derive_from_the_config() {
        let s = EntraSource::new(EntraSettings {
            tenant_id: "contoso.onmicrosoft.com",
            client_id: "app",
            client_secret: Secret::new("entra-unit-secret-7f3a9c1e5b"),
            authority: "https://login.microsoftonline.us/",
            graph_url: "https://graph.microsoft.us/v1.0",
            page_size: 5000,
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        assert_eq!(
            s.token_url.as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(s.scope, "https://graph.microsoft.us/.default");
        assert_eq!(s.top, MAX_TOP);
        assert!(s.url(&["users"], &[]).as_str().starts_with("https://graph.microsoft.us/v1.0/users"));
        assert!(!format!("{s:?}").contains("entra-unit-secret-7f3a9c1e5b"), "{s:?}");
    }

    #[test]
    fn token_lifetimes_are_clamped_and_never_overflow() {
        assert_eq!(token_lifetime(&json!(3599), MIN_TOKEN_LIFETIME), Ok(Duration::from_secs(3599)));
        assert_eq!(token_lifetime(&json!("3600"), MIN_TOKEN_LIFETIME), Ok(Duration::from_secs(3600)));
        assert_eq!(token_lifetime(&json!(u64::MAX), MIN_TOKEN_LIFETIME), Ok(MAX_TOKEN_LIFETIME));
        assert_eq!(token_lifetime(&json!(1e300), MIN_TOKEN_LIFETIME), Ok(MAX_TOKEN_LIFETIME));
        assert_eq!(token_lifetime(&json!(0), MIN_TOKEN_LIFETIME), Ok(MIN_TOKEN_LIFETIME));
        assert_eq!(token_lifetime(&json!(-5), MIN_TOKEN_LIFETIME), Ok(MIN_TOKEN_LIFETIME));
        assert_eq!(token_lifetime(&json!("0"), MIN_TOKEN_LIFETIME), Ok(MIN_TOKEN_LIFETIME));
        assert!(token_lifetime(&json!("soon"), MIN_TOKEN_LIFETIME).is_err());
        assert!(token_lifetime(&json!(true), MIN_TOKEN_LIFETIME).is_err());
        assert!(token_lifetime(&Value::Null, MIN_TOKEN_LIFETIME)
            .unwrap_err()
            .contains("no expires_in"));
        // The arithmetic the token cache does with the largest lifetime.
        let l = token_lifetime(&json!(u64::MAX), MIN_TOKEN_LIFETIME).unwrap();
        assert!(Instant::now().checked_add(l.saturating_sub(RENEW_MARGIN.min(l / 2))).is_some());
    }
}
