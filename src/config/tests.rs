//! Loading, errors, validation, secrets and policy conversion, end to end through text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::KNOWN_KEYS;
use super::*;
use crate::model::{Email, OrgRole, TeamRole};
use crate::plan::{Deployment, DeprovisionMode, TeamMembershipMode};

const SOURCE: &str = "[source]\nkind = \"ldif\"\npath = \"directory.ldif\"\n";
const TARGET: &str = "[target]\napi_key_env = \"IDSYNC_TEST_KEY\"\n";
const POLICY: &str = "[policy]\nmanaged_domains = [\"example.com\"]\n";

fn no_env(_: &str) -> Option<String> {
    None
}

fn origin() -> &'static Path {
    Path::new("/cfg/idsync.toml")
}

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    parse_with(text, origin(), &no_env)
}

fn config(source: &str, target: &str, policy: &str, rest: &str) -> String {
    format!("{source}\n{target}\n{policy}\n{rest}")
}

/// The error message for a config that must fail.
fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config should have been rejected:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

// ---------------------------------------------------------------- the example file

#[test]
fn the_example_config_loads_without_edits() {
    let loaded = load(&example_path()).unwrap_or_else(|e| panic!("config.example.toml must load: {e}"));
    // Git does not keep mode 0600, so the only acceptable warning is about that.
    for w in &loaded.warnings {
        assert!(w.contains("readable by every user"), "unexpected warning: {w}");
    }
    let c = &loaded.config;
    assert_eq!(c.source.kind, SourceKind::Ldif);
    assert_eq!(c.target.url, "http://127.0.0.1:8089");
    let key = c.target_api_key(&loaded.base_dir()).unwrap();
    assert_eq!(key.expose(), "sandbox-admin-key");
    let inventory = c
        .load_inventory(&loaded.base_dir())
        .unwrap()
        .expect("the example names an inventory");
    let policy = c.policy(Some(&inventory)).unwrap();
    assert_eq!(policy.managed_domains, vec!["example.com"]);
    assert!(policy.guards.pipeline_owners.iter().any(|o| o.team.is_some()));
    assert!(policy.guards.pipeline_owners.iter().any(|o| o.team.is_none()));
}

/// Collects `table -> keys` from a serialised config (nulls included, so optional keys
/// that the example leaves unset still count).
fn tables_of(v: &serde_json::Value, table: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let Some(obj) = v.as_object() else { return };
    for (k, child) in obj {
        out.entry(table.to_string()).or_default().insert(k.clone());
        let path = if table.is_empty() { k.clone() } else { format!("{table}.{k}") };
        match child {
            serde_json::Value::Object(_) => tables_of(child, &path, out),
            serde_json::Value::Array(items) if items.iter().all(|i| i.is_object()) && !items.is_empty() => {
                for i in items {
                    tables_of(i, &path, out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn the_example_config_shows_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let mut loaded = load(&example_path()).unwrap();
    // [notify] is shown commented out (posting from the example would need a webhook):
    // its keys are checked through a section with every key set.
    assert!(loaded.config.notify.is_none() && text.contains("# [notify]"));
    loaded.config.notify = Some(NotifyConfig {
        webhook_url_file: Some("webhook-url".into()),
        webhook_url_env: None,
        format: NotifyFormat::Slack,
        on: vec![NotifyOn::Held],
    });
    let json = serde_json::to_value(&loaded.config).unwrap();
    let mut tables = BTreeMap::new();
    tables_of(&json, "", &mut tables);
    for (table, keys) in &tables {
        for key in keys {
            let path = if table.is_empty() { key.clone() } else { format!("{table}.{key}") };
            let shown = text.contains(&format!("{key} =")) || text.contains(&format!("[{path}]")) || text.contains(&format!("[[{path}]]"));
            assert!(shown, "config.example.toml does not show {path}");
        }
    }
    // The suggestion table in error.rs must agree with the structs.
    let known: BTreeMap<String, BTreeSet<String>> = KNOWN_KEYS
        .iter()
        .map(|(t, ks)| (t.to_string(), ks.iter().map(|k| k.to_string()).collect()))
        .collect();
    assert_eq!(known, tables);
}

#[test]
fn notify_defaults_to_slack_on_every_event_and_its_url_is_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("idsync.toml");
    std::fs::write(dir.path().join("hook"), "https://hooks.slack.com/services/T0/B0/SECRETTOKEN\n").unwrap();
    let with = |notify: &str| config(SOURCE, TARGET, POLICY, "") + notify;
    let c = parse_with(&with("[notify]\nwebhook_url_file = \"hook\"\n"), &origin, &|_| None)
        .unwrap()
        .config;
    let n = c.notify.as_ref().unwrap();
    assert_eq!(n.format, NotifyFormat::Slack);
    assert_eq!(n.on, vec![NotifyOn::Held, NotifyOn::Failed, NotifyOn::Applied]);
    let url = c.notify_webhook_url(dir.path()).unwrap().unwrap();
    assert_eq!(url.expose(), "https://hooks.slack.com/services/T0/B0/SECRETTOKEN");
    assert!(!format!("{url:?} {url}").contains("SECRETTOKEN"));
    assert!(config_without_notify().notify_webhook_url(dir.path()).unwrap().is_none());

    // Problems are located and never echo the URL.
    std::fs::write(dir.path().join("plain"), "http://hooks.example.com/SECRETTOKEN\n").unwrap();
    for (notify, says) in [
        ("[notify]\nformat = \"slack\"\n", "webhook_url_file"),
        ("[notify]\nwebhook_url_file = \"plain\"\n", "https://"),
        ("[notify]\nwebhook_url_file = \"hook\"\non = []\n", "nothing would ever be sent"),
        ("[notify]\nwebhook_url_file = \"hook\"\non = [\"sometimes\"]\n", "on"),
        ("[notify]\nwebhook_url_file = \"hook\"\nformat = \"teams\"\n", "format"),
        ("[notify]\nwebhook_url = \"https://x\"\n", "webhook_url_file"),
    ] {
        let e = parse_with(&with(notify), &origin, &|_| None).unwrap_err().to_string();
        assert!(e.contains(says), "{notify}: {e}");
        assert!(e.contains("idsync.toml:"), "located: {e}");
        assert!(!e.contains("SECRETTOKEN"), "{e}");
    }
}

#[test]
fn the_postgres_state_needs_its_url_a_secret_and_ha_needs_postgres_and_a_long_enough_lease() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("idsync.toml");
    std::fs::write(dir.path().join("pg"), "postgresql://idsync:SECRETPW@db/idsync\n").unwrap();
    let with = |extra: &str| config(SOURCE, TARGET, POLICY, "") + extra;
    let c = parse_with(&with("[state]\nbackend = \"postgres\"\nurl_file = \"pg\"\n"), &origin, &|_| None)
        .unwrap()
        .config;
    assert_eq!(c.state.backend, StateBackendKind::Postgres);
    assert_eq!(
        c.state_url(dir.path()).unwrap().unwrap().expose(),
        "postgresql://idsync:SECRETPW@db/idsync"
    );
    assert!(
        config_without_notify().state_url(dir.path()).unwrap().is_none(),
        "SQLite needs no URL"
    );
    assert_eq!(config_without_notify().state.backend, StateBackendKind::Sqlite, "the default");
    for (extra, says) in [
        ("[state]\nbackend = \"postgres\"\n", "url_file"),
        ("[state]\nbackend = \"postgres\"\nurl_file = \"pg\"\nurl_env = \"PG\"\n", "keep one"),
        ("[state]\nurl_file = \"pg\"\n", "backend = \"postgres\" only"),
        ("[state]\nbackend = \"mysql\"\n", "backend"),
        ("[state]\nurl = \"postgresql://x:SECRETPW@db/idsync\"\n", "url_file"),
        ("[ha]\nenabled = true\n", "needs [state] backend = \"postgres\""),
        (
            // The default target.timeout (30s) needs a lease of at least 62s.
            "[state]\nbackend = \"postgres\"\nurl_file = \"pg\"\n[ha]\nenabled = true\n",
            "at least twice target.timeout + 1s (62s)",
        ),
        ("[ha]\nlease_ttl = \"1s\"\n", "lease_ttl"),
    ] {
        let e = parse_with(&with(extra), &origin, &|_| None).unwrap_err().to_string();
        assert!(e.contains(says), "{extra}: {e}");
        assert!(e.contains("idsync.toml:"), "located: {e}");
        assert!(!e.contains("SECRETPW"), "{e}");
    }
    // HA on PostgreSQL with a lease that outlasts a request between renewals loads.
    let target = "[target]\napi_key_env = \"IDSYNC_TEST_KEY\"\ntimeout = \"10s\"\n";
    let ha = config(SOURCE, target, POLICY, "")
        + "[state]\nbackend = \"postgres\"\nurl_file = \"pg\"\n[ha]\nenabled = true\nlease_ttl = \"30s\"\nnode_name = \"node-a\"\n";
    let c = parse_with(&ha, &origin, &|_| None).unwrap().config;
    assert!(c.ha.enabled);
    assert_eq!(c.ha.node_name, "node-a");
}

fn config_without_notify() -> Config {
    parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config
}

#[test]
fn the_example_pipeline_inventory_shows_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let inv = parse_inventory(&text, &path).unwrap();
    assert!(!inv.pipeline.is_empty());
    for key in ["owner =", "team =", "name ="] {
        assert!(text.contains(key), "{key}");
    }
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_match_the_spec() {
    let c = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config;
    let s = &c.source;
    assert_eq!(s.timeout, HumanDuration::from_secs(30));
    assert_eq!(s.page_size, 500);
    assert_eq!(s.dialect, LdapDialect::Openldap);
    assert!(!s.start_tls);
    assert_eq!(s.users.filter, "(objectClass=inetOrgPerson)");
    assert_eq!(s.users.email_attr, "mail");
    assert_eq!(s.users.username_attr, "uid");
    assert_eq!(s.users.name_attr, "cn");
    assert_eq!(s.users.anchor_attr, "entryUUID");
    assert_eq!(s.groups.filter, "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))");
    assert_eq!(s.groups.member_attr, "member");
    assert_eq!(s.groups.name_attr, "cn");
    assert!(s.groups.nested);

    let t = &c.target;
    assert_eq!(t.kind, TargetKind::Wandb);
    assert_eq!(t.url, "https://api.wandb.ai");
    assert_eq!(t.scim_path, "/scim");
    assert_eq!(t.deployment, Deployment::Saas);
    assert_eq!(t.server_version, None);
    assert_eq!(t.username, "");
    assert_eq!(t.auth, TargetAuth::Basic);
    assert_eq!(t.timeout, HumanDuration::from_secs(30));
    assert_eq!(t.max_concurrency, 4);
    assert_eq!(t.max_retries, 6);

    let p = &c.policy;
    assert!(p.ignore_users.is_empty());
    assert!(p.auto_add);
    assert_eq!(p.auto_add_group, None);
    assert_eq!(p.default_org_role, "member");
    assert_eq!(p.deprovision, DeprovisionMode::Deactivate);
    assert_eq!(p.grace_period, HumanDuration::from_secs(72 * 3600));
    assert_eq!(p.disabled_grace_period, HumanDuration::from_secs(0));
    assert_eq!(p.team_membership, TeamMembershipMode::Authoritative);

    let g = &c.guards;
    assert_eq!(
        (
            g.min_org_admins,
            g.min_team_admins,
            g.max_deprovisions,
            g.max_deprovision_percent,
            g.max_team_removals,
            g.max_source_shrink_percent,
            g.max_seats
        ),
        (1, 1, 10, 5, 50, 10, 0)
    );
    assert_eq!(g.approval_ttl, HumanDuration::from_secs(24 * 3600));
    assert_eq!(g.source_health_window, HumanDuration::from_secs(7 * 86_400));
    assert_eq!(g.pipeline_inventory, None);

    assert_eq!(c.daemon.schedule, "0 */15 * * * *");
    assert!(c.daemon.run_on_start);
    assert_eq!(c.daemon.listen, "127.0.0.1:9464");
    assert_eq!(c.daemon.state_dir, "/var/lib/idsync");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");

    // A team mapping's role defaults to member and create to false.
    let rest = "[[policy.teams]]\nteam = \"t\"\ngroup = \"g\"\n";
    let c = parse(&config(SOURCE, TARGET, POLICY, rest)).unwrap().config;
    assert_eq!((c.policy.teams[0].role.as_str(), c.policy.teams[0].create), ("member", false));
}

#[test]
fn default_path_prefers_a_non_empty_idsync_config() {
    assert_eq!(default_path_from(None), PathBuf::from("/etc/idsync/idsync.toml"));
    assert_eq!(default_path_from(Some("".into())), PathBuf::from("/etc/idsync/idsync.toml"));
    assert_eq!(default_path_from(Some("/tmp/x.toml".into())), PathBuf::from("/tmp/x.toml"));
}

// ---------------------------------------------------------------- parse errors

#[test]
fn a_missing_file_says_how_to_choose_another() {
    let e = load(Path::new("/nonexistent/idsync.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { .. }));
    let m = e.to_string();
    assert!(m.contains("/nonexistent/idsync.toml"), "{m}");
    assert!(m.contains("-c") && m.contains("$IDSYNC_CONFIG"), "{m}");
}

#[test]
fn an_unknown_key_names_file_line_table_and_nearest_key() {
    let text =
        "[source]\nkind = \"ldif\"\npath = \"d.ldif\"\n\n[target]\napi_key_env = \"K\"\n\n[policy]\nmanaged_domain = [\"example.com\"]\n";
    let m = err(text);
    assert_eq!(
        m,
        "/cfg/idsync.toml:9:1: unknown key \"managed_domain\" in [policy]; did you mean \"managed_domains\"?"
    );
}

#[test]
fn unknown_keys_in_nested_and_array_tables_name_them() {
    let m = err(&config(
        SOURCE,
        TARGET,
        POLICY,
        "[[policy.teams]]\nteam = \"t\"\ngroup = \"g\"\ncreat = true\n",
    ));
    assert!(m.contains("in [[policy.teams]] #1; did you mean \"create\"?"), "{m}");
    let m = err(&config(
        &format!("{SOURCE}[source.users]\nemail_atr = \"mail\"\n"),
        TARGET,
        POLICY,
        "",
    ));
    assert!(
        m.contains("/cfg/idsync.toml:5:1: unknown key \"email_atr\" in [source.users]; did you mean \"email_attr\"?"),
        "{m}"
    );
    let m = err(&config(SOURCE, TARGET, POLICY, "[gaurds]\nmax_seats = 3\n"));
    assert!(
        m.contains("unknown key \"gaurds\" in the top level; did you mean \"guards\"?"),
        "{m}"
    );
}

#[test]
fn a_key_in_the_wrong_table_says_where_it_belongs() {
    let m = err(&config(SOURCE, TARGET, &format!("{POLICY}max_seats = 5\n"), ""));
    assert!(
        m.contains("unknown key \"max_seats\" in [policy]; \"max_seats\" belongs in [guards]"),
        "{m}"
    );
}

#[test]
fn an_inline_secret_is_refused_without_echoing_it() {
    let m = err(&config(SOURCE, "[target]\napi_key = \"hunter2-secret\"\n", POLICY, ""));
    assert!(m.contains("api_key_file") && m.contains("api_key_env"), "{m}");
    assert!(!m.contains("hunter2"), "{m}");
    let m = err(&config(
        SOURCE,
        "[target]\napi_key_env = \"K\"\napi_key_file = \"hunter2-secret\n",
        POLICY,
        "",
    ));
    assert!(!m.contains("hunter2"), "a syntax error must not quote the line: {m}");
}

#[test]
fn an_invalid_enum_value_lists_the_allowed_ones() {
    let text = config("[source]\nkind = \"ldapp\"\n", TARGET, POLICY, "");
    let m = err(&text);
    assert!(m.starts_with("/cfg/idsync.toml:2:8: [source] kind: invalid value \"ldapp\""), "{m}");
    assert!(m.contains("\"ldap\", \"scim\", \"okta\", \"entra\", \"ldif\""), "{m}");
    assert!(m.contains("did you mean \"ldap\"?"), "{m}");
    let m = err(&config(SOURCE, TARGET, &format!("{POLICY}deprovision = \"remove\"\n"), ""));
    assert!(
        m.contains("[policy] deprovision: invalid value \"remove\"; allowed values: \"deactivate\", \"delete\", \"off\""),
        "{m}"
    );
}

#[test]
fn a_missing_required_key_or_table_is_named() {
    let m = err(&config(SOURCE, TARGET, "[policy]\nauto_add = true\n", ""));
    let line = line_of(&config(SOURCE, TARGET, "[policy]\nauto_add = true\n", ""), "[policy]");
    assert!(
        m.contains(&format!(":{line}:1: [policy] is missing the required key \"managed_domains\"")),
        "{m}"
    );
    let m = err(&config(SOURCE, POLICY, "", ""));
    assert!(m.contains("the required table [target] is missing"), "{m}");
    let m = err(&config(SOURCE, TARGET, POLICY, "[[policy.teams]]\nteam = \"t\"\n"));
    assert!(m.contains("[[policy.teams]] #1 is missing the required key \"group\""), "{m}");
}

#[test]
fn wrong_types_and_bad_durations_name_the_key_and_line() {
    let text = config(SOURCE, &format!("{TARGET}max_concurrency = \"four\"\n"), POLICY, "");
    let m = err(&text);
    let line = line_of(&text, "max_concurrency");
    assert!(
        m.starts_with(&format!(
            "/cfg/idsync.toml:{line}:19: [target] max_concurrency: expected a whole number (0 or more), but found the text \"four\""
        )),
        "{m}"
    );
    let m = err(&config(SOURCE, TARGET, &format!("{POLICY}grace_period = \"3 days\"\n"), ""));
    assert!(m.contains("[policy] grace_period: invalid duration \"3 days\""), "{m}");
}

#[test]
fn durations_past_a_century_are_config_errors_with_their_line() {
    for (table, key) in [
        ("guards", "approval_ttl"),
        ("guards", "source_health_window"),
        ("policy", "grace_period"),
        ("target", "timeout"),
    ] {
        let line = format!("{key} = \"99999999999d\"\n");
        let text = match table {
            "guards" => config(SOURCE, TARGET, POLICY, &format!("[guards]\n{line}")),
            "policy" => config(SOURCE, TARGET, &format!("{POLICY}{line}"), ""),
            _ => config(SOURCE, &format!("{TARGET}{line}"), POLICY, ""),
        };
        let m = err(&text);
        let at = line_of(&text, key);
        assert!(m.contains(&format!("/cfg/idsync.toml:{at}:")), "{key}: {m}");
        assert!(
            m.contains(&format!("[{table}] {key}: invalid duration")) && m.contains("too large"),
            "{key}: {m}"
        );
    }
}

#[test]
fn toml_syntax_errors_are_located() {
    let m = err("[source\nkind = \"ldif\"\n");
    assert!(m.starts_with("/cfg/idsync.toml:1:"), "{m}");
}

// ---------------------------------------------------------------- validation

/// Asserts that `text` fails with a problem on `needle`'s line mentioning every `parts`.
fn assert_problem(text: &str, needle: &str, parts: &[&str]) {
    let m = err(text);
    let line = line_of(text, needle);
    let found = m
        .lines()
        .any(|l| l.contains(&format!("/cfg/idsync.toml:{line}:")) && parts.iter().all(|p| l.contains(p)));
    assert!(found, "expected a problem on line {line} ({needle}) with {parts:?}, got:\n{m}");
}

#[test]
fn managed_domains_must_be_set_and_not_public() {
    assert_problem(
        &config(SOURCE, TARGET, "[policy]\nmanaged_domains = []\n", ""),
        "managed_domains",
        &["[policy] managed_domains", "is empty"],
    );
    assert_problem(
        &config(SOURCE, TARGET, "[policy]\nmanaged_domains = [\"example.com\", \"Gmail.com\"]\n", ""),
        "managed_domains",
        &["[policy] managed_domains", "\"gmail.com\" is a public mail provider"],
    );
    for d in [
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "yahoo.com",
        "icloud.com",
        "proton.me",
        "qq.com",
        "163.com",
        "mail.ru",
    ] {
        let m = err(&config(SOURCE, TARGET, &format!("[policy]\nmanaged_domains = [\"{d}\"]\n"), ""));
        assert!(m.contains("public mail provider"), "{d}: {m}");
    }
}

#[test]
fn org_roles_must_be_admin_or_member_and_viewer_is_explained() {
    assert_problem(
        &config(SOURCE, TARGET, &format!("{POLICY}default_org_role = \"viewer\"\n"), ""),
        "default_org_role",
        &["[policy] default_org_role", "deprecated by W&B"],
    );
    let rest = "[[policy.org_roles]]\ngroup = \"cn=a\"\nrole = \"admin\"\n\n[[policy.org_roles]]\ngroup = \"cn=b\"\nrole = \"viewer\"\n";
    assert_problem(
        &config(SOURCE, TARGET, POLICY, rest),
        "\"viewer\"",
        &["[[policy.org_roles]] #2 role", "deprecated by W&B"],
    );
    let rest = "[[policy.org_roles]]\ngroup = \"cn=a\"\nrole = \"owner\"\n";
    assert_problem(
        &config(SOURCE, TARGET, POLICY, rest),
        "owner",
        &["invalid org role \"owner\"", "\"admin\", \"member\""],
    );
}

#[test]
fn a_team_mapped_twice_with_conflicting_create_is_an_error() {
    let rest = "[[policy.teams]]\nteam = \"ml\"\ngroup = \"cn=a\"\ncreate = true\n\n[[policy.teams]]\nteam = \"ml\"\ngroup = \"cn=b\"\nrole = \"admin\"\n";
    let text = config(SOURCE, TARGET, POLICY, rest);
    let m = err(&text);
    // The second mapping has no `create` line: the error points at its header.
    let header = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("[[policy.teams]]"))
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    assert!(
        m.contains(&format!(
            "/cfg/idsync.toml:{header}:1: [[policy.teams]] #2 create: team \"ml\" is mapped twice"
        )),
        "{m}"
    );
    // Same create on both: fine.
    let ok = rest.replace("role = \"admin\"", "role = \"admin\"\ncreate = true");
    assert!(parse(&config(SOURCE, TARGET, POLICY, &ok)).is_ok());
}

#[test]
fn each_source_kind_needs_its_keys() {
    let m = err(&config("[source]\nkind = \"ldap\"\n", TARGET, POLICY, ""));
    assert!(m.contains("[source] url: kind = \"ldap\" needs"), "{m}");
    assert!(m.contains("[source.users] base: kind = \"ldap\" needs"), "{m}");
    let m = err(&config("[source]\nkind = \"ldif\"\n", TARGET, POLICY, ""));
    assert!(m.contains("[source] path: kind = \"ldif\" needs"), "{m}");
    for kind in ["scim", "okta"] {
        let m = err(&config(&format!("[source]\nkind = \"{kind}\"\n"), TARGET, POLICY, ""));
        assert!(m.contains(&format!("[source] url: kind = \"{kind}\" needs")), "{m}");
        assert!(m.contains("[source] token_file: missing: set token_file"), "{m}");
    }
    let m = err(&config("[source]\nkind = \"entra\"\n", TARGET, POLICY, ""));
    assert!(m.contains("[source] tenant_id: kind = \"entra\" needs"), "{m}");
    assert!(m.contains("[source] client_id: kind = \"entra\" needs"), "{m}");
    assert!(m.contains("[source] client_secret_file: missing"), "{m}");
    // A complete entra source loads.
    let entra = "[source]\nkind = \"entra\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\n";
    assert!(parse(&config(entra, TARGET, POLICY, "")).is_ok());
}

#[test]
fn in_chain_is_only_for_active_directory() {
    let src = |dialect: &str| {
        format!(
            "[source]\nkind = \"ldap\"\nurl = \"ldaps://dc.corp.example\"\ndialect = \"{dialect}\"\n[source.users]\nbase = \"dc=corp,dc=example\"\n[source.groups]\nin_chain = true\n"
        )
    };
    let loaded = parse(&config(&src("active-directory"), TARGET, POLICY, "")).unwrap();
    assert!(loaded.config.source.groups.in_chain);
    assert_problem(
        &config(&src("openldap"), TARGET, POLICY, ""),
        "in_chain",
        &["[source.groups] in_chain", "only on Active Directory"],
    );
}

#[test]
fn ldap_urls_are_checked() {
    let users = "[source.users]\nbase = \"ou=people,dc=example,dc=com\"\n";
    let ldap = |extra: &str| format!("[source]\nkind = \"ldap\"\n{extra}\n{users}");
    assert_problem(
        &config(&ldap("url = \"https://ldap.example.com\""), TARGET, POLICY, ""),
        "url =",
        &["[source] url", "ldap:// or ldaps://"],
    );
    assert_problem(
        &config(&ldap("url = \"ldaps://ldap.example.com\"\nstart_tls = true"), TARGET, POLICY, ""),
        "start_tls",
        &["[source] start_tls", "TLS already"],
    );
    assert!(parse(&config(
        &ldap("url = \"ldap://ldap.example.com\"\nstart_tls = true"),
        TARGET,
        POLICY,
        ""
    ))
    .is_ok());
    // An anonymous bind needs no password; a password needs a bind_dn.
    assert!(parse(&config(&ldap("url = \"ldaps://ldap.example.com\""), TARGET, POLICY, "")).is_ok());
    assert_problem(
        &config(
            &ldap("url = \"ldaps://ldap.example.com\"\nbind_password_env = \"P\""),
            TARGET,
            POLICY,
            "",
        ),
        "bind_password_env",
        &["without bind_dn"],
    );
    assert_problem(
        &config(
            &ldap("url = \"ldaps://ldap.example.com\"\nbind_dn = \"cn=idsync\""),
            TARGET,
            POLICY,
            "",
        ),
        "[source]",
        &["[source] bind_password_file: missing"],
    );
}

#[test]
fn keys_of_another_source_kind_are_rejected() {
    let text = config(&format!("{SOURCE}token_env = \"T\"\nbind_dn = \"cn=x\"\n"), TARGET, POLICY, "");
    assert_problem(
        &text,
        "token_env",
        &["[source] token_env", "not used by kind = \"ldif\"", "scim, okta"],
    );
    assert_problem(&text, "bind_dn", &["[source] bind_dn", "not used by kind = \"ldif\""]);
    let scim = "[source]\nkind = \"scim\"\nurl = \"https://idp.example.com/scim/v2\"\ntoken_env = \"T\"\n[source.users]\nbase = \"x\"\n";
    assert_problem(
        &config(scim, TARGET, POLICY, ""),
        "[source.users]",
        &["[source] users", "not used by kind = \"scim\""],
    );
}

#[test]
fn an_immediate_removal_of_disabled_people_warns_where_it_cannot_be_undone() {
    let grace_warning = |source: &str, target: &str, policy: &str| -> Option<String> {
        let loaded = parse(&config(source, target, policy, "")).unwrap();
        loaded.warnings.into_iter().find(|w| w.contains("disabled_grace_period"))
    };
    let dedicated = "[target]\ndeployment = \"dedicated\"\napi_key_env = \"K\"\n";
    let w = grace_warning(SOURCE, TARGET, POLICY).expect("SaaS + OpenLDAP dialect + 0s warns");
    assert!(
        w.contains("[policy] disabled_grace_period") && w.contains("SaaS") && w.contains("pwdAccountLockedTime") && w.contains("\"24h\""),
        "{w}"
    );
    let delete = format!("{POLICY}deprovision = \"delete\"\n");
    let w = grace_warning(SOURCE, dedicated, &delete).expect("delete warns on any deployment");
    assert!(w.contains("deprovision = \"delete\""), "{w}");
    let okta = "[source]\nkind = \"okta\"\nurl = \"https://org.okta.com\"\ntoken_env = \"T\"\n";
    let w = grace_warning(okta, TARGET, POLICY).expect("Okta suspensions warn");
    assert!(w.contains("SUSPENDED"), "{w}");
    // Nothing to warn about: reversible, off, a grace period, or no temporary locks.
    assert_eq!(
        grace_warning(SOURCE, dedicated, POLICY),
        None,
        "deactivation is reversible on Dedicated"
    );
    assert_eq!(grace_warning(SOURCE, TARGET, &format!("{POLICY}deprovision = \"off\"\n")), None);
    assert_eq!(
        grace_warning(SOURCE, TARGET, &format!("{POLICY}disabled_grace_period = \"1h\"\n")),
        None
    );
    let ad = "[source]\nkind = \"ldif\"\npath = \"directory.ldif\"\ndialect = \"active-directory\"\n";
    assert_eq!(
        grace_warning(ad, TARGET, POLICY),
        None,
        "AD's disabled bit is an admin's act, not a lockout"
    );
}

#[test]
fn okta_needs_https_and_plain_http_elsewhere_warns() {
    let okta = "[source]\nkind = \"okta\"\nurl = \"http://org.okta.com\"\ntoken_env = \"T\"\n";
    assert_problem(&config(okta, TARGET, POLICY, ""), "url =", &["must use https://"]);
    let target = "[target]\nurl = \"http://wandb.internal\"\napi_key_env = \"K\"\n";
    let loaded = parse(&config(SOURCE, target, POLICY, "")).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("[target] url") && w.contains("unencrypted")),
        "{:?}",
        loaded.warnings
    );
    let target = "[target]\nurl = \"wandb.internal\"\napi_key_env = \"K\"\n";
    assert_problem(
        &config(SOURCE, target, POLICY, ""),
        "url =",
        &["[target] url", "not an http(s) URL"],
    );
}

#[test]
fn secrets_need_exactly_one_of_file_and_env() {
    assert_problem(
        &config(SOURCE, "[target]\napi_key_file = \"k\"\napi_key_env = \"K\"\n", POLICY, ""),
        "api_key_file",
        &["[target] api_key_file", "both set; keep one"],
    );
    assert_problem(
        &config(SOURCE, "[target]\nurl = \"https://api.wandb.ai\"\n", POLICY, ""),
        "[target]",
        &["[target] api_key_file: missing", "api_key_env"],
    );
    assert_problem(
        &config(SOURCE, "[target]\napi_key_env = \"\"\n", POLICY, ""),
        "api_key_env",
        &["[target] api_key_env", "empty"],
    );
}

#[test]
fn numeric_limits_are_checked() {
    for (v, ok) in [(0, false), (1, true), (64, true), (65, false)] {
        let text = config(SOURCE, &format!("{TARGET}max_concurrency = {v}\n"), POLICY, "");
        assert_eq!(parse(&text).is_ok(), ok, "max_concurrency = {v}");
        if !ok {
            assert_problem(&text, "max_concurrency", &["[target] max_concurrency", "1 to 64"]);
        }
    }
    assert_problem(
        &config(&format!("{SOURCE}page_size = 0\n"), TARGET, POLICY, ""),
        "page_size",
        &["[source] page_size", "at least 1"],
    );
    for key in ["max_deprovision_percent", "max_source_shrink_percent"] {
        assert_problem(
            &config(SOURCE, TARGET, POLICY, &format!("[guards]\n{key} = 101\n")),
            key,
            &[&format!("[guards] {key}"), "0 to 100"],
        );
        assert!(parse(&config(SOURCE, TARGET, POLICY, &format!("[guards]\n{key} = 100\n"))).is_ok());
    }
}

#[test]
fn retries_page_sizes_timeouts_and_approval_ttls_are_bounded() {
    for (target, key, words) in [
        ("max_retries = 21\n", "max_retries", &["[target] max_retries", "0 to 20"][..]),
        ("timeout = \"11m\"\n", "timeout", &["[target] timeout", "at most \"10m\""][..]),
    ] {
        assert_problem(&config(SOURCE, &format!("{TARGET}{target}"), POLICY, ""), key, words);
    }
    assert!(parse(&config(
        SOURCE,
        &format!("{TARGET}max_retries = 20\ntimeout = \"10m\"\n"),
        POLICY,
        ""
    ))
    .is_ok());
    assert_problem(
        &config(&format!("{SOURCE}page_size = 10001\n"), TARGET, POLICY, ""),
        "page_size",
        &["[source] page_size", "1 to 10000"],
    );
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[guards]\napproval_ttl = \"31d\"\n"),
        "approval_ttl",
        &["[guards] approval_ttl", "at most \"30d\""],
    );
    assert!(parse(&config(SOURCE, TARGET, POLICY, "[guards]\napproval_ttl = \"30d\"\n")).is_ok());
    for bad in ["0s", "23h", "3651d"] {
        assert_problem(
            &config(SOURCE, TARGET, POLICY, &format!("[state]\nretention = \"{bad}\"\n")),
            "retention",
            &["[state] retention", "\"1d\" to \"3650d\""],
        );
    }
    let ok = parse(&config(SOURCE, TARGET, POLICY, "[state]\nretention = \"7d\"\n")).unwrap();
    assert_eq!(ok.config.state.retention.0, std::time::Duration::from_secs(7 * 86_400));
}

#[test]
fn the_source_health_window_must_be_longer_than_zero() {
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[guards]\nsource_health_window = \"0s\"\n"),
        "source_health_window",
        &["[guards] source_health_window", "longer than 0s", "\"7d\""],
    );
    assert!(parse(&config(SOURCE, TARGET, POLICY, "[guards]\nsource_health_window = \"1h\"\n")).is_ok());
}

#[test]
fn a_source_health_window_shorter_than_the_schedule_warns() {
    let window_warning = |rest: &str| -> Option<String> {
        let loaded = parse(&config(SOURCE, TARGET, POLICY, rest)).unwrap();
        loaded.warnings.into_iter().find(|w| w.contains("source_health_window"))
    };
    assert_eq!(window_warning(""), None, "7d against runs every 15 minutes");
    let w = window_warning("[guards]\nsource_health_window = \"10m\"\n").expect("10m < 15m warns");
    assert!(w.contains("[guards] source_health_window") && w.contains("15m"), "{w}");
    // Weekday mornings: the weekend gap is what counts.
    let w = window_warning("[guards]\nsource_health_window = \"2d\"\n\n[daemon]\nschedule = \"0 0 9 * * MON-FRI\"\n")
        .expect("2d < the 3-day weekend gap");
    assert!(w.contains("3d"), "{w}");
}

#[test]
fn daemon_and_log_settings_are_checked() {
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[daemon]\nschedule = \"*/15 * * * *\"\n"),
        "schedule",
        &["[daemon] schedule", "seconds field", "\"0 */15 * * * *\""],
    );
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[daemon]\nschedule = \"0 0 25 * * *\"\n"),
        "schedule",
        &["hours field"],
    );
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[daemon]\nlisten = \"localhost:9464\"\n"),
        "listen",
        &["[daemon] listen", "not a socket address"],
    );
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[log]\nlevel = \"verbose\"\n"),
        "level",
        &["[log] level", "error, warn, info, debug, trace"],
    );
    assert!(parse(&config(
        SOURCE,
        TARGET,
        POLICY,
        "[log]\nlevel = \"debug\"\n[daemon]\nlisten = \"[::1]:9000\"\n"
    ))
    .is_ok());
}

#[test]
fn email_lists_are_checked_entry_by_entry() {
    let policy = "[policy]\nmanaged_domains = [\"example.com\"]\nignore_users = [\n  \"ok@example.com\",\n  \"not-an-email\",\n]\n";
    assert_problem(
        &config(SOURCE, TARGET, policy, ""),
        "not-an-email",
        &["[policy] ignore_users", "\"not-an-email\" is not a valid email"],
    );
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[guards]\npipeline_key_owners = [\"ci bot@example.com\"]\n"),
        "pipeline_key_owners",
        &["[guards] pipeline_key_owners", "not a valid email"],
    );
}

#[test]
fn all_problems_are_reported_together() {
    let text = config(
        "[source]\nkind = \"ldap\"\npage_size = 0\n",
        "[target]\nmax_concurrency = 0\n",
        "[policy]\nmanaged_domains = []\ndefault_org_role = \"viewer\"\n",
        "[daemon]\nlisten = \"nowhere\"\n[log]\nlevel = \"loud\"\n",
    );
    let e = parse(&text).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &e else { panic!("{e}") };
    // url, users.base, page_size, max_concurrency, api key, managed_domains, default_org_role, listen, level
    assert_eq!(problems.len(), 9, "{e}");
    assert!(
        e.to_string()
            .starts_with("/cfg/idsync.toml: 9 errors in the configuration:\n  /cfg/idsync.toml:"),
        "{e}"
    );
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut c = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config;
    assert!(c.validate(Path::new("/cfg")).is_ok());
    c.policy.managed_domains.clear();
    c.source.token_env = Some("T".into());
    let m = c.validate(Path::new("/cfg")).unwrap_err().to_string();
    assert!(m.contains("configuration: [policy] managed_domains: is empty"), "{m}");
    assert!(m.contains("configuration: [source] token_env: not used by kind = \"ldif\""), "{m}");
}

// ---------------------------------------------------------------- secrets

fn write(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    set_mode(&p, mode);
    p
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

#[test]
fn file_secrets_trim_exactly_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    for (content, want) in [
        ("k1\n", "k1"),
        ("k2\r\n", "k2"),
        ("k3", "k3"),
        ("k4\n\n", "k4\n"),
        (" k5 \n", " k5 "),
    ] {
        let p = write(dir.path(), "s", content, 0o600);
        let s = read_secret(p.to_str(), None, "[target] api_key", Path::new("/elsewhere")).unwrap();
        assert_eq!(s.expose(), want, "{content:?}");
    }
}

#[test]
fn relative_secret_files_prefer_the_credentials_directory() {
    let config_dir = tempfile::tempdir().unwrap();
    let cred_dir = tempfile::tempdir().unwrap();
    write(config_dir.path(), "key", "from-config-dir\n", 0o600);
    write(config_dir.path(), "only-here", "config-only\n", 0o600);
    write(cred_dir.path(), "key", "from-credentials\n", 0o600);
    let cred = cred_dir.path().to_str().unwrap().to_string();
    let with_creds = move |name: &str| (name == "CREDENTIALS_DIRECTORY").then(|| cred.clone());
    let read = |file: &str, lookup: &dyn Fn(&str) -> Option<String>| {
        secrets::read_secret_with(Some(file), None, "[target] api_key", config_dir.path(), lookup).map(|s| s.expose().to_string())
    };
    assert_eq!(read("key", &with_creds).unwrap(), "from-credentials");
    assert_eq!(read("only-here", &with_creds).unwrap(), "config-only");
    assert_eq!(read("key", &no_env).unwrap(), "from-config-dir");
    let m = read("nowhere", &with_creds).unwrap_err().to_string();
    assert!(m.starts_with("[target] api_key_file: cannot read "), "{m}");
    let cred = cred_dir.path().display().to_string();
    assert!(
        m.contains(&format!("$CREDENTIALS_DIRECTORY is set, to {cred}, and has no nowhere either")),
        "{m}"
    );
    // Without it, the message says so: the usual mistake when running by hand what the
    // service runs with LoadCredential=.
    let m = read("nowhere", &no_env).unwrap_err().to_string();
    assert!(m.contains("$CREDENTIALS_DIRECTORY is not set"), "{m}");
    assert!(m.contains("LoadCredential="), "{m}");
}

#[test]
fn missing_or_empty_secret_files_are_errors_naming_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let m = read_secret(Some("absent"), None, "[source] bind_password", dir.path())
        .unwrap_err()
        .to_string();
    assert!(m.starts_with("[source] bind_password_file: cannot read "), "{m}");
    assert!(m.contains(&dir.path().join("absent").display().to_string()), "{m}");
    write(dir.path(), "empty", "\n", 0o600);
    let m = read_secret(Some("empty"), None, "[source] token", dir.path())
        .unwrap_err()
        .to_string();
    assert!(m.contains("[source] token_file") && m.contains("is empty"), "{m}");
}

#[test]
fn env_secrets_are_read_and_unset_ones_are_named() {
    let lookup = |name: &str| match name {
        "IDSYNC_T_SET" => Some("env-secret".to_string()),
        "IDSYNC_T_EMPTY" => Some(String::new()),
        _ => None,
    };
    let read = |var: &str| secrets::read_secret_with(None, Some(var), "[source] token", Path::new("."), &lookup);
    assert_eq!(read("IDSYNC_T_SET").unwrap().expose(), "env-secret");
    for var in ["IDSYNC_T_EMPTY", "IDSYNC_T_UNSET"] {
        let m = read(var).unwrap_err().to_string();
        assert!(m.starts_with("[source] token_env: environment variable ") && m.contains(var), "{m}");
    }
    let m = read_secret(None, None, "[target] api_key", Path::new(".")).unwrap_err().to_string();
    assert!(m.contains("api_key_file") && m.contains("api_key_env"), "{m}");
    let m = read_secret(Some("f"), Some("V"), "[target] api_key", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(m.contains("both set"), "{m}");
}

#[test]
fn the_process_environment_is_read_for_env_secrets() {
    // A name no other test uses, so setting it cannot disturb them.
    std::env::set_var("IDSYNC_CONFIG_TEST_PROCESS_ENV_SECRET", "from-process-env");
    let s = read_secret(
        None,
        Some("IDSYNC_CONFIG_TEST_PROCESS_ENV_SECRET"),
        "[target] api_key",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(s.expose(), "from-process-env");
}

#[test]
fn secret_files_are_checked_at_load_and_world_readable_ones_warned() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("idsync.toml");
    let target = "[target]\napi_key_file = \"key\"\n";
    let text = config(SOURCE, target, POLICY, "");

    let m = parse_with(&text, &origin, &no_env).unwrap_err().to_string();
    assert!(
        m.contains(&format!(
            "{}:{}:1: [target] api_key_file: cannot read",
            origin.display(),
            line_of(&text, "api_key_file")
        )),
        "{m}"
    );

    write(dir.path(), "key", "top-secret-value\n", 0o644);
    let loaded = parse_with(&text, &origin, &no_env).unwrap();
    let about_key = |warnings: &[String]| -> Vec<String> { warnings.iter().filter(|w| w.contains("api_key")).cloned().collect() };
    let key_warnings = about_key(&loaded.warnings);
    assert_eq!(key_warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &key_warnings[0];
    if cfg!(unix) {
        assert!(
            w.contains("[target] api_key_file") && w.contains("readable by every user") && w.contains("chmod 600"),
            "{w}"
        );
        assert!(w.contains("0644"), "{w}");
    }
    assert!(!w.contains("top-secret-value"), "{w}");

    set_mode(&dir.path().join("key"), 0o600);
    assert!(about_key(&parse_with(&text, &origin, &no_env).unwrap().warnings).is_empty());
    assert_eq!(loaded.config.target_api_key(dir.path()).unwrap().expose(), "top-secret-value");
}

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "key", "sk-super-secret-42\n", 0o600);
    let origin = dir.path().join("idsync.toml");
    let loaded = parse_with(&config(SOURCE, "[target]\napi_key_file = \"key\"\n", POLICY, ""), &origin, &no_env).unwrap();
    let key = loaded.config.target_api_key(dir.path()).unwrap();
    assert!(!format!("{key:?} {key} {loaded:?}").contains("sk-super-secret"));
    // A file that exists but is read as something else (a wrong key) is not echoed either.
    let e = read_secret(Some("key"), Some("ALSO"), "[target] api_key", dir.path()).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("sk-super-secret"));
    // An invalid config whose secret file exists: the problem list never includes it.
    let text = config(SOURCE, "[target]\napi_key_file = \"key\"\nmax_concurrency = 0\n", POLICY, "");
    let e = parse_with(&text, &origin, &no_env).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("sk-super-secret"));
}

#[test]
fn source_secret_depends_on_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pw", "bind-pw\n", 0o600);
    let c = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config;
    assert!(c.source_secret(dir.path()).unwrap().is_none());

    let users = "[source.users]\nbase = \"ou=people,dc=example,dc=com\"\n";
    let anon = format!("[source]\nkind = \"ldap\"\nurl = \"ldaps://ldap.example.com\"\n{users}");
    let c = parse(&config(&anon, TARGET, POLICY, "")).unwrap().config;
    assert!(c.source_secret(dir.path()).unwrap().is_none());

    let bound = format!(
        "[source]\nkind = \"ldap\"\nurl = \"ldaps://ldap.example.com\"\nbind_dn = \"cn=idsync\"\nbind_password_file = \"pw\"\n{users}"
    );
    let loaded = parse_with(&config(&bound, TARGET, POLICY, ""), &dir.path().join("idsync.toml"), &no_env).unwrap();
    assert_eq!(
        loaded.config.source_secret(&loaded.base_dir()).unwrap().unwrap().expose(),
        "bind-pw"
    );

    let scim = "[source]\nkind = \"scim\"\nurl = \"https://idp.example.com/scim/v2\"\ntoken_env = \"IDSYNC_CONFIG_TEST_NEVER_SET\"\n";
    let c = parse(&config(scim, TARGET, POLICY, "")).unwrap().config;
    let m = c.source_secret(dir.path()).unwrap_err().to_string();
    assert!(
        m.contains("[source] token_env") && m.contains("IDSYNC_CONFIG_TEST_NEVER_SET"),
        "{m}"
    );
}

// ---------------------------------------------------------------- policy

#[test]
fn policy_converts_every_setting() {
    let target = "[target]\napi_key_env = \"K\"\nusername = \"idsync-bot\"\ndeployment = \"self-managed\"\nserver_version = \"0.55.2\"\n";
    let policy = "[policy]\nmanaged_domains = [\"Example.COM\", \" corp.example.org \"]\nignore_users = [\"BreakGlass@Example.com\"]\nauto_add_group = \"cn=wandb-users\"\ndefault_org_role = \"Admin\"\ndeprovision = \"delete\"\ngrace_period = \"7d\"\ndisabled_grace_period = \"1h\"\nteam_membership = \"owned\"\n";
    let rest = "[[policy.org_roles]]\ngroup = \"cn=admins\"\nrole = \"admin\"\n\n[[policy.teams]]\nteam = \"ml\"\ngroup = \"cn=ml\"\nrole = \"Viewer\"\ncreate = true\n\n[[policy.teams]]\nteam = \"ml\"\ngroup = \"cn=ml-ops\"\nrole = \"ml-engineer\"\ncreate = true\n\n[guards]\nmin_org_admins = 2\nmin_team_admins = 0\nmax_deprovisions = 3\nmax_deprovision_percent = 7\nmax_team_removals = 9\nmax_source_shrink_percent = 20\nsource_health_window = \"2d\"\nmax_seats = 100\npipeline_key_owners = [\"CI@example.com\"]\n";
    let c = parse(&config(SOURCE, target, policy, rest)).unwrap().config;
    let inv = parse_inventory(
        "[[pipeline]]\nowner = \"etl@example.com\"\nteam = \"ml\"\nname = \"etl\"\n",
        Path::new("p.toml"),
    )
    .unwrap();
    let p = c.policy(Some(&inv)).unwrap();

    assert_eq!(p.managed_domains, vec!["example.com", "corp.example.org"]);
    assert_eq!(
        p.ignore_users.iter().map(Email::as_str).collect::<Vec<_>>(),
        vec!["breakglass@example.com"]
    );
    assert_eq!(p.self_username.as_deref(), Some("idsync-bot"));
    assert_eq!(p.auto_add_group.as_deref(), Some("cn=wandb-users"));
    assert_eq!(p.default_org_role, OrgRole::Admin);
    assert_eq!(p.deprovision, DeprovisionMode::Delete);
    assert_eq!(p.grace_period, Duration::from_secs(7 * 86_400));
    assert_eq!(p.disabled_grace_period, Duration::from_secs(3600));
    assert_eq!(p.team_membership, TeamMembershipMode::Owned);
    assert_eq!(p.org_roles.len(), 1);
    assert_eq!(p.org_roles[0].role, OrgRole::Admin);
    assert_eq!(p.teams[0].role, TeamRole::new("viewer"));
    assert_eq!(p.teams[1].role.as_str(), "ml-engineer");
    assert!(p.teams.iter().all(|t| t.create));
    let g = &p.guards;
    assert_eq!(
        (
            g.min_org_admins,
            g.min_team_admins,
            g.max_deprovisions,
            g.max_deprovision_percent,
            g.max_team_removals,
            g.max_source_shrink_percent,
            g.max_seats
        ),
        (2, 0, 3, 7, 9, 20, 100)
    );
    assert_eq!(g.source_health_window, Duration::from_secs(2 * 86_400));
    assert_eq!(g.pipeline_owners.len(), 2);
    assert_eq!(
        (g.pipeline_owners[0].owner.as_str(), g.pipeline_owners[0].team.as_deref()),
        ("ci@example.com", None)
    );
    assert_eq!(
        (g.pipeline_owners[1].owner.as_str(), g.pipeline_owners[1].team.as_deref()),
        ("etl@example.com", Some("ml"))
    );
    assert_eq!(g.pipeline_owners[1].name.as_deref(), Some("etl"));
    assert_eq!(p.deployment, Deployment::SelfManaged);
    assert!(p.delete_deactivates);
}

#[test]
fn delete_deactivates_only_before_0_56() {
    let with_version = |v: Option<&str>| {
        let target = match v {
            Some(v) => format!("{TARGET}server_version = \"{v}\"\n"),
            None => TARGET.to_string(),
        };
        parse(&config(SOURCE, &target, POLICY, ""))
            .unwrap()
            .config
            .policy(None)
            .unwrap()
            .delete_deactivates
    };
    assert!(!with_version(None));
    assert!(with_version(Some("0.55.9")));
    assert!(!with_version(Some("0.56.0")));
    assert!(!with_version(Some("v0.84")));
    assert_problem(
        &config(SOURCE, &format!("{TARGET}server_version = \"latest\"\n"), POLICY, ""),
        "server_version",
        &["[target] server_version"],
    );
}

#[test]
fn policy_rejects_what_validation_would_for_configs_built_in_code() {
    let mut c = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config;
    c.policy.default_org_role = "viewer".into();
    c.guards.pipeline_key_owners.push("nobody".into());
    let m = c.policy(None).unwrap_err().to_string();
    assert!(m.contains("[policy] default_org_role") && m.contains("deprecated"), "{m}");
    assert!(m.contains("[guards] pipeline_key_owners") && m.contains("\"nobody\""), "{m}");
}

#[test]
fn the_pipeline_inventory_is_read_relative_to_the_config_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[guards]\npipeline_inventory = \"pipelines.toml\"\n";
    let c = parse(&config(SOURCE, TARGET, POLICY, rest)).unwrap().config;

    let m = c.load_inventory(dir.path()).unwrap_err().to_string();
    assert!(
        m.starts_with("[guards] pipeline_inventory: cannot read ") && m.contains("pipelines.toml"),
        "{m}"
    );

    write(
        dir.path(),
        "pipelines.toml",
        "[[pipeline]]\nowner = \"ci@example.com\"\n\n[[pipeline]]\nowner = \"bad\"\nteam = \"ml\"\n",
        0o644,
    );
    let m = c.load_inventory(dir.path()).unwrap_err().to_string();
    let file = dir.path().join("pipelines.toml").display().to_string();
    assert!(
        m.starts_with(&format!("{file}:5:1: [[pipeline]] #2 owner: \"bad\" is not a valid email")),
        "{m}"
    );

    write(
        dir.path(),
        "pipelines.toml",
        "[[pipeline]]\nowner = \"ci@example.com\"\nteem = \"ml\"\n",
        0o644,
    );
    let m = c.load_inventory(dir.path()).unwrap_err().to_string();
    assert!(
        m.starts_with(&format!(
            "{file}:3:1: unknown key \"teem\" in [[pipeline]] #1; did you mean \"team\"?"
        )),
        "{m}"
    );

    write(
        dir.path(),
        "pipelines.toml",
        "[[pipeline]]\nowner = \"ci@example.com\"\nteam = \"ml\"\n",
        0o644,
    );
    let inv = c.load_inventory(dir.path()).unwrap().unwrap();
    assert_eq!(inv.pipeline.len(), 1);

    let none = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config;
    assert!(none.load_inventory(dir.path()).unwrap().is_none());
}

// ---------------------------------------------------------------- [report]

#[test]
fn report_defaults_to_90_days_and_no_prices() {
    let c = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap().config;
    assert_eq!(c.report.inactive_days, 90);
    assert!(c.report.seat_price.is_none());
    assert!(c.report.seat_prices().is_none());
}

#[test]
fn report_seat_prices_accept_integers_and_fractions_and_default_roles_to_member() {
    let rest = "[report]\ninactive_days = 30\nseat_price = { member = 50, viewer = 12.5 }\n";
    let c = parse(&config(SOURCE, TARGET, POLICY, rest)).unwrap().config;
    assert_eq!(c.report.inactive_days, 30);
    let p = c.report.seat_prices().unwrap();
    assert_eq!((p.member, p.viewer, p.admin), (50.0, Some(12.5), None));
    assert_eq!(p.price_of(&OrgRole::Admin), (50.0, false));
    assert_eq!(p.price_of(&OrgRole::Viewer), (12.5, true));
    // The table form works too.
    let rest = "[report.seat_price]\nmember = 1.5\nadmin = 3\n";
    let p = parse(&config(SOURCE, TARGET, POLICY, rest))
        .unwrap()
        .config
        .report
        .seat_prices()
        .unwrap();
    assert_eq!((p.member, p.admin), (1.5, Some(3.0)));
}

#[test]
fn report_settings_are_checked_and_located() {
    for bad in ["-1", "-0.01", "nan", "inf"] {
        let text = config(
            SOURCE,
            TARGET,
            POLICY,
            &format!("[report.seat_price]\nmember = 5\nviewer = {bad}\n"),
        );
        assert_problem(&text, "viewer =", &["[report.seat_price] viewer", "0 or more"]);
    }
    assert!(parse(&config(SOURCE, TARGET, POLICY, "[report]\nseat_price = { member = 0 }\n")).is_ok());
    assert_problem(
        &config(SOURCE, TARGET, POLICY, "[report]\nseat_price = { viewer = 10 }\n"),
        "seat_price",
        &["[report] seat_price", "needs member"],
    );
    for (v, ok) in [(0, false), (1, true), (36_500, true), (36_501, false)] {
        let text = config(SOURCE, TARGET, POLICY, &format!("[report]\ninactive_days = {v}\n"));
        assert_eq!(parse(&text).is_ok(), ok, "inactive_days = {v}");
        if !ok {
            assert_problem(&text, "inactive_days", &["[report] inactive_days", "1 to 36500"]);
        }
    }
}

#[test]
fn unknown_report_keys_are_rejected_with_a_suggestion() {
    let m = err(&config(SOURCE, TARGET, POLICY, "[report]\ninactive_day = 30\n"));
    assert!(
        m.contains("unknown key \"inactive_day\" in [report]") && m.contains("inactive_days"),
        "{m}"
    );
    let m = err(&config(
        SOURCE,
        TARGET,
        POLICY,
        "[report]\nseat_price = { member = 5, viewr = 1 }\n",
    ));
    assert!(m.contains("unknown key \"viewr\"") && m.contains("\"viewer\""), "{m}");
}

// ---------------------------------------------------------------- serde's words, translated

/// Every message of a config that fails to parse: located, naming the key, and never
/// serde's own type vocabulary.
fn assert_human(m: &str) {
    for serde_word in [
        "invalid type",
        "invalid value",
        "expected a sequence",
        "i128",
        "usize",
        "u32",
        "u64",
        "expected a map",
        "expected struct",
        "floating point",
    ] {
        assert!(!m.contains(serde_word), "serde's {serde_word:?} leaked: {m}");
    }
    assert!(m.starts_with("/cfg/idsync.toml:"), "not located: {m}");
}

#[test]
fn type_errors_read_as_the_key_what_it_wants_and_the_fix() {
    let cases: [(&str, &str, &str); 10] = [
        (
            "policy",
            "managed_domains = \"example.com\"",
            "[policy] managed_domains: expected a list in brackets, like [\"a\", \"b\"], but found the text \"example.com\"; put it in brackets: managed_domains = [\"example.com\"]",
        ),
        (
            "policy",
            "managed_domains = { a = 1 }",
            "[policy] managed_domains: expected a list in brackets",
        ),
        (
            "guards",
            "max_seats = 99999999999999999999999",
            "[guards] max_seats: expected a whole number (0 or more), but found the number 99999999999999999999999, which is far too large",
        ),
        (
            "guards",
            "max_seats = 1.5",
            "[guards] max_seats: expected a whole number (0 or more), but found the number 1.5",
        ),
        (
            "target",
            "max_concurrency = -1",
            "[target] max_concurrency: the number -1 is out of range; expected a whole number (0 or more)",
        ),
        (
            "daemon",
            "run_on_start = \"yes\"",
            "[daemon] run_on_start: expected true or false, but found the text \"yes\"",
        ),
        (
            "policy",
            "grace_period = 72",
            "[policy] grace_period: expected a duration in quotes, like \"90s\", \"15m\", \"72h\" or \"7d\", but found the number 72; add a unit and quotes, like grace_period = \"72h\"",
        ),
        (
            "policy",
            "ignore_users = [1]",
            "[policy] ignore_users: expected text in quotes, but found the number 1",
        ),
        ("report", "inactive_days = true", "[report] inactive_days: expected a whole number (0 or more), but found true"),
        ("log", "level = []", "[log] level: expected text in quotes, but found a list"),
    ];
    for (table, line, want) in cases {
        let text = match table {
            "policy" if line.starts_with("managed_domains") => config(SOURCE, TARGET, &format!("[policy]\n{line}\n"), ""),
            "policy" => config(SOURCE, TARGET, &format!("{POLICY}{line}\n"), ""),
            "target" => config(SOURCE, &format!("{TARGET}{line}\n"), POLICY, ""),
            other => config(SOURCE, TARGET, POLICY, &format!("[{other}]\n{line}\n")),
        };
        let m = err(&text);
        assert_human(&m);
        let at = line_of(&text, line);
        assert!(m.starts_with(&format!("/cfg/idsync.toml:{at}:")), "{line}: {m}");
        assert!(m.contains(want), "{line}:\n  got  {m}\n  want {want}");
    }
}

#[test]
fn a_table_given_as_a_value_says_a_table() {
    let m = err(&format!("source = 5\n{TARGET}\n{POLICY}"));
    assert_human(&m);
    assert!(m.contains("source: expected a table, but found the number 5"), "{m}");
}

#[test]
fn a_second_single_bracket_team_mapping_says_to_use_double_brackets() {
    let text = config(
        SOURCE,
        TARGET,
        POLICY,
        "[policy.teams]\nteam = \"a\"\ngroup = \"g\"\n[policy.teams]\nteam = \"b\"\ngroup = \"h\"\n",
    );
    let m = err(&text);
    assert!(
        m.contains("[policy.teams] is defined twice; for several entries write each as [[policy.teams]] (double brackets"),
        "{m}"
    );
    let text = config(
        SOURCE,
        TARGET,
        POLICY,
        "[policy.teams]\nteam = \"a\"\ngroup = \"g\"\n[[policy.teams]]\nteam = \"b\"\ngroup = \"h\"\n",
    );
    assert!(err(&text).contains("write every entry as [[policy.teams]]"), "{}", err(&text));
    // A key set twice is named, its value never shown (it could be a pasted secret).
    let text = config(SOURCE, &format!("{TARGET}api_key_env = \"S3CRET-VALUE\"\n"), POLICY, "");
    let m = err(&text);
    assert!(m.contains("\"api_key_env\" is set twice in the same table; keep one"), "{m}");
    assert!(!m.contains("S3CRET"), "{m}");
}

// ---------------------------------------------------------------- check-config's strict checks

fn strict(text: &str, dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, String> {
    parse_strict_with(text, &dir.join("idsync.toml"), lookup).map_err(|e| e.to_string())
}

#[test]
fn an_unset_env_secret_passes_load_but_fails_check_config_saying_what_a_run_would_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("directory.ldif"), "").unwrap();
    let text = config(SOURCE, TARGET, POLICY, "");
    // Load (every command): fine, `status` needs no key.
    parse_with(&text, &dir.path().join("idsync.toml"), &no_env).unwrap();
    let m = strict(&text, dir.path(), &no_env).unwrap_err();
    let line = line_of(&text, "api_key_env");
    assert!(
        m.contains(&format!(
            "idsync.toml:{line}:1: [target] api_key_env: environment variable IDSYNC_TEST_KEY is not set"
        )),
        "{m}"
    );
    assert!(m.contains("every plan, apply and run"), "{m}");
    // Set (and non-empty): fine.
    let set = |n: &str| (n == "IDSYNC_TEST_KEY").then(|| "k".to_string());
    strict(&text, dir.path(), &set).unwrap();
    let empty = |n: &str| (n == "IDSYNC_TEST_KEY").then(String::new);
    assert!(strict(&text, dir.path(), &empty).unwrap_err().contains("is not set (or is empty)"));
    // The source's secret too.
    let scim = "[source]\nkind = \"scim\"\nurl = \"https://idp.example.com/scim/v2\"\ntoken_env = \"IDP_TOKEN\"\n";
    let m = strict(&config(scim, TARGET, POLICY, ""), dir.path(), &set).unwrap_err();
    assert!(m.contains("[source] token_env: environment variable IDP_TOKEN is not set"), "{m}");
}

#[test]
fn a_missing_ldif_file_fails_check_config_with_the_resolved_path() {
    let dir = tempfile::tempdir().unwrap();
    let set = |n: &str| (n == "IDSYNC_TEST_KEY").then(|| "k".to_string());
    let text = config(SOURCE, TARGET, POLICY, "");
    let m = strict(&text, dir.path(), &set).unwrap_err();
    let path = dir.path().join("directory.ldif").display().to_string();
    let line = line_of(&text, "path =");
    assert!(
        m.contains(&format!("idsync.toml:{line}:1: [source] path: {path} cannot be read")),
        "{m}"
    );
    assert!(m.contains("resolved against the config's directory"), "{m}");
    assert!(m.contains("nothing changed"), "{m}");
    std::fs::create_dir(dir.path().join("directory.ldif")).unwrap();
    assert!(strict(&text, dir.path(), &set).unwrap_err().contains("is a directory"));
    std::fs::remove_dir(dir.path().join("directory.ldif")).unwrap();
    std::fs::write(dir.path().join("directory.ldif"), "dn: dc=example,dc=com\n").unwrap();
    strict(&text, dir.path(), &set).unwrap();
}

#[test]
fn a_schedule_that_never_fires_is_an_error_and_one_that_fires_once_a_warning() {
    let text = config(SOURCE, TARGET, POLICY, "[daemon]\nschedule = \"0 0 0 30 2 *\"\n");
    let m = err(&text);
    let line = line_of(&text, "schedule");
    assert!(
        m.contains(&format!("idsync.toml:{line}:1: [daemon] schedule: \"0 0 0 30 2 *\" never fires")),
        "{m}"
    );
    assert!(m.contains("runs once at start (run_on_start) and then never again"), "{m}");
    let m = err(&config(
        SOURCE,
        TARGET,
        POLICY,
        "[daemon]\nschedule = \"0 0 0 1 1 ? 2020\"\nrun_on_start = false\n",
    ));
    assert!(m.contains("never fires") && m.contains("the daemon never runs"), "{m}");
    let loaded = parse(&config(SOURCE, TARGET, POLICY, "[daemon]\nschedule = \"0 0 0 1 1 ? 2099\"\n")).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("fires only once more, at 2099-01-01T00:00:00Z")),
        "{:?}",
        loaded.warnings
    );
}

// ---------------------------------------------------------------- --connect references

#[test]
fn connect_finds_teams_w_and_b_lacks_and_groups_the_directory_lacks_with_suggestions() {
    use crate::model::{DirectorySnapshot, Group, OrgSnapshot, Team};
    let policy = format!(
        "{POLICY}auto_add_group = \"cn=wandb-users,ou=groups,dc=example,dc=com\"\n\
         [[policy.teams]]\nteam = \"ML-Research\"\ngroup = \"cn=ml-reserch,ou=groups,dc=example,dc=com\"\n\
         [[policy.teams]]\nteam = \"brand-new\"\ngroup = \"ml-research\"\ncreate = true\n\
         [[policy.teams]]\nteam = \"finance\"\ngroup = \"cn=wandb-users,ou=groups,dc=example,dc=com\"\n"
    );
    let text = config(SOURCE, TARGET, &policy, "");
    let loaded = parse(&text).unwrap();
    let group = |name: &str| Group {
        anchor: name.into(),
        name: name.into(),
        dn: Some(format!("cn={name},ou=groups,dc=example,dc=com")),
        members: Default::default(),
        subgroups: Default::default(),
    };
    let dir = DirectorySnapshot {
        kind: "ldif".into(),
        people: vec![],
        groups: vec![group("ml-research"), group("wandb-users")],
    };
    let team = |name: &str| Team {
        id: name.into(),
        name: name.into(),
        members: vec![],
    };
    let org = OrgSnapshot {
        users: vec![],
        teams: vec![team("ml-research"), team("data-platform")],
    };
    let doc = doc::Doc::new(origin(), &text);
    let problems = references::references(&loaded.config, &doc, &dir, &org);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let at = |needle: &str| format!("/cfg/idsync.toml:{}:1: ", line_of(&text, needle));
    assert!(
        problems[0].starts_with(&format!(
            "{}[[policy.teams]] #1 team: W&B has no team \"ML-Research\" and create = false",
            at("team = \"ML-Research\"")
        )),
        "{}",
        problems[0]
    );
    assert!(problems[0].contains("did you mean \"ml-research\"?"), "{}", problems[0]);
    assert!(problems[1].starts_with(&at("cn=ml-reserch")), "{}", problems[1]);
    assert!(
        problems[1].contains("did you mean \"cn=ml-research,ou=groups,dc=example,dc=com\"?"),
        "{}",
        problems[1]
    );
    // A group named by cn where the source names groups by DN.
    assert!(problems[2].contains("[[policy.teams]] #2 group"), "{}", problems[2]);
    assert!(
        problems[2].contains("named by DN: did you mean \"cn=ml-research,ou=groups,dc=example,dc=com\"?"),
        "{}",
        problems[2]
    );
    // No near name: the teams W&B has, and both fixes.
    assert!(problems[3].contains("W&B has no team \"finance\""), "{}", problems[3]);
    assert!(
        problems[3].contains("W&B has: \"ml-research\", \"data-platform\""),
        "{}",
        problems[3]
    );
    assert!(problems[3].contains("set create = true"), "{}", problems[3]);
    // create = true and the groups that exist raise nothing: 4, not more.
}

#[test]
fn the_example_config_passes_the_strict_checks_too() {
    let loaded = load_strict(&example_path()).unwrap_or_else(|e| panic!("config.example.toml must pass check-config: {e}"));
    assert_eq!(loaded.config.source.kind, SourceKind::Ldif);
}

#[test]
fn restore_window_is_off_or_1h_to_3650d_and_warns_beyond_retention() {
    let with = |v: &str, rest: &str| config(SOURCE, TARGET, &format!("{POLICY}restore_window = \"{v}\"\n"), rest);
    for bad in ["30m", "3651d"] {
        assert_problem(
            &with(bad, ""),
            "restore_window",
            &["[policy] restore_window", "\"0s\" (off) or \"1h\" to \"3650d\""],
        );
    }
    let off = parse(&with("0s", "")).unwrap();
    assert!(off.config.policy(None).unwrap().restore_window.is_zero());
    let default = parse(&config(SOURCE, TARGET, POLICY, "")).unwrap();
    assert_eq!(
        default.config.policy(None).unwrap().restore_window,
        std::time::Duration::from_secs(90 * 86_400)
    );
    assert!(
        default.warnings.iter().all(|w| !w.contains("restore_window")),
        "90d within the 90d retention"
    );
    let long = parse(&with("180d", "")).unwrap();
    let w = long
        .warnings
        .iter()
        .find(|w| w.contains("restore_window"))
        .expect("longer than retention warns");
    assert!(w.contains("[state] retention") && w.contains("90d"), "{w}");
    assert!(parse(&with("180d", "[state]\nretention = \"365d\"\n"))
        .unwrap()
        .warnings
        .iter()
        .all(|w| !w.contains("restore_window")));
}
