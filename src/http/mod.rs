//! The HTTP plumbing the W&B client and the identity-provider sources share, so that
//! neither knows the other: one retry policy, reply bodies within a size limit, transport
//! errors' real causes, and request counters.
//!
//! - `retry`: when to retry, how long to wait, when to give up (pure functions);
//! - `transport`: capped body reads and root causes;
//! - [`Counters`] / [`HttpStats`]: requests by status code and retries, for
//!   `idsync_http_requests_total{system,code}` and `idsync_http_retries_total{system}`.

pub mod retry;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The HTTP client both sides use: a timeout per request (connect at most 10 s), no
/// redirects (a redirect would turn a POST into a GET and may carry the credential to
/// another host: report it instead), idsync's user agent. `Err` is the root cause.
///
/// `tls`: whether the client may speak https at all. Without it the system's CA roots
/// are not loaded (milliseconds of file reads per command against an `http://` URL, as
/// the sandbox and loopback deployments use) and any https request fails verification.
pub fn client(timeout: std::time::Duration, tls: bool) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder();
    let builder = if tls { builder } else { builder.tls_certs_only([]) };
    builder
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("idsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| transport::root_cause(&e))
}

/// Request counters as read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// HTTP status code as a string, or `"error"` for transport failures and timeouts.
    pub requests_by_code: BTreeMap<String, u64>,
    pub retries: u64,
}

impl HttpStats {
    /// What was counted after `earlier` (a snapshot of the same counters), for process-wide
    /// counters read once per run.
    pub fn since(&self, earlier: &HttpStats) -> HttpStats {
        HttpStats {
            requests_by_code: self
                .requests_by_code
                .iter()
                .map(|(code, n)| {
                    (
                        code.clone(),
                        n.saturating_sub(earlier.requests_by_code.get(code).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            retries: self.retries.saturating_sub(earlier.retries),
        }
    }
}

/// Live request counters, shared by a client's requests (and usable in a `static`).
#[derive(Debug, Default)]
pub struct Counters {
    by_code: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
}

impl Counters {
    pub const fn new() -> Counters {
        Counters {
            by_code: Mutex::new(BTreeMap::new()),
            retries: AtomicU64::new(0),
        }
    }

    /// Counts one request by its status code (or `"error"`).
    pub fn count(&self, code: &str) {
        // A poisoned lock only means another thread panicked mid-increment; the map is
        // still usable.
        let mut m = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(code.to_string()).or_insert(0) += 1;
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HttpStats {
        HttpStats {
            requests_by_code: self.by_code.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}
