//! The audit log, `<state_dir>/audit.jsonl`: one JSON object per line for every journaled
//! step of every action, and for every approval given or revoked, for humans and SIEMs,
//! readable with `jq` alone.
//!
//! Invariants: append-only, never rewritten or migrated (it is kept out of the store on
//! purpose); each record is one
//! `write` of one line under `O_APPEND`, fsynced before `append` returns (an action's
//! `begin` line is synced with its `end` line instead: see `append_unsynced`); a line torn by a
//! crash is terminated on the next open and skipped on reading, never hiding the rest.
//! An action's `begin` line follows its durable journal entry; its `end` (and `settle`)
//! line precedes the journal commit that closes it, so a crash leaves an open entry
//! whose audit lines, read from the offset the entry recorded ([`AuditLog::steps_since`]),
//! say how far it got.
//!
//! The final result of an action begun in a run is that of its last `end` or `settle`
//! line: `unknown` on an `end` is always followed, in a later run, by a `settle` line with
//! `ok` or `not_applied`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::io_err;
use super::{ensure_dir, StateError};
use crate::plan::Approval;

/// The audit log inside the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One audit line: a journaled step of one action (`begin`, `end`, `skip`), or an approval
/// of a held action given (`approve`) or withdrawn (`revoke`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub ts: DateTime<Utc>,
    pub run_id: String,
    /// Who did it: see [`actor`](super::actor()).
    pub actor: String,
    /// HA: the node that wrote the line (`[ha] node_name`); absent without HA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `begin`, `end`, `settle` (an `unknown` end decided by a later read of W&B), `skip`,
    /// `approve` or `revoke`.
    pub event: String,
    pub action_id: String,
    pub kind: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    /// Why: the plan's reason for an action's steps; the human's `--reason` (empty when
    /// none was given) for `approve` and `revoke`.
    #[serde(default)]
    pub reason: String,
    /// `approve` and `revoke`: the human (see [`human`](super::human())).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// `approve` and `revoke`: the guards the approval releases the action from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<String>,
    /// `approve` and `revoke`: until when the approval is (was) valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// `ok`, `error`, `unknown`, `not_applied` or `skipped`; `None` on `begin`.
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// The line for an approval given (`approve`) or withdrawn (`revoke`): what it
    /// releases, over which guards, until when, who (`actor` and the human `by`) and why.
    pub fn approval(event: &str, a: &Approval, run_id: &str, actor: &str, by: &str, reason: &str, detail: Option<String>) -> AuditRecord {
        AuditRecord {
            ts: Utc::now(),
            run_id: run_id.to_string(),
            actor: actor.to_string(),
            event: event.to_string(),
            action_id: a.action_id.to_string(),
            kind: a.kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
            user: a.user.as_ref().map(|u| u.to_string()),
            team: a.team.clone(),
            reason: reason.to_string(),
            by: Some(by.to_string()),
            guards: a.guards.iter().map(|g| g.as_str().to_string()).collect(),
            expires_at: Some(a.expires_at),
            detail,
            ..AuditRecord::default()
        }
    }
}

/// What the audit log holds of one journaled action (see [`AuditLog::steps_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps {
    /// Its `begin` line was written.
    pub begun: bool,
    /// The result of its last `end` or `settle` line.
    pub last: Option<String>,
}

/// The append-only JSON-lines audit log, `<state_dir>/audit.jsonl`.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
}

impl AuditLog {
    /// Opens the log for appending, creating it (mode 0600) and the directory when
    /// missing. A last line torn by a crash is terminated so the next record starts on
    /// a line of its own.
    pub fn open(state_dir: &Path) -> Result<AuditLog, StateError> {
        ensure_dir(state_dir)?;
        let path = state_dir.join(AUDIT_FILE);
        let existed = path.exists();
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&path).map_err(io_err("open the audit log", &path))?;
        let len = file.metadata().map_err(io_err("read the audit log", &path))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(io_err("read the audit log", &path))?;
            file.read_exact(&mut last).map_err(io_err("read the audit log", &path))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io_err("append to the audit log", &path))?;
                file.sync_data().map_err(io_err("sync the audit log", &path))?;
            }
        }
        if !existed {
            // Make the new file's directory entry durable too; some filesystems cannot
            // sync a directory, and the file itself is synced on every append anyway.
            if let Ok(d) = File::open(state_dir) {
                let _ = d.sync_all();
            }
        }
        Ok(AuditLog { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's length now: where the next line goes (or later, if another process
    /// appends first).
    pub fn end_offset(&self) -> Result<u64, StateError> {
        Ok(self.file.metadata().map_err(io_err("read the audit log", &self.path))?.len())
    }

    /// What the log holds of each journaled action in `keys` (run id, action id), reading
    /// only the lines from `offset` on, one at a time: the journal records where each
    /// entry's lines start, so resume never reads the whole history. A log shorter than
    /// `offset` (replaced or truncated by hand) holds nothing of them.
    pub fn steps_since(&self, offset: u64, keys: &BTreeSet<(String, String)>) -> Result<BTreeMap<(String, String), Steps>, StateError> {
        let mut out: BTreeMap<(String, String), Steps> = BTreeMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut file = File::open(&self.path).map_err(io_err("read the audit log", &self.path))?;
        let len = file.metadata().map_err(io_err("read the audit log", &self.path))?.len();
        if offset >= len {
            return Ok(out);
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err("read the audit log", &self.path))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io_err("read the audit log", &self.path))?;
            if n == 0 {
                break;
            }
            // Torn or foreign lines say nothing about these actions.
            let Ok(r) = serde_json::from_slice::<AuditRecord>(&line) else {
                continue;
            };
            let key = (r.run_id, r.action_id);
            if !keys.contains(&key) {
                continue;
            }
            let steps = out.entry(key).or_default();
            match (r.event.as_str(), r.result) {
                ("begin", _) => steps.begun = true,
                ("end" | "settle", Some(result)) => steps.last = Some(result),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Appends one record as one line with a single write (atomic under O_APPEND), then
    /// fsyncs it.
    pub fn append(&mut self, rec: &AuditRecord) -> Result<(), StateError> {
        self.append_unsynced(rec)?;
        self.file.sync_data().map_err(io_err("sync the audit log", &self.path))
    }

    /// [`append`](Self::append) without the fsync, for an action's `begin` line only: the
    /// journal entry before it is durable and names the line's offset, so a line a power
    /// loss takes is rewritten by resume, and the action's `end` line, fsynced, makes both
    /// durable before the journal closes the entry.
    pub fn append_unsynced(&mut self, rec: &AuditRecord) -> Result<(), StateError> {
        let mut line = serde_json::to_string(rec).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            msg: format!("cannot encode an audit record: {e}"),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err("append to the audit log", &self.path))
    }

    /// Streams every record to `f`, oldest first, one line in memory at a time (the log
    /// grows forever: `history` and `undo` never hold it whole). Lines that do not parse
    /// are skipped with a warning, as in [`read_all`](Self::read_all).
    pub fn for_each(state_dir: &Path, mut f: impl FnMut(AuditRecord)) -> Result<(), StateError> {
        use std::io::BufRead;
        let path = state_dir.join(AUDIT_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read the audit log", &path)(e)),
        };
        let mut r = io::BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::new();
        for n in 1.. {
            line.clear();
            if r.read_until(b'\n', &mut line).map_err(io_err("read the audit log", &path))? == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AuditRecord>(&line) {
                Ok(rec) => f(rec),
                Err(e) => tracing::warn!(path = %path.display(), line = n, error = %e, "skipping an unreadable audit log line"),
            }
        }
        Ok(())
    }

    /// Reads every record (none when the log does not exist). Lines that do not parse
    /// (a write torn by a crash) are skipped with a warning rather than hiding the rest
    /// of the history.
    pub fn read_all(state_dir: &Path) -> Result<Vec<AuditRecord>, StateError> {
        let path = state_dir.join(AUDIT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read the audit log", &path)(e)),
        };
        let mut out = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AuditRecord>(line) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(path = %path.display(), line = i + 1, error = %e, "skipping an unreadable audit log line"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::actor;
    use super::super::test_support::*;
    use super::*;

    fn record(event: &str, result: Option<&str>) -> AuditRecord {
        let a = action("a@x.com", "ml");
        AuditRecord {
            ts: t(1),
            run_id: "run-1".into(),
            actor: actor("apply"),
            event: event.into(),
            action_id: a.id.to_string(),
            kind: a.kind.as_str().into(),
            user: a.user.as_ref().map(|u| u.to_string()),
            team: a.team.clone(),
            role: a.role.clone(),
            from: None,
            to: None,
            reason: a.reason.clone(),
            result: result.map(str::to_string),
            detail: result.map(|_| "applied".to_string()),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn approval_lines_say_who_what_over_which_guard_until_when_and_why() {
        let tmp = tempfile::tempdir().unwrap();
        let ap = approval("abc", 1, 9);
        let rec = AuditRecord::approval("approve", &ap, "run-9", "idsync approve (user alice)", "alice", "ticket 42", None);
        AuditLog::open(tmp.path()).unwrap().append(&rec).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(AUDIT_FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event"], "approve");
        assert_eq!(v["by"], "alice");
        assert_eq!(v["reason"], "ticket 42");
        assert_eq!(v["guards"], serde_json::json!(["pipeline-key"]));
        assert_eq!(v["expires_at"], "2025-03-01T09:00:00Z");
        assert_eq!(
            (v["kind"].as_str(), v["user"].as_str()),
            (Some("deprovision_user"), Some("ci@x.com"))
        );
        assert_eq!(AuditLog::read_all(tmp.path()).unwrap(), vec![rec]);
        // Lines of an action's steps keep their old shape: no approval fields.
        let step = serde_json::to_value(record("begin", None)).unwrap();
        assert!(step.get("by").is_none() && step.get("guards").is_none() && step.get("expires_at").is_none());
    }

    #[test]
    fn audit_log_appends_one_line_per_record_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        assert!(AuditLog::read_all(&dir).unwrap().is_empty(), "no log yet is an empty history");
        {
            let mut log = AuditLog::open(&dir).unwrap();
            log.append(&record("begin", None)).unwrap();
        }
        let mut log = AuditLog::open(&dir).unwrap();
        log.append(&record("end", Some("ok"))).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["user"], "a@x.com");
            assert_eq!(v["kind"], "add_to_team");
        }
        assert_eq!(
            AuditLog::read_all(&dir).unwrap(),
            vec![record("begin", None), record("end", Some("ok"))]
        );
        assert!(record("begin", None).actor.starts_with("idsync apply (user "));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn steps_since_reads_from_the_offset_and_keeps_the_last_result() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(tmp.path()).unwrap();
        log.append(&record("end", Some("error"))).unwrap();
        let at = log.end_offset().unwrap();
        assert_eq!(at, std::fs::metadata(log.path()).unwrap().len());
        let key = (record("begin", None).run_id, record("begin", None).action_id);
        let keys: BTreeSet<_> = [key.clone()].into();
        log.append(&record("begin", None)).unwrap();
        let mut other = record("end", Some("ok"));
        other.run_id = "run-2".into();
        log.append(&other).unwrap();
        log.append(&record("end", Some("unknown"))).unwrap();
        let got = log.steps_since(at, &keys).unwrap();
        assert_eq!(
            got[&key],
            Steps {
                begun: true,
                last: Some("unknown".into())
            },
            "the error before the offset and run-2's line are not this entry's"
        );
        log.append(&record("settle", Some("ok"))).unwrap();
        assert_eq!(log.steps_since(at, &keys).unwrap()[&key].last.as_deref(), Some("ok"));
        assert!(
            log.steps_since(at + 10_000, &keys).unwrap().is_empty(),
            "a shorter log holds nothing"
        );
        assert!(log.steps_since(0, &BTreeSet::new()).unwrap().is_empty());
    }

    #[test]
    fn a_torn_audit_line_does_not_swallow_the_next_record() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let mut log = AuditLog::open(tmp.path()).unwrap();
            log.append(&record("begin", None)).unwrap();
        }
        let path = tmp.path().join(AUDIT_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"ts\":\"2025-03-01T01:").unwrap();
        drop(f);
        let mut log = AuditLog::open(tmp.path()).unwrap();
        log.append(&record("end", Some("ok"))).unwrap();
        assert_eq!(
            AuditLog::read_all(tmp.path()).unwrap(),
            vec![record("begin", None), record("end", Some("ok"))]
        );
        let mut streamed = Vec::new();
        AuditLog::for_each(tmp.path(), |r| streamed.push(r)).unwrap();
        assert_eq!(streamed, vec![record("begin", None), record("end", Some("ok"))]);
        let mut none = 0;
        AuditLog::for_each(&tmp.path().join("absent"), |_| none += 1).unwrap();
        assert_eq!(none, 0, "no log is an empty history");
    }
}
