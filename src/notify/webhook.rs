//! Posting one message to the webhook: a short timeout, a few retries with jittered
//! backoff (the one policy of `http::retry`, with tighter bounds), and errors that never
//! carry the URL.
//!
//! Invariants: at most [`SendPolicy::attempts`] requests, each bounded by its timeout, and
//! waits between them bounded too, so a dead webhook costs a run seconds, never minutes;
//! the URL (a credential) appears in no error or log line: reqwest errors are stripped of
//! it and any echo of it is redacted.

use std::time::Duration;

use crate::http::retry::{self, Backoff};
use crate::http::transport;
use crate::secret::Secret;

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPolicy {
    pub attempts: u32,
    /// Per request, connecting included.
    pub timeout: Duration,
    pub backoff: Backoff,
    /// The longest wait a `Retry-After` may ask for between two attempts.
    pub max_wait: Duration,
}

impl Default for SendPolicy {
    fn default() -> Self {
        SendPolicy {
            attempts: 3,
            timeout: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(4),
            },
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Why a message was not delivered. No variant holds the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the webhook answered HTTP {status} after {attempts} attempt(s); {hint}")]
    Status { status: u16, attempts: u32, hint: &'static str },
    #[error("cannot reach the webhook after {attempts} attempt(s): {cause}; check the network and the URL in [notify] webhook_url_file / webhook_url_env")]
    Transport { attempts: u32, cause: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

fn status_hint(status: u16) -> &'static str {
    match status {
        400 | 422 => "the webhook refused the message's shape: check [notify] format (slack or json)",
        401 | 403 | 404 | 410 => "the webhook does not accept this URL (revoked, or the channel is gone): check the URL in [notify] webhook_url_file / webhook_url_env",
        _ => "it will be tried again after the next run that is worth a message",
    }
}

/// Posts `body` (JSON) to `url`; on success, how many attempts it took.
pub async fn post(url: &Secret, body: &serde_json::Value, policy: &SendPolicy) -> Result<u32, SendError> {
    let client = crate::http::client(policy.timeout, true).map_err(SendError::Client)?;
    let attempts = policy.attempts.max(1);
    let mut last: Option<SendError> = None;
    // The wait a server asked for (Retry-After), honoured within `max_wait`.
    let mut asked: Option<Duration> = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            let wait = retry::retry_delay(&policy.backoff, attempt - 1, rand::random::<f64>(), asked.take()).min(policy.max_wait);
            tokio::time::sleep(wait).await;
        }
        let sent = client
            .post(url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => return Ok(attempt + 1),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let err = SendError::Status {
                    status,
                    attempts: attempt + 1,
                    hint: status_hint(status),
                };
                if !retry::retryable_status(status) {
                    return Err(err);
                }
                asked = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, chrono::Utc::now()));
                last = Some(err);
            }
            Err(e) => {
                let (timeout, builder) = (e.is_timeout(), e.is_builder());
                let cause = if timeout {
                    format!("no answer within {}s", policy.timeout.as_secs())
                } else {
                    transport::root_cause(&e.without_url()).replace(url.expose(), "[redacted]")
                };
                if builder {
                    return Err(SendError::Transport {
                        attempts: attempt + 1,
                        cause: "the URL is not one a request can be sent to".into(),
                    });
                }
                last = Some(SendError::Transport {
                    attempts: attempt + 1,
                    cause,
                });
            }
        }
    }
    Err(last.unwrap_or(SendError::Transport {
        attempts,
        cause: "no attempt was made".into(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A loopback receiver answering `statuses` in turn (the last one from then on);
    /// returns its URL (with a secret-looking path) and the request counter.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook/{token}",
            axum::routing::post(move || {
                let h = h.clone();
                let statuses = statuses.clone();
                async move {
                    let n = h.fetch_add(1, Ordering::SeqCst) as usize;
                    let s = statuses[n.min(statuses.len() - 1)];
                    (axum::http::StatusCode::from_u16(s).unwrap(), "Cannot POST /hook/SECRETTOKEN")
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{addr}/hook/SECRETTOKEN"), hits)
    }

    fn quick() -> SendPolicy {
        SendPolicy {
            attempts: 3,
            timeout: Duration::from_secs(2),
            backoff: Backoff {
                base: Duration::from_millis(10),
                cap: Duration::from_millis(20),
            },
            max_wait: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_a_bounded_number_of_times() {
        let (url, hits) = receiver(vec![503, 200]).await;
        assert_eq!(post(&Secret::new(url), &serde_json::json!({"text": "x"}), &quick()).await, Ok(2));
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        let (url, hits) = receiver(vec![500]).await;
        let err = post(&Secret::new(url), &serde_json::json!({}), &quick()).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 3, "three attempts, then give up");
        assert!(
            matches!(
                err,
                SendError::Status {
                    status: 500,
                    attempts: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains("SECRETTOKEN"), "{err}");
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_says_what_to_check() {
        let (url, hits) = receiver(vec![404]).await;
        let err = post(&Secret::new(url), &serde_json::json!({}), &quick()).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let msg = err.to_string();
        assert!(msg.contains("HTTP 404") && msg.contains("webhook_url_file"), "{msg}");
        assert!(!msg.contains("SECRETTOKEN"), "{msg}");
    }

    #[tokio::test]
    async fn an_unreachable_webhook_fails_quickly_without_naming_the_url() {
        // A port nothing listens on: bind, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = Secret::new(format!("http://127.0.0.1:{port}/hook/SECRETTOKEN"));
        let t = std::time::Instant::now();
        let err = post(&url, &serde_json::json!({}), &quick()).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(matches!(err, SendError::Transport { attempts: 3, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(!msg.contains("SECRETTOKEN") && !msg.contains("/hook"), "{msg}");
    }
}
