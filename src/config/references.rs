//! `check-config --connect`: the names the policy uses, checked against what the directory
//! and W&B have. A `policy.teams` team that W&B lacks (and idsync may not create), or a
//! group the directory lacks, is an error located at its key, with the nearest name that
//! does exist. Pure: the snapshots are inputs.

use std::path::Path;

use super::doc::{entry, keys, Doc, Seg};
use super::error::ConfigError;
use super::validate::Checker;
use super::Config;
use crate::model::{DirectorySnapshot, OrgSnapshot};

/// The policy's references that the directory or W&B do not have, each located in the
/// config file; `Ok` when there are none.
pub fn check_references(config: &Config, path: &Path, dir: &DirectorySnapshot, org: &OrgSnapshot) -> Result<(), ConfigError> {
    // Re-read only to locate the keys; a file that changed since is located as it is now.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let doc = Doc::new(path, &text);
    let problems = references(config, &doc, dir, org);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            origin: doc.origin().to_string(),
            problems,
        })
    }
}

pub(crate) fn references(cfg: &Config, doc: &Doc<'_>, dir: &DirectorySnapshot, org: &OrgSnapshot) -> Vec<String> {
    let mut c = Checker::new(doc);
    let p = &cfg.policy;
    let mut groups: Vec<(Vec<Seg>, &str)> = Vec::new();
    if let Some(g) = p.auto_add_group.as_deref() {
        groups.push((keys(&["policy", "auto_add_group"]), g));
    }
    for (i, r) in p.org_roles.iter().enumerate() {
        groups.push((entry(&["policy", "org_roles"], i, "group"), &r.group));
    }
    for (i, r) in p.teams.iter().enumerate() {
        groups.push((entry(&["policy", "teams"], i, "group"), &r.group));
    }
    for (at, g) in groups {
        if !dir.groups.iter().any(|x| x.matches(g)) {
            c.error(&at, missing_group(g, dir));
        }
    }
    let team_names: Vec<&str> = org.teams.iter().map(|t| t.name.as_str()).collect();
    for (i, r) in p.teams.iter().enumerate() {
        if r.create || team_names.contains(&r.team.as_str()) {
            continue;
        }
        let mut msg = format!(
            "W&B has no team {:?} and create = false, so this mapping can change nothing",
            r.team
        );
        match suggestion(&r.team, &team_names) {
            Some(near) => msg.push_str(&format!("; did you mean {near:?}? (team names are matched exactly)")),
            None if team_names.is_empty() => msg.push_str("; W&B has no teams at all"),
            None => msg.push_str(&format!("; W&B has: {}", sample(&team_names))),
        }
        msg.push_str("; fix the name, or set create = true to have idsync create the team");
        c.error(&entry(&["policy", "teams"], i, "team"), msg);
    }
    c.finish().0
}

fn missing_group(reference: &str, dir: &DirectorySnapshot) -> String {
    let mut msg = format!(
        "the directory has no group {reference:?} ({} groups read), so this rule matches nobody",
        dir.groups.len()
    );
    // An LDAP group named by its cn instead of its DN.
    if let Some(g) = dir.groups.iter().find(|g| g.dn.is_some() && g.name.eq_ignore_ascii_case(reference)) {
        if let Some(dn) = &g.dn {
            msg.push_str(&format!("; groups of this source are named by DN: did you mean {dn:?}?"));
            return msg;
        }
    }
    let names: Vec<&str> = dir.groups.iter().map(|g| g.dn.as_deref().unwrap_or(&g.name)).collect();
    match suggestion(reference, &names) {
        Some(near) => msg.push_str(&format!("; did you mean {near:?}?")),
        None if names.is_empty() => msg.push_str("; check [source.groups] base and filter"),
        None => msg.push_str("; check the name against the directory (and [source.groups] base and filter)"),
    }
    msg
}

/// The existing name closest to `wanted`: the same name in another case first, else the
/// one fewest edits away when that is few enough to be a typo: two edits (one for names of
/// up to three characters, where two edits make another word). An absolute bound, since
/// DNs share long suffixes: `cn=ghosts,…` is not a typo of `cn=admins,…`.
fn suggestion<'n>(wanted: &str, names: &[&'n str]) -> Option<&'n str> {
    if let Some(same) = names.iter().find(|n| n.eq_ignore_ascii_case(wanted)) {
        return Some(same);
    }
    let w = wanted.to_lowercase();
    let limit = if w.chars().count() <= 3 { 1 } else { 2 };
    names
        .iter()
        .map(|n| (*n, strsim::damerau_levenshtein(&w, &n.to_lowercase())))
        .filter(|(_, d)| *d <= limit)
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)))
        .map(|(n, _)| n)
}

/// Up to five names, for "W&B has: ...".
fn sample(names: &[&str]) -> String {
    let mut v: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    if names.len() > 5 {
        v.push(format!("and {} more", names.len() - 5));
    }
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_prefer_the_same_name_in_another_case_then_few_edits() {
        let names = ["ml-research", "data-platform", "ML"];
        assert_eq!(suggestion("ML-Research", &names), Some("ml-research"));
        assert_eq!(suggestion("ml-reserch", &names), Some("ml-research"));
        assert_eq!(suggestion("ml", &names), Some("ML"));
        assert_eq!(suggestion("finance", &names), None);
        assert_eq!(suggestion("cv", &names), None, "two edits from \"ML\" is another word");
        let dns = ["cn=ml-research,ou=groups,dc=example,dc=com"];
        assert_eq!(suggestion("cn=ml-reseach,ou=groups,dc=example,dc=com", &dns), Some(dns[0]));
        let dns = ["cn=admins,ou=groups,dc=example,dc=com"];
        assert_eq!(suggestion("cn=ghosts,ou=groups,dc=example,dc=com", &dns), None);
    }
}
