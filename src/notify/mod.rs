//! `[notify]`: after a run (the daemon's, `run --once`, `idsync apply`), one webhook message
//! when a human should look: the set of held actions changed, the run failed after one
//! that did not, or something was applied (as `notify.on` says).
//!
//! - `message.rs`: whether a message is due and what it says (pure);
//! - `webhook.rs`: posting it, with bounded retries;
//! - this file: the shell around them. It reads the webhook URL (a secret, afresh each
//!   time, like the API key), what the store remembers (the held ids the last message
//!   listed, the previous run's result), posts, and remembers what it listed.
//!
//! Invariants: a notification never fails or changes the run it reports (it runs after
//! the run is recorded, and every problem is a [`Delivery::Failed`] value the caller logs
//! as a warning); it is bounded in time ([`webhook::SendPolicy`]); the URL is a
//! [`Secret`](crate::secret::Secret) and appears in no message, error or log line; what
//! was listed is remembered only once the webhook accepted it, so a failed message is
//! tried again with the next run that is worth one. Never uses `daemon` or `cli`: the
//! outcome goes up as a value.

pub mod message;
pub mod webhook;

use std::path::PathBuf;

use chrono::Utc;

pub use message::{HeldItem, Memory, Message, RunFacts};
pub use webhook::{SendError, SendPolicy};

use crate::config::{NotifyConfig, NotifyOn};
use crate::state::{Backend, StateError, Store};
use crate::sync::{Env, RunOutcome, RunResult};

impl RunFacts {
    /// The facts of a finished run.
    pub fn of(o: &RunOutcome, command: &str, target: &str) -> RunFacts {
        let held = o.plan.as_ref().map(|p| {
            p.held()
                .map(|a| HeldItem {
                    id: a.id.to_string(),
                    kind: a.kind.as_str().to_string(),
                    user: a.user.as_ref().map(|u| u.to_string()),
                    team: a.team.clone(),
                    guard: a.guard.map(|g| g.as_str().to_string()),
                    reason: a.held_reason.clone().unwrap_or_else(|| a.reason.clone()),
                    overridable: a.overridable(),
                })
                .collect()
        });
        let (applied, failed, skipped) = o
            .report
            .as_ref()
            .map(|r| (r.applied(), r.failed(), r.skipped()))
            .unwrap_or((0, 0, 0));
        RunFacts {
            run_id: o.run_id.clone(),
            command: command.to_string(),
            result: o.result,
            finished: o.finished,
            target: target.to_string(),
            error: o.error.clone(),
            held,
            ready: o.plan.as_ref().map(|p| p.ready().count()).unwrap_or(0),
            applied,
            failed,
            skipped,
            suspicious: o.plan.as_ref().and_then(|p| p.source.suspicious.clone()),
        }
    }

    /// A run that failed before it had a plan (a read failed).
    pub fn failed_early(run_id: &str, command: &str, target: &str, error: &str) -> RunFacts {
        RunFacts {
            run_id: run_id.to_string(),
            command: command.to_string(),
            result: RunResult::Failure,
            finished: Utc::now(),
            target: target.to_string(),
            error: Some(error.to_string()),
            held: None,
            ready: 0,
            applied: 0,
            failed: 0,
            skipped: 0,
            suspicious: None,
        }
    }
}

/// What became of a notification; the caller logs it (a failure is a warning, never an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// No event of `notify.on` happened in this run.
    NotDue,
    /// Posted for these events.
    Sent { events: Vec<NotifyOn>, attempts: u32 },
    /// Not delivered; `why` says what to fix, and never contains the URL.
    Failed { events: Vec<NotifyOn>, why: String },
}

/// Everything a notification needs from the config, owned, so the daemon can send it off
/// its run loop.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: NotifyConfig,
    base_dir: PathBuf,
    /// Where the state is, or why its URL could not be read (said when it is needed).
    state: Result<Backend, String>,
    /// `-c FILE` for the review commands, when the config is not at the default path.
    config_arg: Option<String>,
    target: String,
    policy: SendPolicy,
}

impl Notifier {
    /// `None` without a `[notify]` section.
    pub fn of(env: &Env) -> Option<Notifier> {
        let config = env.config.notify.clone()?;
        // Only the built-in default goes without saying: $IDSYNC_CONFIG is the service's,
        // not necessarily the reader's.
        let config_arg = (env.path.as_path() != std::path::Path::new(crate::config::DEFAULT_PATH))
            .then(|| format!("-c {}", shell_quote(&env.path.display().to_string())));
        Some(Notifier {
            config,
            base_dir: env.base_dir.clone(),
            state: env.state_backend().map_err(|e| e.to_string()),
            config_arg,
            target: env.config.target.url.clone(),
            policy: SendPolicy::default(),
        })
    }

    /// The W&B URL the runs sync to, for [`RunFacts`].
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends what `facts` is worth, if anything (see the module docs).
    pub async fn after_run(&self, facts: &RunFacts) -> Delivery {
        let (mut store, memory) = match self.memory(&facts.run_id) {
            Ok((s, m)) => (Some(s), m),
            // Nothing remembers the last message or run: decide as if there were none.
            Err(e) => {
                tracing::warn!(error = %e, "notify: cannot read what the last notification listed; deciding without it");
                (None, Memory::default())
            }
        };
        let events = message::events(&self.config.on, facts, &memory);
        if events.is_empty() {
            return Delivery::NotDue;
        }
        let url = match self.config.webhook_url(&self.base_dir) {
            Ok(u) => u,
            Err(e) => {
                return Delivery::Failed {
                    events,
                    why: e.to_string(),
                }
            }
        };
        if let Err(e) = crate::config::check_webhook_url(url.expose()) {
            return Delivery::Failed {
                events,
                why: format!("[notify] webhook_url {e}"),
            };
        }
        let msg = message::build(self.config.format, facts, &events, &memory, self.config_arg.as_deref());
        match webhook::post(&url, &msg.body, &self.policy).await {
            Ok(attempts) => {
                if let (Some(store), Some(ids)) = (store.as_mut(), facts.held_ids()) {
                    if let Err(e) = store.record_notified(&ids, Utc::now()) {
                        tracing::warn!(error = %e, "notify: sent, but cannot remember what it listed; the next run may repeat it");
                    }
                }
                Delivery::Sent { events, attempts }
            }
            Err(e) => Delivery::Failed {
                events,
                why: e.to_string(),
            },
        }
    }

    /// The store (to remember what is sent) and what it remembers: the held ids the last
    /// message listed, and the result of the sync before `run_id` (`run` or `apply`).
    fn memory(&self, run_id: &str) -> Result<(Store, Memory), StateError> {
        let backend = self.state.as_ref().map_err(|msg| StateError::Postgres {
            target: "PostgreSQL state database".into(),
            msg: msg.clone(),
            source: None,
        })?;
        let store = crate::state::open(backend)?;
        let previous = store
            .last_runs(20)?
            .into_iter()
            .find(|r| r.run_id != run_id && (r.command == "run" || r.command == "apply"))
            .map(|r| match r.result.as_str() {
                "success" => RunResult::Success,
                "held" => RunResult::Held,
                _ => RunResult::Failure,
            });
        let memory = Memory {
            notified_held: store.notified_held()?,
            previous,
        };
        Ok((store, memory))
    }
}

/// Quotes a path for a shell command line when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Delivery {
    /// One line for a log or stderr, `None` when nothing was due.
    pub fn describe(&self) -> Option<String> {
        let names = |e: &[NotifyOn]| e.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ");
        match self {
            Delivery::NotDue => None,
            Delivery::Sent { events, attempts } => Some(format!("notification sent ({}; {attempts} attempt(s))", names(events))),
            Delivery::Failed { events, why } => Some(format!("notification not sent ({}): {why}", names(events))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths_are_quoted_for_the_review_commands() {
        assert_eq!(shell_quote("/etc/idsync/prod.toml"), "/etc/idsync/prod.toml");
        assert_eq!(shell_quote("/tmp/my config.toml"), "'/tmp/my config.toml'");
    }

    #[test]
    fn deliveries_read_as_one_line() {
        assert_eq!(Delivery::NotDue.describe(), None);
        let sent = Delivery::Sent {
            events: vec![NotifyOn::Held, NotifyOn::Applied],
            attempts: 2,
        };
        assert_eq!(sent.describe().unwrap(), "notification sent (held, applied; 2 attempt(s))");
    }
}
