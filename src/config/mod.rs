//! Configuration: the TOML shape (SPEC §3), loading with located errors, cross-checks,
//! secrets, and conversion to the plan core's [`crate::plan::Policy`].

mod cron;
mod doc;
mod error;
mod policy;
mod references;
mod secrets;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use crate::duration::HumanDuration;
pub use cron::parse_schedule;
pub use error::ConfigError;
pub use policy::parse_inventory;
pub use references::check_references;
pub use secrets::read_secret;
pub use types::*;
pub(crate) use validate::check_webhook_url;

use doc::Doc;
use secrets::{process_env, Lookup};

/// Where the config is looked for without `-c`.
pub const DEFAULT_PATH: &str = "/etc/idsync/idsync.toml";

/// A parsed and validated config, where it came from, and what is worth a warning.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    /// Problems that do not stop idsync (a world-readable secret file, plain http), each
    /// located like an error.
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The config file's directory: relative paths in the config are resolved against it.
    pub fn base_dir(&self) -> PathBuf {
        base_dir_of(&self.path)
    }
}

/// `$IDSYNC_CONFIG` when set and non-empty, else `/etc/idsync/idsync.toml`.
pub fn default_path() -> PathBuf {
    default_path_from(std::env::var_os("IDSYNC_CONFIG"))
}

fn default_path_from(var: Option<std::ffi::OsString>) -> PathBuf {
    match var {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = read_config_text(path)?;
    parse_str(&text, path)
}

/// [`load`], plus the checks of the environment a run started here would see (`*_env`
/// variables set, the LDIF file readable): what `check-config` uses, so that it catches
/// what `plan` would reject. Other commands use [`load`], since `status` or `approvals`
/// need neither.
pub fn load_strict(path: &Path) -> Result<Loaded, ConfigError> {
    let text = read_config_text(path)?;
    parse_strict_with(&text, path, &process_env)
}

pub(crate) fn parse_strict_with(text: &str, origin: &Path, lookup: Lookup<'_>) -> Result<Loaded, ConfigError> {
    let doc = Doc::new(origin, text);
    let config: Config = toml::from_str(text).map_err(|e| error::from_toml(&doc, &e))?;
    let base = base_dir_of(origin);
    let (mut errors, mut warnings) = validate::check(&config, &doc, &base, lookup);
    let (env_errors, env_warnings) = validate::check_environment(&config, &doc, &base, lookup);
    errors.extend(env_errors);
    warnings.extend(env_warnings);
    finish(config, &doc, origin, errors, warnings)
}

fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ConfigError::NotFound { path: path.to_path_buf() },
        _ => ConfigError::Read {
            what: "config file".into(),
            path: path.to_path_buf(),
            source,
        },
    })
}

fn finish(config: Config, doc: &Doc<'_>, origin: &Path, errors: Vec<String>, warnings: Vec<String>) -> Result<Loaded, ConfigError> {
    if !errors.is_empty() {
        return Err(ConfigError::Invalid {
            origin: doc.origin().to_string(),
            problems: errors,
        });
    }
    Ok(Loaded {
        config,
        path: origin.to_path_buf(),
        warnings,
    })
}

/// Parses and validates config text as if read from `origin` (which names the file in
/// messages and whose directory relative paths are resolved against).
pub fn parse_str(text: &str, origin: &Path) -> Result<Loaded, ConfigError> {
    parse_with(text, origin, &process_env)
}

pub(crate) fn parse_with(text: &str, origin: &Path, lookup: Lookup<'_>) -> Result<Loaded, ConfigError> {
    let doc = Doc::new(origin, text);
    let config: Config = toml::from_str(text).map_err(|e| error::from_toml(&doc, &e))?;
    let (errors, warnings) = validate::check(&config, &doc, &base_dir_of(origin), lookup);
    finish(config, &doc, origin, errors, warnings)
}

impl Config {
    /// Runs the load-time cross-checks on a config built in code. Returns the warnings;
    /// errors name keys but no lines (there is no file).
    pub fn validate(&self, base_dir: &Path) -> Result<Vec<String>, ConfigError> {
        let doc = Doc::detached("configuration");
        let (errors, warnings) = validate::check(self, &doc, base_dir, &process_env);
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigError::Invalid {
                origin: doc.origin().to_string(),
                problems: errors,
            })
        }
    }
}

/// The directory of a config file, `.` for a bare file name.
fn base_dir_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
