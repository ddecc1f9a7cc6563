//! The sandbox's org and its SCIM semantics, without HTTP: a request in, a reply out.
//!
//! Everything W&B-specific about *what* happens lives here (deactivation per deployment,
//! the viewer reset, bare member removal, ETags, seat limits); `http.rs` adds auth,
//! faults and transport.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::seed::{SandboxOrg, SandboxState, StateTeam, StateUser};
use super::SandboxError;
use crate::model::Deployment;
use crate::model::Email;

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const ROLE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Role";
pub(crate) const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub(crate) const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(crate) const TEAMS_EXT: &str = "urn:ietf:params:scim:schemas:extension:teams:2.0:User";
/// The schema extension the sandbox's "marked" shape tags service accounts with. W&B's own
/// shape is unconfirmed (WANDB.md); idsync recognises any URN naming a service account.
pub(crate) const SERVICE_ACCOUNT_EXT: &str = "urn:ietf:params:scim:schemas:extension:wandb:2.0:ServiceAccount";
/// W&B answers at most this many resources per list request.
pub(crate) const MAX_RESULTS: usize = 9999;

const BUILTIN_ROLES: [&str; 3] = ["admin", "member", "viewer"];

/// A server version `major.minor.patch`; suffixes such as `-rc1` are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub u64, pub u64, pub u64);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches(['v', 'V']);
        let core = s.split(['-', '+']).next().unwrap_or("");
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().unwrap_or("0").parse().ok()?;
        let patch = parts.next().unwrap_or("0").parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }
}

/// The behaviour switches the store needs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub deployment: Deployment,
    /// `None`: current server.
    pub version: Option<Version>,
    pub honour_paging: bool,
    pub page_cap: Option<usize>,
    pub seat_limit: Option<usize>,
    pub activity: bool,
    pub service_accounts: ServiceAccountListing,
}

/// Whether and how `GET /Users` lists service accounts. W&B documents that it does not,
/// but servers with the SCIM service-account lifecycle (0.81+) may, in a shape nobody has
/// confirmed: either marked as such, or as users without any email.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceAccountListing {
    /// Not listed: what W&B documents.
    #[default]
    Off,
    /// Listed with a service-account schema extension (and the seeded email, if any).
    Marked,
    /// Listed like users, but without any email.
    NoEmail,
}

impl Config {
    fn saas(&self) -> bool {
        self.deployment == Deployment::Saas
    }

    /// Bearer tokens work on SaaS and on 0.79.0 and later.
    pub fn bearer_allowed(&self) -> bool {
        self.saas() || self.version.is_none_or(|v| v >= Version(0, 79, 0))
    }

    /// Before 0.56, `DELETE /Users/{id}` only deactivated.
    fn delete_deactivates(&self) -> bool {
        !self.saas() && self.version.is_some_and(|v| v < Version(0, 56, 0))
    }
}

/// A SCIM error: status and W&B-shaped body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScimError {
    pub status: u16,
    pub detail: String,
    pub scim_type: Option<&'static str>,
}

impl ScimError {
    pub fn new(status: u16, detail: impl Into<String>) -> ScimError {
        ScimError {
            status,
            detail: detail.into(),
            scim_type: None,
        }
    }

    fn typed(status: u16, scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError {
            status,
            detail: detail.into(),
            scim_type: Some(scim_type),
        }
    }

    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "detail": self.detail,
            // W&B sends the status as a string.
            "status": self.status.to_string(),
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

type Scim<T> = Result<T, ScimError>;

/// What a request produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    /// The JSON body, already serialised: a 10,000-user page is rendered straight to bytes
    /// instead of through a `Value` tree (ten times slower, and the bench's W&B read).
    pub body: Option<Vec<u8>>,
    pub etag: Option<String>,
}

impl Reply {
    fn json(status: u16, body: impl Serialize) -> Reply {
        Reply {
            status,
            // Serialising plain data into memory cannot fail (string keys only).
            body: Some(serde_json::to_vec(&body).unwrap_or_default()),
            etag: None,
        }
    }

    /// The body parsed back, for tests.
    #[cfg(test)]
    pub fn value(&self) -> Option<Value> {
        self.body
            .as_deref()
            .map(|b| serde_json::from_slice(b).expect("the sandbox writes JSON"))
    }

    fn with_etag(mut self, etag: String) -> Reply {
        self.etag = Some(etag);
        self
    }

    pub fn error(e: &ScimError) -> Reply {
        Reply::json(e.status, e.body())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Other,
}

/// A SCIM request, already authenticated. `path` is relative to the SCIM base
/// (`/Users/abc`); `query` keys are lower case.
pub(crate) struct Request<'a> {
    pub verb: Verb,
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
    pub if_match: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone)]
struct UserRec {
    email: String,
    username: String,
    display_name: String,
    active: bool,
    /// False once removed from the org on SaaS: the W&B account lives on, outside the org.
    in_org: bool,
    org_role: &'static str,
    viewer_seat: bool,
    /// Team number -> team role.
    teams: BTreeMap<u64, String>,
    last_active_at: Option<DateTime<Utc>>,
    days_active: Option<u64>,
    /// Served without the activity keys (see `SeedUser::omit_activity`).
    omit_activity: bool,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    version: u64,
}

#[derive(Debug, Clone)]
struct TeamRec {
    name: String,
    /// Users and service accounts, by number.
    members: BTreeSet<u64>,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    version: u64,
}

#[derive(Debug, Clone)]
struct ServiceAccount {
    name: String,
    /// Org-level accounts join every new team.
    org_level: bool,
    /// Shown in the marked listing only.
    email: Option<String>,
    org_role: &'static str,
}

/// The org: users, teams, service accounts, roles, and counters for assertions.
pub(crate) struct Store {
    cfg: Config,
    /// Users and service accounts share W&B's `User:N` number space.
    next_user: u64,
    next_team: u64,
    users: BTreeMap<u64, UserRec>,
    service_accounts: BTreeMap<u64, ServiceAccount>,
    teams: BTreeMap<u64, TeamRec>,
    roles: Vec<String>,
    /// Lower-case email / username -> user number, over every account the store knows.
    by_email: HashMap<String, u64>,
    by_username: HashMap<String, u64>,
    deleted: BTreeSet<String>,
    user_posts: BTreeMap<String, u64>,
    user_creates: BTreeMap<String, u64>,
    bare_member_removes: u64,
    viewer_role_assignments: u64,
    service_account_writes: u64,
}

// ---- wire shapes -------------------------------------------------------------------
// Fields in byte order of their JSON keys, as a `json!` map would write them, so replies
// read the same as before they were rendered straight from these.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserOut<'a> {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    days_active: Option<u64>,
    display_name: &'a str,
    emails: EmailOut<'a>,
    groups: Vec<IdRef>,
    id: String,
    /// `Some(None)` is written as `null` (never active); `None` leaves the key out.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_active_at: Option<Option<String>>,
    meta: MetaOut,
    organization_role: &'a str,
    schemas: [&'static str; 1],
    team_roles: Vec<TeamRoleOut<'a>>,
    user_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmailOut<'a> {
    display: &'a str,
    primary: bool,
    #[serde(rename = "Type")]
    kind: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct IdRef {
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TeamRoleOut<'a> {
    role_name: &'a str,
    team_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetaOut {
    created: String,
    last_modified: String,
    location: String,
    resource_type: &'static str,
    version: String,
}

impl MetaOut {
    fn new(kind: &'static str, path: &str, id: &str, created: &DateTime<Utc>, modified: &DateTime<Utc>, version: u64) -> MetaOut {
        MetaOut {
            created: time(created),
            last_modified: time(modified),
            location: format!("{path}/{id}"),
            resource_type: kind,
            version: etag(version),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TeamOut<'a> {
    display_name: &'a str,
    id: String,
    /// `None` is written as `null`: an empty team, as W&B answers it.
    members: Option<Vec<MemberOut<'a>>>,
    meta: MetaOut,
    schemas: [&'static str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MemberOut<'a> {
    display: &'a str,
    #[serde(rename = "Ref")]
    reference: &'a str,
    #[serde(rename = "Type")]
    kind: &'a str,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListOut<R> {
    #[serde(rename = "Resources")]
    resources: Vec<R>,
    items_per_page: usize,
    schemas: [&'static str; 1],
    start_index: usize,
    total_results: usize,
}

/// One entry of a `/Users` page: a user, or a service account in its configured shape.
#[derive(Serialize)]
#[serde(untagged)]
enum Listed<'a> {
    User(Box<UserOut<'a>>),
    Other(Value),
}

fn encode_id(kind: &str, n: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{n}"))
}

fn decode_id(kind: &str, id: &str) -> Option<u64> {
    let id = percent_decode(id);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(id.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(id.trim()))
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (k, n) = text.split_once(':')?;
    if k != kind {
        return None;
    }
    n.parse().ok()
}

/// Decodes `%XX` escapes (clients may escape the `=` of base64 ids).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Looks a key up case-insensitively, as W&B's Go JSON decoding does.
fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn parse_body(body: &[u8]) -> Scim<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ScimError::typed(400, "invalidSyntax", "request body must be a JSON object")),
        Err(e) => Err(ScimError::typed(400, "invalidSyntax", format!("invalid JSON body: {e}"))),
    }
}

/// `If-Match`: absent or `*` passes; otherwise one of the listed tags must match (weakly).
fn check_if_match(if_match: Option<&str>, current: &str) -> Scim<()> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let norm = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_string();
    let want = norm(current);
    if header.split(',').any(|t| t.trim() == "*" || norm(t) == want) {
        Ok(())
    } else {
        Err(ScimError::new(
            412,
            format!("ETag mismatch: the resource is at {current}; re-read it and retry"),
        ))
    }
}

/// Parses `attr eq "value"`, the only filter form W&B documents. Returns the lower-case
/// attribute and the value.
fn parse_filter(filter: &str) -> Scim<(String, String)> {
    let bad = || {
        ScimError::typed(
            400,
            "invalidFilter",
            format!("unsupported filter {filter:?}: use attribute eq \"value\""),
        )
    };
    let f = filter.trim();
    let (attr, rest) = f.split_once(char::is_whitespace).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (op, value) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let value = value.trim();
    let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(bad)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or_else(bad)?),
            '"' => return Err(bad()),
            c => out.push(c),
        }
    }
    Ok((attr.to_ascii_lowercase(), out))
}

fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        // Some IdPs send booleans as strings ("False").
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// One validated change to a user, applied only once the whole PatchOp is valid.
enum UserChange {
    Active(bool),
    DisplayName(String),
    OrgRole(&'static str),
    TeamRole(u64, String),
}

/// One validated change to a team.
enum TeamChange {
    Add(Vec<u64>),
    Remove(Option<u64>),
    RemoveAll,
}

impl Store {
    pub fn new(cfg: Config, org: SandboxOrg) -> Result<Store, SandboxError> {
        let now = Utc::now();
        let mut store = Store {
            cfg,
            next_user: 1,
            next_team: 1,
            users: BTreeMap::new(),
            service_accounts: BTreeMap::new(),
            teams: BTreeMap::new(),
            roles: Vec::new(),
            by_email: HashMap::new(),
            by_username: HashMap::new(),
            deleted: BTreeSet::new(),
            user_posts: BTreeMap::new(),
            user_creates: BTreeMap::new(),
            bare_member_removes: 0,
            viewer_role_assignments: 0,
            service_account_writes: 0,
        };
        let seed_err = |m: String| SandboxError::Seed(m);

        for role in &org.roles {
            let r = role.trim();
            if r.is_empty() || BUILTIN_ROLES.contains(&r.to_ascii_lowercase().as_str()) {
                return Err(seed_err(format!("custom role {role:?} is empty or built in")));
            }
            if store.roles.iter().any(|x| x == r) {
                return Err(seed_err(format!("custom role {role:?} is listed twice")));
            }
            store.roles.push(r.to_string());
        }

        for team in &org.teams {
            let name = team.name.trim();
            if name.is_empty() {
                return Err(seed_err("a team has an empty name".into()));
            }
            if store.team_by_name(name).is_some() {
                return Err(seed_err(format!("team {name:?} is listed twice")));
            }
            let n = store.next_team;
            store.next_team += 1;
            store.teams.insert(
                n,
                TeamRec {
                    name: name.to_string(),
                    members: BTreeSet::new(),
                    created: now,
                    modified: now,
                    version: 1,
                },
            );
        }

        for u in &org.users {
            let email = Email::parse(&u.email).ok_or_else(|| seed_err(format!("user email {:?} is not usable", u.email)))?;
            let username = u.username.trim();
            if username.is_empty() {
                return Err(seed_err(format!("user {email} has an empty username")));
            }
            if store.by_email.contains_key(email.as_str()) {
                return Err(seed_err(format!("email {email} is listed twice")));
            }
            if store.by_username.contains_key(&username.to_lowercase()) {
                return Err(seed_err(format!("username {username:?} is listed twice")));
            }
            let (org_role, viewer_seat) = match u.org_role.as_deref().unwrap_or("member").trim().to_ascii_lowercase().as_str() {
                "admin" => ("admin", false),
                "member" => ("member", false),
                "viewer" => ("member", true),
                other => return Err(seed_err(format!("user {email}: org_role {other:?} is not admin, member or viewer"))),
            };
            // On SaaS a deactivated user is no longer in the org.
            let in_org = u.active || !store.cfg.saas();
            let mut teams = BTreeMap::new();
            for (team, role) in &u.teams {
                let t = store
                    .team_by_name(team)
                    .ok_or_else(|| seed_err(format!("user {email}: team {team:?} is not in teams")))?;
                let role = store
                    .valid_role(role)
                    .ok_or_else(|| seed_err(format!("user {email}: team role {role:?} is unknown")))?;
                if in_org {
                    teams.insert(t, role);
                }
            }
            let n = store.next_user;
            store.next_user += 1;
            for t in teams.keys() {
                if let Some(team) = store.teams.get_mut(t) {
                    team.members.insert(n);
                }
            }
            store.by_email.insert(email.as_str().to_string(), n);
            store.by_username.insert(username.to_lowercase(), n);
            store.users.insert(
                n,
                UserRec {
                    email: u.email.trim().to_string(),
                    username: username.to_string(),
                    display_name: u.display_name.clone().unwrap_or_else(|| username.to_string()),
                    active: u.active,
                    in_org,
                    org_role,
                    viewer_seat,
                    teams,
                    last_active_at: u.last_active_at,
                    days_active: u.days_active,
                    omit_activity: u.omit_activity,
                    created: now,
                    modified: now,
                    version: 1,
                },
            );
        }

        for sa in &org.service_accounts {
            let name = sa.name.trim();
            if name.is_empty() || store.service_accounts.values().any(|s| s.name == name) {
                return Err(seed_err(format!("service account {name:?} is empty or listed twice")));
            }
            let org_role = match sa.org_role.as_deref().unwrap_or("member").trim().to_ascii_lowercase().as_str() {
                "admin" => "admin",
                "member" => "member",
                other => {
                    return Err(seed_err(format!(
                        "service account {name}: org_role {other:?} is not admin or member"
                    )))
                }
            };
            let email = match sa.email.as_deref() {
                Some(raw) => Some(
                    Email::parse(raw)
                        .ok_or_else(|| seed_err(format!("service account {name}: email {raw:?} is not usable")))?
                        .to_string(),
                ),
                None => None,
            };
            let n = store.next_user;
            store.next_user += 1;
            store.service_accounts.insert(
                n,
                ServiceAccount {
                    name: name.to_string(),
                    org_level: true,
                    email,
                    org_role,
                },
            );
        }
        for team in &org.teams {
            let Some(t) = store.team_by_name(&team.name) else {
                continue;
            };
            for sa in &team.service_accounts {
                let sa = sa.trim();
                let n = match store.service_accounts.iter().find(|(_, s)| s.org_level && s.name == sa) {
                    Some((n, _)) => *n,
                    None => {
                        // Not an org account: a team-scoped one, which belongs to this team.
                        let n = store.next_user;
                        store.next_user += 1;
                        store.service_accounts.insert(
                            n,
                            ServiceAccount {
                                name: sa.to_string(),
                                org_level: false,
                                email: None,
                                org_role: "member",
                            },
                        );
                        n
                    }
                };
                if let Some(team) = store.teams.get_mut(&t) {
                    team.members.insert(n);
                }
            }
        }
        Ok(store)
    }

    // ---- lookups -------------------------------------------------------------------

    fn team_by_name(&self, name: &str) -> Option<u64> {
        let name = name.trim();
        self.teams.iter().find(|(_, t)| t.name.eq_ignore_ascii_case(name)).map(|(n, _)| *n)
    }

    /// The canonical spelling of a team role, if it is built in or a known custom role.
    fn valid_role(&self, role: &str) -> Option<String> {
        let r = role.trim();
        let lower = r.to_ascii_lowercase();
        if BUILTIN_ROLES.contains(&lower.as_str()) {
            return Some(lower);
        }
        self.roles.iter().find(|x| x.as_str() == r).cloned()
    }

    fn org_user(&self, n: u64) -> Option<&UserRec> {
        self.users.get(&n).filter(|u| u.in_org)
    }

    fn org_user_by_id(&self, id: &str) -> Scim<u64> {
        decode_id("User", id)
            .filter(|n| self.org_user(*n).is_some())
            .ok_or_else(|| ScimError::new(404, format!("User {id} not found")))
    }

    fn team_by_id(&self, id: &str) -> Scim<u64> {
        decode_id("Group", id)
            .filter(|n| self.teams.contains_key(n))
            .ok_or_else(|| ScimError::new(404, format!("Group {id} not found")))
    }

    /// A team member reference: a user id, a service account id, or an org user's email.
    fn resolve_member(&self, value: &str) -> Option<u64> {
        let v = value.trim();
        if let Some(n) = decode_id("User", v) {
            if self.org_user(n).is_some() || self.service_accounts.contains_key(&n) {
                return Some(n);
            }
        }
        let n = *self.by_email.get(&v.to_lowercase())?;
        self.org_user(n).map(|_| n)
    }

    fn active_users(&self) -> usize {
        self.users.values().filter(|u| u.in_org && u.active).count()
    }

    fn seat_check(&self) -> Scim<()> {
        match self.cfg.seat_limit {
            Some(limit) if self.active_users() >= limit => Err(ScimError::new(
                400,
                "Seat limit reached: add seats to the organization or free some",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `username` may authenticate as an org admin: `Some(true)` admin,
    /// `Some(false)` an active member who is not an admin, `None` unknown or unable to
    /// sign in.
    pub fn admin_status(&self, username: &str) -> Option<bool> {
        let n = self.by_username.get(&username.trim().to_lowercase())?;
        let u = self.org_user(*n).filter(|u| u.active)?;
        Some(u.org_role == "admin")
    }

    // ---- mutations -----------------------------------------------------------------

    fn touch_user(&mut self, n: u64) {
        if let Some(u) = self.users.get_mut(&n) {
            u.version += 1;
            u.modified = Utc::now();
        }
    }

    fn touch_team(&mut self, t: u64) {
        if let Some(team) = self.teams.get_mut(&t) {
            team.version += 1;
            team.modified = Utc::now();
        }
    }

    /// Adds a member with `role` unless already in the team. Returns whether it changed.
    fn add_member(&mut self, t: u64, n: u64, role: &str) -> bool {
        let Some(team) = self.teams.get_mut(&t) else {
            return false;
        };
        if !team.members.insert(n) {
            return false;
        }
        if let Some(u) = self.users.get_mut(&n) {
            u.teams.insert(t, role.to_string());
        }
        self.touch_team(t);
        self.touch_user(n);
        true
    }

    fn remove_member(&mut self, t: u64, n: u64) -> bool {
        let Some(team) = self.teams.get_mut(&t) else {
            return false;
        };
        if !team.members.remove(&n) {
            return false;
        }
        if let Some(u) = self.users.get_mut(&n) {
            u.teams.remove(&t);
        }
        self.touch_team(t);
        self.touch_user(n);
        true
    }

    fn leave_all_teams(&mut self, n: u64) {
        let teams: Vec<u64> = self.users.get(&n).map(|u| u.teams.keys().copied().collect()).unwrap_or_default();
        for t in teams {
            self.remove_member(t, n);
        }
    }

    /// SaaS: the account leaves the org (and its teams) but lives on in W&B.
    fn remove_from_org(&mut self, n: u64) {
        self.leave_all_teams(n);
        if let Some(u) = self.users.get_mut(&n) {
            u.in_org = false;
            u.active = false;
        }
        self.touch_user(n);
    }

    /// Dedicated/Self-Managed: the account is gone from the instance.
    fn delete_user(&mut self, n: u64) {
        self.leave_all_teams(n);
        if let Some(u) = self.users.remove(&n) {
            let email = u.email.to_lowercase();
            self.by_email.remove(&email);
            self.by_username.remove(&u.username.to_lowercase());
            self.deleted.insert(email);
        }
    }

    // ---- rendering -----------------------------------------------------------------

    fn user_json<'a>(&'a self, n: u64, u: &'a UserRec) -> UserOut<'a> {
        let id = encode_id("User", n);
        let mut teams: Vec<(&str, &str, u64)> = u
            .teams
            .iter()
            .filter_map(|(t, role)| self.teams.get(t).map(|team| (team.name.as_str(), role.as_str(), *t)))
            .collect();
        teams.sort();
        let activity = self.cfg.activity && !u.omit_activity;
        UserOut {
            active: u.active,
            // `null` is W&B's "never active"; older servers leave the keys out.
            days_active: activity.then(|| u.days_active.unwrap_or(0)),
            display_name: &u.display_name,
            // W&B answers a single object with capitalised keys, not the SCIM array.
            emails: EmailOut {
                display: "",
                primary: true,
                kind: "",
                value: &u.email,
            },
            groups: teams
                .iter()
                .map(|(_, _, t)| IdRef {
                    value: encode_id("Group", *t),
                })
                .collect(),
            last_active_at: activity.then(|| u.last_active_at.as_ref().map(time)),
            meta: MetaOut::new("User", "Users", &id, &u.created, &u.modified, u.version),
            id,
            organization_role: u.org_role,
            schemas: [USER_SCHEMA],
            team_roles: teams
                .iter()
                .map(|(name, role, _)| TeamRoleOut {
                    role_name: role,
                    team_name: name,
                })
                .collect(),
            user_name: &u.username,
        }
    }

    /// A service account as `/Users` lists it in the configured shape (`None`: not listed).
    fn service_account_json(&self, n: u64, sa: &ServiceAccount) -> Option<Value> {
        let id = encode_id("User", n);
        let mut teams: Vec<(&str, u64)> = self
            .teams
            .iter()
            .filter(|(_, team)| team.members.contains(&n))
            .map(|(t, team)| (team.name.as_str(), *t))
            .collect();
        teams.sort();
        let mut v = json!({
            "schemas": [USER_SCHEMA],
            "id": id,
            "userName": sa.name,
            "displayName": sa.name,
            "active": true,
            "organizationRole": sa.org_role,
            "teamRoles": teams.iter().map(|(name, _)| json!({"teamName": name, "roleName": "member"})).collect::<Vec<_>>(),
            "groups": teams.iter().map(|(_, t)| json!({"value": encode_id("Group", *t)})).collect::<Vec<_>>(),
            "meta": {"resourceType": "User", "location": format!("Users/{id}")},
        });
        match self.cfg.service_accounts {
            ServiceAccountListing::Off => return None,
            ServiceAccountListing::Marked => {
                v["schemas"] = json!([USER_SCHEMA, SERVICE_ACCOUNT_EXT]);
                v[SERVICE_ACCOUNT_EXT] = json!({"scope": if sa.org_level { "organization" } else { "team" }});
                if let Some(e) = &sa.email {
                    v["emails"] = json!({"Value": e, "Display": "", "Type": "", "Primary": true});
                }
            }
            ServiceAccountListing::NoEmail => {}
        }
        Some(v)
    }

    /// Whether `id` names a service account `/Users` lists; a write to one is counted.
    fn listed_service_account(&self, id: &str) -> Option<u64> {
        decode_id("User", id)
            .filter(|n| self.service_accounts.contains_key(n))
            .filter(|_| self.cfg.service_accounts != ServiceAccountListing::Off)
    }

    fn team_json<'a>(&'a self, t: u64, team: &'a TeamRec) -> TeamOut<'a> {
        let id = encode_id("Group", t);
        let members: Vec<MemberOut<'a>> = team
            .members
            .iter()
            .filter_map(|n| {
                let display = match (self.users.get(n), self.service_accounts.get(n)) {
                    (Some(u), _) => u.username.as_str(),
                    (None, Some(sa)) => sa.name.as_str(),
                    (None, None) => return None,
                };
                // W&B's documented answers leave Ref and Type empty, for users and service
                // accounts alike: only /Users tells them apart.
                Some(MemberOut {
                    display,
                    reference: "",
                    kind: "",
                    value: encode_id("User", *n),
                })
            })
            .collect();
        TeamOut {
            display_name: &team.name,
            // An empty team answers null, as W&B does after its members are removed.
            members: (!members.is_empty()).then_some(members),
            meta: MetaOut::new("Group", "Groups", &id, &team.created, &team.modified, team.version),
            id,
            schemas: [GROUP_SCHEMA],
        }
    }

    fn user_reply(&self, status: u16, n: u64) -> Reply {
        match self.users.get(&n) {
            Some(u) => Reply::json(status, self.user_json(n, u)).with_etag(etag(u.version)),
            None => Reply {
                status,
                body: None,
                etag: None,
            },
        }
    }

    fn team_reply(&self, status: u16, t: u64) -> Reply {
        match self.teams.get(&t) {
            Some(team) => Reply::json(status, self.team_json(t, team)).with_etag(etag(team.version)),
            None => Reply::error(&ScimError::new(404, "Group not found")),
        }
    }

    /// Builds a list response over `items`, paging (or not) as configured.
    fn list<T, R: Serialize>(&self, items: Vec<T>, query: &BTreeMap<String, String>, render: impl Fn(T) -> R) -> Scim<Reply> {
        let total = items.len();
        let (start, count) = if self.cfg.honour_paging {
            let num = |key: &str| -> Scim<Option<i64>> {
                query
                    .get(key)
                    .map(|v| {
                        v.trim()
                            .parse::<i64>()
                            .map_err(|_| ScimError::typed(400, "invalidValue", format!("{key} must be an integer")))
                    })
                    .transpose()
            };
            let start = num("startindex")?.unwrap_or(1).max(1) as usize;
            let count = num("count")?
                .map(|c| c.clamp(0, MAX_RESULTS as i64) as usize)
                .unwrap_or(MAX_RESULTS);
            (start, count)
        } else {
            (1, MAX_RESULTS)
        };
        let mut page: Vec<R> = items.into_iter().skip(start - 1).take(count).map(render).collect();
        if let Some(cap) = self.cfg.page_cap {
            // The emulated server drops the rest silently; totalResults stays true.
            page.truncate(cap);
        }
        let per_page = if self.cfg.honour_paging { page.len() } else { MAX_RESULTS };
        Ok(Reply::json(
            200,
            ListOut {
                resources: page,
                items_per_page: per_page,
                schemas: [LIST_SCHEMA],
                start_index: start,
                total_results: total,
            },
        ))
    }

    // ---- routing -------------------------------------------------------------------

    pub fn handle(&mut self, req: &Request<'_>) -> Reply {
        self.route(req).unwrap_or_else(|e| Reply::error(&e))
    }

    fn route(&mut self, req: &Request<'_>) -> Scim<Reply> {
        let path = req.path.trim_matches('/');
        let (resource, id) = match path.split_once('/') {
            Some((r, id)) if !id.is_empty() && !id.contains('/') => (r, Some(id)),
            Some(_) => return Err(ScimError::new(404, format!("no such endpoint /{path}"))),
            None => (path, None),
        };
        let not_allowed = || ScimError::new(405, format!("method not supported on /{path}"));
        match (resource, id, req.verb) {
            ("Users", None, Verb::Get) => self.list_users(req.query),
            ("Users", None, Verb::Post) => self.create_user(req.body),
            ("Users", Some(id), Verb::Get) => {
                if let Some(v) = self
                    .listed_service_account(id)
                    .and_then(|n| self.service_accounts.get(&n).and_then(|sa| self.service_account_json(n, sa)))
                {
                    return Ok(Reply::json(200, v));
                }
                let n = self.org_user_by_id(id)?;
                Ok(self.user_reply(200, n))
            }
            ("Users", Some(id), Verb::Patch | Verb::Delete) if self.listed_service_account(id).is_some() => {
                // Unconfirmed what W&B does here; idsync must never get this far.
                self.service_account_writes += 1;
                Err(ScimError::new(
                    400,
                    "service accounts cannot be changed through /Users; manage them in the W&B UI",
                ))
            }
            ("Users", Some(id), Verb::Patch) => self.patch_user(id, req.if_match, req.body),
            ("Users", Some(id), Verb::Delete) => self.delete(id, req.if_match),
            ("Groups", None, Verb::Get) => self.list_groups(req.query),
            ("Groups", None, Verb::Post) => self.create_group(req.body),
            ("Groups", Some(id), Verb::Get) => {
                let t = self.team_by_id(id)?;
                Ok(self.team_reply(200, t))
            }
            ("Groups", Some(id), Verb::Patch) => self.patch_group(id, req.if_match, req.body),
            ("Groups", Some(_), Verb::Delete) => Err(ScimError::new(
                405,
                "teams cannot be deleted through SCIM; delete the team in the W&B UI",
            )),
            ("Roles", None, Verb::Get) => self.list_roles(req.query),
            ("Roles", Some(id), Verb::Get) => self.get_role(id),
            ("Users" | "Groups" | "Roles", _, _) => Err(not_allowed()),
            _ => Err(ScimError::new(404, format!("no such endpoint /{path}"))),
        }
    }

    // ---- users ---------------------------------------------------------------------

    fn list_users(&self, query: &BTreeMap<String, String>) -> Scim<Reply> {
        let filter = match query.get("filter").filter(|f| !f.trim().is_empty()) {
            Some(f) => Some(parse_filter(f)?),
            None => None,
        };
        // (number, userName, email, displayName) of one listed account.
        let matches = |n: u64, username: &str, email: &str, display: &str| -> Scim<bool> {
            let Some((attr, value)) = &filter else {
                return Ok(true);
            };
            Ok(match attr.as_str() {
                "username" => username.eq_ignore_ascii_case(value),
                "emails.value" | "emails" | "email" => email.eq_ignore_ascii_case(value),
                "id" => encode_id("User", n) == *value,
                "displayname" => display == value,
                _ => {
                    return Err(ScimError::typed(
                        400,
                        "invalidFilter",
                        format!("filtering users on {attr:?} is not supported"),
                    ))
                }
            })
        };
        let mut items: Vec<(u64, Option<&UserRec>)> = Vec::new();
        for (n, u) in self.users.iter().filter(|(_, u)| u.in_org) {
            if matches(*n, &u.username, &u.email, &u.display_name)? {
                items.push((*n, Some(u)));
            }
        }
        if self.cfg.service_accounts != ServiceAccountListing::Off {
            for (n, sa) in &self.service_accounts {
                let email = match self.cfg.service_accounts {
                    ServiceAccountListing::Marked => sa.email.as_deref().unwrap_or(""),
                    _ => "",
                };
                if matches(*n, &sa.name, email, &sa.name)? {
                    items.push((*n, None));
                }
            }
            // Service accounts share the users' number space: list in id order, like W&B.
            items.sort_by_key(|(n, _)| *n);
        }
        self.list(items, query, |(n, u)| match u {
            Some(u) => Listed::User(Box::new(self.user_json(n, u))),
            None => Listed::Other(
                self.service_accounts
                    .get(&n)
                    .and_then(|sa| self.service_account_json(n, sa))
                    .unwrap_or(Value::Null),
            ),
        })
    }

    fn create_user(&mut self, body: &[u8]) -> Scim<Reply> {
        let obj = parse_body(body)?;
        let has_schema = get_ci(&obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(USER_SCHEMA))));
        if !has_schema {
            return Err(ScimError::typed(
                400,
                "invalidSyntax",
                format!("schemas must include {USER_SCHEMA}"),
            ));
        }
        let username = get_ci(&obj, "userName")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ScimError::typed(400, "invalidValue", "userName is required"))?
            .to_string();
        let primary = get_ci(&obj, "emails")
            .and_then(Value::as_array)
            .and_then(|emails| {
                emails
                    .iter()
                    .filter_map(Value::as_object)
                    .find(|e| get_ci(e, "primary").and_then(bool_value) == Some(true))
            })
            .and_then(|e| get_ci(e, "value").and_then(Value::as_str))
            .ok_or_else(|| ScimError::typed(400, "invalidValue", "emails must be an array with one primary address"))?
            .trim()
            .to_string();
        let email =
            Email::parse(&primary).ok_or_else(|| ScimError::typed(400, "invalidValue", format!("{primary:?} is not a valid email")))?;
        *self.user_posts.entry(email.as_str().to_string()).or_default() += 1;
        let display_name = get_ci(&obj, "displayName")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                get_ci(&obj, "name")
                    .and_then(Value::as_object)
                    .and_then(|n| get_ci(n, "formatted"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| username.clone());

        // The teams extension works on SaaS only; other servers ignore it silently.
        let mut teams = Vec::new();
        if self.cfg.saas() {
            if let Some(ext) = get_ci(&obj, TEAMS_EXT) {
                let names = ext
                    .as_object()
                    .and_then(|e| get_ci(e, "teams"))
                    .and_then(Value::as_array)
                    .ok_or_else(|| ScimError::typed(400, "invalidValue", format!("{TEAMS_EXT} needs a teams array")))?;
                for name in names {
                    let name = name
                        .as_str()
                        .ok_or_else(|| ScimError::typed(400, "invalidValue", "team names must be strings"))?;
                    let t = self
                        .team_by_name(name)
                        .ok_or_else(|| ScimError::new(400, format!("team {name:?} does not exist")))?;
                    teams.push(t);
                }
            }
        }

        let existing_email = self.by_email.get(email.as_str()).copied();
        let existing_name = self.by_username.get(&username.to_lowercase()).copied();
        let conflict = |n: Option<u64>| n.and_then(|n| self.org_user(n)).is_some();
        if conflict(existing_email) || conflict(existing_name) {
            return Err(ScimError::typed(
                409,
                "uniqueness",
                format!("User already exists in the organization: {email} / {username}"),
            ));
        }
        if let Some(n) = existing_name {
            if Some(n) != existing_email {
                // SaaS usernames are global: another W&B account holds this one.
                return Err(ScimError::typed(409, "uniqueness", format!("userName {username:?} is taken")));
            }
        }
        self.seat_check()?;

        let n = match existing_email {
            Some(n) => {
                // SaaS: the account left the org earlier; adding it makes it a member again.
                if let Some(u) = self.users.get_mut(&n) {
                    u.in_org = true;
                    u.active = true;
                    u.org_role = "member";
                    u.viewer_seat = false;
                }
                self.touch_user(n);
                n
            }
            None => {
                let n = self.next_user;
                self.next_user += 1;
                let now = Utc::now();
                self.by_email.insert(email.as_str().to_string(), n);
                self.by_username.insert(username.to_lowercase(), n);
                self.deleted.remove(email.as_str());
                self.users.insert(
                    n,
                    UserRec {
                        email: primary.clone(),
                        username: username.clone(),
                        display_name,
                        active: true,
                        in_org: true,
                        org_role: "member",
                        viewer_seat: false,
                        teams: BTreeMap::new(),
                        last_active_at: None,
                        days_active: None,
                        omit_activity: false,
                        created: now,
                        modified: now,
                        version: 1,
                    },
                );
                n
            }
        };
        for t in teams {
            self.add_member(t, n, "member");
        }
        *self.user_creates.entry(email.as_str().to_string()).or_default() += 1;
        Ok(self.user_reply(201, n))
    }

    fn patch_user(&mut self, id: &str, if_match: Option<&str>, body: &[u8]) -> Scim<Reply> {
        let n = decode_id("User", id)
            .filter(|n| self.users.contains_key(n))
            .ok_or_else(|| ScimError::new(404, format!("User {id} not found")))?;
        if self.org_user(n).is_none() {
            // A SaaS account removed from the org: W&B still knows it, and refuses to
            // reactivate it rather than pretend it does not exist.
            if self.cfg.saas() && reactivates(body) {
                return Err(saas_reactivation());
            }
            return Err(ScimError::new(404, format!("User {id} not found")));
        }
        let (current_etag, currently_active) = match self.users.get(&n) {
            Some(u) => (etag(u.version), u.active),
            None => return Err(ScimError::new(404, format!("User {id} not found"))),
        };
        check_if_match(if_match, &current_etag)?;
        let obj = parse_body(body)?;
        let ops = operations(&obj)?;

        let mut changes = Vec::new();
        for op in ops {
            let (name, path, value) = op_parts(op)?;
            if name != "replace" {
                return Err(ScimError::typed(
                    400,
                    "invalidSyntax",
                    format!("op {name:?} is not supported on users; use replace"),
                ));
            }
            match path.map(str::to_ascii_lowercase).as_deref() {
                None => {
                    let fields = value
                        .and_then(Value::as_object)
                        .ok_or_else(|| ScimError::typed(400, "invalidValue", "replace without a path needs an object value"))?;
                    for (k, v) in fields {
                        match k.to_ascii_lowercase().as_str() {
                            "active" => changes.push(UserChange::Active(active_value(Some(v))?)),
                            "displayname" => changes.push(UserChange::DisplayName(v.as_str().unwrap_or_default().to_string())),
                            "organizationrole" => changes.push(UserChange::OrgRole(org_role_value(Some(v))?)),
                            other => {
                                return Err(ScimError::typed(
                                    400,
                                    "invalidPath",
                                    format!("attribute {other:?} cannot be replaced"),
                                ))
                            }
                        }
                    }
                }
                Some("active") => changes.push(UserChange::Active(active_value(value)?)),
                Some("displayname") => changes.push(UserChange::DisplayName(
                    value.and_then(Value::as_str).unwrap_or_default().to_string(),
                )),
                Some("organizationrole") => changes.push(UserChange::OrgRole(org_role_value(value)?)),
                Some("teamroles") => {
                    let (t, role) = self.team_role_value(n, value)?;
                    changes.push(UserChange::TeamRole(t, role));
                }
                Some(other) => {
                    return Err(ScimError::typed(
                        400,
                        "invalidPath",
                        format!("path {other:?} is not supported on users"),
                    ))
                }
            }
        }

        for c in &changes {
            if let UserChange::Active(true) = c {
                if self.cfg.saas() {
                    return Err(saas_reactivation());
                }
                if !currently_active {
                    self.seat_check()?;
                }
            }
        }

        for c in changes {
            match c {
                UserChange::Active(false) if self.cfg.saas() => {
                    // SaaS: deactivation removes the user from the org.
                    if self.org_user(n).is_some() {
                        self.remove_from_org(n);
                    }
                }
                UserChange::Active(active) => {
                    if let Some(u) = self.users.get_mut(&n) {
                        u.active = active;
                    }
                }
                UserChange::DisplayName(name) => {
                    if let Some(u) = self.users.get_mut(&n) {
                        u.display_name = name;
                    }
                }
                UserChange::OrgRole(role) => {
                    if role == "viewer" {
                        self.viewer_role_assignments += 1;
                    }
                    if let Some(u) = self.users.get_mut(&n) {
                        if role == "viewer" {
                            // Deprecated: a member with a viewer seat, every team role viewer.
                            u.org_role = "member";
                            u.viewer_seat = true;
                            for r in u.teams.values_mut() {
                                *r = "viewer".to_string();
                            }
                        } else {
                            u.org_role = role;
                            u.viewer_seat = false;
                        }
                    }
                }
                UserChange::TeamRole(t, role) => {
                    if let Some(u) = self.users.get_mut(&n) {
                        u.teams.insert(t, role);
                    }
                    self.touch_team(t);
                }
            }
        }
        self.touch_user(n);
        Ok(self.user_reply(200, n))
    }

    /// `[{"teamName": "t", "roleName": "r"}]`, exactly one team.
    fn team_role_value(&self, n: u64, value: Option<&Value>) -> Scim<(u64, String)> {
        let entries: Vec<&Value> = match value {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => Vec::new(),
        };
        let [entry] = entries.as_slice() else {
            return Err(ScimError::typed(
                400,
                "invalidValue",
                "teamRoles takes exactly one {teamName, roleName} per operation",
            ));
        };
        let obj = entry
            .as_object()
            .ok_or_else(|| ScimError::typed(400, "invalidValue", "teamRoles entries are objects"))?;
        let team = get_ci(obj, "teamName").and_then(Value::as_str).unwrap_or("");
        let role = get_ci(obj, "roleName").and_then(Value::as_str).unwrap_or("");
        let t = self
            .team_by_name(team)
            .ok_or_else(|| ScimError::new(404, format!("team {team:?} not found")))?;
        if !self.users.get(&n).is_some_and(|u| u.teams.contains_key(&t)) {
            return Err(ScimError::new(
                400,
                format!("user is not a member of team {team:?}; add them to the team first"),
            ));
        }
        let role = self
            .valid_role(role)
            .ok_or_else(|| ScimError::typed(400, "invalidValue", format!("role {role:?} does not exist")))?;
        Ok((t, role))
    }

    fn delete(&mut self, id: &str, if_match: Option<&str>) -> Scim<Reply> {
        let n = self.org_user_by_id(id)?;
        if let Some(u) = self.users.get(&n) {
            check_if_match(if_match, &etag(u.version))?;
        }
        if self.cfg.delete_deactivates() {
            if let Some(u) = self.users.get_mut(&n) {
                u.active = false;
            }
            self.touch_user(n);
        } else if self.cfg.saas() {
            self.remove_from_org(n);
        } else {
            self.delete_user(n);
        }
        Ok(Reply {
            status: 204,
            body: None,
            etag: None,
        })
    }

    // ---- groups --------------------------------------------------------------------

    fn list_groups(&self, query: &BTreeMap<String, String>) -> Scim<Reply> {
        let filter = match query.get("filter").filter(|f| !f.trim().is_empty()) {
            Some(f) => Some(parse_filter(f)?),
            None => None,
        };
        if let Some((attr, _)) = &filter {
            if attr != "displayname" && attr != "id" {
                return Err(ScimError::typed(
                    400,
                    "invalidFilter",
                    format!("filtering groups on {attr:?} is not supported"),
                ));
            }
        }
        let items: Vec<(u64, &TeamRec)> = self
            .teams
            .iter()
            .filter(|(t, team)| match &filter {
                Some((attr, v)) if attr == "id" => encode_id("Group", **t) == *v,
                Some((_, v)) => team.name.eq_ignore_ascii_case(v),
                None => true,
            })
            .map(|(t, team)| (*t, team))
            .collect();
        self.list(items, query, |(t, team)| self.team_json(t, team))
    }

    fn create_group(&mut self, body: &[u8]) -> Scim<Reply> {
        let obj = parse_body(body)?;
        let name = get_ci(&obj, "displayName")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ScimError::typed(400, "invalidValue", "displayName is required"))?
            .to_string();
        if self.team_by_name(&name).is_some() {
            return Err(ScimError::typed(409, "uniqueness", format!("team {name:?} already exists")));
        }
        let members = match get_ci(&obj, "members") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => self.member_values(Some(v))?,
        };
        let t = self.next_team;
        self.next_team += 1;
        let now = Utc::now();
        self.teams.insert(
            t,
            TeamRec {
                name,
                members: BTreeSet::new(),
                created: now,
                modified: now,
                version: 1,
            },
        );
        for n in members {
            self.add_member(t, n, "member");
        }
        // W&B adds every org-level service account to a new team.
        let org_accounts: Vec<u64> = self.service_accounts.iter().filter(|(_, s)| s.org_level).map(|(n, _)| *n).collect();
        for n in org_accounts {
            self.add_member(t, n, "member");
        }
        Ok(self.team_reply(201, t))
    }

    /// `[{"value": "<user id or email>"}, ...]` resolved to member numbers.
    fn member_values(&self, value: Option<&Value>) -> Scim<Vec<u64>> {
        let list = value
            .and_then(Value::as_array)
            .ok_or_else(|| ScimError::typed(400, "invalidValue", "members must be an array of {\"value\": id}"))?;
        list.iter()
            .map(|m| {
                let v = m
                    .as_object()
                    .and_then(|o| get_ci(o, "value"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| ScimError::typed(400, "invalidValue", "each member needs a string value"))?;
                self.resolve_member(v)
                    .ok_or_else(|| ScimError::new(404, format!("user {v:?} not found in the organization")))
            })
            .collect()
    }

    fn patch_group(&mut self, id: &str, if_match: Option<&str>, body: &[u8]) -> Scim<Reply> {
        let t = self.team_by_id(id)?;
        if let Some(team) = self.teams.get(&t) {
            check_if_match(if_match, &etag(team.version))?;
        }
        let obj = parse_body(body)?;
        let ops = operations(&obj)?;
        let mut changes = Vec::new();
        for op in ops {
            let (name, path, value) = op_parts(op)?;
            let lower = path.map(|p| p.trim().to_string());
            match (name.as_str(), lower.as_deref()) {
                ("add", Some(p)) if p.eq_ignore_ascii_case("members") => {
                    changes.push(TeamChange::Add(self.member_values(value)?));
                }
                ("add", None) => {
                    let members = value.and_then(Value::as_object).and_then(|o| get_ci(o, "members"));
                    changes.push(TeamChange::Add(self.member_values(members)?));
                }
                // Bare: strips the whole team. Emulated because W&B does it, whatever value
                // comes along (unconfirmed, so the worst case); counted for tests.
                ("remove", Some(p)) if p.eq_ignore_ascii_case("members") => {
                    changes.push(TeamChange::RemoveAll);
                }
                ("remove", Some(p)) => {
                    let inner = p
                        .get(..8)
                        .filter(|head| head.eq_ignore_ascii_case("members["))
                        .and_then(|_| p[8..].strip_suffix(']'))
                        .ok_or_else(|| ScimError::typed(400, "invalidPath", format!("unsupported path {p:?}")))?;
                    let (attr, v) = parse_filter(inner)?;
                    if attr != "value" {
                        return Err(ScimError::typed(
                            400,
                            "invalidFilter",
                            format!("members can only be filtered on value, not {attr:?}"),
                        ));
                    }
                    // Removing someone who is not a member is a no-op.
                    changes.push(TeamChange::Remove(self.resolve_member(&v)));
                }
                _ => {
                    return Err(ScimError::typed(
                        400,
                        "invalidSyntax",
                        format!(
                            "op {name:?} on path {:?} is not supported on groups",
                            lower.as_deref().unwrap_or("")
                        ),
                    ))
                }
            }
        }
        for c in changes {
            match c {
                TeamChange::Add(ns) => {
                    for n in ns {
                        self.add_member(t, n, "member");
                    }
                }
                TeamChange::Remove(Some(n)) => {
                    if self.service_accounts.contains_key(&n) {
                        self.service_account_writes += 1;
                    }
                    self.remove_member(t, n);
                }
                TeamChange::Remove(None) => {}
                TeamChange::RemoveAll => {
                    self.bare_member_removes += 1;
                    let all: Vec<u64> = self
                        .teams
                        .get(&t)
                        .map(|team| team.members.iter().copied().collect())
                        .unwrap_or_default();
                    for n in all {
                        self.remove_member(t, n);
                    }
                }
            }
        }
        Ok(self.team_reply(200, t))
    }

    // ---- roles ---------------------------------------------------------------------

    fn roles_json(&self) -> Vec<Value> {
        let builtin = BUILTIN_ROLES.iter().map(|r| (r.to_string(), None));
        let custom = self.roles.iter().map(|r| (r.clone(), Some("member")));
        builtin
            .chain(custom)
            .enumerate()
            .map(|(i, (name, inherited))| {
                let id = encode_id("Role", i as u64 + 1);
                let mut v = json!({
                    "schemas": [ROLE_SCHEMA],
                    "id": id,
                    "name": name,
                    "displayName": name,
                    "description": if inherited.is_some() { "Custom team role" } else { "Built-in team role" },
                    "permissions": [],
                    "meta": {"resourceType": "Role", "location": format!("Roles/{id}")},
                });
                if let Some(base) = inherited {
                    v["inheritedFrom"] = json!(base);
                }
                v
            })
            .collect()
    }

    fn list_roles(&self, query: &BTreeMap<String, String>) -> Scim<Reply> {
        self.list(self.roles_json(), query, |v| v)
    }

    fn get_role(&self, id: &str) -> Scim<Reply> {
        let id = percent_decode(id);
        self.roles_json()
            .into_iter()
            .find(|r| r["id"] == id.as_str())
            .map(|r| Reply::json(200, r))
            .ok_or_else(|| ScimError::new(404, format!("Role {id} not found")))
    }

    // ---- state dump ----------------------------------------------------------------

    pub fn snapshot(&self, request_count: u64) -> SandboxState {
        let users = self
            .users
            .iter()
            .filter(|(_, u)| u.in_org)
            .map(|(n, u)| StateUser {
                id: encode_id("User", *n),
                email: u.email.clone(),
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                active: u.active,
                org_role: u.org_role.to_string(),
                viewer_seat: u.viewer_seat,
                teams: u
                    .teams
                    .iter()
                    .filter_map(|(t, r)| self.teams.get(t).map(|team| (team.name.clone(), r.clone())))
                    .collect(),
            })
            .collect();
        let teams = self
            .teams
            .iter()
            .map(|(t, team)| StateTeam {
                id: encode_id("Group", *t),
                name: team.name.clone(),
                members: team
                    .members
                    .iter()
                    .filter_map(|n| self.users.get(n).map(|u| u.email.clone()))
                    .collect(),
                service_accounts: team
                    .members
                    .iter()
                    .filter_map(|n| self.service_accounts.get(n).map(|s| s.name.clone()))
                    .collect(),
            })
            .collect();
        let mut removed: BTreeSet<String> = self.deleted.clone();
        removed.extend(self.users.values().filter(|u| !u.in_org).map(|u| u.email.to_lowercase()));
        SandboxState {
            users,
            teams,
            removed_users: removed.into_iter().collect(),
            user_posts: self.user_posts.clone(),
            user_creates: self.user_creates.clone(),
            bare_member_removes: self.bare_member_removes,
            viewer_role_assignments: self.viewer_role_assignments,
            service_account_writes: self.service_account_writes,
            request_count,
            write_request_count: 0,
            write_log: Vec::new(),
        }
    }
}

/// The `Operations` array of a PatchOp.
fn operations(obj: &Map<String, Value>) -> Scim<&Vec<Value>> {
    get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| ScimError::typed(400, "invalidSyntax", "PatchOp needs a non-empty Operations array"))
}

/// `(op lower case, path, value)` of one operation.
fn op_parts(op: &Value) -> Scim<(String, Option<&str>, Option<&Value>)> {
    let obj = op
        .as_object()
        .ok_or_else(|| ScimError::typed(400, "invalidSyntax", "each operation is an object"))?;
    let name = get_ci(obj, "op")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::typed(400, "invalidSyntax", "operation without op"))?
        .to_ascii_lowercase();
    let path = get_ci(obj, "path").and_then(Value::as_str).filter(|p| !p.trim().is_empty());
    Ok((name, path, get_ci(obj, "value")))
}

fn saas_reactivation() -> ScimError {
    ScimError::new(
        400,
        "Reactivating users is not supported in SaaS Cloud; add the user again with POST /Users",
    )
}

/// Whether a PatchOp body asks for `active: true`, read loosely.
fn reactivates(body: &[u8]) -> bool {
    let Ok(obj) = parse_body(body) else {
        return false;
    };
    let Ok(ops) = operations(&obj) else {
        return false;
    };
    ops.iter().filter_map(|op| op_parts(op).ok()).any(|(_, path, value)| match path {
        Some(p) if p.eq_ignore_ascii_case("active") => value.and_then(bool_value) == Some(true),
        Some(_) => false,
        None => {
            value
                .and_then(Value::as_object)
                .and_then(|o| get_ci(o, "active"))
                .and_then(bool_value)
                == Some(true)
        }
    })
}

fn active_value(v: Option<&Value>) -> Scim<bool> {
    v.and_then(bool_value)
        .ok_or_else(|| ScimError::typed(400, "invalidValue", "active must be true or false"))
}

fn org_role_value(v: Option<&Value>) -> Scim<&'static str> {
    match v.and_then(Value::as_str).map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("admin") => Ok("admin"),
        Some("member") => Ok("member"),
        Some("viewer") => Ok("viewer"),
        _ => Err(ScimError::typed(400, "invalidValue", "organizationRole must be admin or member")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_like_wandb_node_ids() {
        assert_eq!(encode_id("User", 1), "VXNlcjox");
        assert_eq!(decode_id("User", "VXNlcjox"), Some(1));
        assert_eq!(decode_id("User", &encode_id("User", 10)), Some(10));
        assert_eq!(decode_id("User", "VXNlcjoxMA%3D%3D"), Some(10));
        assert_eq!(decode_id("Group", &encode_id("User", 1)), None);
        assert_eq!(decode_id("User", "not base64!"), None);
    }

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(Version::parse("0.79.0"), Some(Version(0, 79, 0)));
        assert_eq!(Version::parse("v0.56"), Some(Version(0, 56, 0)));
        assert_eq!(Version::parse("0.84.1-rc2"), Some(Version(0, 84, 1)));
        assert_eq!(Version::parse("banana"), None);
        assert!(Version(0, 78, 9) < Version(0, 79, 0));
    }

    #[test]
    fn filters_parse_with_escapes() {
        assert_eq!(
            parse_filter(r#"userName eq "alice""#).unwrap(),
            ("username".to_string(), "alice".to_string())
        );
        assert_eq!(
            parse_filter(r#"emails.value  EQ  "a\"b@x.io""#).unwrap(),
            ("emails.value".to_string(), "a\"b@x.io".to_string())
        );
        for bad in ["userName", r#"userName co "a""#, "userName eq alice", r#"a eq "x" and b eq "y""#] {
            assert_eq!(parse_filter(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn if_match_compares_weakly_and_accepts_star() {
        assert!(check_if_match(None, "W/\"3\"").is_ok());
        assert!(check_if_match(Some("*"), "W/\"3\"").is_ok());
        assert!(check_if_match(Some("\"3\""), "W/\"3\"").is_ok());
        assert!(check_if_match(Some("W/\"2\", W/\"3\""), "W/\"3\"").is_ok());
        assert_eq!(check_if_match(Some("W/\"2\""), "W/\"3\"").unwrap_err().status, 412);
    }

    #[test]
    fn error_bodies_carry_the_status_as_a_string() {
        let body = ScimError::new(404, "nope").body();
        assert_eq!(body["status"], "404");
        assert_eq!(body["schemas"][0], ERROR_SCHEMA);
    }
}
