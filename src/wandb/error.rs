//! Errors of the W&B client. Every message names the operation and what to do next, and
//! none carries the API key (server-supplied text is redacted before it gets here).

use crate::http::retry::{retryable_status, status_may_have_landed};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The `[target]` settings cannot work (bad URL, unusable key).
    #[error("{0}")]
    Config(String),

    #[error(
        "W&B rejected the API key (401) at {url}: check target.api_key_file / target.username / \
         target.auth; team-scoped service-account keys are rejected{}",
        hint(detail)
    )]
    Unauthorized { op: String, url: String, detail: String },

    #[error(
        "{op}: W&B refused the request (403): {detail}; the key must belong to an org admin \
         or an org service account{}",
        hint(detail)
    )]
    Forbidden { op: String, detail: String },

    #[error(
        "{op}: W&B has no free seat (\"{detail}\"): free or buy seats (guards.max_seats can hold \
         creates before they fail)"
    )]
    SeatLimit { op: String, detail: String },

    #[error("{op}: W&B answered {status}: {detail}{}", hint(detail))]
    Http { op: String, status: u16, detail: String },

    /// 404 on a collection (`/Users`, `/Groups`): no SCIM API at that address.
    #[error(
        "{op}: W&B answered 404 at {url}: there is no SCIM API there; check target.scim_path \
         (\"/scim\" on W&B SaaS, \"/scim/v2\" on some deployments) and target.url ({detail})"
    )]
    NoScimApi { op: String, url: String, detail: String },

    #[error("{op}: cannot reach W&B at {url}: {cause}; check target.url and the network")]
    Transport {
        op: String,
        url: String,
        cause: String,
        /// Whether the request may have reached W&B (the connection dropped after it was
        /// sent), as opposed to failing to connect.
        sent: bool,
    },

    #[error("{op}: W&B at {url} did not answer in time; check target.url and target.timeout")]
    Timeout { op: String, url: String },

    #[error("{op}: W&B sent a response idsync cannot use: {detail}")]
    Malformed { op: String, detail: String },

    #[error(
        "W&B listed {got} distinct {what} but reported totalResults = {total}: refusing to plan \
         on a partial org (retry later; if it persists, the server's paging is broken)"
    )]
    IncompleteList { what: String, got: u64, total: u64 },

    /// W&B answered 409 to every userName tried for a new user and no W&B user has the
    /// person's email: the userNames belong to other people, whom idsync never links to.
    #[error(
        "{op}: W&B answered 409 (\"{detail}\") to every userName tried, and no W&B user has the \
         email {email}, so none of those accounts is this person: {}; give the person a \
         directory username no W&B account has, or free the userName in W&B",
        holders.join("; ")
    )]
    UsernameTaken {
        op: String,
        email: String,
        detail: String,
        /// One line per userName tried, naming the account that holds it.
        holders: Vec<String>,
    },

    /// A request idsync will not send (W&B's viewer org role, a bare member removal, ...).
    #[error("{0}")]
    Refused(String),

    #[error("{op}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted { op: String, attempts: u32, last: Box<TargetError> },

    /// A write whose outcome idsync cannot know (SPEC §5): an attempt timed out, lost its
    /// connection after sending, or got a 5xx, and no later answer said what happened.
    #[error(
        "{op}: W&B may or may not have applied this change (last error: {last}); the next run \
         reads W&B and settles it: ok if W&B shows the change, otherwise it is planned again"
    )]
    OutcomeUnknown { op: String, last: Box<TargetError> },
}

/// Extra advice for W&B error details that have a known fix.
fn hint(detail: &str) -> &'static str {
    if detail.contains("multiple organizations") {
        " (set a default API organization in the W&B user settings of the key's owner)"
    } else {
        ""
    }
}

impl TargetError {
    /// Whether sending the same request again may succeed: 429, 5xx, timeouts and
    /// connection failures. Never 4xx otherwise, never a refusal or a parse failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            TargetError::Http { status, .. } => retryable_status(*status),
            TargetError::Transport { .. } | TargetError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Whether this failed attempt may still have changed W&B: a 5xx other than 501, a
    /// timeout, or a connection lost after the request was sent. Never a 4xx (W&B refused
    /// it), a refusal idsync made itself, or a failure to connect.
    pub fn may_have_landed(&self) -> bool {
        match self {
            TargetError::Http { status, .. } => status_may_have_landed(*status),
            TargetError::Timeout { .. } => true,
            TargetError::Transport { sent, .. } => *sent,
            TargetError::RetriesExhausted { last, .. } => last.may_have_landed(),
            TargetError::OutcomeUnknown { .. } => true,
            _ => false,
        }
    }

    /// Whether this is an outcome idsync cannot know: recorded `unknown` and settled by
    /// the next read of W&B, never `error` (which says W&B did not apply it).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, TargetError::OutcomeUnknown { .. })
    }

    /// The HTTP status behind the error, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            TargetError::Unauthorized { .. } => Some(401),
            TargetError::Forbidden { .. } => Some(403),
            TargetError::Http { status, .. } => Some(*status),
            TargetError::NoScimApi { .. } => Some(404),
            TargetError::UsernameTaken { .. } => Some(409),
            TargetError::RetriesExhausted { last, .. } | TargetError::OutcomeUnknown { last, .. } => last.status(),
            _ => None,
        }
    }
}
