//! The real third-party SCIM 2.0 server from PyPI (`scim2-server`), installed by
//! `scripts/test.sh` into `target/scim-venv`, started on a free loopback port with a bearer
//! token, seeded over its own SCIM API, and killed (by its pid) when dropped.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct ScimServer {
    child: Child,
    pub port: u16,
    pub token: String,
    http: reqwest::Client,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `scripts/test.sh` installs the server.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/scim-venv/bin/scim2-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ScimServer {
    /// Starts the server; fails the test (never skips it) when it is not installed.
    pub async fn start(token: &str) -> ScimServer {
        let bin = binary();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/test.sh, which creates target/scim-venv and installs scim2-server==0.8.3",
            bin.display()
        );
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", token])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start scim2-server");
            let mut s = ScimServer {
                child,
                port,
                token: token.to_string(),
                http: http.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if s.child.try_wait().unwrap().is_some() {
                    break;
                }
                let r = s.http.get(s.endpoint("ServiceProviderConfig")).bearer_auth(token).send().await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = s.child.kill();
        }
        panic!("scim2-server did not start on 127.0.0.1 (tried 3 ports)");
    }

    /// The SCIM base URL, as `source.url` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.url())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.endpoint(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "seeding {path}: {status} {v}");
        v
    }

    /// Creates a user; `email` None leaves `emails` out. Returns the id.
    pub async fn user(&self, user_name: &str, email: Option<&str>, active: bool) -> String {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "displayName": format!("{user_name} Test"),
            "active": active,
        });
        if let Some(e) = email {
            body["emails"] = json!([{"value": format!("home-{e}"), "type": "home"}, {"value": e, "type": "work", "primary": true}]);
        }
        self.post("Users", body).await["id"].as_str().unwrap().to_string()
    }

    /// Creates a group with members given as (id, "User" | "Group"). Returns the id.
    pub async fn group(&self, name: &str, members: &[(&str, &str)]) -> String {
        let members: Vec<Value> = members.iter().map(|(id, t)| json!({"value": id, "type": t})).collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members});
        self.post("Groups", body).await["id"].as_str().unwrap().to_string()
    }

    pub async fn delete_user(&self, id: &str) {
        let r = self
            .http
            .delete(self.endpoint(&format!("Users/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "delete {id}: {}", r.status());
    }
}
