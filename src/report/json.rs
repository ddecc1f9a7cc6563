//! The JSON report (SPEC §6): what `plan --out` saves and `apply --plan` / `approve` read.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Email;
use crate::plan::{ActionId, ActionKind, Plan};

use super::ReportError;

/// The only plan file version this build writes and reads.
const VERSION: u64 = 1;

/// Pretty JSON of the plan. Every SPEC action field is present (`null` when absent) and
/// `summary` always has every action kind and `held`, zeros included, so scripts can
/// read `.summary.create_user` without a default.
pub fn render_json(plan: &Plan) -> String {
    let mut buf = Vec::new();
    match write_json(plan, &mut buf) {
        // serde_json writes UTF-8 only.
        Ok(()) => String::from_utf8(buf).unwrap_or_default(),
        // Unreachable for this data (string keys, plain values); still, a report must not
        // panic, and this keeps the failure visible to whoever reads the file.
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// [`render_json`] straight into `w`: a 100,000-person plan is ~100 MB of JSON, which
/// is not worth holding in memory (nor a copy of the plan for the full summary).
pub fn write_json(plan: &Plan, mut w: impl std::io::Write) -> Result<(), serde_json::Error> {
    // The same fields in the same order as `Plan`'s own serialisation, borrowed.
    #[derive(serde::Serialize)]
    struct Out<'a> {
        version: u32,
        generated_at: &'a chrono::DateTime<chrono::Utc>,
        source: &'a crate::plan::SourceSummary,
        target: &'a crate::plan::TargetSummary,
        summary: BTreeMap<String, usize>,
        actions: &'a [crate::plan::Action],
        tombstones: &'a [crate::plan::Tombstone],
        skipped: &'a [crate::plan::Skipped],
        roster_before: &'a [String],
        roster_after: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        undo: Option<&'a crate::plan::UndoInfo>,
    }
    let out = Out {
        version: plan.version,
        generated_at: &plan.generated_at,
        source: &plan.source,
        target: &plan.target,
        summary: full_summary(plan),
        actions: &plan.actions,
        tombstones: &plan.tombstones,
        skipped: &plan.skipped,
        roster_before: &plan.roster_before,
        roster_after: &plan.roster_after,
        undo: plan.undo.as_ref(),
    };
    serde_json::to_writer_pretty(&mut w, &out)?;
    w.write_all(b"\n").map_err(serde_json::Error::io)
}

/// Ready actions per kind and `held`, from the actions themselves.
fn full_summary(plan: &Plan) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = ActionKind::ALL.iter().map(|k| (k.as_str().to_string(), 0)).collect();
    m.insert("held".into(), 0);
    for a in &plan.actions {
        let key = if a.is_ready() { a.kind.as_str() } else { "held" };
        *m.entry(key.to_string()).or_default() += 1;
    }
    m
}

/// Reads a plan written by [`render_json`]. Rejects other versions, and plans whose
/// action ids do not match their fields: approvals bind to ids, so an id that does not
/// describe its action would approve something nobody reviewed.
pub fn parse_plan_json(s: &str) -> Result<Plan, ReportError> {
    // The version is checked before the shape, so a future plan gets "unsupported
    // version" rather than a confusing missing-field error.
    let value: serde_json::Value = serde_json::from_str(s)?;
    match value.get("version") {
        None => return Err(ReportError::MissingVersion),
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => return Err(ReportError::UnsupportedVersion(v.to_string())),
    }
    // Parsed from the text again (not the value) so errors carry line and column.
    let plan: Plan = serde_json::from_str(s)?;
    validate(&plan)?;
    Ok(plan)
}

fn validate(plan: &Plan) -> Result<(), ReportError> {
    let bad = |m: String| Err(ReportError::Inconsistent(m));
    let mut seen: BTreeSet<&ActionId> = BTreeSet::new();
    for a in &plan.actions {
        if let Some(u) = &a.user {
            if !is_normalised(u) {
                return bad(format!("action {} has user {u:?}, which is not a lower-case email", a.id));
            }
        }
        let expected = ActionId::compute(a.kind, a.user.as_ref(), a.team.as_deref(), a.role.as_deref());
        if expected != a.id {
            return bad(format!(
                "action {} does not match its kind, user, team and role (expected id {expected})",
                a.id
            ));
        }
        if !seen.insert(&a.id) {
            return bad(format!("action {} appears twice", a.id));
        }
    }
    for t in &plan.tombstones {
        if !is_normalised(&t.user) {
            return bad(format!("tombstone user {:?} is not a lower-case email", t.user.as_str()));
        }
    }
    Ok(())
}

/// An email read from a file is only trusted when it is what `Email::parse` makes of it.
fn is_normalised(e: &Email) -> bool {
    Email::parse(e.as_str()).as_ref() == Some(e)
}
