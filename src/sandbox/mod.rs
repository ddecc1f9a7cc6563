//! The W&B sandbox: a faithful emulator of W&B's SCIM API for demos and tests.
//!
//! It follows the facts and quirks in `WANDB.md`: Basic/Bearer auth rules per deployment
//! and server version, `emails` as a single capitalised object, capitalised group members
//! and `members: null`, SaaS deactivation removing users from the org, the deprecated
//! `viewer` org role resetting team roles, the bare `remove members` that strips a team,
//! ETags with `If-Match`, seat limits, and W&B-shaped SCIM error bodies. Where W&B's
//! behaviour is unconfirmed (paging, silent list caps), [`SandboxOptions`] can emulate
//! either shape.
//!
//! Faults (latency, 429, 500, lost responses, malformed bodies) are drawn from one seeded
//! RNG so a test sees the same sequence for the same seed and the same request order.
//!
//! Besides the SCIM API under `scim_path`, two unauthenticated helper endpoints exist for
//! out-of-process tests: `GET /_sandbox/state` (a [`SandboxState`] as JSON) and
//! `POST /_sandbox/faults` (`{"fail_rate", "throttle_rate", "malformed_rate",
//! "lost_response_rate", "latency_ms"}`, every field optional; answers the fault settings
//! now in force).

mod http;
mod seed;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::model::Deployment;
pub use seed::{SandboxOrg, SandboxState, SeedServiceAccount, SeedTeam, SeedUser, StateTeam, StateUser};
pub use store::ServiceAccountListing;

use http::Shared;
pub use http::WriteRecord;

/// How the sandbox behaves. `Default` is a healthy, current SaaS server on `/scim`.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The API key every accepted credential must carry.
    pub api_key: String,
    /// More keys accepted as well (several clients, each with its own key): the write log
    /// (`/_sandbox/state` `write_log`) names key `i + 1` for `extra_api_keys[i]`.
    pub extra_api_keys: Vec<String>,
    pub deployment: Deployment,
    /// Dedicated/Self-Managed server version (`"0.84.0"`). `None` means current. Ignored on
    /// SaaS, which always runs the latest server.
    pub server_version: Option<String>,
    /// Where the SCIM API is mounted: `/scim` by default, `/scim/v2` on some deployments.
    pub scim_path: String,
    /// Added to every SCIM request before it is answered.
    pub latency: Duration,
    /// Probability of a 500 before anything is changed.
    pub fail_rate: f64,
    /// Probability of a 429 (`RateLimit-Remaining: 0`, `RateLimit-Reset: 0`).
    pub throttle_rate: f64,
    /// Probability that a successful answer's body is cut short (invalid JSON); a write
    /// still happens, as when a proxy truncates the response.
    pub malformed_rate: f64,
    /// Probability that a write is applied and then answered with a 500, as when a
    /// response is lost: clients must cope with "it happened but I got an error".
    pub lost_response_rate: f64,
    /// When set, 429 answers also carry `Retry-After: N`. Off by default to keep tests fast.
    pub retry_after_secs: Option<u64>,
    /// Seed of the fault RNG.
    pub seed: u64,
    /// Emulates a server that silently returns at most this many resources per list while
    /// `totalResults` stays true.
    pub page_cap: Option<usize>,
    /// Whether `startIndex`/`count` are honoured (unconfirmed at W&B). When false every list
    /// returns everything (up to 9999) with `itemsPerPage: 9999`, the shape W&B is seen to
    /// answer with.
    pub honour_paging: bool,
    /// Creating or reactivating a user when this many users are active answers
    /// 400 "Seat limit reached".
    pub seat_limit: Option<usize>,
    /// Serve `lastActiveAt`/`daysActive` (newer servers) or omit them.
    pub activity: bool,
    /// Whether `/Users` lists the service accounts, and in which shape (unconfirmed at
    /// W&B). Off by default, as W&B documents.
    pub service_accounts: ServiceAccountListing,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            api_key: "sandbox-api-key".to_string(),
            extra_api_keys: Vec::new(),
            deployment: Deployment::Saas,
            server_version: None,
            scim_path: "/scim".to_string(),
            latency: Duration::ZERO,
            fail_rate: 0.0,
            throttle_rate: 0.0,
            malformed_rate: 0.0,
            lost_response_rate: 0.0,
            retry_after_secs: None,
            seed: 0,
            page_cap: None,
            honour_paging: false,
            seat_limit: None,
            activity: true,
            service_accounts: ServiceAccountListing::Off,
        }
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: invalid option: {0}")]
    Options(String),
    #[error("sandbox: invalid org seed: {0}")]
    Seed(String),
    #[error("sandbox: cannot read org seed {path}: {source}")]
    ReadSeed {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: server failed: {0}")]
    Serve(std::io::Error),
}

/// A running sandbox. Dropping it leaves the server running until the runtime stops; call
/// [`SandboxHandle::shutdown`] to stop it.
pub struct SandboxHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SandboxHandle {
    /// `http://ADDR`: the target URL (the SCIM API is under `scim_path`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The org as it is now, for assertions.
    pub async fn state(&self) -> SandboxState {
        self.shared.state()
    }

    /// Changes the fault rates from now on (values are clamped to 0..=1).
    pub fn set_faults(&self, fail_rate: f64, throttle_rate: f64, malformed_rate: f64) {
        self.shared.faults().set(fail_rate, throttle_rate, malformed_rate);
    }

    /// Changes the lost-response rate from now on.
    pub fn set_lost_response_rate(&self, rate: f64) {
        self.shared.faults().set_lost(rate);
    }

    /// Changes the injected latency from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults().latency = latency;
    }

    /// SCIM requests received so far (helper endpoints excluded).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Every SCIM write answered so far, with the key that made it.
    pub fn write_log(&self) -> Vec<WriteRecord> {
        self.shared.write_log()
    }

    /// SCIM requests other than GET received so far (helper endpoints excluded).
    pub fn write_request_count(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// Stops serving and waits (briefly) for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Idle keep-alive connections can delay a graceful stop; don't wait for them long.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the sandbox in a tokio task.
pub async fn spawn(opts: SandboxOptions, org: SandboxOrg, addr: SocketAddr) -> Result<SandboxHandle, SandboxError> {
    let shared = Arc::new(Shared::new(opts, org)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SandboxError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| SandboxError::Bind { addr, source })?;
    let router = http::router(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "sandbox server failed");
        }
    });
    Ok(SandboxHandle {
        addr: local,
        shared,
        stop: Some(stop),
        task,
    })
}

/// Serves the sandbox on `addr` until ctrl-c (the `idsync sandbox` command). Logs one line
/// per request.
pub async fn serve_forever(opts: SandboxOptions, org: SandboxOrg, addr: SocketAddr) -> Result<(), SandboxError> {
    serve_forever_with(opts, org, addr, |_| {}).await
}

/// [`serve_forever`], calling `listening` with the bound address once it accepts
/// connections (so a banner is printed only when the port was free).
pub async fn serve_forever_with(
    opts: SandboxOptions,
    org: SandboxOrg,
    addr: SocketAddr,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), SandboxError> {
    let scim_path = opts.scim_path.clone();
    let deployment = opts.deployment;
    let shared = Arc::new(Shared::new(opts, org)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SandboxError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| SandboxError::Bind { addr, source })?;
    listening(local);
    tracing::info!(
        url = %format!("http://{local}{}", scim_path.trim_end_matches('/')),
        deployment = ?deployment,
        "W&B sandbox listening; state at /_sandbox/state; ctrl-c stops"
    );
    axum::serve(listener, http::router(shared))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("W&B sandbox stopping");
        })
        .await
        .map_err(SandboxError::Serve)
}

#[cfg(test)]
mod tests;
