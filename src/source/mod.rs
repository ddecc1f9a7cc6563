//! Directory sources: each builds a complete `DirectorySnapshot` or fails.
//!
//! `entries` turns raw LDAP-style entries into a snapshot (shared by LDIF and LDAP),
//! `filter` evaluates LDAP search filters locally, `ldif` reads an export file, and
//! `ldap` reads a live LDAP / Active Directory server.

pub mod entries;
pub mod filter;
pub mod ldap;
pub mod ldif;
// Identity-provider sources and their shared HTTP plumbing.
pub mod entra;
pub mod http;
pub mod okta;
pub mod scim;

use std::path::{Path, PathBuf};

use crate::config::{SourceConfig, SourceKind};
use crate::model::DirectorySnapshot;

/// Why the directory could not be read. Every variant means "no snapshot at all".
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path:line: what is wrong`, the form editors and CI logs link to.
    #[error("{}:{line}: {msg}", path.display())]
    Ldif { path: PathBuf, line: usize, msg: String },
    #[error("invalid {key}: {msg}")]
    Filter { key: String, msg: String },
    #[error("directory entry {dn}: {msg}")]
    Entry { dn: String, msg: String },
    /// A live server failed: which server, which operation, and what to do.
    #[error("LDAP server {server}: {op} failed: {detail}")]
    Ldap { server: String, op: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// Reads the whole directory the config describes. Relative paths are resolved against
/// `config_dir` (the config file's directory).
pub async fn read_directory(cfg: &SourceConfig, config_dir: &Path) -> Result<DirectorySnapshot, SourceError> {
    match cfg.kind {
        SourceKind::Ldif => {
            let Some(path) = cfg.path.as_deref() else {
                return Err(SourceError::Other("source.path is required when source.kind = \"ldif\"".into()));
            };
            let path = ldif::resolve_path(path, config_dir);
            let (users, groups, dialect) = (cfg.users.clone(), cfg.groups.clone(), cfg.dialect);
            // Parsing a large export is CPU and disk work: keep it off the async workers.
            tokio::task::spawn_blocking(move || ldif::read_ldif(&path, &users, &groups, dialect))
                .await
                .map_err(|e| SourceError::Other(format!("the LDIF reader stopped unexpectedly: {e}")))?
        }
        SourceKind::Ldap => {
            let password = ldap_password(cfg, config_dir)?;
            ldap::LdapSource::new(cfg, config_dir, password.as_ref())?.read().await
        }
        SourceKind::Scim => scim::read(cfg, config_dir).await,
        SourceKind::Okta => okta::read(cfg, config_dir).await,
        SourceKind::Entra => entra::read(cfg, config_dir).await,
    }
}

/// Connects to the source and authenticates without reading it, for `check-config
/// --connect`: `Some(what happened)` for sources that have a connection step, `None` for
/// those that have none (an LDIF file).
pub async fn check_connection(cfg: &SourceConfig, config_dir: &Path) -> Result<Option<String>, SourceError> {
    match cfg.kind {
        SourceKind::Ldap => {
            let password = ldap_password(cfg, config_dir)?;
            let line = ldap::LdapSource::new(cfg, config_dir, password.as_ref())?.check_bind().await?;
            Ok(Some(line))
        }
        _ => Ok(None),
    }
}

/// The bind password, when `bind_dn` is set.
fn ldap_password(cfg: &SourceConfig, config_dir: &Path) -> Result<Option<crate::secret::Secret>, SourceError> {
    if cfg.bind_dn.as_deref().is_none_or(|d| d.trim().is_empty()) {
        return Ok(None);
    }
    crate::config::read_secret(
        cfg.bind_password_file.as_deref(),
        cfg.bind_password_env.as_deref(),
        "[source] bind_password",
        config_dir,
    )
    .map(Some)
    .map_err(|e| SourceError::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LdapDialect;

    fn config(kind: SourceKind, path: Option<&str>) -> SourceConfig {
        let mut c: SourceConfig = toml::from_str("kind = \"ldif\"").unwrap();
        c.kind = kind;
        c.path = path.map(str::to_string);
        c.dialect = LdapDialect::Openldap;
        c
    }

    #[tokio::test]
    async fn ldif_paths_are_relative_to_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dir.ldif"),
            "dn: uid=a,dc=x\nobjectClass: inetOrgPerson\nuid: a\nmail: a@x.com\n",
        )
        .unwrap();
        let s = read_directory(&config(SourceKind::Ldif, Some("dir.ldif")), dir.path())
            .await
            .unwrap();
        assert_eq!(s.kind, "ldif");
        assert_eq!(s.people.len(), 1);
        assert_eq!(s.people[0].email.as_deref(), Some("a@x.com"));

        let e = read_directory(&config(SourceKind::Ldif, Some("missing.ldif")), dir.path())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("missing.ldif"), "{e}");
        let e = read_directory(&config(SourceKind::Ldif, None), dir.path()).await.unwrap_err();
        assert!(e.to_string().contains("source.path"), "{e}");
    }
}
