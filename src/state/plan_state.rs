//! What the plan core reads back between runs ([`PlanState`]) and the writes that keep it:
//! tombstone clocks, the recent healthy directory reads (the source-health baseline),
//! the anchors of the last healthy read (identity-change), the ledger of grants idsync
//! made, and approvals bound to an action's fingerprint.
//!
//! Invariants: each write is one transaction, committed before the method returns;
//! tombstones and anchors are replaced as a whole set, never merged; healthy reads older
//! than the window before the newest are forgotten (the guard never looks further back);
//! grants, revokes and consuming an approval are idempotent; `load_plan_state` returns
//! every approval, expired or not (dropping expired ones is the core's job); a stored
//! value that does not parse is [`StateError::Corrupt`], never silently skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::error::db_err;
use super::{ts, StateError, StateStore};
use crate::model::Email;
use crate::plan::{ActionId, ActionKind, Approval, Guard, HealthyRead, PlanState, Tombstone, TombstoneCause, TombstoneRecord};

impl StateStore {
    /// Everything the plan core reads from the store. Approvals are all of them; dropping
    /// expired ones is the core's job.
    pub fn load_plan_state(&self) -> Result<PlanState, StateError> {
        let mut tombstones = BTreeMap::new();
        for (email, since) in self.rows2("SELECT email, since FROM tombstones")? {
            tombstones.insert(self.email(&email)?, TombstoneRecord { since: self.time(&since)? });
        }
        let healthy_reads = self.healthy_reads()?;
        let mut ledger = BTreeSet::new();
        for (email, team) in self.rows2("SELECT email, team FROM ledger")? {
            ledger.insert((self.email(&email)?, team));
        }
        let mut anchors = BTreeMap::new();
        for (anchor, email) in self.rows2("SELECT anchor, email FROM anchors")? {
            anchors.insert(anchor, self.email(&email)?);
        }
        Ok(PlanState {
            tombstones,
            healthy_reads,
            ledger,
            approvals: self.approvals()?,
            anchors,
            restores: self.restore_snapshots()?.into_iter().map(|r| (r.user.clone(), r)).collect(),
        })
    }

    fn rows2(&self, sql: &str) -> Result<Vec<(String, String)>, StateError> {
        let mut st = self.conn.prepare(sql).map_err(self.err())?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Replaces the whole set of tombstones in one transaction.
    pub fn replace_tombstones(&mut self, t: &[Tombstone]) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute("DELETE FROM tombstones", []).map_err(&e)?;
        {
            let mut ins = tx
                .prepare("INSERT OR REPLACE INTO tombstones (email, since, deprovision_after, cause) VALUES (?1, ?2, ?3, ?4)")
                .map_err(&e)?;
            for s in t {
                let cause = match s.cause {
                    TombstoneCause::Missing => "missing",
                    TombstoneCause::Disabled => "disabled",
                };
                ins.execute(params![s.user.as_str(), ts(&s.since), s.deprovision_after.as_ref().map(ts), cause])
                    .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// The stored tombstones with cause and deadline, oldest first (for `status`).
    pub fn tombstones(&self) -> Result<Vec<Tombstone>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT email, since, deprovision_after, cause FROM tombstones ORDER BY since, email")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(email, since, after, cause)| {
                Ok(Tombstone {
                    user: self.email(&email)?,
                    since: self.time(&since)?,
                    deprovision_after: after.as_deref().map(|a| self.time(a)).transpose()?,
                    cause: if cause == "disabled" {
                        TombstoneCause::Disabled
                    } else {
                        TombstoneCause::Missing
                    },
                })
            })
            .collect()
    }

    /// The stored healthy reads, oldest first.
    fn healthy_reads(&self) -> Result<Vec<HealthyRead>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT read_at, people, groups FROM healthy_reads ORDER BY read_at, seq")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(at, people, groups)| {
                Ok(HealthyRead {
                    at: self.time(&at)?,
                    people: usize::try_from(people).map_err(|_| self.corrupt(format!("stored directory size {people} is negative")))?,
                    groups: serde_json::from_str(&groups)
                        .map_err(|e| self.corrupt(format!("stored group sizes {groups:?} are not a JSON map of counts: {e}")))?,
                })
            })
            .collect()
    }

    /// Records a healthy directory read for the source-health baseline and forgets the
    /// ones older than `window` before it: the guard never looks further back.
    pub fn record_healthy_read(&mut self, read: &HealthyRead, window: Duration) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = db_err(&path);
        let people = i64::try_from(read.people).unwrap_or(i64::MAX);
        // A map of strings to counts always serialises; "{}" would only lose group baselines.
        let groups = serde_json::to_string(&read.groups).unwrap_or_else(|_| "{}".into());
        let cutoff = chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| read.at.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute(
            "INSERT INTO healthy_reads (read_at, people, groups) VALUES (?1, ?2, ?3)",
            params![ts(&read.at), people, groups],
        )
        .map_err(&e)?;
        tx.execute("DELETE FROM healthy_reads WHERE read_at < ?1", params![ts(&cutoff)])
            .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// Records each anchor's email at a healthy read (for identity-change), replacing the
    /// previous ones.
    pub fn record_good_read(&mut self, anchors: &BTreeMap<String, Email>) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute("DELETE FROM anchors", []).map_err(&e)?;
        {
            let mut ins = tx
                .prepare("INSERT OR REPLACE INTO anchors (anchor, email) VALUES (?1, ?2)")
                .map_err(&e)?;
            for (anchor, email) in anchors {
                ins.execute(params![anchor, email.as_str()]).map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Notes that idsync added `email` to `team` (idempotent).
    pub fn ledger_grant(&mut self, email: &Email, team: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO ledger (email, team, granted_at) VALUES (?1, ?2, ?3) ON CONFLICT (email, team) DO NOTHING",
                params![email.as_str(), team, ts(&Utc::now())],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets a grant (idempotent).
    pub fn ledger_revoke(&mut self, email: &Email, team: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM ledger WHERE email = ?1 AND team = ?2", params![email.as_str(), team])
            .map_err(self.err())?;
        Ok(())
    }

    /// Stores approvals; a later approval of the same action replaces the earlier one.
    pub fn add_approvals(&mut self, a: &[Approval]) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare(
                    "INSERT INTO approvals (action_id, approved_at, expires_at, approved_by, guards, fingerprint,
                         action_kind, action_user, action_team)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (action_id) DO UPDATE SET approved_at = excluded.approved_at,
                         expires_at = excluded.expires_at, approved_by = excluded.approved_by,
                         guards = excluded.guards, fingerprint = excluded.fingerprint,
                         action_kind = excluded.action_kind, action_user = excluded.action_user,
                         action_team = excluded.action_team",
                )
                .map_err(&e)?;
            for ap in a {
                let guards: Vec<&str> = ap.guards.iter().map(|g| g.as_str()).collect();
                up.execute(params![
                    ap.action_id.as_str(),
                    ts(&ap.approved_at),
                    ts(&ap.expires_at),
                    ap.approved_by,
                    guards.join(","),
                    ap.fingerprint,
                    ap.kind.map(|k| k.as_str()).unwrap_or(""),
                    ap.user.as_ref().map(|u| u.as_str()).unwrap_or(""),
                    ap.team.as_deref().unwrap_or("")
                ])
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Deletes approvals expired at `now`; returns how many.
    pub fn prune_approvals(&mut self, now: DateTime<Utc>) -> Result<usize, StateError> {
        self.conn
            .execute("DELETE FROM approvals WHERE expires_at <= ?1", params![ts(&now)])
            .map_err(self.err())
    }

    /// All stored approvals, oldest first.
    pub fn approvals(&self) -> Result<Vec<Approval>, StateError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT action_id, approved_at, expires_at, approved_by, guards, fingerprint,
                     action_kind, action_user, action_team FROM approvals
                 ORDER BY approved_at, action_id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    (r.get::<_, String>(6)?, r.get::<_, String>(7)?, r.get::<_, String>(8)?),
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(id, at, exp, by, guards, fingerprint, (kind, user, team))| {
                let guards = guards
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(|g| {
                        Guard::ALL
                            .into_iter()
                            .find(|x| x.as_str() == g)
                            .ok_or_else(|| self.corrupt(format!("approval {id} names an unknown guard {g:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Approval {
                    action_id: ActionId(id),
                    approved_at: self.time(&at)?,
                    expires_at: self.time(&exp)?,
                    approved_by: by,
                    guards,
                    fingerprint,
                    // Descriptive only: an unknown kind (a newer idsync's) shows as unknown.
                    kind: ActionKind::ALL.into_iter().find(|k| k.as_str() == kind),
                    user: Email::parse(&user),
                    team: Some(team).filter(|t| !t.is_empty()),
                })
            })
            .collect()
    }

    /// Withdraws the approvals of `ids` in one transaction (`idsync revoke`) and returns
    /// those that were stored, in the order asked; an id with no approval is skipped (the
    /// caller checks first, under the apply lock, and names it).
    pub fn revoke_approvals(&mut self, ids: &[ActionId]) -> Result<Vec<Approval>, StateError> {
        let stored = self.approvals()?;
        let path = self.path.clone();
        let e = db_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        let mut revoked = Vec::new();
        for id in ids {
            if let Some(a) = stored.iter().find(|a| &a.action_id == id) {
                tx.execute("DELETE FROM approvals WHERE action_id = ?1", params![id.as_str()])
                    .map_err(&e)?;
                if !revoked.iter().any(|r: &Approval| &r.action_id == id) {
                    revoked.push(a.clone());
                }
            }
        }
        tx.commit().map_err(&e)?;
        Ok(revoked)
    }

    /// Uses up the approval of an applied action; returns whether there was one.
    pub fn consume_approval(&mut self, id: &ActionId) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute("DELETE FROM approvals WHERE action_id = ?1", params![id.as_str()])
            .map_err(self.err())?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn tombstones_are_replaced_as_a_set() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let ts = |u: &str, h| Tombstone {
            user: email(u),
            since: t(h),
            deprovision_after: None,
            cause: TombstoneCause::Missing,
        };
        s.replace_tombstones(&[ts("a@x.com", 1), ts("b@x.com", 2)]).unwrap();
        s.replace_tombstones(&[ts("b@x.com", 2), ts("c@x.com", 3)]).unwrap();
        let got: Vec<_> = s
            .load_plan_state()
            .unwrap()
            .tombstones
            .into_iter()
            .map(|(e, r)| (e.to_string(), r.since))
            .collect();
        assert_eq!(got, vec![("b@x.com".to_string(), t(2)), ("c@x.com".to_string(), t(3))]);
        s.replace_tombstones(&[]).unwrap();
        assert!(s.tombstones().unwrap().is_empty());
    }

    #[test]
    fn good_reads_replace_anchors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let one: BTreeMap<_, _> = [("x".to_string(), email("x@e.com")), ("y".to_string(), email("y@e.com"))].into();
        s.record_good_read(&one).unwrap();
        let two: BTreeMap<_, _> = [("y".to_string(), email("new@e.com"))].into();
        s.record_good_read(&two).unwrap();
        assert_eq!(s.load_plan_state().unwrap().anchors, two);
    }

    #[test]
    fn healthy_reads_accumulate_and_those_older_than_the_window_are_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let window = Duration::from_secs(3 * 3600);
        s.record_healthy_read(&healthy(1, 100, &[("cn=ml", 10)]), window).unwrap();
        s.record_healthy_read(&healthy(2, 91, &[]), window).unwrap();
        s.record_healthy_read(&healthy(4, 83, &[("cn=ml", 9), ("cn=admins", 2)]), window)
            .unwrap();
        // At 04:00 the window reaches back to 01:00: nothing is older yet.
        assert_eq!(s.load_plan_state().unwrap().healthy_reads.len(), 3);
        s.record_healthy_read(&healthy(5, 80, &[]), window).unwrap();
        // At 05:00 it reaches back to 02:00: the 01:00 read is forgotten.
        assert_eq!(
            s.load_plan_state().unwrap().healthy_reads,
            vec![
                healthy(2, 91, &[]),
                healthy(4, 83, &[("cn=ml", 9), ("cn=admins", 2)]),
                healthy(5, 80, &[])
            ]
        );
    }

    #[test]
    fn garbled_group_sizes_are_reported_as_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateStore::open(tmp.path()).unwrap();
        s.conn
            .execute(
                "INSERT INTO healthy_reads (read_at, people, groups) VALUES (?1, 5, 'not json')",
                params![ts(&t(1))],
            )
            .unwrap();
        let err = s.load_plan_state().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("group sizes"), "{err}");
    }

    #[test]
    fn ledger_grants_and_revokes_idempotently() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        let a = email("a@x.com");
        s.ledger_grant(&a, "ml").unwrap();
        s.ledger_grant(&a, "ml").unwrap();
        s.ledger_grant(&a, "ops").unwrap();
        s.ledger_revoke(&a, "ml").unwrap();
        s.ledger_revoke(&a, "never-granted").unwrap();
        let ledger = s.load_plan_state().unwrap().ledger;
        assert_eq!(ledger.into_iter().collect::<Vec<_>>(), vec![(a, "ops".to_string())]);
    }

    #[test]
    fn approvals_keep_what_they_approve_and_older_rows_read_as_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        s.add_approvals(&[approval("a", 1, 3)]).unwrap();
        let got = &s.approvals().unwrap()[0];
        assert_eq!(got.kind, Some(ActionKind::DeprovisionUser));
        assert_eq!(got.user, Some(email("ci@x.com")));
        assert_eq!(got.team, None);
        // A row written before migration 4 has empty descriptive columns.
        s.conn
            .execute(
                "INSERT INTO approvals (action_id, approved_at, expires_at) VALUES ('old', ?1, ?2)",
                rusqlite::params![ts(&t(1)), ts(&t(9))],
            )
            .unwrap();
        let old = s.approvals().unwrap().into_iter().find(|a| a.action_id.as_str() == "old").unwrap();
        assert_eq!((old.kind, old.user, old.team), (None, None, None));
    }

    #[test]
    fn approvals_upsert_prune_and_consume() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        s.add_approvals(&[approval("a", 1, 3), approval("b", 1, 10)]).unwrap();
        s.add_approvals(&[approval("a", 2, 12)]).unwrap();
        assert_eq!(s.approvals().unwrap(), vec![approval("b", 1, 10), approval("a", 2, 12)]);
        assert_eq!(s.prune_approvals(t(10)).unwrap(), 1, "expired at exactly now counts as expired");
        assert_eq!(s.approvals().unwrap(), vec![approval("a", 2, 12)]);
        assert!(s.consume_approval(&ActionId("a".into())).unwrap());
        assert!(!s.consume_approval(&ActionId("a".into())).unwrap());
        assert!(s.approvals().unwrap().is_empty());
    }

    #[test]
    fn revoking_returns_what_was_withdrawn_and_leaves_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = StateStore::open(tmp.path()).unwrap();
        s.add_approvals(&[approval("a", 1, 9), approval("b", 1, 9), approval("c", 2, 9)])
            .unwrap();
        let id = |x: &str| ActionId(x.into());
        let gone = s.revoke_approvals(&[id("c"), id("nope"), id("a"), id("c")]).unwrap();
        assert_eq!(gone, vec![approval("c", 2, 9), approval("a", 1, 9)]);
        assert_eq!(s.approvals().unwrap(), vec![approval("b", 1, 9)]);
        assert!(
            s.revoke_approvals(&[id("a")]).unwrap().is_empty(),
            "revoking twice withdraws nothing"
        );
    }
}
