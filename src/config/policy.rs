//! From the config file to the plan core's [`Policy`], and the pipeline inventory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::doc::{entry, keys, with, Doc, Seg};
use super::error::{from_toml, ConfigError};
use super::types::{Config, PipelineInventory};
use super::validate::{check_org_role, parse_version, Checker};
use crate::model::{Email, OrgRole, TeamRole};
use crate::plan::{GuardLimits, OrgRoleRule, PipelineOwner, Policy, TeamRule};

/// Servers before this version deactivate on `DELETE` instead of deleting.
const DELETE_DELETES_FROM: (u64, u64, u64) = (0, 56, 0);

impl Config {
    /// The plan core's view of this config, plus the pipeline inventory's owners.
    ///
    /// A config that passed [`super::load`] converts without error; one built in code is
    /// checked here for what the conversion needs (emails, org roles, the server version).
    pub fn policy(&self, inventory: Option<&PipelineInventory>) -> Result<Policy, ConfigError> {
        let doc = Doc::detached("configuration");
        let mut c = Checker::new(&doc);
        let p = &self.policy;
        let g = &self.guards;

        let ignore_users = emails(&mut c, &keys(&["policy", "ignore_users"]), &p.ignore_users)
            .into_iter()
            .collect::<BTreeSet<_>>();
        let default_org_role = org_role(&mut c, &keys(&["policy", "default_org_role"]), &p.default_org_role);
        let org_roles = p
            .org_roles
            .iter()
            .enumerate()
            .map(|(i, r)| OrgRoleRule {
                group: r.group.trim().to_string(),
                role: org_role(&mut c, &entry(&["policy", "org_roles"], i, "role"), &r.role),
            })
            .collect();
        let teams = p
            .teams
            .iter()
            .map(|t| TeamRule {
                team: t.team.trim().to_string(),
                group: t.group.trim().to_string(),
                role: TeamRole::new(&t.role),
                create: t.create,
            })
            .collect();

        let mut pipeline_owners: Vec<PipelineOwner> = emails(&mut c, &keys(&["guards", "pipeline_key_owners"]), &g.pipeline_key_owners)
            .into_iter()
            .map(|owner| PipelineOwner {
                owner,
                team: None,
                name: None,
            })
            .collect();
        for (i, e) in inventory.map(|inv| inv.pipeline.as_slice()).unwrap_or_default().iter().enumerate() {
            match Email::parse(&e.owner) {
                Some(owner) => pipeline_owners.push(PipelineOwner {
                    owner,
                    team: non_empty(e.team.as_deref()),
                    name: non_empty(e.name.as_deref()),
                }),
                None => c.error(
                    &entry(&["pipeline"], i, "owner"),
                    format!("{:?} is not a valid email address", e.owner),
                ),
            }
        }

        let delete_deactivates = match self.target.server_version.as_deref() {
            None => false,
            Some(v) => match parse_version(v) {
                Some(version) => version < DELETE_DELETES_FROM,
                None => {
                    c.error(
                        &keys(&["target", "server_version"]),
                        format!("{v:?} is not a version like \"0.84.0\""),
                    );
                    false
                }
            },
        };

        let (problems, _) = c.finish();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                origin: doc.origin().to_string(),
                problems,
            });
        }
        Ok(Policy {
            managed_domains: p.managed_domains.iter().map(|d| d.trim().to_ascii_lowercase()).collect(),
            ignore_users,
            self_username: non_empty(Some(&self.target.username)),
            auto_add: p.auto_add,
            auto_add_group: non_empty(p.auto_add_group.as_deref()),
            default_org_role,
            deprovision: p.deprovision,
            grace_period: p.grace_period.0,
            disabled_grace_period: p.disabled_grace_period.0,
            team_membership: p.team_membership,
            org_roles,
            teams,
            guards: GuardLimits {
                min_org_admins: g.min_org_admins,
                min_team_admins: g.min_team_admins,
                max_deprovisions: g.max_deprovisions,
                max_deprovision_percent: g.max_deprovision_percent,
                max_team_removals: g.max_team_removals,
                max_source_shrink_percent: g.max_source_shrink_percent,
                source_health_window: g.source_health_window.0,
                max_seats: g.max_seats,
                pipeline_owners,
            },
            deployment: self.target.deployment,
            delete_deactivates,
            restore_window: p.restore_window.0,
        })
    }

    /// Reads `guards.pipeline_inventory` (TOML: `[[pipeline]] owner, team, name`), a
    /// relative path being resolved against `base_dir` (the config file's directory).
    /// `Ok(None)` when the key is not set.
    pub fn load_inventory(&self, base_dir: &Path) -> Result<Option<PipelineInventory>, ConfigError> {
        let Some(raw) = self.guards.pipeline_inventory.as_deref().map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let path = resolve(raw, base_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            what: "[guards] pipeline_inventory".into(),
            path: path.clone(),
            source,
        })?;
        parse_inventory(&text, &path).map(Some)
    }
}

/// Parses a pipeline inventory; errors name `origin` and the line.
pub fn parse_inventory(text: &str, origin: &Path) -> Result<PipelineInventory, ConfigError> {
    let doc = Doc::new(origin, text);
    let inv: PipelineInventory = toml::from_str(text).map_err(|e| from_toml(&doc, &e))?;
    let mut c = Checker::new(&doc);
    for (i, e) in inv.pipeline.iter().enumerate() {
        if Email::parse(&e.owner).is_none() {
            c.error(
                &entry(&["pipeline"], i, "owner"),
                format!(
                    "{:?} is not a valid email address; name the W&B user whose API key the pipeline uses",
                    e.owner
                ),
            );
        }
    }
    let (problems, _) = c.finish();
    if problems.is_empty() {
        Ok(inv)
    } else {
        Err(ConfigError::Invalid {
            origin: origin.display().to_string(),
            problems,
        })
    }
}

fn resolve(p: &str, base_dir: &Path) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn emails(c: &mut Checker<'_, '_>, path: &[Seg], list: &[String]) -> Vec<Email> {
    let mut out = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        match Email::parse(raw) {
            Some(e) => out.push(e),
            None => c.error(&with(path, Seg::Index(i)), format!("{raw:?} is not a valid email address")),
        }
    }
    out
}

fn org_role(c: &mut Checker<'_, '_>, path: &[Seg], raw: &str) -> OrgRole {
    if let Err(e) = check_org_role(raw) {
        c.error(path, e);
    }
    OrgRole::parse(raw)
}
