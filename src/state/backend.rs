//! [`StateBackend`]: the one interface between the shell and whatever keeps idsync's state
//! between runs. [`StateStore`] (SQLite, `store.rs`) and [`PgStore`](super::PgStore)
//! (PostgreSQL, `postgres/`) implement it and pass the same conformance test (the `tests`
//! module below); the shell holds either as a [`Store`] (`Box<dyn StateBackend>`), opened
//! by [`open`](super::open) from a [`Backend`](super::Backend).
//!
//! Opening a backend is not part of the trait: each one opens from its own settings (a
//! directory for SQLite, a URL for PostgreSQL). Nor is the audit log, which stays a local
//! append-only file whatever the backend.
//!
//! Invariants every implementation keeps:
//! - **Durable on return.** Every write is committed before its method returns `Ok`, so a
//!   crash (of idsync, the host or the database) loses nothing a method reported as done.
//!   In particular a journal entry is durable before the request to W&B is sent:
//!   [`journal_begin`](StateBackend::journal_begin) returns only once it is. The one
//!   exception is asked for by name: a transaction opened with
//!   [`tx_begin_lazy`](StateBackend::tx_begin_lazy) (an action's end, whose audit line is
//!   already fsynced) may become durable only with the next durable commit.
//! - **All or nothing.** A write that touches several rows (replacing the tombstones or
//!   anchors, storing approvals, recording a healthy read and pruning old ones) is one
//!   transaction: a failure leaves the previous state whole.
//! - **Journal rules.** A run applies each action once: beginning a begun entry is a
//!   no-op, beginning an ended one is an error; ending keeps the first outcome; ending an
//!   entry never begun is an error; an entry is ended under the run that began it, and
//!   [`journal_incomplete`](StateBackend::journal_incomplete) lists every begun, unended
//!   entry of every run, oldest first, until it is ended; an entry marked unknown stays
//!   listed (with why) until it is ended.
//! - **Restore snapshots**: one per email, a later one replacing it; recorded without an
//!   anchor, it keeps the anchor the last good read stored for that email;
//!   [`load_plan_state`](StateBackend::load_plan_state) returns them all in `restores`.
//!   They are written inside [`StateStore::atomically`] with a deprovision's journal end.
//! - **Sets are replaced, not merged**: tombstones and anchors. Grants, revokes,
//!   consuming an approval and revoking approvals are idempotent.
//! - **Nothing is guessed.** A stored value that does not parse is
//!   [`StateError::Corrupt`], never skipped or defaulted; a schema from a newer idsync is
//!   refused. (A backend with its own failure kinds adds a variant to [`StateError`], whose
//!   message names the database and what to do.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AuditRecord, JournalEntry, JournalState, Outcome, RunRecord, StateError, StateStore};
use crate::model::Email;
use crate::plan::{Action, ActionId, Approval, HealthyRead, PlanState, RestoreSnapshot, Tombstone};

/// What the shell holds: either backend.
pub type Store = Box<dyn StateBackend>;

/// What the shell does with idsync's stored state. See the module docs for the invariants
/// every implementation keeps; each method's own contract is on [`StateStore`]'s method
/// of the same name. `Send`: the daemon's runs move between runtime threads.
pub trait StateBackend: Send {
    // What the plan core reads, and the writes that keep it (`plan_state.rs`).

    /// Everything the plan core reads; approvals are all of them, expired or not.
    fn load_plan_state(&self) -> Result<PlanState, StateError>;
    /// Replaces the whole set of tombstones.
    fn replace_tombstones(&mut self, t: &[Tombstone]) -> Result<(), StateError>;
    /// The stored tombstones with cause and deadline, oldest first.
    fn tombstones(&self) -> Result<Vec<Tombstone>, StateError>;
    /// Records a healthy directory read and forgets those older than `window` before it.
    fn record_healthy_read(&mut self, read: &HealthyRead, window: Duration) -> Result<(), StateError>;
    /// Replaces the anchors (anchor to email) of the last healthy read.
    fn record_good_read(&mut self, anchors: &BTreeMap<String, Email>) -> Result<(), StateError>;
    /// Notes that idsync added `email` to `team` (idempotent).
    fn ledger_grant(&mut self, email: &Email, team: &str) -> Result<(), StateError>;
    /// Forgets a grant (idempotent).
    fn ledger_revoke(&mut self, email: &Email, team: &str) -> Result<(), StateError>;
    /// Stores approvals; a later approval of the same action replaces the earlier one.
    fn add_approvals(&mut self, a: &[Approval]) -> Result<(), StateError>;
    /// Deletes approvals expired at `now` (expiring exactly at `now` counts); how many.
    fn prune_approvals(&mut self, now: DateTime<Utc>) -> Result<usize, StateError>;
    /// All stored approvals, oldest first.
    fn approvals(&self) -> Result<Vec<Approval>, StateError>;
    /// Uses up the approval of an applied action; whether there was one.
    fn consume_approval(&mut self, id: &ActionId) -> Result<bool, StateError>;
    /// Withdraws the approvals of `ids` at once; those that were stored, in the order asked.
    fn revoke_approvals(&mut self, ids: &[ActionId]) -> Result<Vec<Approval>, StateError>;

    // Restore snapshots (`restore.rs`).

    /// Stores what a deprovisioned person had, replacing an earlier snapshot of the email.
    fn record_restore_snapshot(&mut self, s: &RestoreSnapshot) -> Result<(), StateError>;
    /// Every stored snapshot, oldest first (also in `load_plan_state().restores`).
    fn restore_snapshots(&self) -> Result<Vec<RestoreSnapshot>, StateError>;
    /// Forgets snapshots taken before `before`; how many.
    fn prune_restore_snapshots(&mut self, before: DateTime<Utc>) -> Result<usize, StateError>;

    // The apply journal (`journal.rs`).

    /// Journals the start of `action` in `run_id`, durably, before it touches W&B, with
    /// the audit log's length `audit_at`.
    fn journal_begin(&mut self, run_id: &str, action: &Action, audit_at: u64) -> Result<(), StateError>;
    /// Marks a begun entry as sent with an outcome idsync cannot know; it stays open.
    fn journal_unknown(&mut self, run_id: &str, action_id: &ActionId, why: &str) -> Result<(), StateError>;
    /// Journals the end of an action begun in `run_id`, durably; the first outcome stays.
    fn journal_end(&mut self, run_id: &str, action_id: &ActionId, outcome: &Outcome) -> Result<(), StateError>;
    /// Actions begun and never ended, from any run, oldest first: what a crash left.
    fn journal_incomplete(&self) -> Result<Vec<JournalEntry>, StateError>;
    /// Where `action_id` stands in `run_id`: `None` when never begun.
    fn journal_state(&self, run_id: &str, action_id: &ActionId) -> Result<Option<JournalState>, StateError>;
    /// Whether `action_id` has ended (either way) in `run_id`.
    fn journal_has_ended(&self, run_id: &str, action_id: &ActionId) -> Result<bool, StateError>;

    // Run history (`runs.rs`).

    /// Records a run; recording the same `run_id` again replaces it.
    fn record_run(&mut self, r: &RunRecord) -> Result<(), StateError>;
    /// The latest `n` runs, newest first.
    fn last_runs(&self, n: usize) -> Result<Vec<RunRecord>, StateError>;
    /// Deletes ended journal entries and runs finished before `before`; how many rows.
    fn prune_history(&mut self, before: DateTime<Utc>) -> Result<usize, StateError>;

    // Notifications (`notified.rs`).

    /// The held action ids the last `[notify]` message listed; `None` before the first.
    fn notified_held(&self) -> Result<Option<BTreeSet<String>>, StateError>;
    /// Replaces the held action ids the last message listed.
    fn record_notified(&mut self, held: &BTreeSet<String>, at: DateTime<Utc>) -> Result<(), StateError>;

    // The audit trail (`audit.rs` keeps the per-node file whatever the backend).

    /// Keeps `rec` in the state too, where the state is shared (PostgreSQL), so every
    /// node's steps and approvals are in one place. The SQLite store keeps none: the local
    /// `audit.jsonl` is its trail.
    fn record_audit(&mut self, rec: &AuditRecord) -> Result<(), StateError>;

    // Transactions, for [`atomically`](dyn StateBackend::atomically) only.

    /// Opens a transaction: the writes until [`tx_commit`](Self::tx_commit) or
    /// [`tx_rollback`](Self::tx_rollback) commit together or not at all.
    fn tx_begin(&mut self) -> Result<(), StateError>;
    /// Commits the open transaction, durably.
    fn tx_commit(&mut self) -> Result<(), StateError>;
    /// [`tx_begin`](Self::tx_begin) for a transaction whose commit, still all or nothing,
    /// may become durable only with the next durable one: a power loss (never a crash of
    /// idsync) may lose it whole. Only for writes that resume recovers from the fsynced
    /// audit log (an action's end). Backends without a cheaper commit keep it durable.
    fn tx_begin_lazy(&mut self) -> Result<(), StateError> {
        self.tx_begin()
    }
    /// Undoes the open transaction (best effort: a lost connection has undone it already).
    fn tx_rollback(&mut self);

    /// Where the state lives, for messages and `status`: a file, or a server and database
    /// (never credentials).
    fn describe(&self) -> String;

    /// HA: who holds an unexpired leader lease (node, token, validity left by the
    /// database's clock); `None` when none does, or the backend has no lease (SQLite).
    fn ha_lease(&self) -> Result<Option<(String, i64, Duration)>, StateError> {
        Ok(None)
    }

    /// HA: from now on every write first checks that `fence`'s lease token still holds,
    /// and fails with [`StateError::Fenced`] otherwise (`postgres/lease.rs`). Only a
    /// shared backend can hold a lease: the SQLite store refuses.
    fn set_fence(&mut self, fence: super::Fence) -> Result<(), StateError> {
        Err(StateError::Corrupt {
            path: self.describe().into(),
            msg: format!(
                "[ha] needs [state] backend = \"postgres\" (node {}): this backend cannot hold a leader lease",
                fence.node
            ),
        })
    }
}

impl dyn StateBackend + '_ {
    /// Runs `f`'s writes as one transaction: all of them are committed or, when `f` or the
    /// commit fails, none. `f` must use single-statement writes only (the journal, the
    /// ledger, consuming an approval): SQLite's multi-row writes open a transaction of their
    /// own, which fails inside this one.
    pub fn atomically<T, E: From<StateError>>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        self.atomically_with(true, f)
    }

    /// [`atomically`](Self::atomically), opened with
    /// [`tx_begin_lazy`](StateBackend::tx_begin_lazy) unless `durable`.
    pub fn atomically_with<T, E: From<StateError>>(&mut self, durable: bool, f: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        if durable {
            self.tx_begin()?
        } else {
            self.tx_begin_lazy()?
        }
        match f(self) {
            Ok(v) => match self.tx_commit() {
                Ok(()) => Ok(v),
                Err(e) => {
                    self.tx_rollback();
                    Err(E::from(e))
                }
            },
            Err(e) => {
                self.tx_rollback();
                Err(e)
            }
        }
    }
}

/// The SQLite store: each method is the inherent one of the same name.
impl StateBackend for StateStore {
    fn load_plan_state(&self) -> Result<PlanState, StateError> {
        StateStore::load_plan_state(self)
    }
    fn replace_tombstones(&mut self, t: &[Tombstone]) -> Result<(), StateError> {
        StateStore::replace_tombstones(self, t)
    }
    fn tombstones(&self) -> Result<Vec<Tombstone>, StateError> {
        StateStore::tombstones(self)
    }
    fn record_healthy_read(&mut self, read: &HealthyRead, window: Duration) -> Result<(), StateError> {
        StateStore::record_healthy_read(self, read, window)
    }
    fn record_good_read(&mut self, anchors: &BTreeMap<String, Email>) -> Result<(), StateError> {
        StateStore::record_good_read(self, anchors)
    }
    fn ledger_grant(&mut self, email: &Email, team: &str) -> Result<(), StateError> {
        StateStore::ledger_grant(self, email, team)
    }
    fn ledger_revoke(&mut self, email: &Email, team: &str) -> Result<(), StateError> {
        StateStore::ledger_revoke(self, email, team)
    }
    fn add_approvals(&mut self, a: &[Approval]) -> Result<(), StateError> {
        StateStore::add_approvals(self, a)
    }
    fn prune_approvals(&mut self, now: DateTime<Utc>) -> Result<usize, StateError> {
        StateStore::prune_approvals(self, now)
    }
    fn approvals(&self) -> Result<Vec<Approval>, StateError> {
        StateStore::approvals(self)
    }
    fn consume_approval(&mut self, id: &ActionId) -> Result<bool, StateError> {
        StateStore::consume_approval(self, id)
    }
    fn revoke_approvals(&mut self, ids: &[ActionId]) -> Result<Vec<Approval>, StateError> {
        StateStore::revoke_approvals(self, ids)
    }
    fn record_restore_snapshot(&mut self, s: &RestoreSnapshot) -> Result<(), StateError> {
        StateStore::record_restore_snapshot(self, s)
    }
    fn restore_snapshots(&self) -> Result<Vec<RestoreSnapshot>, StateError> {
        StateStore::restore_snapshots(self)
    }
    fn prune_restore_snapshots(&mut self, before: DateTime<Utc>) -> Result<usize, StateError> {
        StateStore::prune_restore_snapshots(self, before)
    }
    fn journal_begin(&mut self, run_id: &str, action: &Action, audit_at: u64) -> Result<(), StateError> {
        StateStore::journal_begin(self, run_id, action, audit_at)
    }
    fn journal_unknown(&mut self, run_id: &str, action_id: &ActionId, why: &str) -> Result<(), StateError> {
        StateStore::journal_unknown(self, run_id, action_id, why)
    }
    fn journal_end(&mut self, run_id: &str, action_id: &ActionId, outcome: &Outcome) -> Result<(), StateError> {
        StateStore::journal_end(self, run_id, action_id, outcome)
    }
    fn journal_incomplete(&self) -> Result<Vec<JournalEntry>, StateError> {
        StateStore::journal_incomplete(self)
    }
    fn journal_state(&self, run_id: &str, action_id: &ActionId) -> Result<Option<JournalState>, StateError> {
        StateStore::journal_state(self, run_id, action_id)
    }
    fn journal_has_ended(&self, run_id: &str, action_id: &ActionId) -> Result<bool, StateError> {
        StateStore::journal_has_ended(self, run_id, action_id)
    }
    fn record_run(&mut self, r: &RunRecord) -> Result<(), StateError> {
        StateStore::record_run(self, r)
    }
    fn last_runs(&self, n: usize) -> Result<Vec<RunRecord>, StateError> {
        StateStore::last_runs(self, n)
    }
    fn prune_history(&mut self, before: DateTime<Utc>) -> Result<usize, StateError> {
        StateStore::prune_history(self, before)
    }
    fn notified_held(&self) -> Result<Option<BTreeSet<String>>, StateError> {
        StateStore::notified_held(self)
    }
    fn record_notified(&mut self, held: &BTreeSet<String>, at: DateTime<Utc>) -> Result<(), StateError> {
        StateStore::record_notified(self, held, at)
    }
    fn record_audit(&mut self, _rec: &AuditRecord) -> Result<(), StateError> {
        Ok(())
    }
    fn tx_begin(&mut self) -> Result<(), StateError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.err())
    }
    fn tx_begin_lazy(&mut self) -> Result<(), StateError> {
        // WAL with synchronous = NORMAL (settable only outside a transaction): the commit is
        // written but the WAL is synced only by the next FULL commit (every other write, the
        // next action's journal begin among them). Commit and rollback set FULL back.
        let r = self.conn.execute_batch("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE");
        if r.is_err() {
            let _ = self.conn.execute_batch("PRAGMA synchronous = FULL");
        }
        r.map_err(self.err())
    }
    fn tx_commit(&mut self) -> Result<(), StateError> {
        self.conn.execute_batch("COMMIT").map_err(self.err())?;
        self.conn.execute_batch("PRAGMA synchronous = FULL").map_err(self.err())
    }
    fn tx_rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        let _ = self.conn.execute_batch("PRAGMA synchronous = FULL");
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::plan::{TombstoneCause, TombstoneRecord};

    /// The contract of the module docs, through `dyn StateBackend` only, on an empty
    /// backend. A second backend's tests call this on a fresh database of their own.
    fn conformance(b: &mut dyn StateBackend) {
        assert_eq!(b.load_plan_state().unwrap(), PlanState::default());

        // Sets are replaced, not merged.
        let tomb = |u: &str, h| Tombstone {
            user: email(u),
            since: t(h),
            deprovision_after: Some(t(h + 4)),
            cause: TombstoneCause::Disabled,
        };
        b.replace_tombstones(&[tomb("a@x.com", 1), tomb("b@x.com", 2)]).unwrap();
        b.replace_tombstones(&[tomb("b@x.com", 2)]).unwrap();
        assert_eq!(b.tombstones().unwrap(), vec![tomb("b@x.com", 2)]);
        assert_eq!(
            b.load_plan_state().unwrap().tombstones.into_iter().collect::<Vec<_>>(),
            vec![(email("b@x.com"), TombstoneRecord { since: t(2) })]
        );
        let one: BTreeMap<_, _> = [("x".to_string(), email("x@e.com")), ("y".to_string(), email("y@e.com"))].into();
        let two: BTreeMap<_, _> = [("y".to_string(), email("new@e.com"))].into();
        b.record_good_read(&one).unwrap();
        b.record_good_read(&two).unwrap();
        assert_eq!(b.load_plan_state().unwrap().anchors, two);

        // Healthy reads older than the window before the newest are forgotten.
        let window = Duration::from_secs(3 * 3600);
        b.record_healthy_read(&healthy(1, 100, &[("cn=ml", 10)]), window).unwrap();
        b.record_healthy_read(&healthy(5, 80, &[]), window).unwrap();
        assert_eq!(b.load_plan_state().unwrap().healthy_reads, vec![healthy(5, 80, &[])]);

        // Grants and revokes are idempotent.
        let a = email("a@x.com");
        b.ledger_grant(&a, "ml").unwrap();
        b.ledger_grant(&a, "ml").unwrap();
        b.ledger_grant(&a, "ops").unwrap();
        b.ledger_revoke(&a, "ml").unwrap();
        b.ledger_revoke(&a, "never-granted").unwrap();
        assert_eq!(
            b.load_plan_state().unwrap().ledger.into_iter().collect::<Vec<_>>(),
            vec![(a, "ops".to_string())]
        );

        // Approvals: upserted, all of them loaded, pruned at expiry, consumed once.
        b.add_approvals(&[approval("p", 1, 3), approval("q", 1, 10)]).unwrap();
        b.add_approvals(&[approval("p", 2, 12)]).unwrap();
        assert_eq!(b.approvals().unwrap(), vec![approval("q", 1, 10), approval("p", 2, 12)]);
        assert_eq!(b.load_plan_state().unwrap().approvals, b.approvals().unwrap());
        assert_eq!(b.prune_approvals(t(10)).unwrap(), 1);
        assert!(b.consume_approval(&ActionId("p".into())).unwrap());
        assert!(!b.consume_approval(&ActionId("p".into())).unwrap());
        assert!(b.approvals().unwrap().is_empty());
        // Revoking withdraws at once, and only what is stored.
        b.add_approvals(&[approval("r", 1, 10), approval("s", 1, 10)]).unwrap();
        let gone = b.revoke_approvals(&[ActionId("s".into()), ActionId("zz".into())]).unwrap();
        assert_eq!(gone, vec![approval("s", 1, 10)]);
        assert_eq!(b.approvals().unwrap(), vec![approval("r", 1, 10)]);
        assert!(b.consume_approval(&ActionId("r".into())).unwrap());

        // Restore snapshots: one per email, the latest replaces; the anchor of the last
        // good read is kept with one recorded without; pruned by age.
        let snap = |u: &str, h, team: &str| RestoreSnapshot {
            user: email(u),
            anchor: None,
            taken_at: t(h),
            org_role: "admin".into(),
            teams: [(team.to_string(), "admin".to_string()), ("other".to_string(), "member".to_string())].into(),
        };
        b.record_restore_snapshot(&snap("new@e.com", 1, "ml")).unwrap();
        b.record_restore_snapshot(&snap("new@e.com", 3, "ops")).unwrap();
        b.record_restore_snapshot(&snap("z@e.com", 2, "ml")).unwrap();
        let with_anchor = RestoreSnapshot {
            anchor: Some("y".into()),
            ..snap("new@e.com", 3, "ops")
        };
        assert_eq!(b.restore_snapshots().unwrap(), vec![snap("z@e.com", 2, "ml"), with_anchor.clone()]);
        assert_eq!(b.load_plan_state().unwrap().restores.get(&email("new@e.com")), Some(&with_anchor));
        assert_eq!(b.prune_restore_snapshots(t(3)).unwrap(), 1);
        assert_eq!(b.restore_snapshots().unwrap(), vec![with_anchor]);

        // The journal rules.
        let (a1, a2) = (action("a@x.com", "ml"), action("b@x.com", "ml"));
        let ok = |d: &str| Outcome {
            ok: true,
            detail: d.into(),
        };
        assert_eq!(b.journal_state("run-1", &a1.id).unwrap(), None);
        b.journal_begin("run-1", &a1, 0).unwrap();
        b.journal_begin("run-1", &a1, 0).unwrap();
        b.journal_begin("run-1", &a2, 0).unwrap();
        assert_eq!(b.journal_state("run-1", &a1.id).unwrap(), Some(JournalState::Begun));
        let open: Vec<_> = b.journal_incomplete().unwrap().into_iter().map(|e| (e.run_id, e.action)).collect();
        assert_eq!(open, vec![("run-1".to_string(), a1.clone()), ("run-1".to_string(), a2.clone())]);
        b.journal_end("run-1", &a1.id, &ok("first")).unwrap();
        b.journal_end("run-1", &a1.id, &ok("second")).unwrap();
        assert_eq!(b.journal_state("run-1", &a1.id).unwrap(), Some(JournalState::Ended(ok("first"))));
        assert!(b.journal_has_ended("run-1", &a1.id).unwrap());
        assert!(!b.journal_has_ended("run-1", &a2.id).unwrap());
        // Unknown: marked, still open, with why and where its audit lines start.
        b.journal_unknown("run-1", &a2.id, "500 after retries").unwrap();
        assert_eq!(
            b.journal_state("run-1", &a2.id).unwrap(),
            Some(JournalState::Unknown("500 after retries".into()))
        );
        let open = b.journal_incomplete().unwrap();
        assert_eq!(
            (open.len(), open[0].unknown.as_deref(), open[0].audit_at),
            (1, Some("500 after retries"), Some(0))
        );
        assert!(b.journal_unknown("run-9", &a2.id, "x").is_err(), "an entry must be begun first");
        assert!(b.journal_begin("run-1", &a1, 0).is_err(), "an ended action is not applied twice");
        assert!(b.journal_end("run-2", &a1.id, &ok("")).is_err(), "an entry must be begun first");
        assert_eq!(b.journal_incomplete().unwrap().len(), 1);

        // Run history: one record per run, newest first; pruning keeps begun entries.
        let run = |id: &str, h, result: &str| RunRecord {
            run_id: id.into(),
            command: "apply".into(),
            started_at: t(h),
            finished_at: t(h + 1),
            result: result.into(),
            summary: [("add_to_team".to_string(), 1usize)].into(),
            error: None,
        };
        b.record_run(&run("r1", 1, "success")).unwrap();
        b.record_run(&run("r2", 2, "success")).unwrap();
        b.record_run(&run("r2", 2, "failure")).unwrap();
        assert_eq!(b.last_runs(5).unwrap(), vec![run("r2", 2, "failure"), run("r1", 1, "success")]);
        assert_eq!(
            b.prune_history(Utc::now() + chrono::Duration::hours(1)).unwrap(),
            3,
            "two runs, one ended entry"
        );
        assert!(b.last_runs(5).unwrap().is_empty());
        assert_eq!(b.journal_incomplete().unwrap().len(), 1, "a begun entry outlives pruning");

        // The last notification's held set: none until one is sent, then replaced.
        assert_eq!(b.notified_held().unwrap(), None);
        let held: BTreeSet<String> = ["x".to_string(), "y".to_string()].into();
        b.record_notified(&held, t(1)).unwrap();
        b.record_notified(&BTreeSet::new(), t(2)).unwrap();
        assert_eq!(b.notified_held().unwrap(), Some(BTreeSet::new()));
    }

    #[test]
    fn the_sqlite_store_keeps_the_backend_contract() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        conformance(&mut s);
        // And what it reported as done survives reopening.
        drop(s);
        let s = StateStore::open(tmp.path()).unwrap();
        assert_eq!(StateBackend::journal_incomplete(&s).unwrap().len(), 1);
        assert_eq!(StateBackend::tombstones(&s).unwrap().len(), 1);
    }

    #[test]
    fn a_lazy_commit_is_all_or_nothing_and_leaves_later_commits_full() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let b: &mut dyn StateBackend = &mut s;
        let a = email("a@x.com");
        b.atomically_with(false, |b| b.ledger_grant(&a, "ml")).unwrap();
        let failed: Result<(), StateError> = b.atomically_with(false, |b| {
            b.ledger_grant(&a, "ops")?;
            Err(StateError::Journal("refused".into()))
        });
        assert!(failed.is_err());
        let sync: i64 = s.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "every other commit stays synchronous = FULL");
        drop(s);
        let ledger = StateStore::open(tmp.path()).unwrap().load_plan_state().unwrap().ledger;
        assert_eq!(ledger, [(a, "ml".to_string())].into());
    }

    #[test]
    fn the_postgres_store_keeps_the_backend_contract() {
        use super::super::postgres::test_server::Pg;
        use super::super::PgStore;
        let Some(pg) = Pg::start() else { return };
        let url = pg.create_db("conformance");
        let mut s = PgStore::open(&url).unwrap();
        conformance(&mut s);
        drop(s);
        let s = PgStore::open(&url).unwrap();
        assert_eq!(StateBackend::journal_incomplete(&s).unwrap().len(), 1);
        assert_eq!(StateBackend::tombstones(&s).unwrap().len(), 1);
        drop(s);

        // All or nothing, through the shell's `atomically`.
        let mut b: Box<dyn StateBackend> = Box::new(PgStore::open(&url).unwrap());
        let a = email("atomic@x.com");
        let failed: Result<(), StateError> = b.atomically(|s| {
            s.ledger_grant(&a, "ml")?;
            Err(StateError::Journal("fails after the first write".into()))
        });
        assert!(failed.is_err());
        assert!(b.load_plan_state().unwrap().ledger.iter().all(|(e, _)| e != &a), "rolled back");
        b.atomically(|s| -> Result<(), StateError> {
            s.ledger_grant(&a, "ml")?;
            s.replace_tombstones(&[])
        })
        .unwrap();
        assert!(b.load_plan_state().unwrap().ledger.contains(&(a.clone(), "ml".to_string())));
        assert!(b.tombstones().unwrap().is_empty());
        drop(b);

        // Read-only: nothing is created in an empty database, nothing written in a full one.
        let empty = pg.create_db("empty");
        assert!(PgStore::open_read_only(&empty, None).unwrap().is_none());
        assert_eq!(pg.sql("empty", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");
        let mut ro = PgStore::open_read_only(&url, None).unwrap().expect("a schema exists");
        let before = ro.load_plan_state().unwrap();
        let err = ro.ledger_grant(&email("ro@x.com"), "ml").unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
        assert_eq!(ro.load_plan_state().unwrap(), before);
        drop(ro);

        // A schema from a newer idsync is refused, read-write and read-only.
        pg.sql("conformance", "UPDATE idsync_schema SET version = 99");
        let err = PgStore::open(&url).unwrap_err();
        assert!(matches!(err, StateError::PgTooNew { found: 99, .. }), "{err:?}");
        assert!(err.to_string().contains("upgrade idsync"), "{err}");
        assert!(matches!(PgStore::open_read_only(&url, None), Err(StateError::PgTooNew { .. })));

        // Errors name the server and database, never the password.
        let secret = format!(
            "postgresql://idsync:hunter2@127.0.0.1:{}/nosuchdb?sslmode=disable&connect_timeout=5",
            pg.port
        );
        let msg = PgStore::open(&secret).unwrap_err().to_string();
        assert!(
            msg.contains("nosuchdb") && msg.contains("127.0.0.1") && !msg.contains("hunter2"),
            "{msg}"
        );
        let msg = PgStore::open("postgresql://u:hunter2@h/db?sslmode=bogus").unwrap_err().to_string();
        assert!(!msg.contains("hunter2") && msg.contains("url_file"), "{msg}");
    }

    /// The blocking client is safe where idsync calls it: inside a tokio runtime, both
    /// flavours (no "runtime within runtime" panic on query, connect or drop).
    #[test]
    fn the_postgres_store_works_inside_a_runtime() {
        use super::super::postgres::test_server::Pg;
        use super::super::PgStore;
        let Some(pg) = Pg::start() else { return };
        let url = pg.create_db("rt");
        for rt in [
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ] {
            rt.block_on(async {
                let mut s = PgStore::open(&url).unwrap();
                s.ledger_grant(&email("rt@x.com"), "ml").unwrap();
                tokio::task::yield_now().await;
                assert_eq!(s.load_plan_state().unwrap().ledger.len(), 1);
                drop(s);
            });
        }
    }
}
