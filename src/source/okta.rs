//! The Okta source: the Users and Groups APIs with an `SSWS` API token.
//!
//! `GET /api/v1/users` (which leaves out deactivated users, so they are read separately
//! with `filter=status eq "DEPROVISIONED"`), `GET /api/v1/groups` and
//! `GET /api/v1/groups/{id}/users`, each paged by following `Link: <…>; rel="next"` (only
//! to the configured origin, so the token never goes elsewhere). Throttling (429 with
//! `X-Rate-Limit-Reset`) is ridden out by the shared retry policy.
//!
//! Status mapping (README "Okta"): ACTIVE, PASSWORD_EXPIRED, RECOVERY, LOCKED_OUT and
//! PROVISIONED are enabled (credential states and pending activation are no reason to
//! remove anyone); SUSPENDED and DEPROVISIONED are disabled; STAGED is skipped (never
//! activated: not a person idsync should create); an unknown status is read as enabled.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde_json::Value;

use super::http::{auth_header, join, parse_base, source_secret, warn_duplicate_names, IdpError, Pager, SourceHttp, MAX_ITEMS};
use super::SourceError;
use crate::config::SourceConfig;
use crate::http::retry::Backoff;
use crate::http::HttpStats;
use crate::model::{DirectorySnapshot, Group, Person};
use crate::secret::Secret;

/// Okta's page size limits: users 200, group members 1000, groups 10000.
const USERS_LIMIT: u32 = 200;
const MEMBERS_LIMIT: u32 = 1000;
const GROUPS_LIMIT: u32 = 10_000;

pub async fn read(cfg: &SourceConfig, config_dir: &Path) -> Result<DirectorySnapshot, SourceError> {
    let url = cfg
        .url
        .as_deref()
        .ok_or_else(|| SourceError::Other("source.url is required when source.kind = \"okta\"".into()))?;
    let token = source_secret(cfg, config_dir)?;
    let src = OktaSource::new(url, token, cfg.page_size, cfg.timeout.0)?;
    Ok(src.read().await?)
}

/// What a person's Okta status means for idsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMapping {
    Enabled,
    Disabled,
    /// Left out of the snapshot.
    Skipped,
}

pub fn map_status(status: &str) -> StatusMapping {
    match status.trim().to_ascii_uppercase().as_str() {
        "ACTIVE" | "PASSWORD_EXPIRED" | "RECOVERY" | "LOCKED_OUT" | "PROVISIONED" => StatusMapping::Enabled,
        "SUSPENDED" | "DEPROVISIONED" => StatusMapping::Disabled,
        "STAGED" => StatusMapping::Skipped,
        // A status Okta adds later must not remove anyone until a human looks at it.
        _ => StatusMapping::Enabled,
    }
}

/// A client for one Okta org.
#[derive(Debug)]
pub struct OktaSource {
    http: SourceHttp,
    base: Url,
    auth: HeaderValue,
    page_size: u32,
}

impl OktaSource {
    pub fn new(url: &str, token: Secret, page_size: u32, timeout: Duration) -> Result<OktaSource, IdpError> {
        let base = parse_base("url", url)?;
        let auth = auth_header("SSWS", &token, "source.token_file / source.token_env")?;
        let mut http = SourceHttp::new(
            format!("Okta at {base}"),
            "source.token_file / source.token_env (an Okta API token, sent as SSWS; tokens expire after 30 days unused)",
            "the token's admin needs read access to users and groups (a Read-Only Administrator is enough)",
            timeout,
        )?;
        http.scrub_secret(token);
        Ok(OktaSource {
            http,
            base,
            auth,
            page_size: page_size.max(1),
        })
    }

    pub fn with_retries(mut self, max_retries: u32, backoff: Backoff) -> OktaSource {
        self.http = self.http.with_retries(max_retries, backoff);
        self
    }

    pub fn http_stats(&self) -> HttpStats {
        self.http.stats()
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = join(&self.base, segments);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    pub async fn read(&self) -> Result<DirectorySnapshot, IdpError> {
        let users_limit = self.page_size.min(USERS_LIMIT).to_string();
        let groups_limit = self.page_size.min(GROUPS_LIMIT).to_string();
        // The default user listing omits deactivated people: they are read too, so that a
        // person deactivated in Okta counts as disabled (disabled_grace_period) rather than
        // as vanished (grace_period).
        let (listed, deactivated, raw_groups) = tokio::try_join!(
            self.pages(
                "GET /api/v1/users (list users)",
                self.url(&["api", "v1", "users"], &[("limit", users_limit.clone())]),
            ),
            self.pages(
                "GET /api/v1/users?filter=status eq \"DEPROVISIONED\" (list deactivated users)",
                self.url(
                    &["api", "v1", "users"],
                    &[("filter", "status eq \"DEPROVISIONED\"".into()), ("limit", users_limit)],
                ),
            ),
            self.pages(
                "GET /api/v1/groups (list groups)",
                self.url(&["api", "v1", "groups"], &[("limit", groups_limit)]),
            ),
        )?;
        let op = "GET /api/v1/users (read users)";
        let mut by_id: BTreeMap<String, Person> = BTreeMap::new();
        let mut staged = 0usize;
        // A person in both listings changed status during the read: the default listing
        // (not deactivated) wins, so doubt never removes anyone; the next run settles it.
        for v in deactivated.iter().chain(&listed) {
            let (id, person) = parse_user(v).map_err(|d| self.http.malformed(op, d))?;
            match person {
                Some(p) => {
                    by_id.insert(id, p);
                }
                None => {
                    by_id.remove(&id);
                    staged += 1;
                }
            }
        }
        if staged > 0 {
            tracing::info!(
                staged,
                "Okta users in status STAGED (never activated) were left out of the directory"
            );
        }
        let people: Vec<Person> = by_id.into_values().collect();
        let known: HashSet<&str> = people.iter().map(|p| p.anchor.as_str()).collect();

        let parsed = raw_groups
            .iter()
            .map(parse_group)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|d| self.http.malformed("GET /api/v1/groups (read groups)", d))?;
        // A few groups at a time: far faster than one by one, and well inside Okta's
        // concurrency limits. The first failure fails the read.
        let groups: Vec<Group> = stream::iter(parsed.into_iter().map(|(id, name)| self.group(id, name, &known)))
            .buffered(super::http::GROUP_CONCURRENCY)
            .try_collect()
            .await?;
        warn_duplicate_names(&groups, "Okta");
        Ok(DirectorySnapshot {
            kind: "okta".into(),
            people,
            groups,
        })
    }

    /// One group with its members (people left out of the snapshot are left out here).
    async fn group(&self, id: String, name: String, known: &HashSet<&str>) -> Result<Group, IdpError> {
        let op = format!("GET /api/v1/groups/{id}/users (members of {name})");
        let limit = self.page_size.min(MEMBERS_LIMIT).to_string();
        let members = self
            .pages(&op, self.url(&["api", "v1", "groups", &id, "users"], &[("limit", limit)]))
            .await?;
        let mut ids = Vec::with_capacity(members.len());
        for m in &members {
            let mid = m["id"]
                .as_str()
                .ok_or_else(|| self.http.malformed(&op, "a group member has no id"))?;
            // STAGED people are not in the snapshot, so not in its groups either.
            if known.contains(mid) {
                ids.push(mid.to_string());
            }
        }
        ids.sort();
        ids.dedup();
        Ok(Group {
            anchor: id,
            name,
            dn: None,
            members: ids,
            // Okta groups do not nest.
            subgroups: Vec::new(),
        })
    }

    /// Every item of a paged list: each page a JSON array, the next page named by the
    /// `Link: <…>; rel="next"` header (followed by [`Pager`]'s rules).
    async fn pages(&self, op: &str, first: Url) -> Result<Vec<Value>, IdpError> {
        let pager = Pager {
            op,
            base: &self.base,
            link_name: "the next link",
            config_key: "source.url",
            max_items: MAX_ITEMS,
        };
        pager
            .collect(&self.http, first, |url| async move {
                let (v, reply) = self.http.get_json(op, url, &self.auth).await?;
                let Value::Array(items) = v else {
                    return Err(self.http.malformed(op, "expected a JSON array"));
                };
                let links: Vec<&str> = reply.headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).collect();
                Ok((items, next_link(&links)))
            })
            .await
    }
}

/// The `rel="next"` target among `Link` header values (RFC 8288), if any.
pub fn next_link(values: &[&str]) -> Option<String> {
    for value in values {
        for part in split_links(value) {
            let part = part.trim();
            let Some(rest) = part.strip_prefix('<') else { continue };
            let Some((target, params)) = rest.split_once('>') else { continue };
            let is_next = params.split(';').any(|p| {
                let p = p.trim();
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.trim().to_string());
            }
        }
    }
    None
}

/// Splits a header value into links at commas outside `<…>` and quotes.
fn split_links(value: &str) -> Vec<&str> {
    let (mut parts, mut start, mut in_url, mut in_quote) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_url = true,
            '>' if !in_quote => in_url = false,
            '"' if !in_url => in_quote = !in_quote,
            ',' if !in_url && !in_quote => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn profile_str(v: &Value, key: &str) -> Option<String> {
    v["profile"][key]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// One Okta user: its id, and the person (`None` when the status says skip).
pub fn parse_user(v: &Value) -> Result<(String, Option<Person>), String> {
    let id = v["id"].as_str().filter(|s| !s.is_empty()).ok_or("a user has no id")?.to_string();
    let status = v["status"].as_str().unwrap_or("").to_string();
    let mapping = map_status(&status);
    if mapping == StatusMapping::Skipped {
        return Ok((id, None));
    }
    if !matches!(
        status.as_str(),
        "ACTIVE" | "PASSWORD_EXPIRED" | "RECOVERY" | "LOCKED_OUT" | "PROVISIONED" | "SUSPENDED" | "DEPROVISIONED"
    ) {
        tracing::warn!(id, status, "unknown Okta user status; read as enabled");
    }
    let login = profile_str(v, "login").unwrap_or_default();
    let display_name = profile_str(v, "displayName")
        .or_else(|| {
            let parts: Vec<String> = [profile_str(v, "firstName"), profile_str(v, "lastName")]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| login.clone());
    let person = Person {
        anchor: id.clone(),
        email: profile_str(v, "email"),
        source_ref: format!("{} (okta id {id}, {status})", if login.is_empty() { "?" } else { &login }),
        username: login,
        display_name,
        enabled: mapping == StatusMapping::Enabled,
    };
    Ok((id, Some(person)))
}

/// One Okta group: id and `profile.name`.
pub fn parse_group(v: &Value) -> Result<(String, String), String> {
    let id = v["id"].as_str().filter(|s| !s.is_empty()).ok_or("a group has no id")?.to_string();
    let name = profile_str(v, "name").unwrap_or_else(|| id.clone());
    Ok((id, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_as_a_careful_admin_expects() {
        for s in [
            "ACTIVE",
            "PASSWORD_EXPIRED",
            "RECOVERY",
            "LOCKED_OUT",
            "PROVISIONED",
            "SOMETHING_NEW",
        ] {
            assert_eq!(map_status(s), StatusMapping::Enabled, "{s}");
        }
        for s in ["SUSPENDED", "DEPROVISIONED"] {
            assert_eq!(map_status(s), StatusMapping::Disabled, "{s}");
        }
        assert_eq!(map_status("STAGED"), StatusMapping::Skipped);
    }

    #[test]
    fn users_parse_from_the_profile() {
        let (id, p) = parse_user(&json!({"id": "00u1", "status": "SUSPENDED", "profile": {
            "login": "alice@example.com", "email": "Alice@Example.com", "firstName": "Alice", "lastName": "Ng"}}))
        .unwrap();
        let p = p.unwrap();
        assert_eq!(id, "00u1");
        assert_eq!(p.anchor, "00u1");
        assert_eq!(p.email.as_deref(), Some("Alice@Example.com"));
        assert_eq!(p.username, "alice@example.com");
        assert_eq!(p.display_name, "Alice Ng");
        assert!(!p.enabled);
        assert!(p.source_ref.contains("SUSPENDED"));
        let (_, p) = parse_user(&json!({"id": "00u2", "status": "STAGED", "profile": {"login": "x"}})).unwrap();
        assert!(p.is_none());
        assert!(parse_user(&json!({"status": "ACTIVE"})).is_err());
        assert_eq!(
            parse_group(&json!({"id": "00g1", "type": "OKTA_GROUP", "profile": {"name": "ml"}})).unwrap(),
            ("00g1".to_string(), "ml".to_string())
        );
    }

    #[test]
    fn next_links_are_found_among_several_links() {
        let self_and_next = [
            "<https://acme.okta.com/api/v1/users?limit=2>; rel=\"self\"",
            "<https://acme.okta.com/api/v1/users?after=00u2&limit=2>; rel=\"next\"",
        ];
        assert_eq!(
            next_link(&self_and_next).as_deref(),
            Some("https://acme.okta.com/api/v1/users?after=00u2&limit=2")
        );
        let one_header = ["<https://a/x?a=1,2>; rel=\"self\", <https://a/y>; rel=next"];
        assert_eq!(next_link(&one_header).as_deref(), Some("https://a/y"));
        assert_eq!(next_link(&["<https://a/x>; rel=\"self\""]), None);
        assert_eq!(next_link(&[]), None);
        assert_eq!(next_link(&["garbage"]), None);
    }
}
