//! Secrets: never inline in the config, always `*_file` (a path) or `*_env` (a variable
//! name). Messages name the key and the file or variable, never the value.

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::types::{Config, NotifyConfig, SourceConfig, SourceKind, StateBackendKind};
use crate::secret::Secret;

/// Reads an environment variable; tests pass their own so they never touch the process's.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where systemd's `LoadCredential=` puts credentials.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Reads one secret from `file` (a path) or `env` (a variable name); exactly one of them
/// must be set. `what` names the secret's key without its suffix, e.g. `"[target] api_key"`,
/// and messages say `[target] api_key_file: ...`.
///
/// A relative `file` is looked up in `$CREDENTIALS_DIRECTORY` first (when set and the file
/// is there), then against `base_dir` (the config file's directory). One trailing newline
/// is trimmed. A missing file, an unset variable or an empty secret is an error.
pub fn read_secret(file: Option<&str>, env: Option<&str>, what: &str, base_dir: &Path) -> Result<Secret, ConfigError> {
    read_secret_with(file, env, what, base_dir, &process_env)
}

pub(crate) fn read_secret_with(
    file: Option<&str>,
    env: Option<&str>,
    what: &str,
    base_dir: &Path,
    lookup: Lookup<'_>,
) -> Result<Secret, ConfigError> {
    let result = match (file, env) {
        (Some(_), Some(_)) => Err(format!("{what}_file and {what}_env are both set; keep one")),
        (None, None) => Err(format!(
            "{what}: not configured; set {what}_file (a path to a file holding it) or {what}_env (an environment variable name)"
        )),
        (Some(f), None) => read_secret_file(f, base_dir, lookup)
            .map(|s| s.secret)
            .map_err(|e| format!("{what}_file: {e}")),
        (None, Some(v)) => read_secret_env(v, lookup).map_err(|e| format!("{what}_env: {e}")),
    };
    result.map_err(|message| ConfigError::Secret { message })
}

/// A secret read from a file, with where it was found and its permission bits.
pub(crate) struct FileSecret {
    pub secret: Secret,
    pub path: PathBuf,
    /// Unix permission bits; `None` elsewhere.
    pub mode: Option<u32>,
}

impl FileSecret {
    /// Other users on the machine can read it.
    pub fn world_readable(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o004 != 0)
    }
}

/// Reads a `*_file` secret. The error says which path(s) were tried and what to do.
pub(crate) fn read_secret_file(file: &str, base_dir: &Path, lookup: Lookup<'_>) -> Result<FileSecret, String> {
    if file.trim().is_empty() {
        return Err("the path is empty; name the file holding the secret".into());
    }
    let given = Path::new(file);
    let cred_dir = lookup(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty());
    let path = if given.is_absolute() {
        given.to_path_buf()
    } else {
        match cred_dir.as_deref().map(|d| Path::new(d).join(given)) {
            Some(p) if p.exists() => p,
            _ => base_dir.join(given),
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        let mut msg = format!("cannot read {}: {e}", path.display());
        if !given.is_absolute() {
            match &cred_dir {
                Some(d) => msg.push_str(&format!(" (${CREDENTIALS_DIRECTORY} is set, to {d}, and has no {file} either)")),
                None => msg.push_str(&format!(
                    " (${CREDENTIALS_DIRECTORY} is not set, so a relative path is looked up next to the config only; \
                     under systemd, LoadCredential= sets it)"
                )),
            }
        }
        if e.kind() == std::io::ErrorKind::NotFound {
            msg.push_str("; create it (chmod 600) or fix the path");
        }
        msg
    })?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let value = trim_one_newline(&text);
    if value.is_empty() {
        return Err(format!("{} is empty; write the secret into it", path.display()));
    }
    Ok(FileSecret {
        secret: Secret::new(value),
        mode: mode_of(&path),
        path,
    })
}

/// Reads an `*_env` secret.
pub(crate) fn read_secret_env(name: &str, lookup: Lookup<'_>) -> Result<Secret, String> {
    check_env_name(name)?;
    match lookup(name) {
        Some(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(format!(
            "environment variable {name} is not set or is empty; set it, or use the *_file key instead"
        )),
    }
}

/// A variable name that the environment can hold.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("the variable name is empty; name the environment variable holding the secret".into())
    } else if name.contains('=') || name.contains('\0') {
        Err(format!("{name:?} is not a valid environment variable name"))
    } else {
        Ok(())
    }
}

/// Editors and `echo` add one newline; a second one is taken to be part of the secret.
fn trim_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n").or_else(|| s.strip_suffix('\n')).unwrap_or(s)
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_: &Path) -> Option<u32> {
    None
}

/// The secret a source kind needs: its key name (without `_file`/`_env`) and the two
/// settings. `None` when the kind needs none (ldif, or an anonymous LDAP bind).
pub(crate) fn source_secret_keys(s: &SourceConfig) -> Option<(&'static str, Option<&str>, Option<&str>)> {
    match s.kind {
        SourceKind::Ldap if s.bind_dn.as_deref().is_some_and(|d| !d.trim().is_empty()) => {
            Some(("bind_password", s.bind_password_file.as_deref(), s.bind_password_env.as_deref()))
        }
        SourceKind::Ldap | SourceKind::Ldif => None,
        SourceKind::Scim | SourceKind::Okta => Some(("token", s.token_file.as_deref(), s.token_env.as_deref())),
        SourceKind::Entra => Some(("client_secret", s.client_secret_file.as_deref(), s.client_secret_env.as_deref())),
    }
}

impl NotifyConfig {
    /// The webhook URL, a secret (`webhook_url_file` / `webhook_url_env`).
    pub fn webhook_url(&self, base_dir: &Path) -> Result<Secret, ConfigError> {
        read_secret(
            self.webhook_url_file.as_deref(),
            self.webhook_url_env.as_deref(),
            "[notify] webhook_url",
            base_dir,
        )
    }
}

impl Config {
    /// The W&B API key (`target.api_key_file` / `target.api_key_env`). Relative paths
    /// are resolved as [`read_secret`] describes, `base_dir` being the config's directory.
    pub fn target_api_key(&self, base_dir: &Path) -> Result<Secret, ConfigError> {
        read_secret(
            self.target.api_key_file.as_deref(),
            self.target.api_key_env.as_deref(),
            "[target] api_key",
            base_dir,
        )
    }

    /// The `[notify]` webhook URL (`webhook_url_file` / `webhook_url_env`), a secret:
    /// `Ok(None)` without a `[notify]` section. Read afresh at each use, like the API key.
    pub fn notify_webhook_url(&self, base_dir: &Path) -> Result<Option<Secret>, ConfigError> {
        self.notify.as_ref().map(|n| n.webhook_url(base_dir)).transpose()
    }

    /// The `[state]` PostgreSQL URL (`url_file` / `url_env`), a secret: `Ok(None)` with
    /// the SQLite backend.
    pub fn state_url(&self, base_dir: &Path) -> Result<Option<Secret>, ConfigError> {
        match self.state.backend {
            StateBackendKind::Sqlite => Ok(None),
            StateBackendKind::Postgres => read_secret(
                self.state.url_file.as_deref(),
                self.state.url_env.as_deref(),
                "[state] url",
                base_dir,
            )
            .map(Some),
        }
    }

    /// The source's credential: the LDAP bind password, the SCIM/Okta token or the Entra
    /// client secret. `Ok(None)` when the kind needs none (ldif; ldap without `bind_dn`).
    pub fn source_secret(&self, base_dir: &Path) -> Result<Option<Secret>, ConfigError> {
        match source_secret_keys(&self.source) {
            None => Ok(None),
            Some((key, file, env)) => read_secret(file, env, &format!("[source] {key}"), base_dir).map(Some),
        }
    }
}
