//! `[ha] enabled = true`: this node's side of the leader lease (`state/postgres/lease.rs`).
//!
//! A thread of its own keeps the lease: every quarter TTL it acquires or renews it on its
//! own PostgreSQL connection (reconnecting after an error), so a long apply or a busy
//! runtime never delays a renewal. What it learns is [`Ha`]'s state: the token held and
//! until when, by this process's monotonic clock from the moment the last successful
//! renewal was *sent* (the database's expiry is at least that late, whatever the clocks
//! say). The run loop asks [`Ha::lead`] at each tick: leader, it applies under a
//! [`Lead`] (the fence on every state write, and a [`RunGate`] before every W&B write);
//! standby, it only reads and plans.
//!
//! Invariants: a node is leader only between a successful acquisition and the earlier of
//! its local expiry and the first sign another node holds the lease; the gate of a run is
//! bound to the token it started under, so it never reopens for a later term; on a clean
//! shutdown the lease is released only after the run loop has finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::http::Shared;
use crate::apply::Gate;
use crate::secret::Secret;
use crate::state::{Fence, Lease, PgStore};
use crate::sync::Lead;

/// What a W&B write needs on top of the request timeout: the time between the gate's check
/// and the request leaving, and the renewal's own round trip.
const MARGIN: Duration = Duration::from_secs(1);

/// `/status`'s `ha` block.
#[derive(Debug, Clone, Serialize)]
pub struct HaView {
    pub node: String,
    /// `leader` or `standby`.
    pub role: &'static str,
    /// Who holds the lease, as last seen (`None`: nobody, or not known yet).
    pub leader: Option<String>,
    pub token: Option<i64>,
    pub lease_ttl_seconds: u64,
    /// Takeovers from another node since this process started.
    pub failovers: u64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    valid_until: Instant,
}

#[derive(Debug, Default)]
struct LeaseState {
    held: Option<Held>,
    /// The holder as last seen, this node included.
    holder: Option<(String, i64)>,
    failovers: u64,
    /// At least one acquisition attempt has finished (either way).
    tried: bool,
}

/// This node's view of the lease, shared by the lease thread, the run loop and the gates.
pub struct Ha {
    node: String,
    instance: String,
    ttl: Duration,
    /// A W&B write needs the lease valid for longer than this (request timeout + margin).
    need: Duration,
    url: Secret,
    ca_file: Option<std::path::PathBuf>,
    state: Mutex<LeaseState>,
    /// Woken when this node takes the lease over from another node.
    pub took_over: tokio::sync::Notify,
    shutdown: AtomicBool,
    shared: Arc<Shared>,
}

impl Ha {
    /// Starts the lease thread for `node`.
    pub fn start(
        node: String,
        ttl: Duration,
        request_timeout: Duration,
        url: Secret,
        ca_file: Option<std::path::PathBuf>,
        shared: Arc<Shared>,
    ) -> (Arc<Ha>, std::thread::JoinHandle<()>) {
        let ha = Arc::new(Ha {
            instance: format!("{:016x}", rand::random::<u64>()),
            node,
            ttl,
            need: request_timeout + MARGIN,
            url,
            ca_file,
            state: Mutex::new(LeaseState::default()),
            took_over: tokio::sync::Notify::new(),
            shutdown: AtomicBool::new(false),
            shared,
        });
        ha.shared.metrics.set_ha_leader(&ha.node, false);
        ha.publish(&ha.lock());
        let h = ha.clone();
        let thread = std::thread::Builder::new()
            .name("idsync-lease".into())
            .spawn(move || h.keep())
            .unwrap_or_else(|e| {
                // Without the thread this node never leads: it stays a standby, and says so.
                tracing::error!(error = %e, "cannot start the HA lease thread: this node stays a standby");
                std::thread::spawn(|| {})
            });
        (ha, thread)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The leadership to apply under now, or `None`: a standby.
    pub fn lead(self: &Arc<Self>) -> Option<Lead> {
        let held = self.lock().held?;
        let gate = RunGate {
            ha: self.clone(),
            token: held.token,
        };
        gate.check().ok()?;
        Some(Lead {
            fence: Fence {
                node: self.node.clone(),
                token: held.token,
                ttl: self.ttl,
            },
            gate: Arc::new(gate),
        })
    }

    /// Whether the first acquisition attempt has finished (`run --once` waits for it).
    pub fn tried(&self) -> bool {
        self.lock().tried
    }

    /// A run was fenced, or this node must otherwise stop leading: it is a standby until
    /// the lease thread acquires the lease afresh.
    pub fn step_down(&self, why: &str) {
        let mut st = self.lock();
        if let Some(h) = st.held.take() {
            tracing::warn!(node = %self.node, token = h.token, reason = %why, "stepping down to standby");
        }
        self.publish(&st);
    }

    /// Stops the lease thread, which releases the lease if this node holds it.
    pub fn shutdown(&self, thread: std::thread::JoinHandle<()>) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = thread.join();
    }

    /// The lease thread: acquire or renew every quarter TTL until shut down.
    fn keep(self: Arc<Self>) {
        let every = self.ttl / 4;
        let mut conn: Option<PgStore> = None;
        while !self.shutdown.load(Ordering::SeqCst) {
            let sent = Instant::now();
            if conn.is_none() {
                conn = match self.connect() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(node = %self.node, error = %e, "HA: cannot reach the state database to renew the leader lease");
                        None
                    }
                };
            }
            let sent = if conn.is_some() { Instant::now() } else { sent };
            let answer = conn.as_ref().map(|c| c.lease_acquire(&self.node, &self.instance, self.ttl));
            match answer {
                Some(Ok(lease)) => self.observe(lease, sent),
                Some(Err(e)) => {
                    tracing::warn!(node = %self.node, error = %e, "HA: acquiring or renewing the leader lease failed; reconnecting");
                    conn = None;
                    self.expire_if_past();
                }
                None => self.expire_if_past(),
            }
            while !self.shutdown.load(Ordering::SeqCst) && sent.elapsed() < every {
                std::thread::sleep(Duration::from_millis(50).min(every));
            }
        }
        let token = self.lock().held.take().map(|h| h.token);
        if let (Some(c), Some(token)) = (conn.as_ref(), token) {
            match c.lease_release(token) {
                Ok(_) => tracing::info!(node = %self.node, token, "HA: leader lease released"),
                Err(e) => tracing::warn!(node = %self.node, error = %e, "HA: cannot release the leader lease; it expires by itself"),
            }
        }
        self.shared.metrics.set_ha_leader(&self.node, false);
    }

    fn connect(&self) -> Result<PgStore, crate::state::StateError> {
        PgStore::open_for_lease(self.url.expose(), self.ca_file.as_deref(), self.ttl / 4)
    }

    fn observe(&self, lease: Lease, sent: Instant) {
        let mut st = self.lock();
        st.tried = true;
        match lease {
            Lease::Held { token, previous, .. } => {
                let new_term = st.held.map(|h| h.token) != Some(token);
                st.held = Some(Held {
                    token,
                    valid_until: sent + self.ttl,
                });
                st.holder = Some((self.node.clone(), token));
                if new_term {
                    let takeover = !previous.is_empty() && previous != self.node;
                    tracing::info!(node = %self.node, token, previous = %previous, "HA: this node holds the leader lease and applies");
                    if takeover {
                        st.failovers += 1;
                        self.shared.metrics.count_failover();
                        self.took_over.notify_one();
                    }
                }
            }
            Lease::Busy { holder, token, .. } => {
                if let Some(h) = st.held.take() {
                    tracing::warn!(node = %self.node, token = h.token, holder = %holder, new_token = token, "HA: another node holds the leader lease: stepping down to standby");
                }
                st.holder = Some((holder, token));
            }
        }
        self.publish(&st);
    }

    fn expire_if_past(&self) {
        let mut st = self.lock();
        st.tried = true;
        if st.held.is_some_and(|h| h.valid_until <= Instant::now()) {
            st.held = None;
            st.holder = None;
            tracing::warn!(node = %self.node, "HA: the leader lease expired before it could be renewed: stepping down to standby");
        }
        self.publish(&st);
    }

    /// Metrics and `/status` from `st`.
    fn publish(&self, st: &LeaseState) {
        let leader = st.held.is_some();
        self.shared.metrics.set_ha_leader(&self.node, leader);
        self.shared.status().ha = Some(HaView {
            node: self.node.clone(),
            role: if leader { "leader" } else { "standby" },
            leader: st.holder.as_ref().map(|(h, _)| h.clone()),
            token: st.holder.as_ref().map(|(_, t)| *t),
            lease_ttl_seconds: self.ttl.as_secs(),
            failovers: st.failovers,
        });
    }
}

/// The gate of one leader run: open while this node still holds the lease with the token
/// the run started under, valid (by the local monotonic clock) for longer than a request
/// may take.
pub struct RunGate {
    ha: Arc<Ha>,
    token: i64,
}

impl Gate for RunGate {
    fn check(&self) -> Result<(), String> {
        let held = self.ha.lock().held;
        let Some(h) = held.filter(|h| h.token == self.token) else {
            return Err(format!(
                "node {} no longer holds the leader lease it started this run under (token {})",
                self.ha.node, self.token
            ));
        };
        let left = h.valid_until.saturating_duration_since(Instant::now());
        if left <= self.ha.need {
            return Err(format!(
                "node {}'s leader lease is valid for {} ms more, not longer than a W&B request may take ({} ms: target.timeout + {} s); its renewals are failing",
                self.ha.node,
                left.as_millis(),
                self.ha.need.as_millis(),
                MARGIN.as_secs()
            ));
        }
        Ok(())
    }

    fn node(&self) -> Option<String> {
        Some(self.ha.node.clone())
    }
}
