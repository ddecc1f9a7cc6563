//! [`StateBackend`] for [`PgStore`]: the same statements as the SQLite store's, in
//! PostgreSQL's dialect. Invariants: those of the trait; text is ordered with `COLLATE
//! "C"` (byte order, as SQLite does) so both backends list rows alike.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::types::FromSql;
use postgres::Row;

use super::{micros, PgStore};
use crate::model::Email;
use crate::plan::RestoreSnapshot;
use crate::plan::{Action, ActionId, ActionKind, Approval, Guard, HealthyRead, PlanState, Tombstone, TombstoneCause, TombstoneRecord};
use crate::state::{AuditRecord, JournalEntry, JournalState, Outcome, RunRecord, StateBackend, StateError};

impl PgStore {
    /// A column's value; a NULL or a type other than idsync's schema says is corruption.
    fn get<'a, T: FromSql<'a>>(&self, r: &'a Row, i: usize) -> Result<T, StateError> {
        r.try_get(i).map_err(|e| {
            self.corrupt(format!(
                "column {:?} does not hold what idsync stores there: {e}",
                r.columns().get(i).map(|c| c.name())
            ))
        })
    }

    fn pairs(&self, sql: &str) -> Result<Vec<(String, String)>, StateError> {
        let rows = self.with(|c| c.query(sql, &[]))?;
        rows.iter().map(|r| Ok((self.get(r, 0)?, self.get(r, 1)?))).collect()
    }

    fn healthy_reads(&self) -> Result<Vec<HealthyRead>, StateError> {
        let rows = self.with(|c| c.query("SELECT read_at, people, groups FROM healthy_reads ORDER BY read_at, seq", &[]))?;
        rows.iter()
            .map(|r| {
                let (at, people, groups): (DateTime<Utc>, i64, String) = (self.get(r, 0)?, self.get(r, 1)?, self.get(r, 2)?);
                Ok(HealthyRead {
                    at,
                    people: usize::try_from(people).map_err(|_| self.corrupt(format!("stored directory size {people} is negative")))?,
                    groups: serde_json::from_str(&groups)
                        .map_err(|e| self.corrupt(format!("stored group sizes {groups:?} are not a JSON map of counts: {e}")))?,
                })
            })
            .collect()
    }
}

impl StateBackend for PgStore {
    fn load_plan_state(&self) -> Result<PlanState, StateError> {
        let mut tombstones = BTreeMap::new();
        for t in self.tombstones()? {
            tombstones.insert(t.user, TombstoneRecord { since: t.since });
        }
        let mut ledger = BTreeSet::new();
        for (email, team) in self.pairs("SELECT email, team FROM ledger")? {
            ledger.insert((self.email(&email)?, team));
        }
        let mut anchors = BTreeMap::new();
        for (anchor, email) in self.pairs("SELECT anchor, email FROM anchors")? {
            anchors.insert(anchor, self.email(&email)?);
        }
        Ok(PlanState {
            tombstones,
            healthy_reads: self.healthy_reads()?,
            ledger,
            approvals: self.approvals()?,
            anchors,
            restores: self.restore_snapshots()?.into_iter().map(|r| (r.user.clone(), r)).collect(),
        })
    }

    fn replace_tombstones(&mut self, t: &[Tombstone]) -> Result<(), StateError> {
        self.write(|c| {
            c.execute("DELETE FROM tombstones", &[])?;
            let ins = c.prepare(
                "INSERT INTO tombstones (email, since, deprovision_after, cause) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (email) DO UPDATE SET since = excluded.since,
                     deprovision_after = excluded.deprovision_after, cause = excluded.cause",
            )?;
            for s in t {
                let cause = match s.cause {
                    TombstoneCause::Missing => "missing",
                    TombstoneCause::Disabled => "disabled",
                };
                c.execute(&ins, &[&s.user.as_str(), &s.since, &s.deprovision_after, &cause])?;
            }
            Ok(())
        })
    }

    fn tombstones(&self) -> Result<Vec<Tombstone>, StateError> {
        let rows = self.with(|c| {
            c.query(
                r#"SELECT email, since, deprovision_after, cause FROM tombstones ORDER BY since, email COLLATE "C""#,
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let cause: String = self.get(r, 3)?;
                Ok(Tombstone {
                    user: self.email(self.get(r, 0)?)?,
                    since: self.get(r, 1)?,
                    deprovision_after: self.get(r, 2)?,
                    cause: match cause.as_str() {
                        "disabled" => TombstoneCause::Disabled,
                        "missing" => TombstoneCause::Missing,
                        other => return Err(self.corrupt(format!("stored tombstone cause {other:?} is unknown"))),
                    },
                })
            })
            .collect()
    }

    fn record_healthy_read(&mut self, read: &HealthyRead, window: Duration) -> Result<(), StateError> {
        let people = i64::try_from(read.people).unwrap_or(i64::MAX);
        let groups = serde_json::to_string(&read.groups).unwrap_or_else(|_| "{}".into());
        let cutoff = chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| read.at.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        // PostgreSQL's range ends well after chrono's minimum: clamp to "keep everything".
        let cutoff = cutoff.max(DateTime::<Utc>::UNIX_EPOCH);
        self.write(|c| {
            c.execute(
                "INSERT INTO healthy_reads (read_at, people, groups) VALUES ($1, $2, $3)",
                &[&read.at, &people, &groups],
            )?;
            c.execute("DELETE FROM healthy_reads WHERE read_at < $1", &[&cutoff])?;
            Ok(())
        })
    }

    fn record_good_read(&mut self, anchors: &BTreeMap<String, Email>) -> Result<(), StateError> {
        self.write(|c| {
            c.execute("DELETE FROM anchors", &[])?;
            let ins =
                c.prepare("INSERT INTO anchors (anchor, email) VALUES ($1, $2) ON CONFLICT (anchor) DO UPDATE SET email = excluded.email")?;
            for (anchor, email) in anchors {
                c.execute(&ins, &[anchor, &email.as_str()])?;
            }
            Ok(())
        })
    }

    fn ledger_grant(&mut self, email: &Email, team: &str) -> Result<(), StateError> {
        let now = micros(&Utc::now());
        self.write(|c| {
            c.execute(
                "INSERT INTO ledger (email, team, granted_at) VALUES ($1, $2, $3) ON CONFLICT (email, team) DO NOTHING",
                &[&email.as_str(), &team, &now],
            )
        })?;
        Ok(())
    }

    fn ledger_revoke(&mut self, email: &Email, team: &str) -> Result<(), StateError> {
        self.write(|c| c.execute("DELETE FROM ledger WHERE email = $1 AND team = $2", &[&email.as_str(), &team]))?;
        Ok(())
    }

    fn add_approvals(&mut self, a: &[Approval]) -> Result<(), StateError> {
        self.write(|c| {
            let up = c.prepare(
                "INSERT INTO approvals (action_id, approved_at, expires_at, approved_by, guards, fingerprint,
                     action_kind, action_user, action_team)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (action_id) DO UPDATE SET approved_at = excluded.approved_at,
                     expires_at = excluded.expires_at, approved_by = excluded.approved_by,
                     guards = excluded.guards, fingerprint = excluded.fingerprint,
                     action_kind = excluded.action_kind, action_user = excluded.action_user,
                     action_team = excluded.action_team",
            )?;
            for ap in a {
                let guards: Vec<&str> = ap.guards.iter().map(|g| g.as_str()).collect();
                c.execute(
                    &up,
                    &[
                        &ap.action_id.as_str(),
                        &ap.approved_at,
                        &ap.expires_at,
                        &ap.approved_by,
                        &guards.join(","),
                        &ap.fingerprint,
                        &ap.kind.map(|k| k.as_str()).unwrap_or(""),
                        &ap.user.as_ref().map(|u| u.as_str()).unwrap_or(""),
                        &ap.team.as_deref().unwrap_or(""),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn prune_approvals(&mut self, now: DateTime<Utc>) -> Result<usize, StateError> {
        let n = self.write(|c| c.execute("DELETE FROM approvals WHERE expires_at <= $1", &[&now]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn approvals(&self) -> Result<Vec<Approval>, StateError> {
        let rows = self.with(|c| {
            c.query(
                r#"SELECT action_id, approved_at, expires_at, approved_by, guards, fingerprint,
                       action_kind, action_user, action_team FROM approvals
                   ORDER BY approved_at, action_id COLLATE "C""#,
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let id: String = self.get(r, 0)?;
                let guards: String = self.get(r, 4)?;
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
                let (kind, user, team): (String, String, String) = (self.get(r, 6)?, self.get(r, 7)?, self.get(r, 8)?);
                Ok(Approval {
                    action_id: ActionId(id),
                    approved_at: self.get(r, 1)?,
                    expires_at: self.get(r, 2)?,
                    approved_by: self.get(r, 3)?,
                    guards,
                    fingerprint: self.get(r, 5)?,
                    kind: ActionKind::ALL.into_iter().find(|k| k.as_str() == kind),
                    user: Email::parse(&user),
                    team: Some(team).filter(|t| !t.is_empty()),
                })
            })
            .collect()
    }

    fn consume_approval(&mut self, id: &ActionId) -> Result<bool, StateError> {
        let n = self.write(|c| c.execute("DELETE FROM approvals WHERE action_id = $1", &[&id.as_str()]))?;
        Ok(n > 0)
    }

    fn revoke_approvals(&mut self, ids: &[ActionId]) -> Result<Vec<Approval>, StateError> {
        let stored = self.approvals()?;
        let mut revoked: Vec<Approval> = Vec::new();
        for id in ids {
            if let Some(a) = stored.iter().find(|a| &a.action_id == id) {
                if !revoked.iter().any(|r| &r.action_id == id) {
                    revoked.push(a.clone());
                }
            }
        }
        let gone: Vec<&str> = revoked.iter().map(|a| a.action_id.as_str()).collect();
        self.write(|c| c.execute("DELETE FROM approvals WHERE action_id = ANY($1)", &[&gone]))?;
        Ok(revoked)
    }

    fn journal_begin(&mut self, run_id: &str, action: &Action, audit_at: u64) -> Result<(), StateError> {
        let json = serde_json::to_string(action).map_err(|e| StateError::Journal(format!("cannot encode action {}: {e}", action.id)))?;
        let now = micros(&Utc::now());
        // bigint, like SQLite's integers; a log past 8 EiB is not a case to handle.
        let at = i64::try_from(audit_at).unwrap_or(i64::MAX);
        let n = self.write(|c| {
            c.execute(
                "INSERT INTO journal (run_id, action_id, action, state, begun_at, audit_at) VALUES ($1, $2, $3, 'begun', $4, $5)
                 ON CONFLICT (run_id, action_id) DO NOTHING",
                &[&run_id, &action.id.as_str(), &json, &now, &at],
            )
        })?;
        if n == 0 {
            if let Some(JournalState::Ended(_)) = self.journal_state(run_id, &action.id)? {
                return Err(StateError::Journal(format!(
                    "action {} already ended in run {run_id}; it is not applied twice",
                    action.id
                )));
            }
        }
        Ok(())
    }

    fn journal_unknown(&mut self, run_id: &str, action_id: &ActionId, why: &str) -> Result<(), StateError> {
        let n = self.write(|c| {
            c.execute(
                "UPDATE journal SET unknown = $1 WHERE run_id = $2 AND action_id = $3 AND state = 'begun'",
                &[&why, &run_id, &action_id.as_str()],
            )
        })?;
        if n == 0 && self.journal_state(run_id, action_id)?.is_none() {
            return Err(StateError::Journal(format!(
                "no journal entry for action {action_id} in run {run_id}: it must be begun first"
            )));
        }
        Ok(())
    }

    fn journal_end(&mut self, run_id: &str, action_id: &ActionId, outcome: &Outcome) -> Result<(), StateError> {
        let now = micros(&Utc::now());
        let n = self.write(|c| {
            c.execute(
                "UPDATE journal SET state = 'ended', ended_at = $1, ok = $2, detail = $3
                 WHERE run_id = $4 AND action_id = $5 AND state = 'begun'",
                &[&now, &outcome.ok, &outcome.detail, &run_id, &action_id.as_str()],
            )
        })?;
        if n == 0 && self.journal_state(run_id, action_id)?.is_none() {
            return Err(StateError::Journal(format!(
                "no journal entry for action {action_id} in run {run_id}: it must be begun first"
            )));
        }
        Ok(())
    }

    fn journal_incomplete(&self) -> Result<Vec<JournalEntry>, StateError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT run_id, action, begun_at, audit_at, unknown FROM journal WHERE state = 'begun' ORDER BY seq",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let (run_id, json): (String, String) = (self.get(r, 0)?, self.get(r, 1)?);
                let action: Action = serde_json::from_str(&json)
                    .map_err(|e| self.corrupt(format!("journal entry of run {run_id} holds an unreadable action: {e}")))?;
                let audit_at: Option<i64> = self.get(r, 3)?;
                Ok(JournalEntry {
                    run_id,
                    action,
                    begun_at: self.get(r, 2)?,
                    // A negative offset cannot be written by idsync; reading from the start
                    // is the safe reading of one.
                    audit_at: audit_at.map(|n| u64::try_from(n).unwrap_or(0)),
                    unknown: self.get(r, 4)?,
                })
            })
            .collect()
    }

    fn journal_state(&self, run_id: &str, action_id: &ActionId) -> Result<Option<JournalState>, StateError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT state, ok, detail, unknown FROM journal WHERE run_id = $1 AND action_id = $2",
                &[&run_id, &action_id.as_str()],
            )
        })?;
        row.map(|r| {
            let (state, ok, detail): (String, Option<bool>, Option<String>) = (self.get(&r, 0)?, self.get(&r, 1)?, self.get(&r, 2)?);
            let unknown: Option<String> = self.get(&r, 3)?;
            Ok(match (state.as_str(), unknown) {
                ("ended", _) => JournalState::Ended(Outcome {
                    ok: ok.unwrap_or(false),
                    detail: detail.unwrap_or_default(),
                }),
                (_, Some(why)) => JournalState::Unknown(why),
                _ => JournalState::Begun,
            })
        })
        .transpose()
    }

    fn journal_has_ended(&self, run_id: &str, action_id: &ActionId) -> Result<bool, StateError> {
        Ok(matches!(self.journal_state(run_id, action_id)?, Some(JournalState::Ended(_))))
    }

    fn record_run(&mut self, r: &RunRecord) -> Result<(), StateError> {
        let summary = serde_json::to_string(&r.summary).map_err(|e| StateError::Journal(format!("cannot encode run summary: {e}")))?;
        self.write(|c| {
            c.execute(
                "INSERT INTO runs (run_id, command, started_at, finished_at, result, summary, error) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (run_id) DO UPDATE SET command = excluded.command, started_at = excluded.started_at,
                     finished_at = excluded.finished_at, result = excluded.result, summary = excluded.summary, error = excluded.error",
                &[&r.run_id, &r.command, &r.started_at, &r.finished_at, &r.result, &summary, &r.error],
            )
        })?;
        Ok(())
    }

    fn last_runs(&self, n: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = self.with(|c| {
            c.query(
                "SELECT run_id, command, started_at, finished_at, result, summary, error FROM runs
                 ORDER BY started_at DESC, seq DESC LIMIT $1",
                &[&limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                let (run_id, summary): (String, String) = (self.get(r, 0)?, self.get(r, 5)?);
                Ok(RunRecord {
                    summary: serde_json::from_str(&summary)
                        .map_err(|e| self.corrupt(format!("run {run_id} has an unreadable summary: {e}")))?,
                    run_id,
                    command: self.get(r, 1)?,
                    started_at: self.get(r, 2)?,
                    finished_at: self.get(r, 3)?,
                    result: self.get(r, 4)?,
                    error: self.get(r, 6)?,
                })
            })
            .collect()
    }

    fn prune_history(&mut self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let n = self.write(|c| {
            let j = c.execute("DELETE FROM journal WHERE state = 'ended' AND ended_at < $1", &[&before])?;
            let r = c.execute("DELETE FROM runs WHERE finished_at < $1", &[&before])?;
            Ok(j + r)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn notified_held(&self) -> Result<Option<BTreeSet<String>>, StateError> {
        let row = self.with(|c| c.query_opt("SELECT held FROM notified WHERE id = 1", &[]))?;
        row.map(|r| {
            let h: String = self.get(&r, 0)?;
            serde_json::from_str(&h)
                .map_err(|e| self.corrupt(format!("the last notification's held actions {h:?} are not a JSON list: {e}")))
        })
        .transpose()
    }

    fn record_notified(&mut self, held: &BTreeSet<String>, at: DateTime<Utc>) -> Result<(), StateError> {
        let held = serde_json::to_string(held).unwrap_or_else(|_| "[]".into());
        self.write(|c| {
            c.execute(
                "INSERT INTO notified (id, held, sent_at) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET held = excluded.held, sent_at = excluded.sent_at",
                &[&held, &at],
            )
        })?;
        Ok(())
    }

    fn record_restore_snapshot(&mut self, s: &RestoreSnapshot) -> Result<(), StateError> {
        let mut s = s.clone();
        if s.anchor.is_none() {
            let row = self.with(|c| {
                c.query_opt(
                    r#"SELECT anchor FROM anchors WHERE email = $1 ORDER BY anchor COLLATE "C" LIMIT 1"#,
                    &[&s.user.as_str()],
                )
            })?;
            s.anchor = row.map(|r| self.get(&r, 0)).transpose()?;
        }
        let json = serde_json::to_string(&s).map_err(|e| self.corrupt(format!("cannot encode a restore snapshot: {e}")))?;
        let at = micros(&s.taken_at);
        self.write(|c| {
            c.execute(
                "INSERT INTO restore_snapshots (email, taken_at, snapshot) VALUES ($1, $2, $3)
                 ON CONFLICT (email) DO UPDATE SET taken_at = excluded.taken_at, snapshot = excluded.snapshot",
                &[&s.user.as_str(), &at, &json],
            )
        })?;
        Ok(())
    }

    fn restore_snapshots(&self) -> Result<Vec<RestoreSnapshot>, StateError> {
        let rows = self.with(|c| {
            c.query(
                r#"SELECT snapshot FROM restore_snapshots ORDER BY taken_at, email COLLATE "C""#,
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let j: String = self.get(r, 0)?;
                serde_json::from_str(&j).map_err(|e| self.corrupt(format!("stored restore snapshot {j:?} does not parse: {e}")))
            })
            .collect()
    }

    fn prune_restore_snapshots(&mut self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let n = self.write(|c| c.execute("DELETE FROM restore_snapshots WHERE taken_at < $1", &[&before]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn record_audit(&mut self, rec: &AuditRecord) -> Result<(), StateError> {
        let json = serde_json::to_string(rec).map_err(|e| StateError::Journal(format!("cannot encode an audit record: {e}")))?;
        let ts = micros(&rec.ts);
        self.write(|c| {
            c.execute(
                "INSERT INTO audit (ts, run_id, event, action_id, record) VALUES ($1, $2, $3, $4, $5)",
                &[&ts, &rec.run_id, &rec.event, &rec.action_id, &json],
            )
        })?;
        Ok(())
    }

    fn tx_begin(&mut self) -> Result<(), StateError> {
        PgStore::tx_begin(self)
    }
    fn tx_commit(&mut self) -> Result<(), StateError> {
        PgStore::tx_commit(self)
    }
    fn tx_rollback(&mut self) {
        PgStore::tx_rollback(self)
    }
    fn ha_lease(&self) -> Result<Option<(String, i64, Duration)>, StateError> {
        self.lease_holder()
    }
    fn set_fence(&mut self, fence: crate::state::Fence) -> Result<(), StateError> {
        PgStore::set_fence(self, fence)
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
}
