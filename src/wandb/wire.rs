//! W&B's SCIM payloads: tolerant readers and the request bodies idsync sends.
//!
//! Readers work on `serde_json::Value` rather than strict structs because W&B's responses
//! deviate from SCIM (capitalised keys, `emails` as one object, `members: null`, string
//! statuses) and vary across server versions. Only what the plan depends on is required
//! (ids, team names, the list total); anything else odd falls back to a safe default.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::fields::Resource;
use super::fields::{read_page, TeamFields, UserFields};

use crate::model::{Email, LastActive, OrgRole, OrgUser, Team, TeamRole};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const TEAMS_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:teams:2.0:User";

pub use crate::scim::field;
use crate::scim::{bool_value, pick_email_of, raw_str as str_field, raw_str_of};

pub(super) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// A short, single-line rendering of a value for error messages.
pub fn preview(v: &Value) -> String {
    truncate(&v.to_string(), 160)
}

pub fn truncate(s: &str, max: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let t = one_line.trim();
    if t.chars().count() <= max {
        t.to_string()
    } else {
        let cut: String = t.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// One page of a SCIM list response.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub resources: Vec<Value>,
    pub total: u64,
}

/// Reads a list response, taking the resources out of it (a page of 9,999 users is
/// megabytes of JSON, not worth copying).
pub fn parse_list(v: Value) -> Result<ListPage, String> {
    let Value::Object(mut map) = v else {
        return Err(format!("expected a SCIM list response, got {}", preview(&v)));
    };
    let total = total_of(field_in(&map, "totalResults"))
        .ok_or_else(|| "the list response has no usable totalResults, so its completeness cannot be checked".to_string())?;
    let key = if map.contains_key("Resources") {
        Some("Resources".to_string())
    } else {
        map.keys().find(|k| k.eq_ignore_ascii_case("Resources")).cloned()
    };
    let resources = match key.and_then(|k| map.remove(&k)) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("\"Resources\" is not a list: {}", preview(&other))),
    };
    Ok(ListPage { resources, total })
}

/// [`field`] on an object's map: exact name first, then any case; `null` is absent.
fn field_in<'a>(map: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// Team -> role from `teamRoles`, and the teams whose role an entry leaves unstated (read
/// as member, which the admin floors must not take for a fact).
pub(super) fn parse_team_roles(v: Option<&Value>) -> (BTreeMap<String, TeamRole>, BTreeSet<String>) {
    let mut teams: BTreeMap<String, TeamRole> = BTreeMap::new();
    let mut unstated = BTreeSet::new();
    let Some(Value::Array(items)) = v else {
        return (teams, unstated);
    };
    for it in items {
        let Some(team) = non_empty(str_field(it, "teamName")) else {
            continue;
        };
        let role = match non_empty(str_field(it, "roleName")) {
            Some(r) => TeamRole::new(&r),
            None => {
                unstated.insert(team.clone());
                TeamRole::member()
            }
        };
        // Conflicting entries for one team: keep the lower role, so admin counts (the
        // last-admin floor) never count an admin that may not be one.
        match teams.get(&team) {
            Some(existing) if existing.rank() <= role.rank() => {}
            _ => {
                teams.insert(team, role);
            }
        }
    }
    (teams, unstated)
}

pub(super) fn parse_days(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// `lastActiveAt`: `null` is never active (documented by W&B), a missing key or a value
/// that is not a time is unknown. [`field`] reads `null` as absent, so the key is looked
/// up with `field_or_null`.
fn parse_last_active(f: &UserFields) -> LastActive {
    match f.field_or_null("lastActiveAt") {
        None => LastActive::Unknown,
        Some(Value::Null) => LastActive::Never,
        Some(t) => parse_time(Some(t)).map_or(LastActive::Unknown, LastActive::At),
    }
}

/// Whether a name says "service account", however spelled (`ServiceAccount`,
/// `service_account`, `Service Account`, inside a URN).
pub(super) fn names_service_account(s: &str) -> bool {
    let letters: String = s.chars().filter(char::is_ascii_alphanumeric).collect();
    letters.to_ascii_lowercase().contains("serviceaccount")
}

/// Whether a `/Users` entry is a service account. W&B's shape for them is unconfirmed
/// (WANDB.md), so any marking counts: a schema URN, an extension or flag whose key names a
/// service account (`UserFields::marked_by_key`), or a type field saying so. So does
/// having no email at all: every W&B person has one, and guessing otherwise would count,
/// change or remove a pipeline's identity.
fn is_service_account(f: &UserFields, email: &str) -> bool {
    if email.trim().is_empty() {
        return true;
    }
    let schemas = match f.field("schemas") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(names_service_account),
        Some(Value::String(s)) => names_service_account(s),
        _ => false,
    };
    let typed = ["userType", "type", "accountType"].iter().any(|k| match f.field(k) {
        Some(Value::String(s)) => names_service_account(s) || s.trim().eq_ignore_ascii_case("service"),
        _ => false,
    });
    schemas || f.marked_by_key() || typed
}

fn describe_user(f: &UserFields, whole: Option<&Value>) -> String {
    non_empty(f.field("userName").and_then(raw_str_of))
        .or_else(|| f.field("emails").and_then(pick_email_of))
        .map(|s| format!("userName/email {}", truncate(&s, 120)))
        // Without the parsed entry (a streamed page) the message is not shown: the page
        // is read again the slow way for it.
        .unwrap_or_else(|| whole.map_or_else(|| "an entry".to_string(), preview))
}

pub fn parse_user(v: &Value) -> Result<OrgUser, String> {
    if !v.is_object() {
        return Err(format!("a user entry is not an object: {}", preview(v)));
    }
    let fields = UserFields::deserialize(v).map_err(|e| format!("a user entry could not be read ({e}): {}", preview(v)))?;
    user_from(fields, Some(v))
}

/// The semantics of a `/Users` entry, on its fields however they were read.
fn user_from(mut f: UserFields, whole: Option<&Value>) -> Result<OrgUser, String> {
    let Some(id) = non_empty(f.take_str("id")) else {
        return Err(format!("a user without an id ({})", describe_user(&f, whole)));
    };
    let role = f.field("organizationRole").and_then(Value::as_str);
    let org_role = match non_empty(role.map(str::to_string)) {
        Some(r) => OrgRole::parse(&r),
        // W&B creates users as members; a missing role is read the same way.
        None => OrgRole::Member,
    };
    let email = f.field("emails").and_then(pick_email_of).unwrap_or_default();
    let service_account = is_service_account(&f, &email);
    // Missing or garbled: read as active (W&B users are), but recorded as not stated so
    // the admin floors never count it.
    let active = f.field("active").and_then(bool_value);
    let (teams, unstated_team_roles) = parse_team_roles(f.field("teamRoles"));
    let last_active = parse_last_active(&f);
    let days_active = parse_days(f.field("daysActive"));
    Ok(OrgUser {
        id,
        email,
        username: f.take_str("userName").unwrap_or_default(),
        display_name: f.take_str("displayName").unwrap_or_default(),
        active: active.unwrap_or(true),
        active_stated: active.is_some(),
        org_role,
        teams,
        unstated_team_roles,
        service_account,
        last_active,
        days_active,
    })
}

pub fn parse_team(v: &Value) -> Result<Team, String> {
    if !v.is_object() {
        return Err(format!("a team entry is not an object: {}", preview(v)));
    }
    let fields = TeamFields::deserialize(v).map_err(|e| format!("a team entry could not be read ({e}): {}", preview(v)))?;
    team_from(fields, Some(v))
}

/// The semantics of a `/Groups` entry, on its fields however they were read.
fn team_from(mut f: TeamFields, whole: Option<&Value>) -> Result<Team, String> {
    let Some(id) = non_empty(f.take_id()) else {
        return Err(format!(
            "a team without an id ({})",
            whole.map_or_else(|| "an entry".to_string(), preview)
        ));
    };
    // Policy names teams by displayName, so a team without one cannot be matched safely.
    let name = non_empty(f.take_display_name()).ok_or_else(|| format!("team {id} has no displayName"))?;
    Ok(Team {
        id,
        name,
        members: f.take_members(),
    })
}

impl Resource for OrgUser {
    type Fields = UserFields;
    fn build(fields: UserFields, whole: Option<&Value>) -> Result<Self, String> {
        user_from(fields, whole)
    }
    fn parse_value(v: &Value) -> Result<Self, String> {
        parse_user(v)
    }
}

impl Resource for Team {
    type Fields = TeamFields;
    fn build(fields: TeamFields, whole: Option<&Value>) -> Result<Self, String> {
        team_from(fields, whole)
    }
    fn parse_value(v: &Value) -> Result<Self, String> {
        parse_team(v)
    }
}

/// One list page of resources. A resource that cannot be read is kept apart from the
/// page, so the page-level checks (totals) come first, as they always have.
#[derive(Debug)]
pub struct Page<T> {
    pub total: u64,
    pub items: Result<Vec<T>, String>,
}

/// Why a list page could not be read at all.
#[derive(Debug)]
pub enum PageError {
    Json(serde_json::Error),
    List(String),
}

/// Reads a list page straight from the body into resources. Anything odd (a resource
/// that does not build, invalid JSON, a missing total) is read again through
/// [`parse_list`] and the `Value` readers, so results and messages are theirs exactly;
/// that costs a second parse only on a page that fails anyway.
pub fn read_list<T: Resource>(body: &[u8]) -> Result<Page<T>, PageError> {
    // Checked up front: the streaming parser does not check the UTF-8 of skipped strings.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(raw) = read_page::<T>(text) {
            if let Some(total) = total_of(raw.total.as_ref()) {
                return Ok(Page {
                    total,
                    items: Ok(raw.resources.unwrap_or_default()),
                });
            }
        }
    }
    let v: Value = serde_json::from_slice(body).map_err(PageError::Json)?;
    let page = parse_list(v).map_err(PageError::List)?;
    Ok(Page {
        total: page.total,
        items: page.resources.iter().map(T::parse_value).collect(),
    })
}

/// `totalResults`, as a number or a numeric string.
fn total_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `detail` of a SCIM error body, else the body text, shortened.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for key in ["detail", "message", "error"] {
            if let Some(Value::String(s)) = field(&v, key) {
                return truncate(s, 500);
            }
        }
    }
    let text = truncate(&String::from_utf8_lossy(body), 300);
    if text.is_empty() {
        "(no details)".into()
    } else {
        text
    }
}

/// A SCIM filter `attr eq "value"`, with the value escaped as a JSON string.
pub fn filter_eq(attr: &str, value: &str) -> String {
    let quoted = Value::String(value.to_string()).to_string();
    format!("{attr} eq {quoted}")
}

pub fn create_user_body(email: &Email, username: &str, display_name: &str, teams: &[String], with_teams: bool) -> Value {
    let username = if username.trim().is_empty() { email.as_str() } else { username };
    let mut schemas = vec![USER_SCHEMA];
    let mut body = json!({
        "userName": username,
        "emails": [{"value": email.as_str(), "primary": true}],
    });
    if !display_name.trim().is_empty() {
        body["displayName"] = json!(display_name);
    }
    if with_teams && !teams.is_empty() {
        schemas.push(TEAMS_EXTENSION);
        body[TEAMS_EXTENSION] = json!({ "teams": teams });
    }
    body["schemas"] = json!(schemas);
    body
}

pub fn create_team_body(name: &str) -> Value {
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []})
}

pub fn patch_body(operations: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": operations})
}

pub fn set_active_op(active: bool) -> Value {
    json!({"op": "replace", "value": {"active": active}})
}

pub fn org_role_op(role: &str) -> Value {
    json!({"op": "replace", "path": "organizationRole", "value": role})
}

pub fn team_role_op(team: &str, role: &str) -> Value {
    json!({"op": "replace", "path": "teamRoles", "value": [{"teamName": team, "roleName": role}]})
}

pub fn add_member_op(user_id: &str) -> Value {
    json!({"op": "add", "path": "members", "value": [{"value": user_id}]})
}

/// The only way to build a member removal: always filtered to one id. A bare `remove` of
/// `members` strips the whole team, so ids that are empty or could break out of the
/// quoted filter are rejected.
pub fn remove_member_op(user_id: &str) -> Result<Value, String> {
    if user_id.trim().is_empty() {
        return Err("empty user id".into());
    }
    if user_id
        .chars()
        .any(|c| c == '"' || c == '\\' || c == '[' || c == ']' || c.is_control())
    {
        return Err(format!(
            "user id {:?} contains characters that cannot be quoted in a member filter",
            truncate(user_id, 80)
        ));
    }
    let path = format!("members[value eq \"{user_id}\"]");
    Ok(json!({"op": "remove", "path": path}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_as_capitalised_object_lowercase_object_array_or_string() {
        let cap = json!({"id": "1", "emails": {"Value": "A@x.com", "Display": "", "Type": "work", "Primary": true}});
        assert_eq!(parse_user(&cap).unwrap().email, "A@x.com");
        let low = json!({"id": "1", "emails": {"value": "b@x.com"}});
        assert_eq!(parse_user(&low).unwrap().email, "b@x.com");
        let arr = json!({"id": "1", "emails": [{"value": "old@x.com"}, {"value": "p@x.com", "primary": true}]});
        assert_eq!(parse_user(&arr).unwrap().email, "p@x.com");
        let first = json!({"id": "1", "emails": [{"value": "f@x.com", "primary": false}, {"value": "s@x.com"}]});
        assert_eq!(parse_user(&first).unwrap().email, "f@x.com");
        let primary_str = json!({"id": "1", "emails": [{"Value": "c@x.com", "Primary": "true"}]});
        assert_eq!(parse_user(&primary_str).unwrap().email, "c@x.com");
        let s = json!({"id": "1", "emails": "d@x.com"});
        assert_eq!(parse_user(&s).unwrap().email, "d@x.com");
        for odd in [json!(null), json!(5), json!([]), json!([1, 2]), json!({})] {
            let u = json!({"id": "1", "emails": odd});
            assert_eq!(parse_user(&u).unwrap().email, "");
        }
    }

    #[test]
    fn user_fields_and_defaults() {
        let full = json!({
            "id": "VXNlcjox", "userName": "alice", "displayName": "Alice",
            "active": false, "organizationRole": "admin",
            "teamRoles": [{"teamName": "ml", "roleName": "admin"}, {"teamName": "cv", "roleName": "custom-x"},
                          {"teamName": "nr"}, {"roleName": "admin"}, 7],
            "lastActiveAt": "2024-04-01T10:00:00Z", "daysActive": 12,
            "groups": [{"value": "g"}], "meta": {"resourceType": "User"}, "extra": {"a": [1]}
        });
        let u = parse_user(&full).unwrap();
        assert_eq!(u.id, "VXNlcjox");
        assert_eq!(u.username, "alice");
        assert_eq!(u.display_name, "Alice");
        assert!(!u.active);
        assert_eq!(u.org_role, OrgRole::Admin);
        assert_eq!(u.teams.len(), 3);
        assert_eq!(u.teams["ml"], TeamRole::admin());
        assert_eq!(u.teams["cv"].as_str(), "custom-x");
        assert_eq!(u.teams["nr"], TeamRole::member());
        assert_eq!(u.last_active.at().unwrap().to_rfc3339(), "2024-04-01T10:00:00+00:00");
        assert_eq!(u.days_active, Some(12));

        let min = json!({"id": 42});
        let u = parse_user(&min).unwrap();
        assert_eq!(u.id, "42");
        assert!(u.active);
        assert_eq!(u.org_role, OrgRole::Member);
        assert!(u.teams.is_empty());
        assert_eq!(u.last_active, LastActive::Unknown);

        let wrong = json!({"id": "1", "active": "False", "organizationRole": 3, "teamRoles": "x",
                           "lastActiveAt": 5, "daysActive": "n/a", "userName": ["x"], "displayName": {}});
        let u = parse_user(&wrong).unwrap();
        assert!(!u.active);
        assert_eq!(u.org_role, OrgRole::Member);
        assert_eq!(u.username, "");
        assert_eq!(u.days_active, None);
        assert_eq!(u.last_active, LastActive::Unknown, "a number is not a time: unknown, not never");
        assert_eq!(
            parse_user(&json!({"id": "1", "organizationRole": "viewer"})).unwrap().org_role,
            OrgRole::Viewer
        );
    }

    #[test]
    fn last_active_null_is_never_active_and_a_missing_key_is_unknown() {
        let last = |v: Value| parse_user(&v).unwrap().last_active;
        // W&B documents `null` as never active; only a missing key is unknown.
        assert_eq!(last(json!({"id": "1", "lastActiveAt": null})), LastActive::Never);
        assert_eq!(last(json!({"id": "1", "LastActiveAt": null})), LastActive::Never);
        assert_eq!(last(json!({"id": "1"})), LastActive::Unknown);
        assert_eq!(last(json!({"id": "1", "lastActiveAt": "soon"})), LastActive::Unknown);
        assert_eq!(last(json!({"id": "1", "lastActiveAt": ""})), LastActive::Unknown);
        assert_eq!(
            last(json!({"id": "1", "lastActiveAt": " 2024-04-01T10:00:00+02:00 "}))
                .at()
                .map(|t| t.to_rfc3339()),
            Some("2024-04-01T08:00:00+00:00".to_string())
        );
    }

    #[test]
    fn service_accounts_are_recognised_when_marked_or_without_an_email() {
        let person = || {
            json!({"id": "1", "userName": "alice", "schemas": [USER_SCHEMA],
                               "emails": {"Value": "alice@x.com", "Primary": true}, "organizationRole": "admin"})
        };
        assert!(!parse_user(&person()).unwrap().service_account);
        let marked = |key: &str, value: Value| {
            let mut v = person();
            v[key] = value;
            v
        };
        // The sandbox's "marked" shape: a schema URN and its extension object.
        let ext = "urn:ietf:params:scim:schemas:extension:wandb:2.0:ServiceAccount";
        let mut sandbox_shape = marked("schemas", json!([USER_SCHEMA, ext]));
        sandbox_shape[ext] = json!({"scope": "organization"});
        for v in [
            sandbox_shape,
            marked("schemas", json!([USER_SCHEMA, "urn:wandb:scim:service-account"])),
            marked("urn:ietf:params:scim:schemas:extension:Service_Account:2.0:User", json!({})),
            marked("userType", json!("Service Account")),
            marked("type", json!("service_account")),
            marked("accountType", json!("SERVICE")),
            marked("serviceAccount", json!(true)),
            marked("isServiceAccount", json!("true")),
        ] {
            let u = parse_user(&v).unwrap();
            assert!(u.service_account, "{v}");
            assert_eq!(u.email, "alice@x.com", "the email is kept, for reports");
        }
        // The "no email" shape: whatever else it says, an entry without any email is no
        // W&B person.
        for emails in [json!(null), json!([]), json!({}), json!({"Value": " "}), json!([{"value": ""}])] {
            let v = marked("emails", emails);
            assert!(parse_user(&v).unwrap().service_account, "{v}");
        }
        let mut bare = person();
        bare.as_object_mut().unwrap().remove("emails");
        assert!(parse_user(&bare).unwrap().service_account);
        // What does not say so is a person.
        for v in [
            marked("userType", json!("Employee")),
            marked("serviceAccount", json!(false)),
            marked("isServiceAccount", json!("false")),
            marked("type", json!("user")),
            marked("serviceAccounts", json!([])),
            marked("serviceAccounts", json!([{"id": "sa-1"}])),
        ] {
            assert!(!parse_user(&v).unwrap().service_account, "{v}");
        }
    }

    #[test]
    fn an_unstated_active_or_team_role_is_recorded_as_unstated() {
        for (active, value, stated) in [
            (json!(true), true, true),
            (json!("False"), false, true),
            (json!(0), false, true),
            (json!(null), true, false),
            (json!("yes"), true, false),
            (json!({"a": 1}), true, false),
        ] {
            let u = parse_user(&json!({"id": "1", "emails": "a@x.com", "active": active})).unwrap();
            assert_eq!((u.active, u.active_stated), (value, stated), "{active}");
        }
        let u = parse_user(&json!({"id": "1", "emails": "a@x.com"})).unwrap();
        assert!(u.active && !u.active_stated, "missing: read as active, recorded as unstated");

        let u = parse_user(&json!({"id": "1", "emails": "a@x.com", "teamRoles": [
            {"teamName": "ml", "roleName": "admin"}, {"teamName": "nr"}, {"teamName": "cv", "roleName": " "}
        ]}))
        .unwrap();
        assert_eq!(u.teams["nr"], TeamRole::member());
        assert_eq!(u.unstated_team_roles, ["cv", "nr"].iter().map(|s| s.to_string()).collect());
        // Admin in one entry and nothing in another is not a stated admin.
        let u = parse_user(&json!({"id": "1", "emails": "a@x.com", "teamRoles": [
            {"teamName": "ml", "roleName": "admin"}, {"teamName": "ml"}
        ]}))
        .unwrap();
        assert_eq!(u.teams["ml"], TeamRole::member());
        assert!(u.unstated_team_roles.contains("ml"));
    }

    #[test]
    fn conflicting_team_roles_keep_the_lower_one() {
        let u = json!({"id": "1", "teamRoles": [{"teamName": "t", "roleName": "admin"}, {"teamName": "t", "roleName": "member"}]});
        assert_eq!(parse_user(&u).unwrap().teams["t"], TeamRole::member());
    }

    #[test]
    fn a_user_without_id_is_an_error_naming_it() {
        let e = parse_user(&json!({"userName": "bob", "id": ""})).unwrap_err();
        assert!(e.contains("bob"), "{e}");
        assert!(parse_user(&json!("x")).is_err());
    }

    #[test]
    fn team_members_with_either_key_case_or_null() {
        let t = parse_team(&json!({"id": "g1", "displayName": "ml", "members": [
            {"Value": "u1", "Ref": "x", "Type": "User", "Display": "a"}, {"value": "u2"}, "u3", {"Display": "no id"}, 4
        ]}))
        .unwrap();
        assert_eq!(t.members, vec!["u1", "u2", "u3"]);
        let t = parse_team(&json!({"id": "g1", "displayName": "ml", "members": null})).unwrap();
        assert!(t.members.is_empty());
        let t = parse_team(&json!({"id": "g1", "displayName": "ml"})).unwrap();
        assert!(t.members.is_empty());
        assert!(parse_team(&json!({"id": "g1"})).is_err());
        assert!(parse_team(&json!({"displayName": "ml"})).is_err());
    }

    #[test]
    fn list_pages_need_a_total() {
        let p = parse_list(json!({"Resources": [{"id": "1"}], "totalResults": 1, "itemsPerPage": 9999})).unwrap();
        assert_eq!((p.resources.len(), p.total), (1, 1));
        let p = parse_list(json!({"resources": null, "totalResults": "0"})).unwrap();
        assert_eq!((p.resources.len(), p.total), (0, 0));
        assert!(parse_list(json!({"Resources": []})).is_err());
        assert!(parse_list(json!({"Resources": {}, "totalResults": 1})).is_err());
        assert!(parse_list(json!({"totalResults": -1})).is_err());
        assert!(parse_list(json!([1])).is_err());
    }

    #[test]
    fn error_detail_prefers_the_scim_detail() {
        let body = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"Seat limit reached","status":"400"}"#;
        assert_eq!(error_detail(body), "Seat limit reached");
        assert_eq!(error_detail(b"<html>\nBad Gateway</html>"), "<html> Bad Gateway</html>");
        assert_eq!(error_detail(b""), "(no details)");
        assert_eq!(error_detail(&[0xff, 0xfe]), "��");
    }

    #[test]
    fn filters_escape_quotes() {
        assert_eq!(filter_eq("emails.value", "a@x.com"), r#"emails.value eq "a@x.com""#);
        assert_eq!(filter_eq("userName", r#"a"b\c"#), r#"userName eq "a\"b\\c""#);
    }

    #[test]
    fn create_body_sends_the_standard_emails_array_and_teams_only_when_asked() {
        let e = Email::parse("a@x.com").unwrap();
        let b = create_user_body(&e, "alice", "Alice A", &["ml".into()], true);
        assert_eq!(b["emails"], json!([{"value": "a@x.com", "primary": true}]));
        assert_eq!(b["userName"], "alice");
        assert_eq!(b["displayName"], "Alice A");
        assert_eq!(b[TEAMS_EXTENSION], json!({"teams": ["ml"]}));
        assert_eq!(b["schemas"], json!([USER_SCHEMA, TEAMS_EXTENSION]));
        let b = create_user_body(&e, "", "", &["ml".into()], false);
        assert_eq!(b["userName"], "a@x.com");
        assert!(b.get("displayName").is_none());
        assert!(b.get(TEAMS_EXTENSION).is_none());
        assert_eq!(b["schemas"], json!([USER_SCHEMA]));
        let b = create_user_body(&e, "a", "", &[], true);
        assert!(b.get(TEAMS_EXTENSION).is_none());
    }

    #[test]
    fn member_removal_is_always_filtered_to_one_id() {
        let op = remove_member_op("VXNlcjox").unwrap();
        assert_eq!(op, json!({"op": "remove", "path": "members[value eq \"VXNlcjox\"]"}));
        for bad in ["", "  ", "a\"b", "a\\", "a]", "a\nb"] {
            assert!(remove_member_op(bad).is_err(), "{bad:?}");
        }
    }
}
