//! The SCIM 2.0 source (RFC 7643/7644): `GET /Users` and `GET /Groups`, paged with
//! `startIndex`/`count`, every page checked against `totalResults`.
//!
//! People: anchor = SCIM `id`, email = the primary address (else the `work` one, else
//! the first), `active: false` = disabled. Groups: referenced in policy by `displayName`
//! or `id`; members of type `Group` are flattened (cycle-safe); members that are neither a
//! listed user nor a listed group (a deleted user some servers leave behind) are ignored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde_json::Value;

use super::http::{auth_header, join, parse_base, source_secret, warn_duplicate_names, IdpError, SourceHttp};
use super::SourceError;
use crate::config::SourceConfig;
use crate::http::retry::Backoff;
use crate::http::HttpStats;
use crate::model::{DirectorySnapshot, Group, Person};
use crate::secret::Secret;

/// Reads the whole directory from the SCIM server `[source]` describes.
pub async fn read(cfg: &SourceConfig, config_dir: &Path) -> Result<DirectorySnapshot, SourceError> {
    let url = cfg
        .url
        .as_deref()
        .ok_or_else(|| SourceError::Other("source.url is required when source.kind = \"scim\"".into()))?;
    let token = source_secret(cfg, config_dir)?;
    let src = ScimSource::new(url, token, cfg.page_size, cfg.timeout.0)?;
    Ok(src.read().await?)
}

/// A client for one SCIM server's `/Users` and `/Groups`.
#[derive(Debug)]
pub struct ScimSource {
    http: SourceHttp,
    base: Url,
    auth: HeaderValue,
    page_size: u32,
}

impl ScimSource {
    pub fn new(url: &str, token: Secret, page_size: u32, timeout: Duration) -> Result<ScimSource, IdpError> {
        let base = parse_base("url", url)?;
        let auth = auth_header("Bearer", &token, "source.token_file / source.token_env")?;
        let mut http = SourceHttp::new(
            format!("the SCIM server at {base}"),
            "source.token_file / source.token_env (a bearer token the SCIM server accepts)",
            "the token must be allowed to read /Users and /Groups",
            timeout,
        )?;
        http.scrub_secret(token);
        Ok(ScimSource {
            http,
            base,
            auth,
            page_size: page_size.max(1),
        })
    }

    /// Replaces the retry bounds (tests use milliseconds).
    pub fn with_retries(mut self, max_retries: u32, backoff: Backoff) -> ScimSource {
        self.http = self.http.with_retries(max_retries, backoff);
        self
    }

    pub fn http_stats(&self) -> HttpStats {
        self.http.stats()
    }

    /// Everything the server has, complete or an error.
    pub async fn read(&self) -> Result<DirectorySnapshot, IdpError> {
        let sort = self.sort_supported().await?;
        let (users, groups) = tokio::try_join!(
            self.list("Users", sort.then_some("userName")),
            self.list("Groups", sort.then_some("displayName"))
        )?;
        let op = "GET /Users (read users)";
        let people = users
            .iter()
            .map(parse_user)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|d| self.http.malformed(op, d))?;
        let op = "GET /Groups (read groups)";
        let listed = groups
            .iter()
            .map(parse_group)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|d| self.http.malformed(op, d))?;
        // Groups listed without `members` are read one by one, a few at a time.
        let completed: Vec<(RawGroup, bool)> = stream::iter(listed.into_iter().map(|g| self.complete(g)))
            .buffered(super::http::GROUP_CONCURRENCY)
            .try_collect()
            .await?;
        let raw = settle_unstated_members(completed).map_err(|d| self.http.malformed("GET /Groups/{id} (group members)", d))?;
        let (groups, ignored) = flatten_groups(&people, &raw);
        if ignored > 0 {
            tracing::info!(
                ignored,
                "SCIM group members that are neither a listed user nor a listed group were ignored (deleted users some servers keep in members)"
            );
        }
        warn_duplicate_names(&groups, "SCIM");
        Ok(DirectorySnapshot {
            kind: "scim".into(),
            people,
            groups,
        })
    }

    /// A listed group with its members: as listed when the list carried them, else from
    /// `GET /Groups/{id}` (many servers leave `members` out of list responses). The flag
    /// says whether the server stated the members at all; [`settle_unstated_members`]
    /// decides what an unstated list means.
    async fn complete(&self, g: ListedGroup) -> Result<(RawGroup, bool), IdpError> {
        if let Some(members) = g.members {
            let group = RawGroup {
                id: g.id,
                name: g.name,
                members,
            };
            return Ok((group, true));
        }
        let op = format!("GET /Groups/{} (members of {})", g.id, g.name);
        let mut url = join(&self.base, &["Groups", &g.id]);
        url.query_pairs_mut().append_pair("attributes", "members");
        let (v, _) = self.http.get_json(&op, url, &self.auth).await?;
        let members = parse_members(&v, &g.id, &g.name).map_err(|d| self.http.malformed(&op, d))?;
        let stated = members.is_some();
        let group = RawGroup {
            id: g.id,
            name: g.name,
            members: members.unwrap_or_default(),
        };
        Ok((group, stated))
    }

    /// Whether to send `sortBy`: paging over a server's random default order can skip or
    /// repeat resources. Sent unless `/ServiceProviderConfig` says sorting is unsupported
    /// (an unreadable config is no reason to fail; the count check guards the result).
    async fn sort_supported(&self) -> Result<bool, IdpError> {
        let op = "GET /ServiceProviderConfig (capabilities)";
        let url = join(&self.base, &["ServiceProviderConfig"]);
        let reply = self.http.send(op, &super::http::Request::get(url, &self.auth)).await?;
        if reply.status == 401 {
            return Err(self.http.error_from(op, &reply));
        }
        if !reply.ok() {
            return Ok(true);
        }
        Ok(match serde_json::from_slice::<Value>(&reply.body) {
            Ok(v) => v["sort"]["supported"].as_bool() != Some(false),
            Err(_) => true,
        })
    }

    /// Every resource of a list, by `startIndex`/`count` pages. Each page must agree on
    /// `totalResults` and bring new resources until that many distinct ids are in hand:
    /// anything else is a short read and an error, never a smaller directory.
    async fn list(&self, resource: &str, sort_by: Option<&str>) -> Result<Vec<Value>, IdpError> {
        let op = format!("GET /{resource} (list {})", resource.to_lowercase());
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut start: u64 = 1;
        let mut total: Option<u64> = None;
        for _ in 0..super::http::MAX_PAGES {
            let mut url = join(&self.base, &[resource]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("startIndex", &start.to_string());
                q.append_pair("count", &self.page_size.to_string());
                if let Some(s) = sort_by {
                    q.append_pair("sortBy", s);
                    q.append_pair("sortOrder", "ascending");
                }
            }
            let (v, _) = self.http.get_json(&op, url, &self.auth).await?;
            let page_total = v["totalResults"]
                .as_u64()
                .ok_or_else(|| self.http.malformed(&op, "the list response has no totalResults"))?;
            if let Some(t) = total.filter(|t| *t != page_total) {
                return Err(self.http.malformed(
                    &op,
                    format!("totalResults changed from {t} to {page_total} between pages (the directory changed during the read); retry"),
                ));
            }
            total = Some(page_total);
            let resources = match &v["Resources"] {
                Value::Array(a) => a.as_slice(),
                Value::Null => &[],
                _ => return Err(self.http.malformed(&op, "Resources is not a list")),
            };
            let mut fresh = 0u64;
            for r in resources {
                let id = id_of(r).ok_or_else(|| self.http.malformed(&op, format!("a {resource} resource has no id")))?;
                if seen.insert(id) {
                    out.push(r.clone());
                    fresh += 1;
                }
            }
            let got = seen.len() as u64;
            if got > page_total {
                return Err(self
                    .http
                    .malformed(&op, format!("received {got} distinct resources but totalResults is {page_total}")));
            }
            if got == page_total {
                return Ok(out);
            }
            if fresh == 0 {
                return Err(self.http.malformed(
                    &op,
                    format!(
                        "short read: {got} of totalResults = {page_total} received, and the page at startIndex {start} brought nothing new \
                         (the server's paging or sorting is unstable); refusing to use a partial directory"
                    ),
                ));
            }
            start = start.saturating_add(resources.len() as u64);
        }
        Err(self.http.malformed(&op, "still paging after too many pages; refusing to continue"))
    }
}

use crate::scim::{bool_field, field, pick_email, text as str_field};

fn id_of(v: &Value) -> Option<String> {
    str_field(v, "id")
}

/// One SCIM User as a directory person.
pub fn parse_user(v: &Value) -> Result<Person, String> {
    let id = id_of(v).ok_or("a user has no id")?;
    let username = str_field(v, "userName").unwrap_or_default();
    let name = field(v, "name");
    let display_name = str_field(v, "displayName")
        .or_else(|| name.and_then(|n| str_field(n, "formatted")))
        .or_else(|| {
            let n = name?;
            let parts: Vec<String> = [str_field(n, "givenName"), str_field(n, "familyName")]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| username.clone());
    // RFC 7643 makes `active` optional; absent means nobody said the account is off.
    let enabled = bool_field(v, "active").unwrap_or(true);
    Ok(Person {
        anchor: id.clone(),
        email: pick_email(v),
        source_ref: format!("{} (scim id {id})", if username.is_empty() { "?" } else { &username }),
        username,
        display_name,
        enabled,
    })
}

/// What a group member reference says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    User,
    Group,
    Unknown,
}

/// A group as listed, before nested groups are flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawGroup {
    pub id: String,
    pub name: String,
    pub members: Vec<(String, MemberKind)>,
}

/// A group as a list response has it: `members` is `None` when the attribute is absent
/// (or null), which means "not sent", never "empty".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub id: String,
    pub name: String,
    pub members: Option<Vec<(String, MemberKind)>>,
}

pub fn parse_group(v: &Value) -> Result<ListedGroup, String> {
    let id = id_of(v).ok_or("a group has no id")?;
    let name = str_field(v, "displayName").unwrap_or_else(|| id.clone());
    let members = parse_members(v, &id, &name)?;
    Ok(ListedGroup { id, name, members })
}

/// A group resource's `members`: `None` when absent; a member without a `value` is an
/// error (skipping it would shrink the group).
pub fn parse_members(v: &Value, id: &str, name: &str) -> Result<Option<Vec<(String, MemberKind)>>, String> {
    let list = match field(v, "members") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("group {name} ({id}): members is not a list")),
        None => return Ok(None),
    };
    let mut members = Vec::with_capacity(list.len());
    for m in list {
        let value = str_field(m, "value").ok_or_else(|| format!("group {name} ({id}): a member has no value: {m}"))?;
        let kind = match str_field(m, "type").map(|t| t.to_ascii_lowercase()) {
            Some(t) if t == "user" => MemberKind::User,
            Some(t) if t == "group" => MemberKind::Group,
            _ => match str_field(m, "$ref") {
                Some(r) if r.contains("/Groups/") => MemberKind::Group,
                Some(r) if r.contains("/Users/") => MemberKind::User,
                _ => MemberKind::Unknown,
            },
        };
        members.push((value, kind));
    }
    Ok(Some(members))
}

/// What a group whose server never stated `members` (not in the list, not on its own)
/// means. RFC 7643 §2.5 reads an unassigned attribute as empty, and servers such as
/// `scim2-server` leave `members` out of empty groups; but a server that never sends
/// members at all would make every group look empty and empty every team. So: when some
/// group states its members, an unstated one is empty (removals it causes still face
/// `mass-team-removal` and the admin floors); when no group does, the read fails.
pub fn settle_unstated_members(groups: Vec<(RawGroup, bool)>) -> Result<Vec<RawGroup>, String> {
    let unstated: Vec<&RawGroup> = groups.iter().filter(|(_, stated)| !stated).map(|(g, _)| g).collect();
    if !unstated.is_empty() && unstated.len() == groups.len() {
        let g = unstated[0];
        return Err(format!(
            "no group comes with a members attribute, in the list or on its own (group {} ({}) and {} more): this server \
             does not say who is in its groups, and idsync will not take every group as empty",
            g.name,
            g.id,
            unstated.len() - 1
        ));
    }
    if !unstated.is_empty() {
        let names: Vec<&str> = unstated.iter().map(|g| g.name.as_str()).collect();
        tracing::info!(groups = ?names, "SCIM groups without a members attribute are read as empty (RFC 7643 §2.5)");
    }
    Ok(groups.into_iter().map(|(g, _)| g).collect())
}

/// Resolves members to people's anchors, flattening nested groups (cycle-safe). Returns
/// the groups and how many member references matched nothing listed.
pub fn flatten_groups(people: &[Person], raw: &[RawGroup]) -> (Vec<Group>, usize) {
    let users: HashSet<&str> = people.iter().map(|p| p.anchor.as_str()).collect();
    let index: HashMap<&str, usize> = raw.iter().enumerate().map(|(i, g)| (g.id.as_str(), i)).collect();
    let mut ignored = 0usize;
    // Direct users and child groups of each group, resolved once.
    let mut direct: Vec<(Vec<&str>, Vec<usize>)> = Vec::with_capacity(raw.len());
    for g in raw {
        let (mut us, mut gs) = (Vec::new(), Vec::new());
        for (value, kind) in &g.members {
            let as_user = users.contains(value.as_str());
            let as_group = index.get(value.as_str()).copied();
            match (kind, as_user, as_group) {
                (MemberKind::User | MemberKind::Unknown, true, _) => us.push(value.as_str()),
                (MemberKind::Group | MemberKind::Unknown, _, Some(i)) => gs.push(i),
                _ => ignored += 1,
            }
        }
        direct.push((us, gs));
    }
    let groups = raw
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut members: BTreeMap<&str, ()> = BTreeMap::new();
            let mut visited = vec![false; raw.len()];
            let mut stack = vec![i];
            visited[i] = true;
            while let Some(j) = stack.pop() {
                for u in &direct[j].0 {
                    members.insert(u, ());
                }
                for &k in &direct[j].1 {
                    if !visited[k] {
                        visited[k] = true;
                        stack.push(k);
                    }
                }
            }
            Group {
                anchor: g.id.clone(),
                name: g.name.clone(),
                dn: None,
                members: members.into_keys().map(str::to_string).collect(),
                subgroups: direct[i].1.iter().filter(|&&k| k != i).map(|&k| raw[k].id.clone()).collect(),
            }
        })
        .collect();
    (groups, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_take_the_primary_then_work_then_first_email() {
        let u = parse_user(&json!({"id": "1", "userName": "a", "emails": [
            {"value": "home@x.com", "type": "home"},
            {"value": "work@x.com", "type": "work"},
            {"value": "main@x.com", "primary": true}
        ]}))
        .unwrap();
        assert_eq!(u.email.as_deref(), Some("main@x.com"));
        let u = parse_user(&json!({"id": "1", "emails": [{"value": "home@x.com", "type": "home"}, {"value": "w@x.com", "type": "Work"}]}))
            .unwrap();
        assert_eq!(u.email.as_deref(), Some("w@x.com"));
        let u = parse_user(&json!({"id": "1", "emails": [{"value": "only@x.com"}]})).unwrap();
        assert_eq!(u.email.as_deref(), Some("only@x.com"));
        let u = parse_user(&json!({"id": "1", "emails": {"Value": "obj@x.com", "Primary": true}})).unwrap();
        assert_eq!(u.email.as_deref(), Some("obj@x.com"));
        let u = parse_user(&json!({"id": "1", "userName": "a@x.com"})).unwrap();
        assert_eq!(u.email, None, "never guessed from userName");
    }

    #[test]
    fn users_map_active_names_and_anchor() {
        let u = parse_user(&json!({"id": "u1", "userName": "alice", "active": false,
            "name": {"givenName": "Alice", "familyName": "Ng"}}))
        .unwrap();
        assert_eq!(u.anchor, "u1");
        assert_eq!(u.username, "alice");
        assert_eq!(u.display_name, "Alice Ng");
        assert!(!u.enabled);
        assert!(u.source_ref.contains("alice") && u.source_ref.contains("u1"));
        assert!(parse_user(&json!({"id": "u2", "active": "True"})).unwrap().enabled);
        assert!(!parse_user(&json!({"id": "u2", "active": "false"})).unwrap().enabled);
        assert!(parse_user(&json!({"id": "u3"})).unwrap().enabled, "absent active is not disabled");
        assert!(parse_user(&json!({"userName": "x"})).is_err());
    }

    #[test]
    fn groups_flatten_nested_members_cycle_safe_and_ignore_dangling_ones() {
        let people: Vec<Person> = ["a", "b", "c"]
            .iter()
            .map(|id| parse_user(&json!({"id": id, "userName": id})).unwrap())
            .collect();
        let raw: Vec<RawGroup> = [
            json!({"id": "g1", "displayName": "outer", "members": [
                {"value": "a", "type": "User"}, {"value": "g2", "type": "Group"}, {"value": "deleted", "type": "User"}]}),
            json!({"id": "g2", "displayName": "inner", "members": [
                {"value": "b"}, {"value": "g1", "$ref": "https://x/Groups/g1"}]}),
            json!({"id": "g3", "displayName": "empty", "members": []}),
            json!({"id": "g4", "displayName": "self", "members": [{"value": "g4", "type": "Group"}, {"value": "c", "type": "user"}]}),
        ]
        .iter()
        .map(|v| {
            let g = parse_group(v).unwrap();
            RawGroup {
                id: g.id,
                name: g.name,
                members: g.members.unwrap(),
            }
        })
        .collect();
        let (groups, ignored) = flatten_groups(&people, &raw);
        assert_eq!(ignored, 1);
        let m = |name: &str| groups.iter().find(|g| g.name == name).unwrap().members.clone();
        assert_eq!(m("outer"), vec!["a", "b"]);
        assert_eq!(m("inner"), vec!["a", "b"], "a cycle is followed once");
        assert!(m("empty").is_empty());
        assert_eq!(m("self"), vec!["c"]);
        let sub = |name: &str| groups.iter().find(|g| g.name == name).unwrap().subgroups.clone();
        assert_eq!(sub("outer"), vec!["g2"], "nesting is recorded by group id");
        assert_eq!(sub("inner"), vec!["g1"]);
        assert!(sub("self").is_empty(), "a group is not nested in itself");
        assert!(groups.iter().all(|g| g.dn.is_none()));
        assert!(groups[0].matches("outer") && groups[0].matches("g1"));
        assert!(parse_group(&json!({"id": "g", "members": "x"})).is_err());
    }

    #[test]
    fn unstated_members_are_empty_only_when_other_groups_state_theirs() {
        let g = |id: &str, stated: bool| {
            (
                RawGroup {
                    id: id.into(),
                    name: id.into(),
                    members: if stated {
                        vec![("u1".to_string(), MemberKind::User)]
                    } else {
                        vec![]
                    },
                },
                stated,
            )
        };
        let ok = settle_unstated_members(vec![g("a", true), g("b", false)]).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok[1].members.is_empty());
        let e = settle_unstated_members(vec![g("a", false), g("b", false)]).unwrap_err();
        assert!(
            e.contains("no group comes with a members attribute") && e.contains("group a (a) and 1 more"),
            "{e}"
        );
        assert!(settle_unstated_members(vec![]).unwrap().is_empty());
    }

    #[test]
    fn absent_members_are_unknown_never_empty_and_a_member_needs_a_value() {
        assert_eq!(parse_group(&json!({"id": "g", "displayName": "ml"})).unwrap().members, None);
        assert_eq!(parse_group(&json!({"id": "g", "members": null})).unwrap().members, None);
        assert_eq!(parse_group(&json!({"id": "g", "members": []})).unwrap().members, Some(vec![]));
        let e = parse_group(&json!({"id": "g", "displayName": "ml", "members": [{"value": "a"}, {"type": "User", "display": "Bob"}]}))
            .unwrap_err();
        assert!(e.contains("ml (g)") && e.contains("no value"), "{e}");
    }
}
