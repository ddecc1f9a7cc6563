//! Report rendering: text, markdown and JSON from a [`Plan`]. Pure.
//!
//! Every renderer is a function of the plan and its options only: no I/O, no clock and
//! no terminal detection (the caller decides `color`). The pieces several formats share
//! (summary counts, how a change reads, how a held action can be released, the roster
//! diff) live here so that text and markdown never disagree.

pub mod explain;
pub mod history;
mod json;
mod markdown;
pub mod seats;
pub mod status;
mod text;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use similar::{ChangeTag, TextDiff};

use crate::plan::{Action, ActionId, ActionKind, Guard, Plan};

pub use json::{parse_plan_json, render_json, write_json};

/// Output format of `idsync plan --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Format, ReportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "markdown" | "md" => Ok(Format::Markdown),
            "json" => Ok(Format::Json),
            _ => Err(ReportError::UnknownFormat(s.to_string())),
        }
    }
}

/// `--format` of the commands that have a text and a JSON form only (`explain`, `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TextOrJson {
    #[default]
    Text,
    Json,
}

/// What the caller knows about where the report goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// ANSI colour in the text report; markdown and JSON never have any.
    pub color: bool,
    /// Where the plan is saved (`plan --out`, `show`), so that the hints to release held
    /// actions name the real file; `None` prints the placeholder `PLAN.json`.
    pub plan_file: Option<String>,
}

impl RenderOptions {
    /// The plan file as the hints show it: quoted for a shell when it needs to be.
    fn plan_file(&self) -> String {
        match &self.plan_file {
            None => "PLAN.json".into(),
            Some(f) if f.chars().all(|c| c.is_ascii_alphanumeric() || "._-/+=:@,".contains(c)) && !f.is_empty() => f.clone(),
            Some(f) => format!("'{}'", f.replace('\'', "'\\''")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown report format {0:?}: expected text, markdown or json")]
    UnknownFormat(String),
    #[error("not a valid idsync plan: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an idsync plan: it has no \"version\" field (write plans with `idsync plan --out PLAN.json`)")]
    MissingVersion,
    #[error("plan version {0} is not supported: this idsync reads version 1 (re-create the plan with `idsync plan --out PLAN.json`)")]
    UnsupportedVersion(String),
    #[error("plan file is inconsistent: {0} (was it edited by hand? re-create it with `idsync plan --out PLAN.json`)")]
    Inconsistent(String),
}

/// Renders `plan` in `format`.
pub fn render(plan: &Plan, format: Format, opts: &RenderOptions) -> String {
    match format {
        Format::Text => text::render(plan, opts.color, &opts.plan_file()),
        Format::Markdown => markdown::render(plan, &opts.plan_file()),
        Format::Json => render_json(plan),
    }
}

// ---------------------------------------------------------------------------------------
// Shared pieces.

/// How a report marks an action: `+` grants, `~` changes a role, `-` takes away.
fn marker(kind: ActionKind) -> char {
    match kind {
        ActionKind::CreateTeam | ActionKind::CreateUser | ActionKind::ReactivateUser | ActionKind::AddToTeam => '+',
        ActionKind::SetOrgRole | ActionKind::SetTeamRole => '~',
        ActionKind::RemoveFromTeam | ActionKind::DeprovisionUser => '-',
    }
}

/// The user column: the email, or `-` for `create_team`.
fn user_cell(a: &Action) -> &str {
    a.user.as_ref().map(|u| u.as_str()).unwrap_or("-")
}

/// The change itself, without the team: `member → admin`, `as member`, `was member`.
fn change(a: &Action) -> String {
    match (a.from.as_deref(), a.to.as_deref()) {
        (Some(f), Some(t)) => format!("{f} → {t}"),
        (None, Some(t)) => format!("as {t}"),
        (Some(f), None) => format!("was {f}"),
        (None, None) => a.role.as_deref().map(|r| format!("as {r}")).unwrap_or_default(),
    }
}

/// Team and change together, for one-line formats: `ml-research (viewer → member)`.
fn detail(a: &Action) -> String {
    let c = change(a);
    match (a.team.as_deref(), c.is_empty()) {
        (Some(t), true) => t.to_string(),
        (Some(t), false) => format!("{t} ({c})"),
        (None, _) => c,
    }
}

/// The guards an approval overrode on a ready action: `pipeline-key, mass-deprovision`.
fn approved_over(a: &Action) -> Option<String> {
    a.approved
        .then(|| a.holds.iter().map(|h| h.guard.as_str()).collect::<Vec<_>>().join(", "))
}

/// A tombstone's `deprovision_after` when there is none.
const NEVER_DEPROVISIONED: &str = "never (deprovision = off)";

/// Why a user is tombstoned, in words.
fn tombstone_cause(t: &crate::plan::Tombstone) -> &'static str {
    match t.cause {
        crate::plan::TombstoneCause::Missing => "missing from the directory",
        crate::plan::TombstoneCause::Disabled => "disabled in the directory",
    }
}

/// When a tombstoned user is deprovisioned, or that it never is.
fn deprovision_time(t: &crate::plan::Tombstone) -> String {
    t.deprovision_after
        .as_ref()
        .map(time)
        .unwrap_or_else(|| NEVER_DEPROVISIONED.to_string())
}

/// Pretty JSON of `value`'s fields after a leading `"version"`, for the reports whose
/// JSON is versioned on its own (`explain`, `status`, `approvals`).
fn versioned_json<T: serde::Serialize>(version: u32, value: &T) -> String {
    #[derive(serde::Serialize)]
    struct Wire<'a, T> {
        version: u32,
        #[serde(flatten)]
        value: &'a T,
    }
    match serde_json::to_string_pretty(&Wire { version, value }) {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// RFC 3339 UTC to the second, as in the JSON.
fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The counts a summary shows, computed from the actions themselves so that the summary
/// can never disagree with the lists below it.
struct Summary {
    /// Ready actions per kind, in [`ActionKind::ALL`] order, zero counts left out.
    ready: Vec<(ActionKind, usize)>,
    held: usize,
    tombstones: usize,
    skipped: usize,
    /// A suspicious read is never "in sync", even with nothing to change (SPEC §2).
    suspicious: bool,
}

impl Summary {
    fn of(plan: &Plan) -> Summary {
        let mut by_kind: BTreeMap<ActionKind, usize> = BTreeMap::new();
        for a in plan.ready() {
            *by_kind.entry(a.kind).or_default() += 1;
        }
        Summary {
            ready: ActionKind::ALL.iter().filter_map(|k| by_kind.get(k).map(|n| (*k, *n))).collect(),
            held: plan.held().count(),
            tombstones: plan.tombstones.len(),
            skipped: plan.skipped.len(),
            suspicious: plan.source.suspicious.is_some(),
        }
    }

    fn in_sync(&self) -> bool {
        self.ready.is_empty() && self.held == 0 && !self.suspicious
    }

    /// `(label, count)` rows: one per ready kind, then held, tombstones and skipped
    /// when non-zero.
    fn rows(&self) -> Vec<(String, usize)> {
        let mut rows: Vec<(String, usize)> = self.ready.iter().map(|(k, n)| (kind_phrase(*k, *n), *n)).collect();
        if self.held > 0 {
            rows.push(("held".into(), self.held));
        }
        if self.tombstones > 0 {
            rows.push((plural(self.tombstones, "tombstone", "tombstones").into(), self.tombstones));
        }
        if self.skipped > 0 {
            rows.push(("skipped".into(), self.skipped));
        }
        rows
    }

    /// One sentence: `Plan: 3 users to create, 2 team additions, 1 held. 1 tombstone.`
    fn sentence(&self) -> String {
        let main = if self.in_sync() {
            "In sync: no changes.".to_string()
        } else if self.ready.is_empty() && self.held == 0 {
            "Not in sync: nothing to change, but the directory read is suspicious.".to_string()
        } else {
            let mut parts: Vec<String> = self.ready.iter().map(|(k, n)| format!("{n} {}", kind_phrase(*k, *n))).collect();
            if parts.is_empty() {
                parts.push("nothing ready".into());
            }
            if self.held > 0 {
                parts.push(format!("{} held", self.held));
            }
            format!("Plan: {}.", parts.join(", "))
        };
        // Tombstones and skipped entries are not changes, but a reader should know.
        let extras: Vec<String> = [
            (self.tombstones, plural(self.tombstones, "tombstone", "tombstones")),
            (self.skipped, "skipped"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, label)| format!("{n} {label}"))
        .collect();
        if extras.is_empty() {
            main
        } else {
            format!("{main} {}.", extras.join(", "))
        }
    }
}

/// What a suspicious read means, after its reason: the same words in text and markdown.
const SUSPICIOUS_MEANS: &str =
    "The removals and demotions it drives are held, no tombstone clock starts, and this read does not become the source-health baseline.";
/// How a human accepts a real shrink (SPEC §4).
const SUSPICIOUS_ACCEPT: &str = "If the change is real, review and approve the held actions (idsync plan --out PLAN.json, then idsync approve PLAN.json); to accept the new size at once, apply once with a short guards.source_health_window (see README); otherwise fix the source.";

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// What a count of ready actions of one kind means, in words.
fn kind_phrase(kind: ActionKind, n: usize) -> String {
    match kind {
        ActionKind::CreateTeam => plural(n, "team to create", "teams to create").into(),
        ActionKind::CreateUser => plural(n, "user to create", "users to create").into(),
        ActionKind::ReactivateUser => "to reactivate".into(),
        ActionKind::SetOrgRole => plural(n, "org role change", "org role changes").into(),
        ActionKind::AddToTeam => plural(n, "team addition", "team additions").into(),
        ActionKind::SetTeamRole => plural(n, "team role change", "team role changes").into(),
        ActionKind::RemoveFromTeam => plural(n, "team removal", "team removals").into(),
        ActionKind::DeprovisionUser => "to deprovision".into(),
    }
}

/// How a held action can be released.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Release {
    /// Approving these ids (held dependencies first, then the action) releases it.
    Approve(Vec<ActionId>),
    /// A non-overridable guard holds it (or a dependency): only a directory or config
    /// change can.
    Never,
}

const NEVER_HINT: &str = "cannot be approved: fix the directory or the config";

/// Actions by id, so that following dependencies stays cheap in a large plan.
type ById<'a> = BTreeMap<&'a ActionId, &'a Action>;

impl Release {
    fn of(by_id: &ById<'_>, a: &Action) -> Release {
        let mut ids = Vec::new();
        let mut visiting = BTreeSet::new();
        if approvable(by_id, a, &mut ids, &mut visiting) {
            Release::Approve(ids)
        } else {
            Release::Never
        }
    }

    /// The exact command or the reason there is none.
    fn hint(&self, plan_file: &str) -> String {
        match self {
            Release::Approve(ids) => format!("idsync approve {plan_file} {}", approve_args(ids)),
            Release::Never => NEVER_HINT.to_string(),
        }
    }
}

fn approve_args(ids: &[ActionId]) -> String {
    ids.iter().map(|id| format!("--id {id}")).collect::<Vec<_>>().join(" ")
}

/// Whether approvals can release `a`, collecting the held ids to approve (dependencies
/// before dependents). An approval of a dependent does not lift a hold inherited from
/// its dependency, so the whole chain has to be approved.
fn approvable<'a>(by_id: &ById<'a>, a: &'a Action, ids: &mut Vec<ActionId>, visiting: &mut BTreeSet<&'a ActionId>) -> bool {
    // Seen already: a dependency shared by two paths, or a cycle in an edited plan file,
    // which must not recurse forever.
    if !visiting.insert(&a.id) {
        return true;
    }
    if !a.holds.is_empty() && !a.overridable() {
        return false;
    }
    for dep in &a.depends_on {
        if let Some(d) = by_id.get(dep).filter(|d| !d.is_ready()) {
            if !approvable(by_id, d, ids, visiting) {
                return false;
            }
        }
    }
    ids.push(a.id.clone());
    true
}

/// The held actions a guard holds first, each with how it can be released.
type HeldGroup<'a> = (Option<Guard>, Vec<(&'a Action, Release)>);

/// Held actions grouped by the guard a human must deal with first, in guard order (the
/// non-overridable ones first).
fn held_groups(plan: &Plan) -> Vec<HeldGroup<'_>> {
    let by_id: ById<'_> = plan.actions.iter().map(|a| (&a.id, a)).collect();
    let mut groups: BTreeMap<Option<Guard>, Vec<(&Action, Release)>> = BTreeMap::new();
    for a in plan.held() {
        groups.entry(a.guard).or_default().push((a, Release::of(&by_id, a)));
    }
    groups.into_iter().collect()
}

fn guard_name(g: Option<Guard>) -> &'static str {
    g.map(Guard::as_str).unwrap_or("(no guard recorded)")
}

/// Said once per guard group, so nobody hunts for an approval that cannot exist.
fn guard_note(g: Option<Guard>) -> &'static str {
    match g {
        Some(g) if !g.overridable() => " (not overridable by approval)",
        _ => "",
    }
}

/// `3 users`, `1 team`.
fn count(n: usize, one: &'static str, many: &'static str) -> String {
    format!("{n} {}", plural(n, one, many))
}

/// `4 people, 2 groups`: the directory side of the header.
fn sizes(plan: &Plan) -> String {
    format!(
        "{}, {}",
        count(plan.source.users, "person", "people"),
        count(plan.source.groups, "group", "groups")
    )
}

/// `3 users, 1 team`: the W&B side of the header.
fn target_sizes(plan: &Plan) -> String {
    format!(
        "{}, {}",
        count(plan.target.users, "user", "users"),
        count(plan.target.teams, "team", "teams")
    )
}

/// One line of the roster diff, with its unified-diff prefix already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DiffLine {
    FileHeader(String),
    Hunk(String),
    Context(String),
    Delete(String),
    Insert(String),
}

impl DiffLine {
    fn as_str(&self) -> &str {
        match self {
            DiffLine::FileHeader(s) | DiffLine::Hunk(s) | DiffLine::Context(s) | DiffLine::Delete(s) | DiffLine::Insert(s) => s,
        }
    }
}

const ROSTER_BEFORE: &str = "W&B now";
const ROSTER_AFTER: &str = "after ready actions";
const NO_ROSTER_CHANGES: &str = "no roster changes";
/// Lines of context around each roster change: enough to place it, few enough that a
/// large org's diff stays readable.
const ROSTER_CONTEXT: usize = 2;

/// The unified diff of the roster before → after the ready actions; empty when equal.
fn roster_diff(plan: &Plan) -> Vec<DiffLine> {
    if plan.roster_before == plan.roster_after {
        return Vec::new();
    }
    let before: Vec<&str> = plan.roster_before.iter().map(String::as_str).collect();
    let after: Vec<&str> = plan.roster_after.iter().map(String::as_str).collect();
    let diff = TextDiff::from_slices(&before, &after);
    let mut lines = vec![
        DiffLine::FileHeader(format!("--- {ROSTER_BEFORE}")),
        DiffLine::FileHeader(format!("+++ {ROSTER_AFTER}")),
    ];
    let mut unified = diff.unified_diff();
    unified.context_radius(ROSTER_CONTEXT);
    for hunk in unified.iter_hunks() {
        lines.push(DiffLine::Hunk(hunk.header().to_string()));
        for c in hunk.iter_changes() {
            let v = c.value();
            lines.push(match c.tag() {
                ChangeTag::Equal => DiffLine::Context(format!(" {v}")),
                ChangeTag::Delete => DiffLine::Delete(format!("-{v}")),
                ChangeTag::Insert => DiffLine::Insert(format!("+{v}")),
            });
        }
    }
    lines
}
