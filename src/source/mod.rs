//! Directory sources: each builds a complete `DirectorySnapshot` or fails.
//!
//! `entries` turns raw LDAP-style entries into a snapshot (shared by LDIF and LDAP),
//! `filter` evaluates LDAP search filters locally, and `ldif` reads an export file.

pub mod entries;
pub mod filter;
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
    #[error("source kind \"{kind}\" is not available in this release of idsync; it arrives in a later release (meanwhile, export the directory with `ldapsearch -LLL` and use kind = \"ldif\")")]
    Unsupported { kind: String },
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
        SourceKind::Scim => scim::read(cfg, config_dir).await,
        SourceKind::Okta => okta::read(cfg, config_dir).await,
        SourceKind::Entra => entra::read(cfg, config_dir).await,
        kind => Err(SourceError::Unsupported {
            kind: kind.as_str().to_string(),
        }),
    }
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

    #[tokio::test]
    async fn other_kinds_arrive_later() {
        for kind in [SourceKind::Ldap] {
            let e = read_directory(&config(kind, None), Path::new(".")).await.unwrap_err();
            assert!(matches!(e, SourceError::Unsupported { .. }));
            assert!(
                e.to_string().contains(kind.as_str()) && e.to_string().contains("later release"),
                "{e}"
            );
        }
    }
}
