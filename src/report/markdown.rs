//! The markdown report: the same content as the text report, for a ticket or a pull
//! request. Never any ANSI.

use crate::plan::{Action, Plan, TombstoneCause};

use super::{
    approved_over, change, deprovision_time, guard_name, guard_note, held_groups, roster_diff, sizes, target_sizes, time, user_cell,
    Release, Summary, NO_ROSTER_CHANGES, SUSPICIOUS_ACCEPT, SUSPICIOUS_MEANS,
};

pub(super) fn render(plan: &Plan, plan_file: &str) -> String {
    let mut out = String::new();
    out.push_str("## idsync plan\n\n");
    out.push_str(&format!(
        "Generated {}. Source `{}`: {}. W&B: {}.\n\n",
        time(&plan.generated_at),
        plan.source.kind.replace('`', "'"),
        sizes(plan),
        target_sizes(plan)
    ));
    if let Some(why) = &plan.source.suspicious {
        out.push_str(&format!(
            "> **Suspicious directory read:** {}.\n> {SUSPICIOUS_MEANS}\n> {}\n\n",
            esc(why),
            esc(SUSPICIOUS_ACCEPT)
        ));
    }
    summary(&mut out, plan);
    ready(&mut out, plan);
    held(&mut out, plan, plan_file);
    tombstones(&mut out, plan);
    skipped(&mut out, plan);
    undo(&mut out, plan);
    roster(&mut out, plan);
    out
}

/// An undo plan's left-out changes and warnings.
fn undo(out: &mut String, plan: &Plan) {
    let Some(u) = &plan.undo else { return };
    out.push_str(&format!(
        "### Undo of run {}

",
        esc(&u.run_id)
    ));
    for s in &u.left_out {
        out.push_str(&format!("- not undone: {}: {}\n", esc(&s.entry), esc(&s.why)));
    }
    for w in &u.warnings {
        out.push_str(&format!("- **warning:** {}\n", esc(w)));
    }
    out.push('\n');
}

/// Escapes text for a table cell or a list item: `|` would end the cell, a newline the
/// row, and the rest would turn names into markup.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '`' | '*' | '[' | ']' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn table_head(out: &mut String, names: &[&str]) {
    out.push_str(&format!("| {} |\n", names.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(names.len())));
}

fn summary(out: &mut String, plan: &Plan) {
    let s = Summary::of(plan);
    out.push_str(&format!("**{}**\n\n", s.sentence()));
    let rows = s.rows();
    if rows.is_empty() {
        return;
    }
    out.push_str("| change | count |\n|---|---:|\n");
    for (label, n) in rows {
        out.push_str(&row(&[esc(&label), n.to_string()]));
    }
    out.push('\n');
}

/// The cells every action table starts with: id, kind, user, team, change.
fn action_cells(a: &Action) -> Vec<String> {
    vec![
        format!("`{}`", a.id),
        format!("`{}`", a.kind),
        esc(user_cell(a)),
        esc(a.team.as_deref().unwrap_or("")),
        esc(&change(a)),
    ]
}

fn ready(out: &mut String, plan: &Plan) {
    let ready: Vec<&Action> = plan.ready().collect();
    if ready.is_empty() {
        return;
    }
    out.push_str(&format!("### Ready actions ({})\n\n", ready.len()));
    table_head(out, &["id", "kind", "user", "team", "change", "reason"]);
    for a in ready {
        let mut reason = esc(&a.reason);
        if let Some(guards) = approved_over(a) {
            reason.push_str(&format!(" (approved over {guards})"));
        }
        let mut cells = action_cells(a);
        cells.push(reason);
        out.push_str(&row(&cells));
    }
    out.push('\n');
}

fn held(out: &mut String, plan: &Plan, plan_file: &str) {
    let groups = held_groups(plan);
    if groups.is_empty() {
        return;
    }
    let n: usize = groups.iter().map(|(_, v)| v.len()).sum();
    out.push_str(&format!("### Held (needs a human) ({n})\n\n"));
    for (guard, items) in &groups {
        out.push_str(&format!("#### `{}`{}\n\n", guard_name(*guard), guard_note(*guard)));
        table_head(
            out,
            &["id", "kind", "user", "team", "change", "held because", "reason", "to release"],
        );
        for (a, release) in items {
            // Every hold, the blocking one first, so nobody approves blind.
            let mut why: Vec<String> = a.held_reason.iter().map(|r| esc(r)).collect();
            for h in &a.holds {
                if !(Some(h.guard) == a.guard && a.held_reason.as_deref() == Some(&h.reason)) {
                    why.push(format!("also `{}`: {}", h.guard, esc(&h.reason)));
                }
            }
            let hint = match release {
                Release::Approve(_) => format!("`{}`", release.hint(plan_file)),
                Release::Never => release.hint(plan_file),
            };
            let mut cells = action_cells(a);
            cells.extend([why.join("<br>"), esc(&a.reason), hint]);
            out.push_str(&row(&cells));
        }
        out.push('\n');
    }
}

fn tombstones(out: &mut String, plan: &Plan) {
    if plan.tombstones.is_empty() {
        return;
    }
    out.push_str(&format!("### Tombstones ({})\n\n", plan.tombstones.len()));
    table_head(out, &["user", "cause", "since", "deprovision after"]);
    for t in &plan.tombstones {
        let cause = match t.cause {
            TombstoneCause::Missing => "missing",
            TombstoneCause::Disabled => "disabled",
        };
        out.push_str(&row(&[
            esc(t.user.as_str()),
            cause.to_string(),
            time(&t.since),
            deprovision_time(t),
        ]));
    }
    out.push('\n');
}

fn skipped(out: &mut String, plan: &Plan) {
    if plan.skipped.is_empty() {
        return;
    }
    out.push_str(&format!("### Skipped ({})\n\n", plan.skipped.len()));
    for s in &plan.skipped {
        out.push_str(&format!("- {}: {}\n", esc(&s.entry), esc(&s.why)));
    }
    out.push('\n');
}

fn roster(out: &mut String, plan: &Plan) {
    out.push_str("### Roster\n\n");
    let lines = roster_diff(plan);
    if lines.is_empty() {
        out.push_str(&format!("_{NO_ROSTER_CHANGES}._\n"));
        return;
    }
    let body: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
    // A fence longer than any backtick run inside, so a team name cannot close it.
    let longest = body.iter().map(|l| longest_backtick_run(l)).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    out.push_str(&format!("{fence}diff\n{}\n{fence}\n", body.join("\n")));
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}
