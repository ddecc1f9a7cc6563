//! The streamed list reader (`wire::read_list`, `fields`) against the `Value` readers as
//! they were before it (kept here verbatim as `legacy`): same users, teams, totals and
//! error messages for the same page bytes.

use proptest::prelude::*;
use serde_json::Value;

use super::fields::read_page;
use super::wire::{self, parse_list, read_list, Page, PageError};
use crate::model::{OrgUser, Team};

/// The readers as they were, on a whole parsed `Value`.
mod legacy {
    use serde_json::Value;

    use crate::model::{LastActive, OrgRole, OrgUser, Team};
    use crate::scim::{bool_value, field, raw_str as str_field};
    use crate::wandb::wire::{names_service_account, non_empty, parse_days, parse_team_roles, parse_time, preview, truncate};

    fn id_of(v: &Value) -> Option<String> {
        non_empty(str_field(v, "id"))
    }

    fn parse_last_active(v: &Value) -> LastActive {
        match crate::scim::field_or_null(v, "lastActiveAt") {
            None => LastActive::Unknown,
            Some(Value::Null) => LastActive::Never,
            Some(t) => parse_time(Some(t)).map_or(LastActive::Unknown, LastActive::At),
        }
    }

    fn is_service_account(v: &Value, email: &str) -> bool {
        if email.trim().is_empty() {
            return true;
        }
        let schemas = match field(v, "schemas") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(names_service_account),
            Some(Value::String(s)) => names_service_account(s),
            _ => false,
        };
        let keyed = v.as_object().is_some_and(|m| {
            m.iter()
                .any(|(k, val)| names_service_account(k) && (val.is_object() || (!val.is_array() && bool_value(val) == Some(true))))
        });
        let typed = ["userType", "type", "accountType"].iter().any(|k| match field(v, k) {
            Some(Value::String(s)) => names_service_account(s) || s.trim().eq_ignore_ascii_case("service"),
            _ => false,
        });
        schemas || keyed || typed
    }

    fn describe_user(v: &Value) -> String {
        non_empty(str_field(v, "userName"))
            .or_else(|| crate::scim::pick_email(v))
            .map(|s| format!("userName/email {}", truncate(&s, 120)))
            .unwrap_or_else(|| preview(v))
    }

    pub fn parse_user(v: &Value) -> Result<OrgUser, String> {
        if !v.is_object() {
            return Err(format!("a user entry is not an object: {}", preview(v)));
        }
        let id = id_of(v).ok_or_else(|| format!("a user without an id ({})", describe_user(v)))?;
        let role = field(v, "organizationRole").and_then(Value::as_str);
        let org_role = match non_empty(role.map(str::to_string)) {
            Some(r) => OrgRole::parse(&r),
            None => OrgRole::Member,
        };
        let email = crate::scim::pick_email(v).unwrap_or_default();
        let service_account = is_service_account(v, &email);
        let active = field(v, "active").and_then(bool_value);
        let (teams, unstated_team_roles) = parse_team_roles(field(v, "teamRoles"));
        Ok(OrgUser {
            id,
            email,
            username: str_field(v, "userName").unwrap_or_default(),
            display_name: str_field(v, "displayName").unwrap_or_default(),
            active: active.unwrap_or(true),
            active_stated: active.is_some(),
            org_role,
            teams,
            unstated_team_roles,
            service_account,
            last_active: parse_last_active(v),
            days_active: parse_days(field(v, "daysActive")),
        })
    }

    pub fn parse_team(v: &Value) -> Result<Team, String> {
        if !v.is_object() {
            return Err(format!("a team entry is not an object: {}", preview(v)));
        }
        let id = id_of(v).ok_or_else(|| format!("a team without an id ({})", preview(v)))?;
        let name = non_empty(str_field(v, "displayName")).ok_or_else(|| format!("team {id} has no displayName"))?;
        let member_id = |m: &Value| match m {
            Value::String(s) => non_empty(Some(s.clone())),
            Value::Object(_) => non_empty(str_field(m, "value")),
            _ => None,
        };
        let members = match field(v, "members") {
            Some(Value::Array(items)) => items.iter().filter_map(member_id).collect(),
            Some(one) => member_id(one).into_iter().collect(),
            None => Vec::new(),
        };
        Ok(Team { id, name, members })
    }
}

type Outcome<T> = Result<(u64, Result<Vec<T>, String>), String>;

fn legacy_page<T>(body: &str, parse: fn(&Value) -> Result<T, String>) -> Outcome<T> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("json: {e}"))?;
    let page = parse_list(v)?;
    Ok((page.total, page.resources.iter().map(parse).collect()))
}

fn new_page<T: wire::Resource>(body: &str) -> Outcome<T> {
    match read_list::<T>(body.as_bytes()) {
        Ok(Page { total, items }) => Ok((total, items)),
        Err(PageError::Json(e)) => Err(format!("json: {e}")),
        Err(PageError::List(e)) => Err(e),
    }
}

/// Both readers agree, and where the streamed page reads at all it already agrees
/// (rather than only through the slow path it falls back to).
fn check<T: wire::Resource + PartialEq + std::fmt::Debug>(body: &str, parse: fn(&Value) -> Result<T, String>) -> bool {
    let old = legacy_page(body, parse);
    assert_eq!(new_page::<T>(body), old, "{body}");
    match read_page::<T>(body) {
        Ok(raw) => {
            let items = raw.resources.unwrap_or_default();
            if let Ok((_, Ok(old_items))) = &old {
                assert_eq!(&items, old_items, "streamed: {body}");
            }
            true
        }
        Err(_) => false,
    }
}

/// JSON written out by hand, so keys can repeat and come in any order.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn render(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => out.push_str(&Value::String(s.clone()).to_string()),
            Json::Arr(items) => {
                out.push('[');
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    it.render(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }
}

const STRINGS: &[&str] = &[
    "",
    " ",
    "VXNlcjox",
    "alice",
    "a@x.com",
    " B@x.com ",
    "admin",
    "member",
    "viewer",
    "custom-x",
    "true",
    "False",
    "work",
    "2024-04-01T10:00:00Z",
    " 2024-04-01T10:00:00+02:00 ",
    "soon",
    "12",
    "Service Account",
    "service",
    "user",
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:wandb:2.0:ServiceAccount",
    "ml",
    "é\"\\",
];

const IDS: &[&str] = &["VXNlcjox", "g1", "7"];

const LIST_KEYS: &[&str] = &["Resources", "resources", "RESOURCES"];

const NUMBERS: &[&str] = &["0", "1", "7", "-3", "2.5", "1e3", "42"];

const KEYS: &[&str] = &[
    "id",
    "ID",
    "Id",
    "userName",
    "username",
    "UserName",
    "displayName",
    "DisplayName",
    "emails",
    "Emails",
    "EMAILS",
    "organizationRole",
    "OrganizationRole",
    "active",
    "Active",
    "teamRoles",
    "TeamRoles",
    "lastActiveAt",
    "LastActiveAt",
    "daysActive",
    "schemas",
    "Schemas",
    "userType",
    "type",
    "Type",
    "accountType",
    "serviceAccount",
    "isServiceAccount",
    "Service_Account",
    "serviceAccounts",
    "urn:ietf:params:scim:schemas:extension:wandb:2.0:ServiceAccount",
    "members",
    "Members",
    "value",
    "Value",
    "VALUE",
    "primary",
    "Primary",
    "teamName",
    "roleName",
    "RoleName",
    "groups",
    "meta",
    "x\u{e9}\\n",
];

fn leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        prop::sample::select(NUMBERS).prop_map(|n| Json::Num(n.to_string())),
        prop::sample::select(STRINGS).prop_map(|s| Json::Str(s.to_string())),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Arr),
            prop::collection::vec((prop::sample::select(KEYS).prop_map(str::to_string), inner), 0..5).prop_map(Json::Obj),
        ]
    })
}

/// A resource: mostly well-formed (an id, maybe a team name), with fields of any shape
/// under keys that matter, in any case, possibly repeated.
fn resource() -> impl Strategy<Value = Json> {
    let id = prop_oneof![
        4 => prop::sample::select(IDS).prop_map(|s| Some(Json::Str(s.to_string()))),
        1 => Just(Some(Json::Num("42".into()))),
        1 => Just(None),
    ];
    let name = prop_oneof![3 => Just(Some(Json::Str("ml".into()))), 1 => Just(None)];
    (
        id,
        name,
        prop::collection::vec((prop::sample::select(KEYS).prop_map(str::to_string), json()), 0..10),
    )
        .prop_map(|(id, name, mut fields)| {
            if let Some(id) = id {
                fields.insert(0, ("id".into(), id));
            }
            if let Some(name) = name {
                fields.insert(0, ("displayName".into(), name));
            }
            Json::Obj(fields)
        })
}

fn page(resources: Vec<Json>, total: Json, key: &str) -> String {
    Json::Obj(vec![
        (
            "schemas".into(),
            Json::Arr(vec![Json::Str("urn:ietf:params:scim:api:messages:2.0:ListResponse".into())]),
        ),
        ("totalResults".into(), total),
        (key.into(), Json::Arr(resources)),
        ("itemsPerPage".into(), Json::Num("9999".into())),
    ])
    .text()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn streamed_pages_read_as_the_value_readers_did(
        resources in prop::collection::vec(resource(), 0..6),
        total in prop_oneof![Just(Json::Num("3".into())), Just(Json::Str(" 3".into())), Just(Json::Null), Just(Json::Num("-1".into()))],
        key in prop::sample::select(LIST_KEYS),
    ) {
        let body = page(resources, total, key);
        check::<OrgUser>(&body, legacy::parse_user);
        check::<Team>(&body, legacy::parse_team);
    }

    #[test]
    fn single_resources_read_as_the_value_readers_did(r in resource()) {
        let v: Value = serde_json::from_str(&r.text()).unwrap();
        prop_assert_eq!(wire::parse_user(&v), legacy::parse_user(&v));
        prop_assert_eq!(wire::parse_team(&v), legacy::parse_team(&v));
    }
}

/// A page in every shape W&B is known to send, which the streamed reader takes itself.
#[test]
fn a_varied_page_is_read_alike_and_without_the_slow_path() {
    let users = r#"{"totalResults": "9", "itemsPerPage": 9, "Resources": [
        {"id": "VXNlcjox", "userName": "alice", "displayName": "Alice", "active": true,
         "emails": {"Display": "", "Primary": true, "Type": "", "Value": "alice@x.com"},
         "organizationRole": "admin", "teamRoles": [{"teamName": "ml", "roleName": "admin"}, {"teamName": "cv"}],
         "lastActiveAt": null, "daysActive": 0, "groups": [{"value": "g"}], "meta": {"version": "W/\"1\""}},
        {"ID": "2", "UserName": "bob", "Active": "False", "Emails": [{"value": "old@x.com"}, {"Value": "b@x.com", "Primary": "true"}],
         "OrganizationRole": "viewer", "TeamRoles": [{"teamName": "ml", "roleName": "member"}, {"teamName": "ml", "roleName": "admin"}, 7],
         "LastActiveAt": "2024-04-01T10:00:00Z", "daysActive": "12"},
        {"id": 3, "emails": "c@x.com", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
         "urn:ietf:params:scim:schemas:extension:wandb:2.0:ServiceAccount"],
         "urn:ietf:params:scim:schemas:extension:wandb:2.0:ServiceAccount": {"scope": "organization"}},
        {"id": "4", "emails": {"value": "d@x.com"}, "userType": "Service Account"},
        {"id": "5", "emails": {"value": "e@x.com"}, "isServiceAccount": "true", "serviceAccounts": [{"id": "sa"}]},
        {"id": "6", "userName": "svc"},
        {"id": "7", "emails": [{"value": "g@x.com", "type": "work"}], "lastActiveAt": 5, "teamRoles": "x", "active": null},
        {"id": "8", "Id": "other", "emails": {"value": "h@x.com"}, "teamRoles": [{"teamName": "nr", "roleName": " "}]},
        {"id": "9", "emails": {"value": "i@x.com"}, "type": "user", "serviceAccount": false, "extra": {"a": [1, {"b": null}]}}
    ]}"#;
    assert!(check::<OrgUser>(users, legacy::parse_user), "the fast path took the page");
    let (total, items) = new_page::<OrgUser>(users).unwrap();
    let items = items.unwrap();
    assert_eq!((total, items.len()), (9, 9));
    let sa: Vec<bool> = items.iter().map(|u| u.service_account).collect();
    assert_eq!(sa, [false, false, true, true, true, true, false, false, false]);

    let teams = r#"{"Resources": [
        {"id": "g1", "displayName": "ml", "members": [{"Value": "u1", "Display": "a"}, {"value": "u2"}, "u3", {"Display": "x"}, 4, [5], " "]},
        {"id": "g2", "displayName": "cv", "members": null},
        {"id": "g3", "displayName": "nr"},
        {"id": "g4", "DisplayName": "one", "Members": {"value": "u9"}},
        {"id": "g5", "displayName": "s", "members": "u8", "Members": ["ignored"]}
    ], "totalResults": 5}"#;
    assert!(check::<Team>(teams, legacy::parse_team));
    let (_, items) = new_page::<Team>(teams).unwrap();
    let members: Vec<Vec<String>> = items.unwrap().into_iter().map(|t| t.members).collect();
    assert_eq!(members, [vec!["u1", "u2", "u3"], vec![], vec![], vec!["u9"], vec!["u8"]]);

    let empty = r#"{"totalResults": 0, "Resources": null}"#;
    assert!(check::<OrgUser>(empty, legacy::parse_user));
    assert!(check::<OrgUser>(r#"{"totalResults": 0}"#, legacy::parse_user));
}

/// What the streamed reader refuses is read the slow way, with the messages it had.
#[test]
fn malformed_pages_and_resources_keep_their_messages() {
    let no_id = r#"{"totalResults": 2, "Resources": [{"id": "1", "emails": "a@x.com"}, {"meta": {"x": 1}}]}"#;
    assert!(!check::<OrgUser>(no_id, legacy::parse_user));
    let (_, items) = new_page::<OrgUser>(no_id).unwrap();
    assert_eq!(items.unwrap_err(), r#"a user without an id ({"meta":{"x":1}})"#);
    let named = r#"{"totalResults": 1, "Resources": [{"userName": "bob", "id": " "}]}"#;
    assert_eq!(
        new_page::<OrgUser>(named).unwrap().1.unwrap_err(),
        "a user without an id (userName/email bob)"
    );
    let not_object = r#"{"totalResults": 1, "Resources": ["x"]}"#;
    assert!(!check::<OrgUser>(not_object, legacy::parse_user));
    assert!(new_page::<OrgUser>(not_object).unwrap().1.unwrap_err().contains("not an object"));
    let unnamed_team = r#"{"totalResults": 1, "Resources": [{"id": "g1", "displayName": " "}]}"#;
    assert!(!check::<Team>(unnamed_team, legacy::parse_team));
    assert_eq!(new_page::<Team>(unnamed_team).unwrap().1.unwrap_err(), "team g1 has no displayName");
    for body in [
        r#"{"Resources": []}"#,
        r#"{"Resources": {}, "totalResults": 1}"#,
        r#"{"totalResults": -1}"#,
        r#"[1]"#,
        r#"{"totalResults": 1, "Resources": [{"id": "1"}]"#,
        r#"{"totalResults": 1} x"#,
        "",
    ] {
        check::<OrgUser>(body, legacy::parse_user);
        check::<Team>(body, legacy::parse_team);
        assert!(new_page::<OrgUser>(body).is_err(), "{body}");
    }
    // Invalid UTF-8 in a field nobody reads is still invalid JSON, as it was.
    let mut bytes = br#"{"totalResults": 0, "x": ""#.to_vec();
    bytes.extend([0xff, b'"', b'}']);
    assert!(matches!(read_list::<OrgUser>(&bytes), Err(PageError::Json(_))));
}
