//! The HA leader lease (`[ha] enabled = true`) and the fence every leader write passes.
//!
//! One row, `ha_lease`: the holder (node name and the process's random instance id), the
//! fencing token and `expires_at`, always by the database's clock (`now()`), so the nodes'
//! clocks never matter. [`PgStore::lease_acquire`] is one `UPDATE … WHERE expired OR
//! mine`: the same process renewing an unexpired lease keeps its token; any other
//! acquisition (another node, a restarted process, or this one after its own lease ran
//! out) raises it. [`PgStore::lease_release`] expires it on a clean shutdown.
//!
//! Fencing: a store given a [`Fence`] starts every write transaction with `SELECT … FROM
//! ha_lease FOR SHARE` and goes on only while the row still names its token unexpired;
//! otherwise it rolls back with [`StateError::Fenced`]. The share lock makes a takeover's
//! `UPDATE` wait for a write in flight, so every write of the old leader is ordered
//! strictly before the new leader's token exists, and none after. A fenced session also
//! sets `idle_in_transaction_session_timeout`, so a leader paused inside a transaction
//! (SIGSTOP, a stalled host) cannot hold the lock, and so the takeover, for longer than
//! the lease.
//!
//! Invariants: the token never decreases and changes on every change of holder; a write
//! with a fence commits only while the lease names that token and has not expired by the
//! database's clock.

use std::time::Duration;

use super::PgStore;
use crate::state::StateError;

/// Who a fenced store writes for: the lease token it must still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// `[ha] node_name`, for messages.
    pub node: String,
    pub token: i64,
    /// The lease TTL: a transaction left idle this long is ended by the server.
    pub ttl: Duration,
}

/// The lease as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This node holds it (acquired or renewed just now) with `token`; `previous` is the
    /// holder before this acquisition (empty: none, or this same process renewing).
    Held { token: i64, previous: String, renewed: bool },
    /// Another node holds it, valid for about `valid_for` more by the database's clock.
    Busy { holder: String, token: i64, valid_for: Duration },
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Acquires or renews the lease for `ttl`, as `node` (process `instance`).
    pub fn lease_acquire(&self, node: &str, instance: &str, ttl: Duration) -> Result<Lease, StateError> {
        let ms = millis(ttl);
        let row = self.with(|c| {
            let mut tx = c.transaction()?;
            // The row lock orders this against fenced writes in flight (FOR SHARE).
            let old = tx.query_one(
                "SELECT holder, instance, token, expires_at > now(),
                        GREATEST(0, EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::BIGINT
                 FROM ha_lease WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let (holder, inst, token, live, left): (String, String, i64, bool, i64) =
                (old.get(0), old.get(1), old.get(2), old.get(3), old.get(4));
            let renew = live && holder == node && inst == instance;
            if live && !renew {
                tx.commit()?;
                return Ok(Lease::Busy {
                    holder,
                    token,
                    valid_for: Duration::from_millis(u64::try_from(left).unwrap_or(0)),
                });
            }
            let new_token = if renew { token } else { token.saturating_add(1) };
            tx.execute(
                "UPDATE ha_lease SET holder = $1, instance = $2, token = $3,
                        expires_at = now() + $4 * interval '1 millisecond',
                        acquired_at = CASE WHEN $5 THEN acquired_at ELSE now() END
                 WHERE id = 1",
                &[&node, &instance, &new_token, &(ms as f64), &renew],
            )?;
            tx.commit()?;
            Ok(Lease::Held {
                token: new_token,
                previous: if renew { String::new() } else { holder },
                renewed: renew,
            })
        })?;
        Ok(row)
    }

    /// Expires the lease now if `token` still holds it (a clean shutdown), so a standby
    /// takes over at its next attempt instead of after the TTL.
    pub fn lease_release(&self, token: i64) -> Result<bool, StateError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE ha_lease SET expires_at = now() WHERE id = 1 AND token = $1 AND expires_at > now()",
                &[&token],
            )
        })?;
        Ok(n == 1)
    }

    /// Who holds the lease and for how long yet: `None` when it is free or expired.
    pub fn lease_holder(&self) -> Result<Option<(String, i64, Duration)>, StateError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT holder, token, (EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::BIGINT
                 FROM ha_lease WHERE id = 1 AND expires_at > now()",
                &[],
            )
        })?;
        Ok(row.map(|r| {
            (
                r.get(0),
                r.get(1),
                Duration::from_millis(u64::try_from(r.get::<_, i64>(2)).unwrap_or(0)),
            )
        }))
    }

    /// The lease connection's own limits: a statement or a lock wait (behind a fenced
    /// write in flight) longer than `limit` fails, so one renewal can never stall the next.
    pub fn lease_session(&self, limit: Duration) -> Result<(), StateError> {
        let ms = millis(limit).max(100);
        self.with(|c| c.batch_execute(&format!("SET statement_timeout = {ms}; SET lock_timeout = {ms}")))
    }

    /// From now on every write transaction checks `fence` first (see the module docs).
    pub fn set_fence(&mut self, fence: Fence) -> Result<(), StateError> {
        // Half the TTL: idsync's own transactions never idle (no request is sent inside one).
        let ms = (millis(fence.ttl) / 2).max(1000);
        self.with(|c| c.batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}")))?;
        self.fence = Some(fence);
        Ok(())
    }

    /// Inside an open transaction: `Ok(None)` when the fence (if any) still holds, else why
    /// not, for [`StateError::Fenced`].
    pub(super) fn check_fence(c: &mut postgres::Client, fence: Option<&Fence>) -> Result<Option<String>, postgres::Error> {
        let Some(f) = fence else { return Ok(None) };
        let row = c.query_one("SELECT holder, token, expires_at > now() FROM ha_lease WHERE id = 1 FOR SHARE", &[])?;
        let (holder, token, live): (String, i64, bool) = (row.get(0), row.get(1), row.get(2));
        Ok(if token != f.token {
            Some(format!("the lease is now {holder}'s with token {token}"))
        } else if !live {
            Some("its lease expired before it could renew it".into())
        } else {
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::super::test_server::Pg;
    use super::*;
    use crate::model::Email;
    use crate::state::StateBackend;

    const TTL: Duration = Duration::from_secs(2);

    fn fence(node: &str, token: i64) -> Fence {
        Fence {
            node: node.into(),
            token,
            ttl: TTL,
        }
    }

    fn held(l: Lease) -> i64 {
        match l {
            Lease::Held { token, .. } => token,
            other => panic!("expected to hold the lease: {other:?}"),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_the_token_rises_on_every_change_of_holder() {
        let Some(pg) = Pg::start() else { return };
        let url = pg.create_db("lease");
        let (a, b) = (PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap());
        let t1 = match a.lease_acquire("a", "ia", TTL).unwrap() {
            Lease::Held { token, previous, renewed } => {
                assert!(!renewed && previous.is_empty());
                token
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(t1, 1);
        match b.lease_acquire("b", "ib", TTL).unwrap() {
            Lease::Busy { holder, token, valid_for } => {
                assert_eq!((holder.as_str(), token), ("a", 1));
                assert!(valid_for <= TTL && valid_for > Duration::ZERO);
            }
            other => panic!("b must not get a held lease: {other:?}"),
        }
        // Renewing keeps the token; the same node name in another process does not renew.
        assert_eq!(
            a.lease_acquire("a", "ia", TTL).unwrap(),
            Lease::Held {
                token: 1,
                previous: String::new(),
                renewed: true
            }
        );
        assert!(matches!(b.lease_acquire("a", "other-process", TTL).unwrap(), Lease::Busy { .. }));
        // Expiry by the database's clock hands it over with a higher token.
        std::thread::sleep(TTL + Duration::from_millis(200));
        match b.lease_acquire("b", "ib", TTL).unwrap() {
            Lease::Held { token, previous, renewed } => assert_eq!((token, previous.as_str(), renewed), (2, "a", false)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.lease_acquire("a", "ia", TTL).unwrap(), Lease::Busy { token: 2, .. }));
        // A clean release lets the other node in at once.
        assert!(b.lease_release(2).unwrap());
        assert!(!b.lease_release(2).unwrap(), "released once");
        assert_eq!(a.lease_holder().unwrap(), None);
        assert_eq!(held(a.lease_acquire("a", "ia", TTL).unwrap()), 3);
        assert_eq!(a.lease_holder().unwrap().map(|(h, t, _)| (h, t)), Some(("a".to_string(), 3)));
    }

    #[test]
    fn a_fenced_store_writes_only_while_its_token_holds() {
        let Some(pg) = Pg::start() else { return };
        let url = pg.create_db("fence");
        let lease_a = PgStore::open(&url).unwrap();
        let t1 = held(lease_a.lease_acquire("a", "ia", TTL).unwrap());
        let mut a = PgStore::open(&url).unwrap();
        a.set_fence(fence("a", t1)).unwrap();
        let jane = Email::parse("jane@x.com").unwrap();
        a.ledger_grant(&jane, "ml").unwrap();
        a.tx_begin().unwrap();
        a.ledger_grant(&jane, "cv").unwrap();
        a.tx_commit().unwrap();

        // The lease runs out: the leader's next write (plain or a transaction) is refused
        // and nothing of it lands.
        std::thread::sleep(TTL + Duration::from_millis(200));
        let err = a.ledger_grant(&jane, "expired").unwrap_err();
        assert!(matches!(err, StateError::Fenced { token: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("steps down"), "{err}");
        // Another node takes over; the old token stays refused even if "renewed" later.
        let lease_b = PgStore::open(&url).unwrap();
        let t2 = held(lease_b.lease_acquire("b", "ib", TTL).unwrap());
        let err = a.tx_begin().unwrap_err();
        assert!(err.to_string().contains("b's with token 2"), "{err}");
        let mut b = PgStore::open(&url).unwrap();
        b.set_fence(fence("b", t2)).unwrap();
        b.ledger_grant(&jane, "new-leader").unwrap();
        let ledger = b.load_plan_state().unwrap().ledger;
        let teams: Vec<&str> = ledger.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(teams, ["cv", "ml", "new-leader"]);
        // Unfenced stores (a human's `idsync approve` on any node) still write.
        let mut human = PgStore::open(&url).unwrap();
        human.ledger_grant(&jane, "human").unwrap();
    }

    #[test]
    fn a_takeover_waits_for_the_write_in_flight_and_a_paused_transaction_cannot_block_it() {
        let Some(pg) = Pg::start() else { return };
        let url = pg.create_db("ordering");
        let lease_a = PgStore::open(&url).unwrap();
        let t1 = held(lease_a.lease_acquire("a", "ia", TTL).unwrap());
        let mut a = PgStore::open(&url).unwrap();
        a.set_fence(fence("a", t1)).unwrap();
        // A write in flight holds the lease row shared (and then pauses, like a stopped
        // leader).
        a.tx_begin().unwrap();
        let (tx, rx) = mpsc::channel();
        let url2 = url.clone();
        let taker = std::thread::spawn(move || {
            let b = PgStore::open(&url2).unwrap();
            let t = Instant::now();
            let mut got = b.lease_acquire("b", "ib", TTL).unwrap();
            tx.send(()).unwrap();
            while matches!(got, Lease::Busy { .. }) && t.elapsed() < TTL * 3 {
                std::thread::sleep(Duration::from_millis(100));
                got = b.lease_acquire("b", "ib", TTL).unwrap();
            }
            (got, t.elapsed())
        });
        // The takeover waits behind the open transaction...
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the takeover must wait for the write in flight"
        );
        // ...which the server ends once it has been idle for half the TTL (a paused leader), so
        // the wait is bounded and the paused write never lands.
        let (got, waited) = taker.join().unwrap();
        assert!(matches!(got, Lease::Held { token: 2, .. }), "{got:?}");
        assert!(waited < TTL * 3, "waited {waited:?}");
        let jane = Email::parse("jane@x.com").unwrap();
        assert!(a.ledger_grant(&jane, "late").is_err(), "the paused session is gone or fenced");
        let b = PgStore::open(&url).unwrap();
        assert!(b.load_plan_state().unwrap().ledger.is_empty());
    }
}
