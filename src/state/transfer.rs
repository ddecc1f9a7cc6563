//! `idsync state migrate --to postgres`: copying a SQLite state, row for row, into a
//! PostgreSQL database, so a single-node user can move to the shared backend.
//!
//! Invariants: the SQLite store is only read (opened read-only, never migrated); the copy
//! is one PostgreSQL transaction, so the target holds all of it or none; a target that
//! already holds idsync state is refused unless `replace` is asked, which empties it in
//! that same transaction; every stored value is parsed on the way (a value that does not
//! parse stops the copy as [`StateError::Corrupt`]), never skipped. The audit log file
//! stays where it is (it remains this node's own trail); its records are copied into the
//! database's shared `audit` table too (lines torn by a crash are skipped, as every reader
//! of the log does).

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{PgStore, StateError, StateStore};

/// What a migration copied, table by table, in the order they are copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub rows: Vec<(&'static str, usize)>,
}

/// The tables a migration copies, in copy order (and emptied in reverse for `replace`).
const TABLES: [&str; 10] = [
    "tombstones",
    "healthy_reads",
    "anchors",
    "ledger",
    "approvals",
    "journal",
    "runs",
    "notified",
    "audit",
    "restore_snapshots",
];

type Ts = DateTime<Utc>;

/// Every row of the SQLite store, parsed: each table's columns in order.
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct Rows {
    tombstones: Vec<(String, Ts, Option<Ts>, String)>,
    healthy_reads: Vec<(Ts, i64, String)>,
    anchors: Vec<(String, String)>,
    ledger: Vec<(String, String, Ts)>,
    approvals: Vec<(String, Ts, Ts, String, String, String, String, String, String)>,
    journal: Vec<(
        String,
        String,
        String,
        String,
        Ts,
        Option<Ts>,
        Option<bool>,
        Option<String>,
        Option<i64>,
        Option<String>,
    )>,
    runs: Vec<(String, String, Ts, Ts, String, String, Option<String>)>,
    notified: Vec<(String, Ts)>,
    restore_snapshots: Vec<(String, Ts, String)>,
}

impl StateStore {
    fn all<T>(&self, sql: &str, f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> Result<Vec<T>, StateError> {
        let mut st = self.conn.prepare(sql).map_err(self.err())?;
        let rows = st.query_map([], f).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn opt_time(&self, s: Option<String>) -> Result<Option<Ts>, StateError> {
        s.as_deref().map(|s| self.time(s)).transpose()
    }

    fn rows(&self) -> Result<Rows, StateError> {
        let mut r = Rows::default();
        for (e, since, after, cause) in self.all(
            "SELECT email, since, deprovision_after, cause FROM tombstones ORDER BY email",
            |x| {
                Ok((
                    x.get::<_, String>(0)?,
                    x.get::<_, String>(1)?,
                    x.get::<_, Option<String>>(2)?,
                    x.get::<_, String>(3)?,
                ))
            },
        )? {
            self.email(&e)?;
            if cause != "missing" && cause != "disabled" {
                return Err(self.corrupt(format!("tombstone of {e} has an unknown cause {cause:?}")));
            }
            r.tombstones.push((e, self.time(&since)?, self.opt_time(after)?, cause));
        }
        for (at, people, groups) in self.all("SELECT read_at, people, groups FROM healthy_reads ORDER BY seq", |x| {
            Ok((x.get::<_, String>(0)?, x.get::<_, i64>(1)?, x.get::<_, String>(2)?))
        })? {
            r.healthy_reads.push((self.time(&at)?, people, groups));
        }
        r.anchors = self.all("SELECT anchor, email FROM anchors ORDER BY anchor", |x| Ok((x.get(0)?, x.get(1)?)))?;
        for (e, team, at) in self.all("SELECT email, team, granted_at FROM ledger ORDER BY email, team", |x| {
            Ok((x.get::<_, String>(0)?, x.get::<_, String>(1)?, x.get::<_, String>(2)?))
        })? {
            r.ledger.push((e, team, self.time(&at)?));
        }
        for row in self.all(
            "SELECT action_id, approved_at, expires_at, approved_by, guards, fingerprint, action_kind, action_user, action_team
             FROM approvals ORDER BY approved_at, action_id",
            |x| {
                Ok((
                    x.get::<_, String>(0)?,
                    x.get::<_, String>(1)?,
                    x.get::<_, String>(2)?,
                    x.get::<_, String>(3)?,
                    x.get::<_, String>(4)?,
                    x.get::<_, String>(5)?,
                    (x.get::<_, String>(6)?, x.get::<_, String>(7)?, x.get::<_, String>(8)?),
                ))
            },
        )? {
            let (id, at, exp, by, guards, fp, (kind, user, team)) = row;
            r.approvals
                .push((id, self.time(&at)?, self.time(&exp)?, by, guards, fp, kind, user, team));
        }
        for row in self.all(
            "SELECT run_id, action_id, action, state, begun_at, ended_at, ok, detail, audit_at, unknown FROM journal ORDER BY seq",
            |x| {
                Ok((
                    x.get::<_, String>(0)?,
                    x.get::<_, String>(1)?,
                    x.get::<_, String>(2)?,
                    x.get::<_, String>(3)?,
                    x.get::<_, String>(4)?,
                    (
                        x.get::<_, Option<String>>(5)?,
                        x.get::<_, Option<bool>>(6)?,
                        x.get::<_, Option<String>>(7)?,
                    ),
                    (x.get::<_, Option<i64>>(8)?, x.get::<_, Option<String>>(9)?),
                ))
            },
        )? {
            let (run, id, action, state, begun, (ended, ok, detail), (audit_at, unknown)) = row;
            r.journal.push((
                run,
                id,
                action,
                state,
                self.time(&begun)?,
                self.opt_time(ended)?,
                ok,
                detail,
                audit_at,
                unknown,
            ));
        }
        for row in self.all(
            "SELECT run_id, command, started_at, finished_at, result, summary, error FROM runs ORDER BY seq",
            |x| {
                Ok((
                    x.get::<_, String>(0)?,
                    x.get::<_, String>(1)?,
                    x.get::<_, String>(2)?,
                    x.get::<_, String>(3)?,
                    x.get::<_, String>(4)?,
                    x.get::<_, String>(5)?,
                    x.get::<_, Option<String>>(6)?,
                ))
            },
        )? {
            let (id, cmd, start, end, result, summary, error) = row;
            r.runs.push((id, cmd, self.time(&start)?, self.time(&end)?, result, summary, error));
        }
        for (held, at) in self.all("SELECT held, sent_at FROM notified", |x| {
            Ok((x.get::<_, String>(0)?, x.get::<_, String>(1)?))
        })? {
            r.notified.push((held, self.time(&at)?));
        }
        for (e, at, snap) in self.all("SELECT email, taken_at, snapshot FROM restore_snapshots ORDER BY email", |x| {
            Ok((x.get::<_, String>(0)?, x.get::<_, String>(1)?, x.get::<_, String>(2)?))
        })? {
            serde_json::from_str::<crate::plan::RestoreSnapshot>(&snap)
                .map_err(|err| self.corrupt(format!("stored restore snapshot of {e} does not parse: {err}")))?;
            r.restore_snapshots.push((e, self.time(&at)?, snap));
        }
        Ok(r)
    }
}

/// Copies the SQLite state in `state_dir` into the PostgreSQL database `url` (creating
/// idsync's schema there). Refuses a target holding idsync state unless `replace`.
pub fn sqlite_to_postgres(state_dir: &Path, url: &str, ca_file: Option<&Path>, replace: bool) -> Result<Copied, StateError> {
    let Some(from) = StateStore::open_read_only(state_dir)? else {
        return Err(StateError::Journal(format!(
            "there is no SQLite state in {} to migrate (check daemon.state_dir)",
            state_dir.join(super::DB_FILE).display()
        )));
    };
    let rows = from.rows()?;
    let mut audit = Vec::new();
    for rec in super::AuditLog::read_all(state_dir)? {
        let json = serde_json::to_string(&rec).map_err(|e| StateError::Journal(format!("cannot encode an audit record: {e}")))?;
        audit.push((super::postgres::micros(&rec.ts), rec.run_id, rec.event, rec.action_id, json));
    }
    let to = PgStore::open_with(url, ca_file)?;
    let label = to.label().to_string();
    let copied = to.with(|c| {
        let mut tx = c.transaction()?;
        let mut held = Vec::new();
        for t in TABLES {
            let n: i64 = tx.query_one(format!("SELECT count(*) FROM {t}").as_str(), &[])?.get(0);
            if n > 0 {
                held.push(format!("{t}: {n}"));
            }
        }
        if !held.is_empty() {
            if !replace {
                return Ok(Err(held));
            }
            tx.batch_execute(&format!("TRUNCATE {} RESTART IDENTITY", TABLES.join(", ")))?;
        }
        let mut out = Copied::default();
        let mut count = |t: &'static str, n: usize| out.rows.push((t, n));
        for (e, since, after, cause) in &rows.tombstones {
            tx.execute(
                "INSERT INTO tombstones (email, since, deprovision_after, cause) VALUES ($1, $2, $3, $4)",
                &[e, since, after, cause],
            )?;
        }
        count("tombstones", rows.tombstones.len());
        for (at, people, groups) in &rows.healthy_reads {
            tx.execute(
                "INSERT INTO healthy_reads (read_at, people, groups) VALUES ($1, $2, $3)",
                &[at, people, groups],
            )?;
        }
        count("healthy_reads", rows.healthy_reads.len());
        for (anchor, email) in &rows.anchors {
            tx.execute("INSERT INTO anchors (anchor, email) VALUES ($1, $2)", &[anchor, email])?;
        }
        count("anchors", rows.anchors.len());
        for (e, team, at) in &rows.ledger {
            tx.execute("INSERT INTO ledger (email, team, granted_at) VALUES ($1, $2, $3)", &[e, team, at])?;
        }
        count("ledger", rows.ledger.len());
        for (id, at, exp, by, guards, fp, kind, user, team) in &rows.approvals {
            tx.execute(
                "INSERT INTO approvals (action_id, approved_at, expires_at, approved_by, guards, fingerprint,
                     action_kind, action_user, action_team) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[id, at, exp, by, guards, fp, kind, user, team],
            )?;
        }
        count("approvals", rows.approvals.len());
        for (run, id, action, state, begun, ended, ok, detail, audit_at, unknown) in &rows.journal {
            tx.execute(
                "INSERT INTO journal (run_id, action_id, action, state, begun_at, ended_at, ok, detail, audit_at, unknown)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[run, id, action, state, begun, ended, ok, detail, audit_at, unknown],
            )?;
        }
        count("journal", rows.journal.len());
        for (id, cmd, start, end, result, summary, error) in &rows.runs {
            tx.execute(
                "INSERT INTO runs (run_id, command, started_at, finished_at, result, summary, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[id, cmd, start, end, result, summary, error],
            )?;
        }
        count("runs", rows.runs.len());
        for (held, at) in &rows.notified {
            tx.execute("INSERT INTO notified (id, held, sent_at) VALUES (1, $1, $2)", &[held, at])?;
        }
        count("notified", rows.notified.len());
        for (ts, run, event, id, json) in &audit {
            tx.execute(
                "INSERT INTO audit (ts, run_id, event, action_id, record) VALUES ($1, $2, $3, $4, $5)",
                &[ts, run, event, id, json],
            )?;
        }
        count("audit", audit.len());
        for (e, at, snap) in &rows.restore_snapshots {
            tx.execute(
                "INSERT INTO restore_snapshots (email, taken_at, snapshot) VALUES ($1, $2, $3)",
                &[e, at, snap],
            )?;
        }
        count("restore_snapshots", rows.restore_snapshots.len());
        tx.commit()?;
        Ok(Ok(out))
    })?;
    copied.map_err(|held| {
        StateError::Journal(format!(
            "{label} already holds idsync state ({}); nothing was copied. Point [state] url_file / url_env at an empty database, or pass --replace to discard what it holds",
            held.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::super::postgres::test_server::Pg;
    use super::super::test_support::*;
    use super::super::{JournalState, Outcome, RunRecord, StateBackend};
    use super::*;
    use crate::plan::{ActionId, Tombstone, TombstoneCause};

    #[test]
    fn migration_keeps_tombstone_clocks_approvals_ledger_and_the_journal() {
        let Some(pg) = Pg::start() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (a1, a2) = (action("a@x.com", "ml"), action("b@x.com", "ml"));
        let tomb = Tombstone {
            user: email("gone@x.com"),
            since: t(1),
            deprovision_after: Some(t(5)),
            cause: TombstoneCause::Disabled,
        };
        let held: BTreeSet<String> = ["h1".to_string()].into();
        let run = RunRecord {
            run_id: "run-1".into(),
            command: "apply".into(),
            started_at: t(2),
            finished_at: t(3),
            result: "success".into(),
            summary: [("add_to_team".to_string(), 1)].into(),
            error: None,
        };
        let mut s = StateStore::open(tmp.path()).unwrap();
        s.replace_tombstones(std::slice::from_ref(&tomb)).unwrap();
        s.record_healthy_read(&healthy(1, 42, &[("cn=ml", 3)]), Duration::from_secs(86_400))
            .unwrap();
        s.record_good_read(&[("uuid-1".to_string(), email("a@x.com"))].into()).unwrap();
        s.ledger_grant(&email("a@x.com"), "ml").unwrap();
        s.add_approvals(&[approval("p", 1, 9), approval("q", 2, 9)]).unwrap();
        s.journal_begin("run-1", &a1, 0).unwrap();
        s.journal_end(
            "run-1",
            &a1.id,
            &Outcome {
                ok: true,
                detail: "applied".into(),
            },
        )
        .unwrap();
        s.journal_begin("run-1", &a2, 40).unwrap();
        s.journal_unknown("run-1", &a2.id, "500 after retries").unwrap();
        s.record_run(&run).unwrap();
        s.record_notified(&held, t(3)).unwrap();
        let want = s.load_plan_state().unwrap();
        drop(s);

        let url = pg.create_db("moved");
        let copied = sqlite_to_postgres(tmp.path(), &url, None, false).unwrap();
        let n = |t: &str| copied.rows.iter().find(|(x, _)| *x == t).map(|(_, n)| *n);
        assert_eq!(n("audit"), Some(0), "no audit.jsonl here (the CLI test copies one)");
        assert_eq!(
            (n("tombstones"), n("approvals"), n("ledger"), n("journal")),
            (Some(1), Some(2), Some(1), Some(2))
        );

        let p = PgStore::open(&url).unwrap();
        assert_eq!(p.load_plan_state().unwrap(), want, "clocks, baseline, anchors, ledger, approvals");
        assert_eq!(p.tombstones().unwrap(), vec![tomb], "cause and deadline too");
        assert_eq!(p.approvals().unwrap(), vec![approval("p", 1, 9), approval("q", 2, 9)]);
        assert_eq!(
            p.journal_state("run-1", &a1.id).unwrap(),
            Some(JournalState::Ended(Outcome {
                ok: true,
                detail: "applied".into()
            }))
        );
        let open: Vec<_> = p.journal_incomplete().unwrap().into_iter().map(|e| e.action.id).collect();
        assert_eq!(open, vec![a2.id.clone()], "the unsettled action resumes on PostgreSQL");
        let entry = &p.journal_incomplete().unwrap()[0];
        assert_eq!((entry.audit_at, entry.unknown.as_deref()), (Some(40), Some("500 after retries")));
        assert_eq!(p.last_runs(5).unwrap(), vec![run]);
        assert_eq!(p.notified_held().unwrap(), Some(held));
        drop(p);

        // A second copy into the now non-empty target is refused, and changes nothing.
        let err = sqlite_to_postgres(tmp.path(), &url, None, false).unwrap_err().to_string();
        assert!(err.contains("already holds idsync state") && err.contains("--replace"), "{err}");
        let mut p = PgStore::open(&url).unwrap();
        assert!(p.consume_approval(&ActionId("p".into())).unwrap());
        drop(p);
        // With replace, the target becomes the SQLite state again, whole.
        sqlite_to_postgres(tmp.path(), &url, None, true).unwrap();
        let p = PgStore::open(&url).unwrap();
        assert_eq!(p.load_plan_state().unwrap(), want);
        assert_eq!(p.journal_incomplete().unwrap().len(), 1);
    }
}
