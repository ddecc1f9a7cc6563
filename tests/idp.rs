//! The Okta and Entra ID sources against loopback fakes of the vendors' APIs
//! (`tests/common/okta_fake.rs`, `tests/common/entra_fake.rs`): the library's readers
//! directly, and the real `idsync` binary planning and applying into the W&B sandbox.

mod common;

use std::time::{Duration, Instant};

use common::entra_fake::{self, EntraFake};
use common::okta_fake::{self, Fail, OktaFake};
use common::*;
use idsync::secret::Secret;
use idsync::source::entra::{EntraSettings, EntraSource};
use idsync::source::okta::OktaSource;
use idsync::wandb::Backoff;
use serde_json::Value;

const OKTA_TOKEN: &str = "00okta-SSWS-token-7f3a9c";
const ENTRA_SECRET: &str = "entra~client~secret~55b1";

const POLICY_TABLES: &str = IDP_POLICY_TABLES;

fn fast() -> Backoff {
    Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
    }
}

// ------------------------------------------------------------------------------ Okta

fn okta_world() -> okta_fake::OktaState {
    use okta_fake::{group, user};
    let users = vec![
        user("00u1", "alice@example.com", "ACTIVE"),
        user("00u2", "bob@example.com", "PASSWORD_EXPIRED"),
        user("00u3", "carol@example.com", "LOCKED_OUT"),
        user("00u4", "dave@example.com", "SUSPENDED"),
        user("00u5", "erin@example.com", "DEPROVISIONED"),
        user("00u6", "frank@example.com", "STAGED"),
        user("00u7", "gina@example.com", "RECOVERY"),
        user("00u8", "root@example.com", "ACTIVE"),
    ];
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let groups = vec![
        (group("00g1", "ml"), ids(&["00u1", "00u2", "00u3", "00u4", "00u6"])),
        (group("00g2", "wandb-admins"), ids(&["00u8"])),
        (
            group("00g3", "Everyone"),
            ids(&["00u1", "00u2", "00u3", "00u4", "00u5", "00u6", "00u7", "00u8"]),
        ),
    ];
    okta_fake::state(OKTA_TOKEN, users, groups)
}

fn okta_block(fake: &OktaFake) -> String {
    format!(
        "[source]\nkind = \"okta\"\nurl = \"{}\"\ntoken_file = \"okta-token\"\npage_size = 2\ntimeout = \"10s\"\n",
        fake.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_reads_every_page_and_maps_statuses() {
    let fake = OktaFake::start(okta_world()).await;
    let src = OktaSource::new(&fake.url(), Secret::new(OKTA_TOKEN), 2, Duration::from_secs(5)).unwrap();
    let dir = src.read().await.unwrap();
    assert_eq!(dir.kind, "okta");
    let state = |email: &str| dir.people.iter().find(|p| p.email.as_deref() == Some(email)).map(|p| p.enabled);
    for e in ["alice", "bob", "carol", "gina", "root"] {
        assert_eq!(state(&format!("{e}@example.com")), Some(true), "{e} is enabled");
    }
    assert_eq!(state("dave@example.com"), Some(false), "SUSPENDED is disabled");
    assert_eq!(state("erin@example.com"), Some(false), "DEPROVISIONED is read and disabled");
    assert_eq!(state("frank@example.com"), None, "STAGED is skipped");
    assert_eq!(dir.people.len(), 7);
    let ml = dir.groups.iter().find(|g| g.name == "ml").unwrap();
    assert_eq!(ml.members, vec!["00u1", "00u2", "00u3", "00u4"], "STAGED members are left out");
    assert!(ml.matches("ml") && ml.matches("00g1"));
    let reqs = fake.requests();
    let user_pages = reqs.iter().filter(|r| r.starts_with("/api/v1/users?")).count();
    // 7 listed users in pages of 2, then one page of deactivated users.
    assert_eq!(user_pages, 5, "{reqs:#?}");
    assert!(reqs.iter().any(|r| r.contains("after=00u2")), "{reqs:#?}");
    assert!(reqs.iter().any(|r| r.contains("filter=status eq \"DEPROVISIONED\"")), "{reqs:#?}");
    let member_pages = reqs.iter().filter(|r| r.starts_with("/api/v1/groups/00g1/users")).count();
    assert_eq!(member_pages, 3, "5 members in pages of 2");
    // The process-wide counters the daemon exports include this read's requests.
    let (local, global) = (src.http_stats(), idsync::source::http::http_stats());
    assert_eq!(local.requests_by_code.get("200"), Some(&(reqs.len() as u64)));
    for (code, n) in &local.requests_by_code {
        assert!(global.requests_by_code.get(code).is_some_and(|g| g >= n), "{code}: {global:?}");
    }
    let auths: Vec<String> = fake.state.lock().unwrap().log.iter().map(|l| l.1.clone()).collect();
    assert!(auths.iter().all(|a| a == &format!("SSWS {OKTA_TOKEN}")));
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_throttling_is_honoured_and_bounded() {
    let mut world = okta_world();
    world.throttle = 2;
    let fake = OktaFake::start(world).await;
    let src = OktaSource::new(&fake.url(), Secret::new(OKTA_TOKEN), 200, Duration::from_secs(5))
        .unwrap()
        .with_retries(5, fast());
    let t = Instant::now();
    let dir = src.read().await.unwrap();
    assert_eq!(dir.people.len(), 7);
    let stats = src.http_stats();
    assert_eq!(stats.requests_by_code.get("429"), Some(&2));
    assert_eq!(stats.retries, 2);
    // X-Rate-Limit-Reset is one second ahead (whole seconds): the wait honours it.
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());

    let mut world = okta_world();
    world.throttle = usize::MAX;
    let fake = OktaFake::start(world).await;
    let src = OktaSource::new(&fake.url(), Secret::new(OKTA_TOKEN), 200, Duration::from_secs(5))
        .unwrap()
        .with_retries(2, fast());
    let t = Instant::now();
    let e = src.read().await.unwrap_err().to_string();
    assert!(e.contains("3 attempts") && e.contains("429") && e.contains("rate limit"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Three lists start at once, each tried at most 3 times.
    let n = fake.requests().len();
    assert!((3..=9).contains(&n), "{n} requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_next_links_to_another_origin_are_refused() {
    // Another Okta-shaped server on another port: a different origin.
    let elsewhere = OktaFake::start(okta_world()).await;
    let mut world = okta_world();
    world.link_origin = Some(elsewhere.url());
    let fake = OktaFake::start(world).await;
    let src = OktaSource::new(&fake.url(), Secret::new(OKTA_TOKEN), 2, Duration::from_secs(5)).unwrap();
    let e = src.read().await.unwrap_err().to_string();
    assert!(e.contains("another origin") && e.contains(&elsewhere.url()), "{e}");
    assert!(elsewhere.requests().is_empty(), "the token never followed the link");
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_next_link_repeating_is_a_paging_loop_error() {
    let mut world = okta_world();
    world.repeat_next = true;
    let fake = OktaFake::start(world).await;
    let src = OktaSource::new(&fake.url(), Secret::new(OKTA_TOKEN), 2, Duration::from_secs(5)).unwrap();
    let e = src.read().await.unwrap_err().to_string();
    assert!(e.contains("a paging loop") && e.contains("Okta at"), "{e}");
    assert!(fake.requests().len() < 20, "stopped at once: {:?}", fake.requests());
}

async fn okta_fixture(org_users: &[SeedUser<'_>]) -> (OktaFake, Fixture) {
    let fake = OktaFake::start(okta_world()).await;
    let f = Fixture::start(Setup {
        org: org(org_users, &["ml"]),
        tables: POLICY_TABLES,
        ..Setup::default()
    })
    .await;
    f.set_source(&okta_block(&fake));
    f.write_secret("okta-token", OKTA_TOKEN);
    (fake, f)
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_plan_and_apply_into_the_sandbox() {
    let (_fake, f) = okta_fixture(&[
        ("root@example.com", "admin", &[]),
        ("dave@example.com", "member", &[("ml", "member")]),
        ("erin@example.com", "member", &[]),
        ("frank@example.com", "member", &[]),
    ])
    .await;
    let plan = f.run(&["plan", "--format", "json", "--out", "plan.json"]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let p = plan_json(&f, "plan.json");
    assert_eq!(p["source"]["kind"], "okta");
    assert_eq!(p["source"]["users"], 7);
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let users = f.users().await;
    for e in ["alice", "bob", "carol"] {
        assert_eq!(users[&format!("{e}@example.com")]["teams"]["ml"], "member", "{e}: {users:#?}");
    }
    assert!(users.contains_key("gina@example.com"), "RECOVERY is enabled");
    assert!(!users.contains_key("dave@example.com"), "SUSPENDED is deprovisioned");
    assert!(!users.contains_key("erin@example.com"), "DEPROVISIONED is deprovisioned");
    assert!(
        !users.contains_key("frank@example.com"),
        "STAGED is skipped, so its W&B user counts as missing (grace_period is 0s here)"
    );
    let again = f.run(&["plan"]).await;
    assert_eq!(code(&again), 0, "converged:\n{}", text(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_page_failing_midway_fails_the_run_and_changes_nothing() {
    let (fake, f) = okta_fixture(&[
        ("root@example.com", "admin", &[]),
        ("old1@example.com", "member", &[("ml", "member")]),
        ("old2@example.com", "member", &[]),
    ])
    .await;
    fake.state.lock().unwrap().fail = Some(Fail {
        path: "/api/v1/users".into(),
        nth: 2,
        status: 500,
    });
    let before = f.state().await;
    let plan = f.run(&["plan"]).await;
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    let t = text(&plan);
    assert!(
        t.contains("Okta at http://127.0.0.1") && t.contains("GET /api/v1/users") && t.contains("500"),
        "{t}"
    );
    assert!(t.contains("Nothing was changed in W&B"), "{t}");
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert_eq!(f.state().await["users"], before["users"], "nothing removed or changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_bad_token_says_which_credential_and_secrets_never_show() {
    let (fake, f) = okta_fixture(&[("root@example.com", "admin", &[])]).await;
    let debug = [("RUST_LOG", "debug")];
    let ok = f.run_with_env(&["plan"], &debug).await;
    assert_eq!(code(&ok), 2, "{}", text(&ok));
    assert!(text(&ok).contains("source request"), "debug logging is on: {}", text(&ok));
    assert!(!text(&ok).contains(OKTA_TOKEN), "{}", text(&ok));

    fake.state.lock().unwrap().token = "a-different-token".into();
    let bad = f.run_with_env(&["plan"], &debug).await;
    assert_eq!(code(&bad), 1, "{}", text(&bad));
    let t = text(&bad);
    assert!(
        t.contains("401") && t.contains("Invalid token provided") && t.contains("source.token_file"),
        "{t}"
    );
    assert!(!t.contains(OKTA_TOKEN), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_check_config_connect_reports_the_directory() {
    let (fake, f) = okta_fixture(&[("root@example.com", "admin", &[])]).await;
    let out = f.run(&["check-config", "--connect"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("source: okta") && t.contains(&format!("Okta org {}", fake.url())), "{t}");
    assert!(t.contains("directory: read OK: 7 people, 3 groups"), "{t}");
    assert!(t.contains("team ml (member): ml: 4 members"), "{t}");
    assert!(t.contains("org_roles (admin): wandb-admins: 1 members"), "{t}");
}

// ------------------------------------------------------------------------------ Entra

const TENANT: &str = "contoso";
const CLIENT: &str = "app-3c1e";

fn entra_world() -> entra_fake::EntraState {
    use entra_fake::user;
    let mut nomail = user("u5", "nomail@example.com", true);
    nomail["mail"] = Value::Null;
    let users = vec![
        user("u1", "alice@example.com", true),
        user("u2", "bob@example.com", true),
        user("u3", "carol@example.com", false),
        user("u4", "root@example.com", true),
        nomail,
    ];
    let m = |t: &str, id: &str| (format!("#microsoft.graph.{t}"), id.to_string());
    let groups = vec![
        ("g1".into(), "ml".into(), vec![m("user", "u1"), m("group", "g2"), m("device", "d1")]),
        ("g2".into(), "ml-inner".into(), vec![m("user", "u2"), m("group", "g1")]),
        ("g3".into(), "wandb-admins".into(), vec![m("user", "u4")]),
    ];
    entra_fake::state(TENANT, CLIENT, ENTRA_SECRET, users, groups)
}

fn entra_source(fake: &EntraFake, page_size: u32, secret: &str) -> EntraSource {
    EntraSource::new(EntraSettings {
        tenant_id: TENANT,
        client_id: CLIENT,
        client_secret: Secret::new(secret),
        authority: &fake.url(),
        graph_url: &fake.url(),
        page_size,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
    .with_retries(5, fast())
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_reads_pages_and_transitive_user_members() {
    let fake = EntraFake::start(entra_world()).await;
    let src = entra_source(&fake, 2, ENTRA_SECRET);
    let dir = src.read().await.unwrap();
    assert_eq!(dir.kind, "entra");
    assert_eq!(dir.people.len(), 5);
    let carol = dir.people.iter().find(|p| p.anchor == "u3").unwrap();
    assert!(!carol.enabled, "accountEnabled false is disabled");
    let nomail = dir.people.iter().find(|p| p.anchor == "u5").unwrap();
    assert_eq!(nomail.email, None, "no mail: skipped by the plan, never guessed from the UPN");
    let ml = dir.groups.iter().find(|g| g.name == "ml").unwrap();
    assert_eq!(ml.members, vec!["u1", "u2"], "users only, through nesting; the device is dropped");
    assert_eq!(fake.token_requests(), 1, "one token serves the whole read");
    let log = fake.state.lock().unwrap().log.clone();
    assert_eq!(log.iter().filter(|l| l.starts_with("/v1.0/users?")).count(), 3, "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("$select=id,userPrincipalName,mail,displayName,accountEnabled")),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l.contains("$skiptoken=")), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_renews_the_token_before_it_expires() {
    let mut world = entra_world();
    world.token_lifetime_secs = 2;
    world.latency = Duration::from_millis(250);
    let fake = EntraFake::start(world).await;
    let src = entra_source(&fake, 1, ENTRA_SECRET).with_token_lifetime_floor(Duration::from_secs(1));
    let dir = src.read().await.unwrap();
    assert_eq!(dir.people.len(), 5);
    assert!(fake.token_requests() >= 2, "renewed: {}", fake.token_requests());
    assert_eq!(
        src.http_stats().requests_by_code.get("401"),
        None,
        "renewed before Graph refused it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_renews_the_token_once_on_a_401() {
    let mut world = entra_world();
    world.token_max_uses = Some(4);
    let fake = EntraFake::start(world).await;
    let src = entra_source(&fake, 2, ENTRA_SECRET);
    let dir = src.read().await.unwrap();
    assert_eq!(dir.people.len(), 5);
    let renewals = fake.token_requests() as u64 - 1;
    let refused = *src.http_stats().requests_by_code.get("401").unwrap_or(&0);
    // Concurrent requests refused with the same token share one renewal.
    assert!(renewals >= 1 && refused >= renewals, "renewals {renewals}, 401s {refused}");

    // A token Graph never accepts: one renewal, then a clear error.
    let mut world = entra_world();
    world.token_max_uses = Some(0);
    let fake = EntraFake::start(world).await;
    let src = entra_source(&fake, 2, ENTRA_SECRET);
    let e = src.read().await.unwrap_err().to_string();
    assert_eq!(fake.token_requests(), 2);
    assert!(
        e.contains("Microsoft Graph") && e.contains("401") && e.contains("expired") && e.contains("source.client_secret_file"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_throttling_honours_retry_after() {
    let mut world = entra_world();
    world.throttle = 1;
    let fake = EntraFake::start(world).await;
    let src = entra_source(&fake, 999, ENTRA_SECRET);
    let t = Instant::now();
    src.read().await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "Retry-After: 1 honoured: {:?}", t.elapsed());
    let s = src.http_stats();
    assert_eq!((s.requests_by_code.get("429"), s.retries), (Some(&1), 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_wrong_secret_or_tenant_is_a_credential_error() {
    let fake = EntraFake::start(entra_world()).await;
    let e = entra_source(&fake, 2, "not-the-secret").read().await.unwrap_err().to_string();
    assert!(
        e.contains("AADSTS7000215") && e.contains("token endpoint") && e.contains("source.client_secret_file"),
        "{e}"
    );
    assert!(!e.contains("not-the-secret"), "{e}");
    assert_eq!(fake.state.lock().unwrap().log.len(), 0, "Graph never called without a token");
}

fn entra_block(fake: &EntraFake) -> String {
    format!(
        "[source]\nkind = \"entra\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret_file = \"entra-secret\"\nauthority = \"{u}\"\ngraph_url = \"{u}\"\npage_size = 2\n",
        u = fake.url()
    )
}

async fn entra_fixture(org_users: &[SeedUser<'_>]) -> (EntraFake, Fixture) {
    let fake = EntraFake::start(entra_world()).await;
    let f = Fixture::start(Setup {
        org: org(org_users, &["ml"]),
        tables: POLICY_TABLES,
        ..Setup::default()
    })
    .await;
    f.set_source(&entra_block(&fake));
    f.write_secret("entra-secret", ENTRA_SECRET);
    (fake, f)
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_plan_and_apply_into_the_sandbox_without_leaking_secrets() {
    let (fake, f) = entra_fixture(&[
        ("root@example.com", "admin", &[]),
        ("carol@example.com", "member", &[("ml", "member")]),
    ])
    .await;
    let plan = f.run_with_env(&["plan"], &[("RUST_LOG", "debug")]).await;
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let apply = f.run_with_env(&["apply", "--yes"], &[("RUST_LOG", "debug")]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let users = f.users().await;
    assert_eq!(users["alice@example.com"]["teams"]["ml"], "member");
    assert_eq!(users["bob@example.com"]["teams"]["ml"], "member", "nested group member");
    assert!(!users.contains_key("carol@example.com"), "accountEnabled false: deprovisioned");
    assert!(!users.contains_key("nomail@example.com"));
    let tokens = fake.issued_tokens();
    assert!(!tokens.is_empty());
    for out in [&plan, &apply] {
        let t = text(out);
        assert!(t.contains("source request"), "debug logging is on");
        assert!(!t.contains(ENTRA_SECRET), "{t}");
        for tok in &tokens {
            assert!(!t.contains(tok.as_str()), "access token in output: {t}");
        }
    }
    let again = f.run(&["plan"]).await;
    assert_eq!(code(&again), 0, "converged:\n{}", text(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_page_failing_midway_fails_the_run_and_changes_nothing() {
    let (fake, f) = entra_fixture(&[
        ("root@example.com", "admin", &[]),
        ("old1@example.com", "member", &[("ml", "member")]),
    ])
    .await;
    fake.state.lock().unwrap().fail = Some(Fail {
        path: "/v1.0/groups/g1/transitiveMembers".into(),
        nth: 2,
        status: 503,
    });
    let before = f.state().await;
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    let t = text(&apply);
    assert!(
        t.contains("Microsoft Graph") && t.contains("transitiveMembers") && t.contains("503"),
        "{t}"
    );
    assert_eq!(f.state().await["users"], before["users"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_wrong_secret_fails_plan_with_a_clear_message() {
    let (_fake, f) = entra_fixture(&[("root@example.com", "admin", &[])]).await;
    f.write_secret("entra-secret", "wrong-secret-value-9");
    let out = f.run_with_env(&["plan"], &[("RUST_LOG", "debug")]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("AADSTS7000215") && t.contains("source.client_secret_file"), "{t}");
    assert!(!t.contains("wrong-secret-value-9"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_user_member_without_an_id_is_malformed_not_dropped() {
    let mut world = entra_world();
    world.groups[2].2.push(("#microsoft.graph.user".into(), String::new()));
    let fake = EntraFake::start(world).await;
    let e = entra_source(&fake, 10, ENTRA_SECRET).read().await.unwrap_err().to_string();
    assert!(
        e.contains("transitiveMembers (members of wandb-admins)") && e.contains("a user member has no id"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_next_link_repeating_is_a_paging_loop_error() {
    let mut world = entra_world();
    world.repeat_next = true;
    let fake = EntraFake::start(world).await;
    let e = entra_source(&fake, 2, ENTRA_SECRET).read().await.unwrap_err().to_string();
    assert!(e.contains("@odata.nextLink points to a page already read (a paging loop)"), "{e}");
    assert!(fake.state.lock().unwrap().log.len() < 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_next_links_to_another_origin_are_refused_and_get_no_token() {
    let elsewhere = EntraFake::start(entra_world()).await;
    let mut world = entra_world();
    world.link_origin = Some(elsewhere.url());
    let fake = EntraFake::start(world).await;
    let e = entra_source(&fake, 2, ENTRA_SECRET).read().await.unwrap_err().to_string();
    assert!(
        e.contains("@odata.nextLink leads to another origin") && e.contains(&elsewhere.url()) && e.contains("source.graph_url"),
        "{e}"
    );
    assert!(elsewhere.state.lock().unwrap().log.is_empty(), "the token never followed the link");
    assert_eq!(elsewhere.token_requests(), 0);
}
