//! Cross-checks after parsing: values that are valid TOML of the right type but make no
//! sense, or make sense only together. Every problem is collected (the admin fixes them
//! all in one edit), each located and naming the key and what to do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use super::cron::{check_schedule, parse_schedule};
use super::doc::{entry, key_label, keys, with, Doc, Seg};
use super::secrets::{check_env_name, read_secret_file, source_secret_keys, Lookup};
use super::types::{Config, Deployment, DeprovisionMode, LdapDialect, SourceConfig, SourceKind, StateBackendKind};
use crate::duration::HumanDuration;
use crate::model::Email;

/// Free mail providers: a managed domain among them would put strangers in scope.
pub(crate) const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "live.com",
    "msn.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.co.jp",
    "yahoo.fr",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "naver.com",
    "zoho.com",
    "fastmail.com",
    "tutanota.com",
    "hey.com",
];

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
const MAX_CONCURRENCY: usize = 64;
/// Largest page any source asks for: servers cap pages far below this (Okta 200, Graph
/// 999, slapd's size limits), and a bigger one only makes one reply huge.
const MAX_PAGE_SIZE: u32 = 10_000;
/// Retries on 429, 5xx and timeouts: with the backoff's cap, 20 already waits many
/// minutes while holding the apply lock.
const MAX_RETRIES: u32 = 20;
/// A request that waits longer than this is stuck, not slow.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// An approval is a decision about the org as it was when reviewed; a month-old one is
/// not a review of today's change.
const MAX_APPROVAL_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Collects located problems and warnings.
pub(crate) struct Checker<'d, 'a> {
    doc: &'d Doc<'a>,
    /// (byte offset in the file, message): reported in file order.
    errors: Vec<(usize, String)>,
    warnings: Vec<(usize, String)>,
}

impl<'d, 'a> Checker<'d, 'a> {
    pub(crate) fn new(doc: &'d Doc<'a>) -> Checker<'d, 'a> {
        Checker {
            doc,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn located(&self, path: &[Seg], msg: &str) -> (usize, String) {
        let span = self.doc.span_of(path);
        let line = format!("{}: {}: {msg}", self.doc.at(span.as_ref()), key_label(path));
        (span.map_or(usize::MAX, |s| s.start), line)
    }

    pub(crate) fn error(&mut self, path: &[Seg], msg: impl AsRef<str>) {
        let e = self.located(path, msg.as_ref());
        self.errors.push(e);
    }

    fn warn(&mut self, path: &[Seg], msg: impl AsRef<str>) {
        let w = self.located(path, msg.as_ref());
        self.warnings.push(w);
    }

    /// (errors, warnings), each in the order they appear in the file.
    pub(crate) fn finish(self) -> (Vec<String>, Vec<String>) {
        let sorted = |mut v: Vec<(usize, String)>| {
            v.sort_by_key(|(at, _)| *at);
            v.into_iter().map(|(_, m)| m).collect()
        };
        (sorted(self.errors), sorted(self.warnings))
    }
}

/// Checks a parsed config. Returns (errors, warnings).
pub(crate) fn check(cfg: &Config, doc: &Doc<'_>, base_dir: &Path, lookup: Lookup<'_>) -> (Vec<String>, Vec<String>) {
    let mut c = Checker::new(doc);
    check_source(&mut c, &cfg.source, base_dir, lookup);
    check_target(&mut c, cfg, base_dir, lookup);
    check_policy(&mut c, cfg);
    check_guards(&mut c, cfg);
    check_daemon(&mut c, cfg);
    check_log(&mut c, cfg);
    check_report(&mut c, cfg);
    check_notify(&mut c, cfg, base_dir, lookup);
    check_state(&mut c, cfg, base_dir, lookup);
    c.finish()
}

/// What `check-config` adds to the load-time checks: the environment a run started here
/// would see. Load does not check these (a `status` or `approvals` needs neither the W&B
/// key nor the directory), but every `plan`, `apply` and `run` would fail on them, so
/// `check-config` reports them as errors, each saying what would happen. Returns (errors,
/// warnings).
pub(crate) fn check_environment(cfg: &Config, doc: &Doc<'_>, base_dir: &Path, lookup: Lookup<'_>) -> (Vec<String>, Vec<String>) {
    let mut c = Checker::new(doc);
    let mut env_keys: Vec<(&str, String, &str)> = Vec::new();
    if let (None, Some(v)) = (&cfg.target.api_key_file, cfg.target.api_key_env.as_deref()) {
        env_keys.push(("target", "api_key_env".into(), v));
    }
    if let Some((key, None, Some(v))) = source_secret_keys(&cfg.source) {
        env_keys.push(("source", format!("{key}_env"), v));
    }
    for (table, key, var) in env_keys {
        if check_env_name(var).is_err() {
            continue; // reported by the load-time checks
        }
        if lookup(var).is_none_or(|v| v.is_empty()) {
            c.error(
                &keys(&[table, &key]),
                format!(
                    "environment variable {var} is not set (or is empty) here, so every plan, apply and run \
                     started from this environment stops before reading anything (exit 1, nothing changed); \
                     set it, or use the *_file key (for the service: a file passed with LoadCredential=, \
                     since systemd passes no shell variables)"
                ),
            );
        }
    }
    if cfg.source.kind == SourceKind::Ldif {
        if let Some(p) = cfg.source.path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            let given = Path::new(p);
            let path = if given.is_absolute() {
                given.to_path_buf()
            } else {
                base_dir.join(given)
            };
            let problem = match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => Some("is a directory, not an LDIF file".to_string()),
                Ok(_) => std::fs::File::open(&path).err().map(|e| format!("cannot be read: {e}")),
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            if let Some(problem) = problem {
                let relative = if given.is_absolute() {
                    String::new()
                } else {
                    format!(
                        " (a relative path is resolved against the config's directory, {})",
                        base_dir.display()
                    )
                };
                c.error(
                    &keys(&["source", "path"]),
                    format!(
                        "{} {problem}{relative}; every plan and run stops at the directory read \
                         (exit 1, nothing changed) until it exists: fix the path or write the export there",
                        path.display()
                    ),
                );
            }
        }
    }
    c.finish()
}

/// Which `[source]` keys each kind reads; any other kind's key is a mistake.
const SOURCE_KEYS: &[(&str, &[SourceKind])] = {
    use SourceKind::*;
    &[
        ("url", &[Ldap, Scim, Okta]),
        ("start_tls", &[Ldap]),
        ("ca_file", &[Ldap]),
        ("bind_dn", &[Ldap]),
        ("bind_password_file", &[Ldap]),
        ("bind_password_env", &[Ldap]),
        ("timeout", &[Ldap, Scim, Okta, Entra]),
        ("page_size", &[Ldap, Scim, Okta, Entra]),
        ("dialect", &[Ldap, Ldif]),
        ("users", &[Ldap, Ldif]),
        ("groups", &[Ldap, Ldif]),
        ("token_file", &[Scim, Okta]),
        ("token_env", &[Scim, Okta]),
        ("tenant_id", &[Entra]),
        ("client_id", &[Entra]),
        ("client_secret_file", &[Entra]),
        ("client_secret_env", &[Entra]),
        ("authority", &[Entra]),
        ("graph_url", &[Entra]),
        ("path", &[Ldif]),
    ]
};

/// Whether an optional `[source]` key is set, judging by the struct (for configs built in
/// code, which have no text to look at).
fn source_key_set(s: &SourceConfig, key: &str) -> bool {
    match key {
        "url" => s.url.is_some(),
        "start_tls" => s.start_tls,
        "ca_file" => s.ca_file.is_some(),
        "bind_dn" => s.bind_dn.is_some(),
        "bind_password_file" => s.bind_password_file.is_some(),
        "bind_password_env" => s.bind_password_env.is_some(),
        "token_file" => s.token_file.is_some(),
        "token_env" => s.token_env.is_some(),
        "tenant_id" => s.tenant_id.is_some(),
        "client_id" => s.client_id.is_some(),
        "client_secret_file" => s.client_secret_file.is_some(),
        "client_secret_env" => s.client_secret_env.is_some(),
        "authority" => s.authority.is_some(),
        "graph_url" => s.graph_url.is_some(),
        "path" => s.path.is_some(),
        _ => false,
    }
}

fn check_source(c: &mut Checker<'_, '_>, s: &SourceConfig, base_dir: &Path, lookup: Lookup<'_>) {
    let kind = s.kind.as_str();
    let src = |k: &str| keys(&["source", k]);
    for (key, kinds) in SOURCE_KEYS {
        let set = c.doc.has(&src(key)) || source_key_set(s, key);
        if set && !kinds.contains(&s.kind) {
            let used_by: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            c.error(
                &src(key),
                format!("not used by kind = \"{kind}\" (only by {}); remove it", used_by.join(", ")),
            );
        }
    }
    let url = s.url.as_deref().map(str::trim);
    match s.kind {
        SourceKind::Ldap => {
            match url {
                None | Some("") => c.error(
                    &src("url"),
                    "kind = \"ldap\" needs the directory's url, like \"ldaps://ldap.example.com\"",
                ),
                Some(u) => {
                    let lower = u.to_ascii_lowercase();
                    let ldaps = lower.starts_with("ldaps://");
                    if !ldaps && !lower.starts_with("ldap://") || host_of(u).is_empty() {
                        c.error(
                            &src("url"),
                            format!("{u:?} must start with ldap:// or ldaps:// and name a host, like \"ldaps://ldap.example.com\""),
                        );
                    } else if ldaps && s.start_tls {
                        c.error(
                            &src("start_tls"),
                            "cannot be used with an ldaps:// url (that connection is TLS already); use ldap:// with start_tls = true, or set start_tls = false",
                        );
                    } else if !ldaps && !s.start_tls && s.bind_dn.is_some() && !is_loopback(u) {
                        c.warn(
                            &src("url"),
                            format!("{u:?} without start_tls sends the bind password unencrypted; use ldaps:// or set start_tls = true"),
                        );
                    }
                }
            }
            if s.users.base.trim().is_empty() {
                c.error(
                    &keys(&["source", "users", "base"]),
                    "kind = \"ldap\" needs the search base for people, like \"ou=people,dc=example,dc=com\"",
                );
            }
            match s.bind_dn.as_deref().map(str::trim) {
                Some("") => c.error(
                    &src("bind_dn"),
                    "is empty; name the DN to bind as, or remove the key for an anonymous bind",
                ),
                None => {
                    for k in ["bind_password_file", "bind_password_env"] {
                        if c.doc.has(&src(k)) || source_key_set(s, k) {
                            c.error(
                                &src(k),
                                "a bind password without bind_dn; set bind_dn (or remove the password for an anonymous bind)",
                            );
                        }
                    }
                }
                Some(_) => {}
            }
        }
        SourceKind::Scim | SourceKind::Okta => {
            let example = if s.kind == SourceKind::Okta {
                "https://ORG.okta.com"
            } else {
                "https://idp.example.com/scim/v2"
            };
            match url {
                None | Some("") => c.error(&src("url"), format!("kind = \"{kind}\" needs the url, like \"{example}\"")),
                Some(u) => check_http_url(c, &src("url"), u, s.kind == SourceKind::Okta, "the token"),
            }
        }
        SourceKind::Entra => {
            for k in ["tenant_id", "client_id"] {
                let v = if k == "tenant_id" { &s.tenant_id } else { &s.client_id };
                if v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    c.error(
                        &src(k),
                        format!("kind = \"entra\" needs {k} (from the app registration in Entra ID)"),
                    );
                }
            }
            for (k, v) in [("authority", &s.authority), ("graph_url", &s.graph_url)] {
                if let Some(u) = v {
                    check_http_url(c, &src(k), u.trim(), true, "the client secret");
                }
            }
        }
        SourceKind::Ldif => {
            if s.path.as_deref().is_none_or(|p| p.trim().is_empty()) {
                c.error(
                    &src("path"),
                    "kind = \"ldif\" needs the path of an LDIF export, like \"directory.ldif\"",
                );
            }
        }
    }
    if s.groups.in_chain && !(s.kind == SourceKind::Ldap && s.dialect == LdapDialect::ActiveDirectory) {
        c.error(
            &keys(&["source", "groups", "in_chain"]),
            "the in-chain matching rule exists only on Active Directory: use it with kind = \"ldap\" and dialect = \"active-directory\", or remove it",
        );
    }
    if s.page_size == 0 {
        c.error(&src("page_size"), "must be at least 1 (default 500)");
    } else if s.page_size > MAX_PAGE_SIZE {
        c.error(
            &src("page_size"),
            format!("{} is out of range; use 1 to {MAX_PAGE_SIZE} (default 500)", s.page_size),
        );
    }
    if s.timeout.0.is_zero() {
        c.error(&src("timeout"), "must be longer than 0s (default \"30s\")");
    } else if s.timeout.0 > MAX_TIMEOUT {
        c.error(
            &src("timeout"),
            format!("{} is too long; use at most \"10m\" (default \"30s\")", s.timeout),
        );
    }
    if let Some((key, file, env)) = source_secret_keys(s) {
        check_secret(c, &["source"], key, file, env, true, base_dir, lookup);
    }
}

fn check_target(c: &mut Checker<'_, '_>, cfg: &Config, base_dir: &Path, lookup: Lookup<'_>) {
    let t = &cfg.target;
    let tgt = |k: &str| keys(&["target", k]);
    check_http_url(c, &tgt("url"), t.url.trim(), false, "the API key");
    if !t.scim_path.starts_with('/') {
        c.error(
            &tgt("scim_path"),
            format!("{:?} must start with \"/\", like \"/scim\" or \"/scim/v2\"", t.scim_path),
        );
    }
    if let Some(v) = &t.server_version {
        if parse_version(v).is_none() {
            c.error(
                &tgt("server_version"),
                format!("{v:?} is not a version like \"0.84.0\"; remove the key if unknown"),
            );
        }
    }
    if t.timeout.0.is_zero() {
        c.error(&tgt("timeout"), "must be longer than 0s (default \"30s\")");
    } else if t.timeout.0 > MAX_TIMEOUT {
        c.error(
            &tgt("timeout"),
            format!("{} is too long; use at most \"10m\" (default \"30s\")", t.timeout),
        );
    }
    if t.max_retries > MAX_RETRIES {
        c.error(
            &tgt("max_retries"),
            format!("{} is out of range; use 0 to {MAX_RETRIES} (default 6)", t.max_retries),
        );
    }
    if t.max_concurrency == 0 || t.max_concurrency > MAX_CONCURRENCY {
        c.error(
            &tgt("max_concurrency"),
            format!("{} is out of range; use 1 to {MAX_CONCURRENCY} (default 4)", t.max_concurrency),
        );
    }
    check_secret(
        c,
        &["target"],
        "api_key",
        t.api_key_file.as_deref(),
        t.api_key_env.as_deref(),
        true,
        base_dir,
        lookup,
    );
}

fn check_policy(c: &mut Checker<'_, '_>, cfg: &Config) {
    let p = &cfg.policy;
    let domains = keys(&["policy", "managed_domains"]);
    if p.managed_domains.is_empty() {
        c.error(
            &domains,
            "is empty; list your company's email domains, like [\"example.com\"]: idsync only changes W&B users in them",
        );
    }
    for (i, d) in p.managed_domains.iter().enumerate() {
        let at = with(&domains, Seg::Index(i));
        if let Err(e) = check_domain(d) {
            c.error(&at, e);
        }
    }
    check_emails(c, &keys(&["policy", "ignore_users"]), &p.ignore_users);
    if let Some(g) = &p.auto_add_group {
        if g.trim().is_empty() {
            c.error(
                &keys(&["policy", "auto_add_group"]),
                "is empty; name a group, or remove the key to add everyone in scope",
            );
        }
    }
    if let Err(e) = check_org_role(&p.default_org_role) {
        c.error(&keys(&["policy", "default_org_role"]), e);
    }
    for (i, r) in p.org_roles.iter().enumerate() {
        if r.group.trim().is_empty() {
            c.error(
                &entry(&["policy", "org_roles"], i, "group"),
                "is empty; name the directory group (a DN for ldap/ldif)",
            );
        }
        if let Err(e) = check_org_role(&r.role) {
            c.error(&entry(&["policy", "org_roles"], i, "role"), e);
        }
    }
    let mut create_by_team: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    for (i, t) in p.teams.iter().enumerate() {
        let at = |k: &str| entry(&["policy", "teams"], i, k);
        if t.team.trim().is_empty() {
            c.error(&at("team"), "is empty; name the W&B team");
        }
        if t.group.trim().is_empty() {
            c.error(&at("group"), "is empty; name the directory group (a DN for ldap/ldif)");
        }
        if t.role.trim().is_empty() {
            c.error(
                &at("role"),
                "is empty; use admin, member, viewer or a custom role name (default member)",
            );
        }
        match create_by_team.get(t.team.trim()) {
            Some(&(first, create)) if create != t.create => c.error(
                &at("create"),
                format!(
                    "team {:?} is mapped twice with conflicting create (#{} says {create}, this one {}); give every mapping of a team the same value",
                    t.team.trim(),
                    first + 1,
                    t.create
                ),
            ),
            Some(_) => {}
            None => {
                create_by_team.insert(t.team.trim(), (i, t.create));
            }
        }
    }
    check_disabled_grace(c, cfg);
    check_restore_window(c, cfg);
}

/// `policy.restore_window`: off ("0s") or 1h to 3650d. The snapshots it reads are pruned
/// with `[state] retention`, so a longer window than that cannot be honoured: a warning.
fn check_restore_window(c: &mut Checker<'_, '_>, cfg: &Config) {
    let w = cfg.policy.restore_window.0;
    if w.is_zero() {
        return;
    }
    if w < std::time::Duration::from_secs(3600) || w > std::time::Duration::from_secs(3650 * 86_400) {
        c.error(
            &keys(&["policy", "restore_window"]),
            format!(
                "{} is out of range; use \"0s\" (off) or \"1h\" to \"3650d\" (default \"90d\")",
                cfg.policy.restore_window
            ),
        );
    } else if w > cfg.state.retention.0 {
        c.warn(
            &keys(&["policy", "restore_window"]),
            format!(
                "is {} but [state] retention = {} prunes restore snapshots sooner: people returning after {} are not restored; raise retention or lower the window",
                cfg.policy.restore_window, cfg.state.retention, cfg.state.retention
            ),
        );
    }
}

/// Warns when a short-lived "disabled" would remove someone for good: the default
/// `disabled_grace_period` of 0s acts on the next run, and some sources mark people
/// disabled for a while (a ppolicy lockout after wrong passwords, an Okta suspension).
/// Only where the removal cannot be undone: SaaS (deactivation leaves the org) or delete.
fn check_disabled_grace(c: &mut Checker<'_, '_>, cfg: &Config) {
    let p = &cfg.policy;
    let irreversible = match p.deprovision {
        DeprovisionMode::Off => return,
        DeprovisionMode::Delete => "deprovision = \"delete\"",
        DeprovisionMode::Deactivate if cfg.target.deployment == Deployment::Saas => "deactivation on SaaS (it removes them from the org)",
        DeprovisionMode::Deactivate => return,
    };
    let s = &cfg.source;
    let temporary = match s.kind {
        SourceKind::Ldap | SourceKind::Ldif if s.dialect == LdapDialect::Openldap => {
            "OpenLDAP's ppolicy sets pwdAccountLockedTime after a few wrong passwords"
        }
        SourceKind::Okta => "Okta SUSPENDED is often a short leave",
        _ => return,
    };
    if p.disabled_grace_period.0.is_zero() {
        c.warn(
            &keys(&["policy", "disabled_grace_period"]),
            format!(
                "is 0s: a person the directory marks disabled is removed on the next run, and {irreversible} cannot be undone; {temporary}, so set it longer than such a lock lasts, like \"24h\""
            ),
        );
    }
}

fn check_guards(c: &mut Checker<'_, '_>, cfg: &Config) {
    let g = &cfg.guards;
    for (k, v) in [
        ("max_deprovision_percent", g.max_deprovision_percent),
        ("max_source_shrink_percent", g.max_source_shrink_percent),
    ] {
        if v > 100 {
            c.error(&keys(&["guards", k]), format!("{v} is not a percentage; use 0 to 100"));
        }
    }
    check_emails(c, &keys(&["guards", "pipeline_key_owners"]), &g.pipeline_key_owners);
    if g.pipeline_inventory.as_deref().is_some_and(|p| p.trim().is_empty()) {
        c.error(
            &keys(&["guards", "pipeline_inventory"]),
            "is empty; name the inventory file, or remove the key",
        );
    }
    let retention = cfg.state.retention.0;
    if retention < std::time::Duration::from_secs(86_400) || retention > std::time::Duration::from_secs(3650 * 86_400) {
        c.error(
            &keys(&["state", "retention"]),
            format!("{} is out of range; use \"1d\" to \"3650d\" (default \"90d\")", cfg.state.retention),
        );
    }
    if g.approval_ttl.0.is_zero() {
        c.error(&keys(&["guards", "approval_ttl"]), "must be longer than 0s (default \"24h\")");
    } else if g.approval_ttl.0 > MAX_APPROVAL_TTL {
        c.error(
            &keys(&["guards", "approval_ttl"]),
            format!("{} is too long; use at most \"30d\" (default \"24h\")", g.approval_ttl),
        );
    }
    if g.source_health_window.0.is_zero() {
        c.error(
            &keys(&["guards", "source_health_window"]),
            "must be longer than 0s: source-health compares each read with the largest healthy read within it (default \"7d\")",
        );
    } else if let Some(gap) = longest_schedule_gap(&cfg.daemon.schedule).filter(|gap| *gap > g.source_health_window.0) {
        c.warn(
            &keys(&["guards", "source_health_window"]),
            format!(
                "{} is shorter than the longest gap between two runs of daemon.schedule ({}): a run then has no healthy read to compare with, and source-health only catches empty reads; make it several runs long (default \"7d\")",
                g.source_health_window,
                HumanDuration(gap)
            ),
        );
    }
    if g.min_org_admins == 0 {
        c.warn(
            &keys(&["guards", "min_org_admins"]),
            "0 turns off the last-admin guard: idsync may remove every org admin",
        );
    }
}

/// A schedule that parses may still never fire (30 February, a year gone by) or fire
/// only once more (a year field): the daemon would then idle forever.
fn check_schedule_fires(c: &mut Checker<'_, '_>, schedule: &str, run_on_start: bool) {
    let Ok(s) = parse_schedule(schedule) else { return };
    let mut next = s.upcoming(chrono::Utc);
    let at = keys(&["daemon", "schedule"]);
    let at_start = if run_on_start {
        "runs once at start (run_on_start) and then never again"
    } else {
        "never runs"
    };
    match (next.next(), next.next()) {
        (None, _) => c.error(
            &at,
            format!(
                "{:?} never fires: no future time matches it (a day no month has, like 30 in February, \
                 or a year that has passed), so the daemon {at_start} and /readyz goes stale; \
                 use a schedule with future times, like \"0 */15 * * * *\"",
                schedule.trim()
            ),
        ),
        (Some(t), None) => c.warn(
            &at,
            format!(
                "{:?} fires only once more, at {}; after that the daemon runs no more and /readyz goes stale; \
                 drop the year field for a schedule that repeats",
                schedule.trim(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        _ => {}
    }
}

/// The longest time between two of the schedule's next ticks (enough of them to span the
/// weekend of a business-hours schedule); `None` when it does not parse (reported elsewhere).
fn longest_schedule_gap(schedule: &str) -> Option<std::time::Duration> {
    let s = parse_schedule(schedule).ok()?;
    let ticks: Vec<_> = s.upcoming(chrono::Utc).take(1024).collect();
    ticks.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).max()
}

fn check_daemon(c: &mut Checker<'_, '_>, cfg: &Config) {
    let d = &cfg.daemon;
    match check_schedule(&d.schedule) {
        Err(e) => c.error(&keys(&["daemon", "schedule"]), e),
        Ok(()) => check_schedule_fires(c, &d.schedule, d.run_on_start),
    }
    if d.listen.trim().parse::<SocketAddr>().is_err() {
        c.error(
            &keys(&["daemon", "listen"]),
            format!(
                "{:?} is not a socket address; use an IP and a port, like \"127.0.0.1:9464\" or \"[::1]:9464\"",
                d.listen
            ),
        );
    }
    if d.state_dir.trim().is_empty() {
        c.error(
            &keys(&["daemon", "state_dir"]),
            "is empty; name a directory, like \"/var/lib/idsync\"",
        );
    }
}

fn check_log(c: &mut Checker<'_, '_>, cfg: &Config) {
    let level = cfg.log.level.trim().to_ascii_lowercase();
    if !LOG_LEVELS.contains(&level.as_str()) {
        c.error(
            &keys(&["log", "level"]),
            format!("invalid level {:?}; use one of {}", cfg.log.level, LOG_LEVELS.join(", ")),
        );
    }
}

/// Upper bound of `[report] inactive_days`: a century.
const MAX_INACTIVE_DAYS: u32 = 36_500;

fn check_report(c: &mut Checker<'_, '_>, cfg: &Config) {
    let r = &cfg.report;
    if r.inactive_days == 0 || r.inactive_days > MAX_INACTIVE_DAYS {
        c.error(
            &keys(&["report", "inactive_days"]),
            format!(
                "{} is out of range; use 1 to {MAX_INACTIVE_DAYS} days (default 90)",
                r.inactive_days
            ),
        );
    }
    let Some(p) = &r.seat_price else { return };
    if p.member.is_none() {
        c.error(
            &keys(&["report", "seat_price"]),
            "needs member (the monthly price of a full seat; admin and viewer default to it), like { member = 50.0 }",
        );
    }
    for (k, v) in [("member", p.member), ("viewer", p.viewer), ("admin", p.admin)] {
        if let Some(v) = v {
            if !v.is_finite() || v < 0.0 {
                c.error(
                    &keys(&["report", "seat_price", k]),
                    format!("{v} is not a price; use a number of 0 or more (a monthly price per seat)"),
                );
            }
        }
    }
}

/// `[state]` and `[ha]`: PostgreSQL needs its URL (a secret, never shown); HA needs
/// PostgreSQL, and a lease long enough to outlast a W&B request between renewals.
fn check_state(c: &mut Checker<'_, '_>, cfg: &Config, base_dir: &Path, lookup: Lookup<'_>) {
    let s = &cfg.state;
    match s.backend {
        StateBackendKind::Postgres => check_secret(
            c,
            &["state"],
            "url",
            s.url_file.as_deref(),
            s.url_env.as_deref(),
            true,
            base_dir,
            lookup,
        ),
        StateBackendKind::Sqlite => {
            if s.url_file.is_some() || s.url_env.is_some() || s.ca_file.is_some() {
                let key = if s.url_file.is_some() {
                    "url_file"
                } else if s.url_env.is_some() {
                    "url_env"
                } else {
                    "ca_file"
                };
                c.error(
                    &keys(&["state", key]),
                    "is for backend = \"postgres\" only; set backend = \"postgres\", or remove it (SQLite keeps the state in daemon.state_dir)",
                );
            }
        }
    }
    if cfg.ha.enabled && s.backend != StateBackendKind::Postgres {
        c.error(
            &keys(&["ha", "enabled"]),
            "needs [state] backend = \"postgres\": the nodes share their state and leader lease there (SQLite is one node's file)",
        );
    }
    let ttl = cfg.ha.lease_ttl.0;
    // The leader renews every quarter TTL and sends a W&B write only while the lease is
    // valid for longer than target.timeout + 1s: with less than twice that, it would
    // never write (daemon/ha.rs).
    let need = (cfg.target.timeout.0 + std::time::Duration::from_secs(1)) * 2;
    if cfg.ha.enabled && ttl < need {
        c.error(
            &keys(&["ha", "lease_ttl"]),
            format!(
                "{} is too short for target.timeout = {}: the leader sends a W&B write only while its lease is valid for longer than a request may take, so lease_ttl must be at least twice target.timeout + 1s ({}s); raise lease_ttl or lower target.timeout",
                cfg.ha.lease_ttl,
                cfg.target.timeout,
                need.as_secs()
            ),
        );
    }
    if ttl < std::time::Duration::from_secs(5) || ttl > std::time::Duration::from_secs(3600) {
        c.error(
            &keys(&["ha", "lease_ttl"]),
            format!("{} is out of range; use \"5s\" to \"1h\" (default \"30s\")", cfg.ha.lease_ttl),
        );
    }
}

fn check_notify(c: &mut Checker<'_, '_>, cfg: &Config, base_dir: &Path, lookup: Lookup<'_>) {
    let Some(n) = &cfg.notify else { return };
    if n.on.is_empty() {
        c.error(
            &keys(&["notify", "on"]),
            "is empty, so nothing would ever be sent; list some of \"held\", \"failed\", \"applied\" (default: all three), or remove [notify]",
        );
    }
    check_secret(
        c,
        &["notify"],
        "webhook_url",
        n.webhook_url_file.as_deref(),
        n.webhook_url_env.as_deref(),
        true,
        base_dir,
        lookup,
    );
    // The URL is a secret: what is wrong with it is said, the URL itself never.
    if let (Some(f), None) = (n.webhook_url_file.as_deref(), n.webhook_url_env.as_deref()) {
        if let Ok(s) = read_secret_file(f, base_dir, lookup) {
            if let Err(e) = check_webhook_url(s.secret.expose()) {
                c.error(&keys(&["notify", "webhook_url_file"]), format!("{}: {e}", s.path.display()));
            }
        }
    }
}

/// A webhook URL idsync will post to: https, or http on loopback (a local relay, tests).
/// The message names no part of the URL: it is a credential.
pub(crate) fn check_webhook_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let https = lower.starts_with("https://");
    if !(https || lower.starts_with("http://")) || host_of(url).is_empty() {
        return Err(
            "does not hold an http(s) URL with a host, like https://hooks.slack.com/services/… (the value is not shown: it is a secret)"
                .into(),
        );
    }
    if !https && !is_loopback(url) {
        return Err("holds a plain http:// URL: the webhook's credential would cross the network unencrypted; use https:// (the value is not shown: it is a secret)".into());
    }
    Ok(())
}

/// One secret of a table: exactly one of `{key}_file` / `{key}_env`; a file must exist,
/// be non-empty, and should not be readable by everyone.
#[allow(clippy::too_many_arguments)]
fn check_secret(
    c: &mut Checker<'_, '_>,
    table: &[&str],
    key: &str,
    file: Option<&str>,
    env: Option<&str>,
    required: bool,
    base_dir: &Path,
    lookup: Lookup<'_>,
) {
    let file_key = format!("{key}_file");
    let env_key = format!("{key}_env");
    let at_file = with(&keys(table), Seg::Key(file_key.clone()));
    let at_env = with(&keys(table), Seg::Key(env_key.clone()));
    match (file, env) {
        (Some(_), Some(_)) => c.error(&at_file, format!("{file_key} and {env_key} are both set; keep one")),
        (None, None) if required => c.error(
            &at_file,
            format!("missing: set {file_key} (a path to a file holding the secret) or {env_key} (an environment variable name)"),
        ),
        (None, None) => {}
        (Some(f), None) => match read_secret_file(f, base_dir, lookup) {
            Err(e) => c.error(&at_file, e),
            Ok(s) if s.world_readable() => {
                let shown = s.path.display();
                let mode = s.mode.unwrap_or(0);
                c.warn(
                    &at_file,
                    format!("{shown} is readable by every user on this machine (mode {mode:04o}); restrict it: chmod 600 {shown}"),
                );
            }
            Ok(_) => {}
        },
        (None, Some(v)) => {
            if let Err(e) = check_env_name(v) {
                c.error(&at_env, e);
            }
        }
    }
}

fn check_emails(c: &mut Checker<'_, '_>, path: &[Seg], list: &[String]) {
    for (i, raw) in list.iter().enumerate() {
        if Email::parse(raw).is_none() {
            c.error(
                &with(path, Seg::Index(i)),
                format!("{raw:?} is not a valid email address, like \"ci-bot@example.com\""),
            );
        }
    }
}

/// The org roles idsync may send. W&B's org "viewer" is deprecated.
pub(crate) fn check_org_role(role: &str) -> Result<(), String> {
    match role.trim().to_ascii_lowercase().as_str() {
        "admin" | "member" => Ok(()),
        "viewer" => Err(
            "\"viewer\" is deprecated by W&B as an org role and idsync never sends it; use \"member\" \
             (a team role may still be \"viewer\")"
                .into(),
        ),
        _ => Err(format!("invalid org role {role:?}; allowed: \"admin\", \"member\"")),
    }
}

/// A managed domain: a plain DNS name, not a free mail provider.
pub(crate) fn check_domain(raw: &str) -> Result<(), String> {
    let d = raw.trim().to_ascii_lowercase();
    if let Some(rest) = d.strip_prefix('@') {
        return Err(format!("write the domain without \"@\": {rest:?}"));
    }
    let valid = d.contains('.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..")
        && d.chars().all(|ch| ch.is_alphanumeric() || ch == '-' || ch == '.');
    if !valid {
        return Err(format!("{raw:?} is not a domain name, like \"example.com\""));
    }
    if PUBLIC_MAIL_DOMAINS.contains(&d.as_str()) {
        return Err(format!(
            "{d:?} is a public mail provider: managing it would put every W&B user with such an address in scope; list only your company's domains"
        ));
    }
    Ok(())
}

/// `"0.84.0"`, `"v0.55"`, `"0.56.1-rc1"` → (major, minor, patch).
pub(crate) fn parse_version(raw: &str) -> Option<(u64, u64, u64)> {
    let t = raw.trim();
    let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
    let core = t.split(['-', '+', ' ']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut nums = [0u64; 3];
    for (slot, part) in nums.iter_mut().zip(&parts) {
        *slot = part.parse().ok()?;
    }
    Some((nums[0], nums[1], nums[2]))
}

fn check_http_url(c: &mut Checker<'_, '_>, path: &[Seg], url: &str, https_only: bool, what_leaks: &str) {
    let lower = url.to_ascii_lowercase();
    let https = lower.starts_with("https://");
    let http = lower.starts_with("http://");
    if !(https || http) || host_of(url).is_empty() {
        c.error(path, format!("{url:?} is not an http(s) URL, like \"https://api.wandb.ai\""));
    } else if http && https_only && !is_loopback(url) {
        // (Loopback is exempt: local fakes and tests, where the secret never leaves the host.)
        c.error(path, format!("{url:?} must use https://"));
    } else if http && !is_loopback(url) {
        c.warn(
            path,
            format!("{url:?} is plain http: {what_leaks} would cross the network unencrypted; use https://"),
        );
    }
}

/// The host part of `scheme://[user@]host[:port]/...`.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

fn is_loopback(url: &str) -> bool {
    let host = host_of(url).to_ascii_lowercase();
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_must_be_https_except_on_loopback_and_are_never_echoed() {
        assert!(check_webhook_url("https://hooks.slack.com/services/T0/B0/SECRETTOKEN").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:8080/hook").is_ok());
        for bad in [
            "http://hooks.example.com/SECRETTOKEN",
            "hooks.example.com/SECRETTOKEN",
            "https:///SECRETTOKEN",
        ] {
            let e = check_webhook_url(bad).unwrap_err();
            assert!(!e.contains("SECRETTOKEN") && !e.contains("example.com"), "{e}");
        }
    }

    #[test]
    fn versions_parse_loosely() {
        assert_eq!(parse_version("0.84.0"), Some((0, 84, 0)));
        assert_eq!(parse_version("v0.55"), Some((0, 55, 0)));
        assert_eq!(parse_version("0.56.1-rc1"), Some((0, 56, 1)));
        assert_eq!(parse_version("latest"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("1.2.3.4"), None);
    }

    #[test]
    fn hosts_are_extracted_for_loopback_checks() {
        assert_eq!(host_of("http://127.0.0.1:8089/x"), "127.0.0.1");
        assert_eq!(host_of("ldap://user@[::1]:389"), "::1");
        assert_eq!(host_of("ldaps://"), "");
        assert!(is_loopback("http://localhost:8089"));
        assert!(!is_loopback("http://wandb.example.com"));
    }

    #[test]
    fn domains_must_be_plain_and_not_public() {
        assert!(check_domain("Example.COM").is_ok());
        assert!(check_domain("@example.com").unwrap_err().contains("without \"@\""));
        assert!(check_domain("example").is_err());
        assert!(check_domain("GMail.com").unwrap_err().contains("public mail provider"));
    }
}
