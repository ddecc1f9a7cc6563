//! The W&B sandbox over real HTTP: auth forms, payload quirks, deployment differences,
//! group semantics, paging, ETags, faults, seats and the helper endpoints.

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use idsync::sandbox::{spawn, Deployment, SandboxHandle, SandboxOptions, SandboxOrg, SandboxState, SeedTeam, SeedUser};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

const KEY: &str = "test-key";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Every test runs under this bound.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out");
}

fn opts(deployment: Deployment) -> SandboxOptions {
    SandboxOptions {
        api_key: KEY.into(),
        deployment,
        ..Default::default()
    }
}

/// alice (admin), bob (member) in team ml with alice as team admin; sa-training in ml.
fn small_org() -> SandboxOrg {
    let mut alice = SeedUser::new("alice@example.com", "alice");
    alice.org_role = Some("admin".into());
    alice.teams.insert("ml".into(), "admin".into());
    alice.last_active_at = Some("2025-05-01T09:00:00Z".parse().unwrap());
    alice.days_active = Some(42);
    let mut bob = SeedUser::new("bob@example.com", "bob");
    bob.teams.insert("ml".into(), "member".into());
    SandboxOrg {
        users: vec![alice, bob],
        teams: vec![
            SeedTeam {
                name: "ml".into(),
                service_accounts: vec!["sa-training".into()],
            },
            SeedTeam {
                name: "empty".into(),
                service_accounts: vec![],
            },
        ],
        service_accounts: vec!["sa-training".into()],
        ..Default::default()
    }
}

fn many_users(n: usize) -> SandboxOrg {
    SandboxOrg {
        users: (0..n)
            .map(|i| SeedUser::new(&format!("user{i}@example.com"), &format!("user{i}")))
            .collect(),
        ..Default::default()
    }
}

async fn start(opts: SandboxOptions, org: SandboxOrg) -> SandboxHandle {
    spawn(opts, org, "127.0.0.1:0".parse().unwrap()).await.expect("sandbox starts")
}

fn basic(user: &str, key: &str) -> String {
    let raw = format!("{user}:{key}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", self.text))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

impl Client {
    fn new(h: &SandboxHandle) -> Client {
        Client::with_auth(h, Some(basic("", KEY)))
    }

    fn with_auth(h: &SandboxHandle, auth: Option<String>) -> Client {
        Client {
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
            base: h.url(),
            auth,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>, extra: &[(&str, &str)]) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Answer { status, headers, text }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn patch(&self, path: &str, ops: Value) -> Answer {
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
        self.send(Method::PATCH, path, Some(body), &[]).await
    }

    async fn user_id(&self, email: &str) -> String {
        let a = self.get(&format!("/scim/Users?filter=emails.value%20eq%20%22{email}%22")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["Resources"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{email} not listed: {}", a.text))
            .to_string()
    }

    async fn group_id(&self, name: &str) -> String {
        let a = self.get(&format!("/scim/Groups?filter=displayName%20eq%20%22{name}%22")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["Resources"][0]["id"].as_str().unwrap().to_string()
    }

    async fn list_emails(&self, path: &str) -> Vec<String> {
        let a = self.get(path).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["emails"]["Value"].as_str().unwrap().to_string())
            .collect()
    }
}

fn new_user(email: &str, username: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": username,
        "displayName": username,
        "emails": [{"value": email, "primary": true}],
    })
}

fn assert_scim_error(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{}", a.text);
    let body = a.json();
    assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    // W&B sends the status as a string.
    assert_eq!(body["status"], status.to_string());
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(a.header("content-type").as_deref(), Some("application/scim+json"));
}

#[tokio::test]
async fn auth_forms_follow_deployment_and_version() {
    bounded(async {
        let saas = start(opts(Deployment::Saas), small_org()).await;
        let with = |auth: Option<String>| Client::with_auth(&saas, auth);
        assert_eq!(with(Some(basic("", KEY))).get("/scim/Users").await.status, 200);
        assert_eq!(with(Some(basic("alice", KEY))).get("/scim/Users").await.status, 200);
        assert_eq!(with(Some(format!("Bearer {KEY}"))).get("/scim/Users").await.status, 200);
        assert_scim_error(&with(Some(basic("", "wrong"))).get("/scim/Users").await, 401);
        assert_scim_error(&with(Some(basic("alice", "wrong"))).get("/scim/Users").await, 401);
        assert_scim_error(&with(Some(basic("nobody", KEY))).get("/scim/Users").await, 401);
        assert_scim_error(&with(Some(basic("bob", KEY))).get("/scim/Users").await, 403);
        assert_scim_error(&with(Some("Bearer wrong".into())).get("/scim/Users").await, 401);
        assert_scim_error(&with(None).get("/scim/Users").await, 401);
        saas.shutdown().await;

        let mut old = opts(Deployment::Dedicated);
        old.server_version = Some("0.70.0".into());
        let old = start(old, small_org()).await;
        let bearer = Client::with_auth(&old, Some(format!("Bearer {KEY}")));
        assert_scim_error(&bearer.get("/scim/Users").await, 401);
        assert_eq!(Client::new(&old).get("/scim/Users").await.status, 200);
        old.shutdown().await;

        let mut new = opts(Deployment::SelfManaged);
        new.server_version = Some("0.79.0".into());
        let new = start(new, small_org()).await;
        let bearer = Client::with_auth(&new, Some(format!("Bearer {KEY}")));
        assert_eq!(bearer.get("/scim/Users").await.status, 200);
        new.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn several_keys_are_accepted_and_the_write_log_names_the_key_of_each_write() {
    bounded(async {
        let mut o = opts(Deployment::Saas);
        o.extra_api_keys = vec!["node-a-key".into(), "node-b-key".into()];
        let sb = start(o, small_org()).await;
        let with = |key: &str| Client::with_auth(&sb, Some(basic("", key)));
        assert_eq!(with("node-b-key").get("/scim/Users").await.status, 200);
        assert_scim_error(&with("node-c-key").get("/scim/Users").await, 401);
        let body = json!({"schemas": [USER_SCHEMA], "userName": "carol", "emails": [{"value": "carol@example.com", "primary": true}]});
        assert_eq!(
            with("node-a-key")
                .send(Method::POST, "/scim/Users", Some(body.clone()), &[])
                .await
                .status,
            201
        );
        // A refused write (409: exists) is logged too, with its status; reads are not.
        assert_eq!(with(KEY).send(Method::POST, "/scim/Users", Some(body), &[]).await.status, 409);
        let log = sb.write_log();
        let seen: Vec<(usize, &str, &str, u16)> = log.iter().map(|w| (w.key, w.method.as_str(), w.path.as_str(), w.status)).collect();
        assert_eq!(seen, [(1, "POST", "/Users", 201), (0, "POST", "/Users", 409)]);
        assert_eq!(sb.state().await.write_log, log, "also in /_sandbox/state");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn user_resources_have_wandb_shapes() {
    bounded(async {
        let h = start(opts(Deployment::Saas), small_org()).await;
        let c = Client::new(&h);
        let list = c.get("/scim/Users").await;
        assert_eq!(list.status, 200);
        assert_eq!(list.header("content-type").as_deref(), Some("application/scim+json"));
        let body = list.json();
        assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:ListResponse");
        // Service accounts are not users.
        assert_eq!(body["totalResults"], 2);
        assert_eq!(body["itemsPerPage"], 9999);
        assert_eq!(body["startIndex"], 1);

        let id = c.user_id("alice@example.com").await;
        let one = c.get(&format!("/scim/Users/{id}")).await;
        assert_eq!(one.status, 200);
        let u = one.json();
        assert_eq!(u["id"], id.as_str());
        assert_eq!(u["userName"], "alice");
        assert_eq!(u["active"], true);
        // A single object with capitalised keys, not the SCIM array.
        assert!(u["emails"].is_object(), "{u}");
        assert_eq!(u["emails"]["Value"], "alice@example.com");
        assert_eq!(u["emails"]["Primary"], true);
        for k in ["Display", "Type"] {
            assert!(u["emails"].get(k).is_some(), "emails.{k} missing");
        }
        assert_eq!(u["organizationRole"], "admin");
        assert_eq!(u["teamRoles"], json!([{"teamName": "ml", "roleName": "admin"}]));
        let ml = c.group_id("ml").await;
        assert_eq!(u["groups"], json!([{"value": ml}]));
        assert_eq!(u["meta"]["resourceType"], "User");
        assert_eq!(u["lastActiveAt"], "2025-05-01T09:00:00Z");
        assert_eq!(u["daysActive"], 42);
        let etag = one.header("etag").expect("ETag header");
        assert_eq!(u["meta"]["version"], etag.as_str());
        // Bob has never been active: null, not absent.
        let bob = c.user_id("bob@example.com").await;
        let b = c.get(&format!("/scim/Users/{bob}")).await.json();
        assert!(b.get("lastActiveAt").is_some_and(Value::is_null));

        // Filters, case-insensitively.
        assert_eq!(
            c.list_emails("/scim/Users?filter=userName%20eq%20%22ALICE%22").await,
            ["alice@example.com"]
        );
        assert!(c.list_emails("/scim/Users?filter=userName%20eq%20%22nobody%22").await.is_empty());
        assert_scim_error(&c.get("/scim/Users?filter=title%20eq%20%22x%22").await, 400);
        assert_scim_error(&c.get("/scim/Users/VXNlcjo5OTk=").await, 404);
        assert_scim_error(&c.get("/scim/Users/garbage").await, 404);
        h.shutdown().await;

        // Older servers have no activity fields.
        let mut o = opts(Deployment::Dedicated);
        o.activity = false;
        let h = start(o, small_org()).await;
        let c = Client::new(&h);
        let id = c.user_id("alice@example.com").await;
        let u = c.get(&format!("/scim/Users/{id}")).await.json();
        assert!(u.get("lastActiveAt").is_none() && u.get("daysActive").is_none());
        h.shutdown().await;

        // One user without the keys on a server that has them: both shapes in one org.
        let mut org = small_org();
        org.users[1].omit_activity = true;
        let h = start(opts(Deployment::Dedicated), org).await;
        let c = Client::new(&h);
        let alice = c.user_id("alice@example.com").await;
        let bob = c.user_id("bob@example.com").await;
        let a = c.get(&format!("/scim/Users/{alice}")).await.json();
        assert_eq!(a["lastActiveAt"], "2025-05-01T09:00:00Z");
        let b = c.get(&format!("/scim/Users/{bob}")).await.json();
        assert!(b.get("lastActiveAt").is_none() && b.get("daysActive").is_none(), "{b}");
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn create_answers_201_then_409_and_validates() {
    bounded(async {
        let h = start(opts(Deployment::Saas), small_org()).await;
        let c = Client::new(&h);
        let a = c.post("/scim/Users", new_user("carol@example.com", "carol")).await;
        assert_eq!(a.status, 201, "{}", a.text);
        let u = a.json();
        assert_eq!(u["organizationRole"], "member");
        assert_eq!(u["active"], true);
        assert_eq!(u["emails"]["Value"], "carol@example.com");
        assert!(a.header("etag").is_some());

        let dup = c.post("/scim/Users", new_user("Carol@Example.com", "carol2")).await;
        assert_scim_error(&dup, 409);
        let dup = c.post("/scim/Users", new_user("other@example.com", "CAROL")).await;
        assert_scim_error(&dup, 409);

        let mut no_schema = new_user("dan@example.com", "dan");
        no_schema.as_object_mut().unwrap().remove("schemas");
        assert_scim_error(&c.post("/scim/Users", no_schema).await, 400);
        let mut no_primary = new_user("dan@example.com", "dan");
        no_primary["emails"] = json!([{"value": "dan@example.com"}]);
        assert_scim_error(&c.post("/scim/Users", no_primary).await, 400);
        let mut no_name = new_user("dan@example.com", "dan");
        no_name.as_object_mut().unwrap().remove("userName");
        assert_scim_error(&c.post("/scim/Users", no_name).await, 400);

        // Plain application/json is accepted too; other types are not.
        let plain = c
            .http
            .post(format!("{}/scim/Users", c.base))
            .header("Authorization", basic("", KEY))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&new_user("erin@example.com", "erin")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status().as_u16(), 201);
        let text = c.send(Method::POST, "/scim/Users", None, &[("Content-Type", "text/plain")]).await;
        assert_scim_error(&text, 415);

        let state = h.state().await;
        assert_eq!(state.user_posts["carol@example.com"], 2);
        assert_eq!(state.user_creates["carol@example.com"], 1);
        assert_eq!(state.user_creates.values().sum::<u64>(), 2);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn saas_deactivation_removes_the_user_and_cannot_be_undone() {
    bounded(async {
        let h = start(opts(Deployment::Saas), small_org()).await;
        let c = Client::new(&h);
        let bob = c.user_id("bob@example.com").await;

        // Reactivating even an active user is refused on SaaS.
        let a = c
            .patch(&format!("/scim/Users/{bob}"), json!([{"op": "replace", "value": {"active": true}}]))
            .await;
        assert_scim_error(&a, 400);
        assert!(a.json()["detail"].as_str().unwrap().contains("SaaS Cloud"));

        let a = c
            .patch(
                &format!("/scim/Users/{bob}"),
                json!([{"op": "replace", "value": {"active": false}}]),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(c.list_emails("/scim/Users").await, ["alice@example.com"]);
        assert_scim_error(&c.get(&format!("/scim/Users/{bob}")).await, 404);
        let a = c
            .patch(&format!("/scim/Users/{bob}"), json!([{"op": "replace", "value": {"active": true}}]))
            .await;
        assert_scim_error(&a, 400);
        let state = h.state().await;
        assert!(state.user("bob@example.com").is_none());
        assert_eq!(state.team("ml").unwrap().members, ["alice@example.com"]);

        // Re-adding is a POST, and makes bob a plain member again.
        let a = c.post("/scim/Users", new_user("bob@example.com", "bob")).await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.json()["organizationRole"], "member");
        assert_eq!(c.list_emails("/scim/Users").await, ["alice@example.com", "bob@example.com"]);

        // DELETE removes too.
        let a = c.send(Method::DELETE, &format!("/scim/Users/{bob}"), None, &[]).await;
        assert_eq!(a.status, 204);
        assert_eq!(c.list_emails("/scim/Users").await, ["alice@example.com"]);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dedicated_deactivation_keeps_the_user_inactive() {
    bounded(async {
        let h = start(opts(Deployment::Dedicated), small_org()).await;
        let c = Client::new(&h);
        let bob = c.user_id("bob@example.com").await;
        let a = c
            .patch(
                &format!("/scim/Users/{bob}"),
                json!([{"op": "replace", "value": {"active": false}}]),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json()["active"], false);
        let list = c.get("/scim/Users").await.json();
        assert_eq!(list["totalResults"], 2);
        let b = &list["Resources"][1];
        assert_eq!(b["emails"]["Value"], "bob@example.com");
        assert_eq!(b["active"], false);
        // Team memberships survive deactivation.
        assert_eq!(b["teamRoles"], json!([{"teamName": "ml", "roleName": "member"}]));
        // Still in the org: creating again conflicts.
        assert_scim_error(&c.post("/scim/Users", new_user("bob@example.com", "bob")).await, 409);

        let a = c
            .patch(
                &format!("/scim/Users/{bob}"),
                json!([{"op": "replace", "path": "active", "value": true}]),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json()["active"], true);
        assert!(h.state().await.user("bob@example.com").unwrap().active);

        // DELETE removes the account from the instance.
        let a = c.send(Method::DELETE, &format!("/scim/Users/{bob}"), None, &[]).await;
        assert_eq!(a.status, 204);
        assert_eq!(c.list_emails("/scim/Users").await, ["alice@example.com"]);
        assert_eq!(h.state().await.removed_users, ["bob@example.com"]);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn org_roles_and_the_deprecated_viewer_reset() {
    bounded(async {
        let h = start(opts(Deployment::Saas), small_org()).await;
        let c = Client::new(&h);
        let bob = c.user_id("bob@example.com").await;
        let path = format!("/scim/Users/{bob}");
        let a = c
            .patch(&path, json!([{"op": "replace", "path": "organizationRole", "value": "admin"}]))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json()["organizationRole"], "admin");
        let a = c
            .patch(
                &path,
                json!([{"op": "replace", "path": "teamRoles",
                "value": [{"teamName": "ml", "roleName": "admin"}]}]),
            )
            .await;
        assert_eq!(a.json()["teamRoles"], json!([{"teamName": "ml", "roleName": "admin"}]));
        assert_eq!(h.state().await.viewer_role_assignments, 0);

        let a = c
            .patch(&path, json!([{"op": "replace", "path": "organizationRole", "value": "viewer"}]))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let u = a.json();
        assert_eq!(u["organizationRole"], "member");
        assert_eq!(u["teamRoles"], json!([{"teamName": "ml", "roleName": "viewer"}]));
        let state = h.state().await;
        assert_eq!(state.viewer_role_assignments, 1);
        let b = state.user("bob@example.com").unwrap();
        assert!(b.viewer_seat);
        assert_eq!(b.teams["ml"], "viewer");

        let a = c
            .patch(&path, json!([{"op": "replace", "path": "organizationRole", "value": "owner"}]))
            .await;
        assert_scim_error(&a, 400);
        let a = c
            .patch(
                &path,
                json!([{"op": "replace", "path": "teamRoles",
                "value": [{"teamName": "empty", "roleName": "admin"}]}]),
            )
            .await;
        assert_scim_error(&a, 400);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn group_membership_semantics() {
    bounded(async {
        let h = start(opts(Deployment::Saas), small_org()).await;
        let c = Client::new(&h);
        let alice = c.user_id("alice@example.com").await;
        let bob = c.user_id("bob@example.com").await;

        // Empty teams answer members: null.
        let empty = c.group_id("empty").await;
        let g = c.get(&format!("/scim/Groups/{empty}")).await;
        assert_eq!(g.status, 200);
        assert!(g.header("etag").is_some());
        assert!(g.json()["members"].is_null(), "{}", g.text);

        // A new team gets the org service account; 409 when it exists.
        let a = c.post("/scim/Groups", json!({"displayName": "vision", "members": []})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        let team = a.json();
        assert_eq!(team["displayName"], "vision");
        let members = team["members"].as_array().unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0]["Display"], "sa-training");
        for k in ["Value", "Ref", "Type", "Display"] {
            assert!(members[0].get(k).is_some(), "member.{k} missing");
        }
        assert_scim_error(&c.post("/scim/Groups", json!({"displayName": "vision"})).await, 409);
        let vision = team["id"].as_str().unwrap().to_string();
        let vpath = format!("/scim/Groups/{vision}");

        // Add by id and by email, with the default team role.
        let a = c
            .patch(
                &vpath,
                json!([{"op": "add", "path": "members",
                "value": [{"value": alice}, {"value": "bob@example.com"}]}]),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json()["members"].as_array().unwrap().len(), 3);
        let b = c.get(&format!("/scim/Users/{bob}")).await.json();
        assert!(b["teamRoles"]
            .as_array()
            .unwrap()
            .contains(&json!({"teamName": "vision", "roleName": "member"})));
        let unknown = c
            .patch(
                &vpath,
                json!([{"op": "add", "path": "members", "value": [{"value": "x@nowhere.io"}]}]),
            )
            .await;
        assert_scim_error(&unknown, 404);

        // Remove one.
        let a = c
            .patch(&vpath, json!([{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let state = h.state().await;
        assert_eq!(state.team("vision").unwrap().members, ["alice@example.com"]);
        assert_eq!(state.team("vision").unwrap().service_accounts, ["sa-training"]);
        assert!(!state.user("bob@example.com").unwrap().teams.contains_key("vision"));

        // The bare remove strips everyone, service accounts included.
        assert_eq!(state.bare_member_removes, 0);
        let a = c.patch(&vpath, json!([{"op": "remove", "path": "members"}])).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(a.json()["members"].is_null());
        let state = h.state().await;
        assert_eq!(state.bare_member_removes, 1);
        assert!(state.team("vision").unwrap().members.is_empty());
        assert!(state.team("vision").unwrap().service_accounts.is_empty());
        assert!(!state.user("alice@example.com").unwrap().teams.contains_key("vision"));

        // Teams cannot be deleted; lists filter by name.
        let a = c.send(Method::DELETE, &vpath, None, &[]).await;
        assert_scim_error(&a, 405);
        let list = c.get("/scim/Groups").await.json();
        assert_eq!(list["totalResults"], 3);
        let ml = c.get("/scim/Groups?filter=displayName%20eq%20%22ml%22").await.json();
        assert_eq!(ml["totalResults"], 1);
        let names: Vec<&str> = ml["Resources"][0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Display"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alice", "bob", "sa-training"]);

        // Roles.
        let roles = c.get("/scim/Roles").await.json();
        assert_eq!(roles["totalResults"], 3);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn paging_is_honoured_or_ignored_as_configured() {
    bounded(async {
        let mut o = opts(Deployment::Saas);
        o.honour_paging = true;
        let h = start(o, many_users(7)).await;
        let c = Client::new(&h);
        let p1 = c.get("/scim/Users?startIndex=1&count=3").await.json();
        assert_eq!(p1["totalResults"], 7);
        assert_eq!(p1["itemsPerPage"], 3);
        assert_eq!(p1["startIndex"], 1);
        assert_eq!(p1["Resources"].as_array().unwrap().len(), 3);
        let p3 = c.get("/scim/Users?startIndex=7&count=3").await.json();
        assert_eq!(p3["Resources"].as_array().unwrap().len(), 1);
        assert_eq!(p3["Resources"][0]["userName"], "user6");
        assert_eq!(p3["startIndex"], 7);
        let past = c.get("/scim/Users?startIndex=50&count=3").await.json();
        assert_eq!(past["Resources"].as_array().unwrap().len(), 0);
        assert_eq!(past["totalResults"], 7);
        assert_scim_error(&c.get("/scim/Users?count=lots").await, 400);
        h.shutdown().await;

        let h = start(opts(Deployment::Saas), many_users(7)).await;
        let c = Client::new(&h);
        let all = c.get("/scim/Users?startIndex=4&count=2").await.json();
        assert_eq!(all["Resources"].as_array().unwrap().len(), 7);
        assert_eq!(all["itemsPerPage"], 9999);
        assert_eq!(all["startIndex"], 1);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn page_cap_truncates_silently() {
    bounded(async {
        let mut o = opts(Deployment::Saas);
        o.page_cap = Some(4);
        let h = start(o, many_users(10)).await;
        let c = Client::new(&h);
        let list = c.get("/scim/Users?startIndex=1&count=100").await.json();
        assert_eq!(list["totalResults"], 10);
        assert_eq!(list["Resources"].as_array().unwrap().len(), 4);
        assert_eq!(list["itemsPerPage"], 9999);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stale_if_match_is_refused() {
    bounded(async {
        let h = start(opts(Deployment::Dedicated), small_org()).await;
        let c = Client::new(&h);
        let bob = c.user_id("bob@example.com").await;
        let path = format!("/scim/Users/{bob}");
        let old = c.get(&path).await.header("etag").unwrap();
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": "organizationRole", "value": "admin"}]});
        let a = c.send(Method::PATCH, &path, Some(body.clone()), &[("If-Match", &old)]).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let new = a.header("etag").unwrap();
        assert_ne!(new, old);
        let a = c.send(Method::PATCH, &path, Some(body.clone()), &[("If-Match", &old)]).await;
        assert_scim_error(&a, 412);
        let a = c.send(Method::DELETE, &path, None, &[("If-Match", &old)]).await;
        assert_scim_error(&a, 412);
        // Group membership changes move the user's ETag too.
        let empty = c.group_id("empty").await;
        let a = c
            .patch(
                &format!("/scim/Groups/{empty}"),
                json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
            )
            .await;
        assert_eq!(a.status, 200);
        let a = c.send(Method::PATCH, &path, Some(body), &[("If-Match", &new)]).await;
        assert_scim_error(&a, 412);
        let cur = c.get(&path).await.header("etag").unwrap();
        let a = c.send(Method::DELETE, &path, None, &[("If-Match", &cur)]).await;
        assert_eq!(a.status, 204);
        h.shutdown().await;
    })
    .await;
}

/// Statuses of `n` sequential GETs.
async fn statuses(c: &Client, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.get("/scim/Users").await.status);
    }
    out
}

#[tokio::test]
async fn faults_follow_their_rates_and_the_seed() {
    bounded(async {
        let faulty = || {
            let mut o = opts(Deployment::Saas);
            o.fail_rate = 0.2;
            o.throttle_rate = 0.1;
            o.seed = 42;
            o
        };
        let a = start(faulty(), small_org()).await;
        let b = start(faulty(), small_org()).await;
        let sa = statuses(&Client::new(&a), 400).await;
        let sb = statuses(&Client::new(&b), 400).await;
        assert_eq!(sa, sb, "same seed, same faults");
        let count = |code| sa.iter().filter(|s| **s == code).count();
        // Throttle first (10%), then 500s on 20% of the rest (18% overall).
        assert!((15..=70).contains(&count(429)), "429s: {}", count(429));
        assert!((40..=110).contains(&count(500)), "500s: {}", count(500));
        assert_eq!(count(200) + count(429) + count(500), 400);
        assert_eq!(a.request_count(), 400);

        // A different seed draws a different sequence.
        let mut other = faulty();
        other.seed = 7;
        let o = start(other, small_org()).await;
        assert_ne!(statuses(&Client::new(&o), 400).await, sa);
        o.shutdown().await;

        // 429 carries the rate-limit headers; 500 a SCIM error.
        a.set_faults(0.0, 1.0, 0.0);
        let t = Client::new(&a).get("/scim/Users").await;
        assert_scim_error(&t, 429);
        assert_eq!(t.header("ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(t.header("ratelimit-reset").as_deref(), Some("0"));
        assert!(t.header("retry-after").is_none());
        a.set_faults(1.0, 0.0, 0.0);
        assert_scim_error(&Client::new(&a).get("/scim/Users").await, 500);

        // Malformed: a 200 whose body is not JSON.
        a.set_faults(0.0, 0.0, 1.0);
        let m = Client::new(&a).get("/scim/Users").await;
        assert_eq!(m.status, 200);
        assert!(serde_json::from_str::<Value>(&m.text).is_err());
        a.set_faults(0.0, 0.0, 0.0);
        assert_eq!(Client::new(&a).get("/scim/Users").await.status, 200);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn failed_requests_change_nothing_but_lost_responses_do() {
    bounded(async {
        let mut o = opts(Deployment::Saas);
        o.fail_rate = 1.0;
        o.retry_after_secs = Some(1);
        let h = start(o, small_org()).await;
        let c = Client::new(&h);
        let a = c.post("/scim/Users", new_user("carol@example.com", "carol")).await;
        assert_scim_error(&a, 500);
        assert!(h.state().await.user("carol@example.com").is_none());

        h.set_faults(0.0, 1.0, 0.0);
        let a = c.get("/scim/Users").await;
        assert_eq!(a.header("retry-after").as_deref(), Some("1"));

        h.set_faults(0.0, 0.0, 0.0);
        h.set_lost_response_rate(1.0);
        let a = c.post("/scim/Users", new_user("carol@example.com", "carol")).await;
        assert_scim_error(&a, 500);
        // It happened anyway: a retry conflicts.
        assert!(h.state().await.user("carol@example.com").is_some());
        h.set_lost_response_rate(0.0);
        assert_scim_error(&c.post("/scim/Users", new_user("carol@example.com", "carol")).await, 409);
        let state = h.state().await;
        assert_eq!(state.user_creates["carol@example.com"], 1);
        assert_eq!(state.user_posts["carol@example.com"], 2);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn latency_is_injected_and_overlaps() {
    bounded(async {
        let mut o = opts(Deployment::Saas);
        o.latency = Duration::from_millis(150);
        let h = start(o, small_org()).await;
        let c = Client::new(&h);
        let t = Instant::now();
        assert_eq!(c.get("/scim/Users").await.status, 200);
        assert!(t.elapsed() >= Duration::from_millis(150));
        // Concurrent requests wait side by side, not in line.
        let t = Instant::now();
        let (a, b, d, e) = tokio::join!(
            c.get("/scim/Users"),
            c.get("/scim/Groups"),
            c.get("/scim/Roles"),
            c.get("/scim/Users")
        );
        assert!([a.status, b.status, d.status, e.status].iter().all(|s| *s == 200));
        assert!(t.elapsed() < Duration::from_millis(550), "{:?}", t.elapsed());
        h.set_latency(Duration::ZERO);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn seat_limit_blocks_creates_and_reactivations() {
    bounded(async {
        let mut o = opts(Deployment::Dedicated);
        o.seat_limit = Some(2);
        let h = start(o, small_org()).await;
        let c = Client::new(&h);
        let a = c.post("/scim/Users", new_user("carol@example.com", "carol")).await;
        assert_scim_error(&a, 400);
        assert!(a.json()["detail"].as_str().unwrap().contains("Seat limit reached"));

        let bob = c.user_id("bob@example.com").await;
        let path = format!("/scim/Users/{bob}");
        let off = json!([{"op": "replace", "value": {"active": false}}]);
        assert_eq!(c.patch(&path, off).await.status, 200);
        assert_eq!(c.post("/scim/Users", new_user("carol@example.com", "carol")).await.status, 201);
        let on = json!([{"op": "replace", "value": {"active": true}}]);
        let a = c.patch(&path, on).await;
        assert_scim_error(&a, 400);
        assert!(a.json()["detail"].as_str().unwrap().contains("Seat limit reached"));
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn helper_endpoints_serve_state_and_set_faults() {
    bounded(async {
        let mut o = opts(Deployment::Saas);
        o.scim_path = "/scim/v2".into();
        let h = start(o, small_org()).await;
        let c = Client::new(&h);
        assert_eq!(c.get("/scim/v2/Users").await.status, 200);
        assert_scim_error(&c.get("/scim/Users").await, 404);

        let plain = reqwest::Client::new();
        let state: SandboxState = plain
            .get(format!("{}/_sandbox/state", h.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state, h.state().await);
        assert_eq!(state.users.len(), 2);
        assert_eq!(state.request_count, 1);
        assert_eq!(state.write_request_count, 0, "a GET is not a write");
        let alice = state.user("alice@example.com").unwrap();
        assert_eq!(alice.org_role, "admin");
        assert_eq!(alice.teams["ml"], "admin");
        assert_eq!(state.team("ml").unwrap().service_accounts, ["sa-training"]);
        assert_eq!(state.active_admins(), 1);

        let r = plain
            .post(format!("{}/_sandbox/faults", h.url()))
            .json(&json!({"fail_rate": 1.0, "latency_ms": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["fail_rate"], 1.0);
        assert_scim_error(&c.get("/scim/v2/Users").await, 500);
        plain
            .post(format!("{}/_sandbox/faults", h.url()))
            .json(&json!({"fail_rate": 0.0}))
            .send()
            .await
            .unwrap();
        assert_eq!(c.get("/scim/v2/Users").await.status, 200);
        assert_eq!(h.request_count(), 3);

        let url = h.url();
        h.shutdown().await;
        let gone = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
            .get(format!("{url}/_sandbox/state"))
            .send()
            .await;
        assert!(gone.is_err(), "the sandbox stopped serving");
    })
    .await;
}

#[tokio::test]
async fn the_bundled_example_org_serves() {
    bounded(async {
        let h = start(opts(Deployment::Saas), SandboxOrg::example()).await;
        let c = Client::new(&h);
        let list = c.get("/scim/Users").await.json();
        assert!(list["totalResults"].as_u64().unwrap() >= 15);
        let admins = Client::with_auth(&h, Some(basic("alice.nguyen", KEY)));
        assert_eq!(admins.get("/scim/Groups").await.json()["totalResults"], 3);
        h.shutdown().await;
    })
    .await;
}
