//! Entry points for the coverage-guided fuzz targets in `fuzz/` (issue 13): each feeds
//! arbitrary bytes to one parser of outside input, the way the shell would, and must
//! never panic, loop or allocate without bound. Kept in the library (not the fuzz crate)
//! so that a unit test runs every entry over its seed corpus and they cannot rot.

use std::path::Path;

use serde_json::Value;

use crate::config::{LdapDialect, LdapGroupsConfig, LdapUsersConfig};
use crate::model::{DirectorySnapshot, OrgSnapshot};
use crate::plan::{self, PlanInput, PlanState, Policy};
use crate::report::{self, Format, RenderOptions};

/// One fuzz target: bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: what `scripts/fuzz.sh` builds and runs.
pub const TARGETS: [(&str, Target); 6] = [
    ("config", config),
    ("ldif", ldif),
    ("ldap_filter", ldap_filter),
    ("wandb_scim", wandb_scim),
    ("idp_sources", idp_sources),
    ("saved_plan", saved_plan),
];

/// The config file: TOML, its shape, and every cross-check (no environment variables).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(loaded) = crate::config::parse_with(text, Path::new("/nonexistent/idsync.toml"), &|_| None) {
        let _ = loaded.config.policy(None);
    }
}

/// An LDIF export, through the snapshot and a plan over it (its output is outside input
/// too: DNs and names end up in reports).
pub fn ldif(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let users = LdapUsersConfig::default();
    let groups = LdapGroupsConfig::default();
    let path = Path::new("/fuzz/directory.ldif");
    for dialect in [LdapDialect::default(), LdapDialect::ActiveDirectory] {
        if let Ok(dir) = crate::source::ldif::read_ldif_text(text, path, &users, &groups, dialect) {
            plan_and_render(&dir, &OrgSnapshot::default());
        }
    }
}

/// An LDAP filter from the config, evaluated against an entry built from the same bytes.
pub fn ldap_filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (filter, values) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(f) = crate::source::filter::parse(filter) {
        let mut e = crate::source::entries::Entry::new("uid=fuzz,dc=example,dc=com");
        for line in values.lines() {
            if let Some((attr, v)) = line.split_once(':') {
                e.add(attr, v.as_bytes().to_vec());
            }
        }
        let _ = f.matches(&e);
    }
}

/// What W&B's SCIM API sends: list pages, users, teams and error bodies.
pub fn wandb_scim(data: &[u8]) {
    let _ = crate::wandb::wire_fuzz(data);
}

/// What the identity providers send: SCIM, Okta and Entra resources, Okta's `Link`
/// headers and Entra's token responses.
pub fn idp_sources(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let values: Vec<&str> = text.lines().collect();
        let _ = crate::source::okta::next_link(&values);
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let items: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => std::iter::once(&v).chain(o.values()).collect(),
        _ => vec![&v],
    };
    for it in items {
        let _ = crate::source::scim::parse_user(it);
        let _ = crate::source::scim::parse_group(it);
        let _ = crate::source::scim::parse_members(it, "g", "group");
        let _ = crate::source::okta::parse_user(it);
        let _ = crate::source::okta::parse_group(it);
        let _ = crate::source::entra::parse_user(it);
        let _ = crate::source::entra::token_lifetime(it, std::time::Duration::from_secs(60));
    }
}

/// A saved plan (`apply --plan`, `approve`, `show`), rendered in every format.
pub fn saved_plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = report::parse_plan_json(text) {
        for format in [Format::Text, Format::Markdown, Format::Json] {
            let _ = report::render(&p, format, &RenderOptions::default());
        }
    }
}

fn plan_and_render(dir: &DirectorySnapshot, org: &OrgSnapshot) {
    let policy = Policy {
        managed_domains: vec!["example.com".into()],
        ..Policy::default()
    };
    let p = plan::plan(PlanInput {
        directory: dir,
        org,
        policy: &policy,
        state: &PlanState::default(),
        now: chrono::DateTime::UNIX_EPOCH,
    });
    let _ = report::render(&p, Format::Text, &RenderOptions::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target over its committed seed corpus (fuzz/corpus/<target>/): the targets
    /// build and run in every test run, and every crash the fuzzer found stays fixed.
    #[test]
    fn every_fuzz_target_survives_its_seed_corpus() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let mut n = 0;
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = e.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                n += 1;
            }
            assert!(n > 0, "no seeds for fuzz target {name} in {}", dir.display());
        }
    }
}
