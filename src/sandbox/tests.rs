//! Unit tests of the store's SCIM semantics, without HTTP (the HTTP side is covered by
//! `tests/sandbox.rs`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::store::{Config, Reply, Request, Store, Verb, Version, SERVICE_ACCOUNT_EXT};
use super::*;

fn cfg(deployment: Deployment) -> Config {
    Config {
        deployment,
        version: None,
        honour_paging: true,
        page_cap: None,
        seat_limit: None,
        activity: true,
        service_accounts: ServiceAccountListing::Off,
    }
}

fn org() -> SandboxOrg {
    SandboxOrg::from_json(
        r#"{
          "users": [
            {"email": "alice@example.com", "username": "alice", "org_role": "admin",
             "teams": {"ml": "admin"}},
            {"email": "bob@example.com", "username": "bob", "teams": {"ml": "member"}}
          ],
          "teams": [{"name": "ml", "service_accounts": ["sa-org", "sa-team"]}],
          "service_accounts": ["sa-org"],
          "roles": ["ml-engineer"]
        }"#,
    )
    .unwrap()
}

fn call(store: &mut Store, verb: Verb, path: &str, body: Value) -> Reply {
    let query = BTreeMap::new();
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    store.handle(&Request {
        verb,
        path,
        query: &query,
        if_match: None,
        body: &bytes,
    })
}

fn new_user(email: &str, username: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": username,
        "emails": [{"value": email, "primary": true}],
    })
}

fn id_of(store: &Store, email: &str) -> String {
    store.snapshot(0).user(email).unwrap().id.clone()
}

#[test]
fn bundled_example_org_loads() {
    let text = include_str!("../../examples/sandbox-org.json");
    let org = SandboxOrg::from_json(text).expect("example parses");
    assert_eq!(org, SandboxOrg::example());
    assert!(org.users.len() >= 15);
    let store = Store::new(cfg(Deployment::Saas), org).expect("example loads");
    let state = store.snapshot(0);
    assert_eq!(state.user("alice.nguyen@example.com").unwrap().org_role, "admin");
    assert!(state.user("pat@partner.io").is_some());
    assert!(state.user("ci-bot@example.com").unwrap().teams.contains_key("ml-research"));
    assert!(state.user("olivia.old@example.com").is_some());
    for team in ["ml-research", "data-platform", "sandbox-play"] {
        assert_eq!(state.team(team).unwrap().service_accounts, vec!["sa-training"]);
    }
}

#[test]
fn seed_mistakes_are_reported() {
    let bad = [
        r#"{"users":[{"email":"a@x.io","username":"a","teams":{"nope":"member"}}]}"#,
        r#"{"users":[{"email":"a@x.io","username":"a"},{"email":"A@x.io","username":"b"}]}"#,
        r#"{"users":[{"email":"not-an-email","username":"a"}]}"#,
        r#"{"users":[{"email":"a@x.io","username":"a","org_role":"owner"}]}"#,
        r#"{"teams":[{"name":"t"}],"users":[{"email":"a@x.io","username":"a","teams":{"t":"boss"}}]}"#,
        r#"{"userz":[]}"#,
    ];
    for text in bad {
        let err = SandboxOrg::from_json(text)
            .and_then(|o| Store::new(cfg(Deployment::Saas), o).map(|_| ()))
            .err();
        assert!(matches!(err, Some(SandboxError::Seed(_))), "{text} should be rejected");
    }
}

#[test]
fn saas_repost_after_deactivation_readds_the_same_account() {
    let mut s = Store::new(cfg(Deployment::Saas), org()).unwrap();
    let bob = id_of(&s, "bob@example.com");
    let off = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"replace","value":{"active":false}}]});
    assert_eq!(call(&mut s, Verb::Patch, &format!("/Users/{bob}"), off).status, 200);
    let state = s.snapshot(0);
    assert!(state.user("bob@example.com").is_none());
    assert_eq!(state.removed_users, vec!["bob@example.com"]);
    assert!(state.team("ml").unwrap().members.iter().all(|m| m != "bob@example.com"));

    let r = call(&mut s, Verb::Post, "/Users", new_user("bob@example.com", "bob"));
    assert_eq!(r.status, 201);
    let body = r.value().unwrap();
    assert_eq!(body["id"], bob.as_str());
    assert_eq!(body["organizationRole"], "member");
    assert_eq!(body["teamRoles"], json!([]));
    assert!(s.snapshot(0).removed_users.is_empty());
}

#[test]
fn old_servers_only_deactivate_on_delete() {
    let mut c = cfg(Deployment::SelfManaged);
    c.version = Version::parse("0.55.2");
    let mut s = Store::new(c, org()).unwrap();
    let bob = id_of(&s, "bob@example.com");
    assert_eq!(call(&mut s, Verb::Delete, &format!("/Users/{bob}"), Value::Null).status, 204);
    let u = s.snapshot(0).user("bob@example.com").cloned().unwrap();
    assert!(!u.active);

    let mut s = Store::new(cfg(Deployment::Dedicated), org()).unwrap();
    let bob = id_of(&s, "bob@example.com");
    assert_eq!(call(&mut s, Verb::Delete, &format!("/Users/{bob}"), Value::Null).status, 204);
    let state = s.snapshot(0);
    assert!(state.user("bob@example.com").is_none());
    assert_eq!(state.removed_users, vec!["bob@example.com"]);
    // A new account gets a new id on an instance.
    let r = call(&mut s, Verb::Post, "/Users", new_user("bob@example.com", "bob"));
    assert_eq!(r.status, 201);
    assert_ne!(r.value().unwrap()["id"], bob.as_str());
}

#[test]
fn team_scoped_service_accounts_do_not_join_new_teams() {
    let mut s = Store::new(cfg(Deployment::Saas), org()).unwrap();
    let r = call(&mut s, Verb::Post, "/Groups", json!({"displayName":"new","members":[]}));
    assert_eq!(r.status, 201);
    let state = s.snapshot(0);
    assert_eq!(state.team("new").unwrap().service_accounts, vec!["sa-org"]);
    assert_eq!(state.team("ml").unwrap().service_accounts, vec!["sa-org", "sa-team"]);
    // Service accounts are never users.
    assert_eq!(state.users.len(), 2);
}

#[test]
fn service_accounts_are_listed_in_users_only_when_asked_in_either_shape() {
    let seeded = || {
        SandboxOrg::from_json(
            r#"{
              "users": [{"email": "alice@example.com", "username": "alice", "org_role": "admin"}],
              "teams": [{"name": "ml", "service_accounts": ["sa-deploy"]}],
              "service_accounts": [{"name": "sa-deploy", "email": "sa-deploy@example.com", "org_role": "admin"}, "sa-ci"]
            }"#,
        )
        .unwrap()
    };
    let list = |s: &mut Store| -> Vec<Value> {
        let r = call(s, Verb::Get, "/Users", Value::Null);
        r.value().unwrap()["Resources"].as_array().unwrap().clone()
    };
    let mut off = Store::new(cfg(Deployment::Saas), seeded()).unwrap();
    assert_eq!(list(&mut off).len(), 1, "off: what W&B documents");

    let with = |shape| Config {
        service_accounts: shape,
        ..cfg(Deployment::Saas)
    };
    let mut marked = Store::new(with(ServiceAccountListing::Marked), seeded()).unwrap();
    let users = list(&mut marked);
    assert_eq!(users.len(), 3);
    let sa = users.iter().find(|u| u["userName"] == "sa-deploy").unwrap();
    assert!(sa["schemas"].as_array().unwrap().contains(&json!(SERVICE_ACCOUNT_EXT)));
    assert_eq!(sa[SERVICE_ACCOUNT_EXT]["scope"], "organization");
    assert_eq!(sa["emails"]["Value"], "sa-deploy@example.com");
    assert_eq!(sa["organizationRole"], "admin");
    assert_eq!(sa["teamRoles"], json!([{"teamName": "ml", "roleName": "member"}]));
    let ci = users.iter().find(|u| u["userName"] == "sa-ci").unwrap();
    assert!(ci.get("emails").is_none(), "no email seeded");

    let mut bare = Store::new(with(ServiceAccountListing::NoEmail), seeded()).unwrap();
    let users = list(&mut bare);
    assert_eq!(users.len(), 3);
    let sa = users.iter().find(|u| u["userName"] == "sa-deploy").unwrap();
    assert!(sa.get("emails").is_none());
    assert_eq!(sa["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    assert_eq!(sa["organizationRole"], "admin");

    // A write to a listed service account is refused and counted; so is removing it from
    // a team by id.
    let id = sa["id"].as_str().unwrap().to_string();
    let deactivate = json!({"Operations": [{"op": "replace", "value": {"active": false}}]});
    assert_eq!(call(&mut bare, Verb::Patch, &format!("/Users/{id}"), deactivate).status, 400);
    assert_eq!(call(&mut bare, Verb::Delete, &format!("/Users/{id}"), Value::Null).status, 400);
    assert_eq!(call(&mut bare, Verb::Get, &format!("/Users/{id}"), Value::Null).status, 200);
    let ml = bare.snapshot(0).team("ml").unwrap().id.clone();
    let rm = json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]});
    assert_eq!(call(&mut bare, Verb::Patch, &format!("/Groups/{ml}"), rm).status, 200);
    assert_eq!(bare.snapshot(0).service_account_writes, 3);
    assert_eq!(off.snapshot(0).service_account_writes, 0);
}

#[test]
fn team_roles_accept_custom_roles_only_for_members() {
    let mut s = Store::new(cfg(Deployment::Saas), org()).unwrap();
    let bob = id_of(&s, "bob@example.com");
    let set = |team: &str, role: &str| {
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"replace","path":"teamRoles","value":[{"teamName":team,"roleName":role}]}]})
    };
    let path = format!("/Users/{bob}");
    assert_eq!(call(&mut s, Verb::Patch, &path, set("ml", "ml-engineer")).status, 200);
    assert_eq!(s.snapshot(0).user("bob@example.com").unwrap().teams["ml"], "ml-engineer");
    assert_eq!(call(&mut s, Verb::Patch, &path, set("ml", "wizard")).status, 400);
    assert_eq!(call(&mut s, Verb::Patch, &path, set("nope", "admin")).status, 404);
    let r = call(&mut s, Verb::Post, "/Groups", json!({"displayName":"other"}));
    assert_eq!(r.status, 201);
    assert_eq!(call(&mut s, Verb::Patch, &path, set("other", "admin")).status, 400);
    // Two teams in one operation are refused.
    let two = json!({"Operations":[{"op":"replace","path":"teamRoles","value":[
        {"teamName":"ml","roleName":"admin"},{"teamName":"other","roleName":"admin"}]}]});
    assert_eq!(call(&mut s, Verb::Patch, &path, two).status, 400);
}

#[test]
fn an_invalid_patch_changes_nothing() {
    let mut s = Store::new(cfg(Deployment::Dedicated), org()).unwrap();
    let bob = id_of(&s, "bob@example.com");
    let before = s.snapshot(0);
    let ops = json!({"Operations":[
        {"op":"replace","path":"organizationRole","value":"admin"},
        {"op":"replace","path":"teamRoles","value":[{"teamName":"ml","roleName":"nope"}]}]});
    assert_eq!(call(&mut s, Verb::Patch, &format!("/Users/{bob}"), ops).status, 400);
    assert_eq!(s.snapshot(0), before);
}

#[test]
fn teams_extension_is_ignored_off_saas() {
    let mut body = new_user("carol@example.com", "carol");
    body["urn:ietf:params:scim:schemas:extension:teams:2.0:User"] = json!({"teams": ["ml"]});
    let mut s = Store::new(cfg(Deployment::Dedicated), org()).unwrap();
    assert_eq!(call(&mut s, Verb::Post, "/Users", body.clone()).status, 201);
    assert!(s.snapshot(0).user("carol@example.com").unwrap().teams.is_empty());
    let mut s = Store::new(cfg(Deployment::Saas), org()).unwrap();
    assert_eq!(call(&mut s, Verb::Post, "/Users", body).status, 201);
    assert_eq!(s.snapshot(0).user("carol@example.com").unwrap().teams["ml"], "member");
}

#[test]
fn roles_list_builtin_and_custom() {
    let mut s = Store::new(cfg(Deployment::Saas), org()).unwrap();
    let r = call(&mut s, Verb::Get, "/Roles", Value::Null);
    let names: Vec<String> = r.value().unwrap()["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["admin", "member", "viewer", "ml-engineer"]);
}

#[test]
fn unknown_endpoints_and_methods_answer_scim_errors() {
    let mut s = Store::new(cfg(Deployment::Saas), org()).unwrap();
    let r = call(&mut s, Verb::Get, "/Nope", Value::Null);
    assert_eq!(r.status, 404);
    assert_eq!(r.value().unwrap()["status"], "404");
    let team = s.snapshot(0).team("ml").unwrap().id.clone();
    assert_eq!(call(&mut s, Verb::Delete, &format!("/Groups/{team}"), Value::Null).status, 405);
    assert_eq!(call(&mut s, Verb::Put, "/Users", Value::Null).status, 405);
}

#[test]
fn options_are_validated() {
    let bad = [
        SandboxOptions {
            api_key: " ".into(),
            ..Default::default()
        },
        SandboxOptions {
            scim_path: "scim".into(),
            ..Default::default()
        },
        SandboxOptions {
            server_version: Some("latest".into()),
            ..Default::default()
        },
        SandboxOptions {
            fail_rate: 1.5,
            ..Default::default()
        },
    ];
    for opts in bad {
        assert!(matches!(
            http::Shared::new(opts, SandboxOrg::default()),
            Err(SandboxError::Options(_))
        ));
    }
}
