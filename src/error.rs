//! The top-level error: every failure a command can end with, each with enough context
//! for a human to act on. Nothing here carries a secret.

use crate::apply::ApplyError;
use crate::config::ConfigError;
use crate::report::ReportError;
use crate::source::SourceError;
use crate::state::StateError;
use crate::wandb::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the directory failed: {0}\nNothing was changed in W&B.")]
    Source(#[from] SourceError),
    #[error("W&B: {0}")]
    Target(#[from] TargetError),
    #[error("state store: {0}")]
    State(#[from] StateError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}
