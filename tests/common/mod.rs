//! Test harness: a W&B sandbox on loopback, a generated directory and config in a temp
//! dir, and the real `idsync` binary run against them.

#![allow(dead_code)]

pub mod entra_fake;
pub mod okta_fake;
pub mod postgres;
pub mod scim_server;
pub mod slapd;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use idsync::plan::Deployment;
use idsync::sandbox::{self, SandboxHandle, SandboxOptions, SandboxOrg};
use serde_json::{json, Value};

pub const KEY: &str = "test-org-key";

/// Policy rules naming IdP groups by display name: `wandb-admins` grants org admin,
/// `ml` maps to team `ml`.
pub const IDP_POLICY_TABLES: &str = r#"
[[policy.org_roles]]
group = "wandb-admins"
role = "admin"

[[policy.teams]]
team = "ml"
group = "ml"
role = "member"
"#;

/// One directory person: uid, and whether the account is enabled.
pub struct P<'a>(pub &'a str, pub bool);

/// Builds an LDIF directory of `uid@example.com` people (or full emails) and groups.
pub fn ldif(people: &[P<'_>], groups: &[(&str, &[&str])]) -> String {
    let mut out = String::from("version: 1\n\n");
    for P(who, enabled) in people {
        let (uid, mail) = match who.split_once('@') {
            Some((u, _)) => (u.to_string(), who.to_string()),
            None => (who.to_string(), format!("{who}@example.com")),
        };
        out.push_str(&format!(
            "dn: uid={uid},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {mail}\nentryUUID: anchor-{uid}\n"
        ));
        if !enabled {
            out.push_str("pwdAccountLockedTime: 20260101000000Z\n");
        }
        out.push('\n');
    }
    for (cn, members) in groups {
        out.push_str(&format!(
            "dn: cn={cn},ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: {cn}\n"
        ));
        for m in *members {
            out.push_str(&format!("member: uid={m},ou=people,dc=example,dc=com\n"));
        }
        out.push('\n');
    }
    out
}

/// One seeded W&B user: (email, org role, [(team, team role)]).
pub type SeedUser<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A W&B org seed.
pub fn org(users: &[SeedUser<'_>], teams: &[&str]) -> Value {
    let users: Vec<Value> = users
        .iter()
        .map(|(email, role, ts)| {
            let teams: serde_json::Map<String, Value> = ts.iter().map(|(t, r)| (t.to_string(), json!(r))).collect();
            json!({"email": email, "username": email.split('@').next().unwrap(), "org_role": role, "teams": teams})
        })
        .collect();
    let teams: Vec<Value> = teams.iter().map(|t| json!({"name": t})).collect();
    json!({"users": users, "teams": teams})
}

pub struct Fixture {
    pub sb: SandboxHandle,
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
}

pub struct Setup<'a> {
    pub org: Value,
    pub ldif: String,
    /// Extra lines for [policy] (after managed_domains).
    pub policy: &'a str,
    /// Extra lines for [guards].
    pub guards: &'a str,
    /// Extra lines for [target].
    pub target: &'a str,
    /// Extra tables (e.g. [[policy.teams]]), appended at the end.
    pub tables: &'a str,
    pub opts: SandboxOptions,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            org: org(&[], &[]),
            ldif: ldif(&[], &[]),
            policy: "",
            guards: "",
            target: "",
            tables: "",
            opts: SandboxOptions {
                api_key: KEY.into(),
                deployment: Deployment::Saas,
                ..SandboxOptions::default()
            },
        }
    }
}

impl Fixture {
    pub async fn start(s: Setup<'_>) -> Fixture {
        let seed: SandboxOrg = serde_json::from_value(s.org).expect("sandbox org");
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sb = sandbox::spawn(s.opts, seed, addr).await.expect("sandbox starts");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("directory.ldif"), &s.ldif).unwrap();
        std::fs::write(dir.path().join("key"), format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(dir.path().join("key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let cfg = dir.path().join("idsync.toml");
        let text = format!(
            r#"[source]
kind = "ldif"
path = "directory.ldif"
[source.users]
base = "ou=people,dc=example,dc=com"
[source.groups]
base = "ou=groups,dc=example,dc=com"

[target]
url = "{url}"
api_key_file = "key"
timeout = "10s"
{target}

[policy]
managed_domains = ["example.com"]
{grace}
{policy}

[guards]
max_deprovision_percent = 100
{guards}

[daemon]
state_dir = "state"

{tables}
"#,
            url = sb.url(),
            target = s.target,
            policy = s.policy,
            grace = if s.policy.contains("grace_period") {
                ""
            } else {
                "grace_period = \"0s\""
            },
            guards = s.guards,
            tables = s.tables,
        );
        std::fs::write(&cfg, text).unwrap();
        Fixture { sb, dir, cfg }
    }

    /// Runs `idsync ARGS -c CFG` to completion (bounded), off the async runtime.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[]).await
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_idsync"));
        cmd.args(args)
            .arg("-c")
            .arg(&self.cfg)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("IDSYNC_CONFIG");
        cmd
    }

    /// Runs `idsync ARGS -c CFG` with extra environment variables (e.g. `RUST_LOG`).
    pub async fn run_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || {
            let child = cmd
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn idsync");
            wait_bounded(child, Duration::from_secs(120))
        })
        .await
        .unwrap()
    }

    /// Replaces the config's `[source]` section (up to `[target]`) with `toml`, which
    /// must start with `[source]`; used to point the fixture at a live server.
    pub fn set_source(&self, toml: &str) {
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        let start = text.find("[source]").expect("[source] in config");
        let end = text.find("\n[target]").expect("[target] in config");
        std::fs::write(&self.cfg, format!("{}{}\n{}", &text[..start], toml.trim_end(), &text[end..])).unwrap();
    }

    /// Writes a secret file next to the config, readable by its owner only.
    pub fn write_secret(&self, name: &str, value: &str) {
        let p = self.path(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }

    pub fn write_ldif(&self, text: &str) {
        std::fs::write(self.dir.path().join("directory.ldif"), text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The sandbox's state as JSON (users with email, active, org_role, teams).
    pub async fn state(&self) -> Value {
        serde_json::to_value(self.sb.state().await).unwrap()
    }

    /// Active users by email -> (org_role, teams map).
    pub async fn users(&self) -> std::collections::BTreeMap<String, Value> {
        let st = self.state().await;
        st["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["active"].as_bool().unwrap_or(true))
            .map(|u| (u["email"].as_str().unwrap().to_string(), u.clone()))
            .collect()
    }

    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("state/audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn wait_bounded(mut child: std::process::Child, limit: Duration) -> Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("idsync did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(o: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn plan_json(f: &Fixture, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(f.path(name)).unwrap()).unwrap()
}

/// Twelve people (k0..k11) to create one at a time (`max_concurrency = 1`) beside the
/// admin root, each request slowed by `latency`: a run long enough to interrupt.
pub async fn slow_fixture(latency: Duration) -> Fixture {
    slow_fixture_with(SandboxOptions {
        api_key: KEY.into(),
        deployment: Deployment::Saas,
        latency,
        ..SandboxOptions::default()
    })
    .await
}

/// [`slow_fixture`]'s directory and org with the sandbox started from `opts` (its
/// latency, extra keys, ...).
pub async fn slow_fixture_with(opts: SandboxOptions) -> Fixture {
    let people: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    let mut ps: Vec<P> = people.iter().map(|p| P(p, true)).collect();
    ps.push(P("root", true));
    Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&ps, &[]),
        target: "max_concurrency = 1",
        opts,
        ..Setup::default()
    })
    .await
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// root (the admin) stays; ci-bot, a pipeline-key owner, has left the directory: its
/// deprovision is held by pipeline-key.
#[allow(dead_code)]
pub async fn pipeline_owner_left() -> Fixture {
    Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("ci-bot@example.com", "member", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        guards: r#"pipeline_key_owners = ["ci-bot@example.com"]"#,
        ..Setup::default()
    })
    .await
}

/// root (the admin) and alice, to be created: a plan with one change pending.
#[allow(dead_code)]
pub async fn root_and_alice() -> Fixture {
    Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true), P("alice", true)], &[]),
        ..Setup::default()
    })
    .await
}

/// `idsync status`'s "pending approvals: N".
#[allow(dead_code)]
pub fn pending_approvals(status: &str) -> usize {
    status
        .lines()
        .find_map(|l| l.strip_prefix("pending approvals: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pending approvals line in {status}"))
}

/// Twenty members p0..p19 and root (admin) in W&B; the directory has all but the first
/// `missing` of them.
#[allow(dead_code)]
pub async fn twenty_with_missing(missing: usize, guards: &'static str) -> Fixture {
    let mut users: Vec<String> = (0..20).map(|i| format!("p{i}@example.com")).collect();
    users.push("root@example.com".into());
    let seed: Vec<SeedUser> = users
        .iter()
        .map(|u| (u.as_str(), if u.starts_with("root") { "admin" } else { "member" }, &[][..]))
        .collect();
    let present: Vec<String> = (missing..20).map(|i| format!("p{i}")).chain(["root".to_string()]).collect();
    let people: Vec<P> = present.iter().map(|u| P(u, true)).collect();
    Fixture::start(Setup {
        org: org(&seed, &[]),
        ldif: ldif(&people, &[]),
        guards,
        ..Setup::default()
    })
    .await
}

/// The actions of a plan (JSON) held with `guard` as their first guard.
#[allow(dead_code)]
pub fn held_by<'a>(plan: &'a Value, guard: &str) -> Vec<&'a Value> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "held" && a["guard"] == guard)
        .collect()
}

#[allow(dead_code)]
/// Runs `idsync ARGS` on a pseudo-terminal (util-linux `script`), typing `answer`.
pub fn run_on_terminal(f: &Fixture, args: &[&str], answer: &str) -> (i32, String) {
    let mut line = env!("CARGO_BIN_EXE_idsync").to_string();
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    line.push_str(&format!(" -c {}", f.cfg.display()));
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(f.dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    // Typed only once the prompt waits: `script` forwards it to the terminal.
    std::thread::sleep(Duration::from_millis(1500));
    // A command that ended before asking has closed the pipe: its output says why.
    let _ = child.stdin.take().unwrap().write_all(answer.as_bytes());
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "idsync on a terminal did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}
