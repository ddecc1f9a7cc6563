//! The text report: for a terminal or a log, optionally coloured.

use crate::plan::{Action, Plan};

use super::{
    approved_over, deprovision_time, detail, guard_name, guard_note, held_groups, marker, roster_diff, sizes, target_sizes, time,
    tombstone_cause, user_cell, DiffLine, Release, Summary, NO_ROSTER_CHANGES, SUSPICIOUS_ACCEPT, SUSPICIOUS_MEANS,
};

/// ANSI styles; only emitted when colour is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Bold,
    Green,
    Red,
    Yellow,
    BoldYellow,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "\x1b[1m",
            Style::Green => "\x1b[32m",
            Style::Red => "\x1b[31m",
            Style::Yellow => "\x1b[33m",
            Style::BoldYellow => "\x1b[1;33m",
            Style::Cyan => "\x1b[36m",
        }
    }

    fn of_marker(m: char) -> Style {
        match m {
            '+' => Style::Green,
            '-' => Style::Red,
            _ => Style::Yellow,
        }
    }
}

const RESET: &str = "\x1b[0m";

struct Out {
    buf: String,
    color: bool,
}

impl Out {
    fn line(&mut self, style: Style, s: &str) {
        if self.color && style != Style::Plain && !s.is_empty() {
            self.buf.push_str(style.code());
            self.buf.push_str(s);
            self.buf.push_str(RESET);
        } else {
            self.buf.push_str(s);
        }
        self.buf.push('\n');
    }

    fn heading(&mut self, s: &str) {
        self.buf.push('\n');
        self.line(Style::Bold, s);
    }
}

pub(super) fn render(plan: &Plan, color: bool, plan_file: &str) -> String {
    let mut out = Out { buf: String::new(), color };
    match &plan.undo {
        Some(u) => out.line(
            Style::Bold,
            &format!("idsync undo of run {}, generated {}", u.run_id, time(&plan.generated_at)),
        ),
        None => out.line(Style::Bold, &format!("idsync plan, generated {}", time(&plan.generated_at))),
    }
    out.line(
        Style::Plain,
        &format!("Source {}: {}. W&B: {}.", plan.source.kind, sizes(plan), target_sizes(plan)),
    );
    if let Some(why) = &plan.source.suspicious {
        out.line(Style::BoldYellow, &format!("SUSPICIOUS DIRECTORY READ: {why}."));
        out.line(Style::Plain, &format!("  {SUSPICIOUS_MEANS}"));
        out.line(Style::Plain, &format!("  {SUSPICIOUS_ACCEPT}"));
    }
    out.line(Style::Bold, &Summary::of(plan).sentence());

    ready_section(&mut out, plan);
    held_section(&mut out, plan, plan_file);
    tombstones_section(&mut out, plan);
    skipped_section(&mut out, plan);
    undo_section(&mut out, plan);
    roster_section(&mut out, plan);
    out.buf
}

/// An undo plan's left-out changes and where the directory disagrees with it.
fn undo_section(out: &mut Out, plan: &Plan) {
    let Some(u) = &plan.undo else { return };
    if !u.left_out.is_empty() {
        out.heading(&format!("Not undone ({}):", u.left_out.len()));
        for s in &u.left_out {
            out.line(Style::Plain, &format!("  {}: {}", s.entry, s.why));
        }
    }
    if !u.warnings.is_empty() {
        out.heading(&format!("Warnings ({}):", u.warnings.len()));
        for w in &u.warnings {
            out.line(Style::BoldYellow, &format!("  {w}"));
        }
    }
}

/// Action lines with aligned columns: `marker id kind user detail`.
fn action_rows(actions: &[&Action], indent: &str) -> Vec<String> {
    let kw = actions.iter().map(|a| a.kind.as_str().len()).max().unwrap_or(0);
    let uw = actions.iter().map(|a| user_cell(a).chars().count()).max().unwrap_or(0);
    let details: Vec<String> = actions.iter().map(|a| detail(a)).collect();
    let dw = details.iter().map(|d| d.chars().count()).max().unwrap_or(0);
    actions
        .iter()
        .zip(details)
        .map(|(a, d)| {
            format!(
                "{indent}{} {} {:<kw$} {:<uw$} {:<dw$}",
                marker(a.kind),
                a.id,
                a.kind.as_str(),
                user_cell(a),
                d
            )
        })
        .collect()
}

fn ready_section(out: &mut Out, plan: &Plan) {
    let ready: Vec<&Action> = plan.ready().collect();
    if ready.is_empty() {
        return;
    }
    out.heading(&format!("Ready actions ({}):", ready.len()));
    for (a, row) in ready.iter().zip(action_rows(&ready, "")) {
        let mut line = format!("{row}  reason: {}", a.reason);
        if let Some(guards) = approved_over(a) {
            line.push_str(&format!(" [approved over {guards}]"));
        }
        out.line(Style::of_marker(marker(a.kind)), &line);
    }
}

fn held_section(out: &mut Out, plan: &Plan, plan_file: &str) {
    let groups = held_groups(plan);
    if groups.is_empty() {
        return;
    }
    let n: usize = groups.iter().map(|(_, v)| v.len()).sum();
    out.buf.push('\n');
    out.line(Style::BoldYellow, &format!("Held (needs a human) ({n}):"));
    for (guard, items) in &groups {
        out.line(Style::Bold, &format!("  {}{}", guard_name(*guard), guard_note(*guard)));
        let actions: Vec<&Action> = items.iter().map(|(a, _)| *a).collect();
        for ((a, release), row) in items.iter().zip(action_rows(&actions, "    ")) {
            out.line(Style::Yellow, row.trim_end());
            if let Some(why) = &a.held_reason {
                out.line(Style::Plain, &format!("        held: {why}"));
            }
            for h in &a.holds {
                let shown = Some(h.guard) == a.guard && a.held_reason.as_deref() == Some(&h.reason);
                if !shown {
                    out.line(Style::Plain, &format!("        also held by {}: {}", h.guard, h.reason));
                }
            }
            out.line(Style::Plain, &format!("        reason: {}", a.reason));
            let hint = match release {
                Release::Approve(_) => format!("to release: {}", release.hint(plan_file)),
                Release::Never => release.hint(plan_file),
            };
            out.line(Style::Plain, &format!("        {hint}"));
        }
    }
}

fn tombstones_section(out: &mut Out, plan: &Plan) {
    if plan.tombstones.is_empty() {
        return;
    }
    out.heading(&format!("Tombstones ({}):", plan.tombstones.len()));
    let w = plan.tombstones.iter().map(|t| t.user.as_str().chars().count()).max().unwrap_or(0);
    for t in &plan.tombstones {
        let (cause, after) = (tombstone_cause(t), deprovision_time(t));
        out.line(
            Style::Plain,
            &format!(
                "  {:<w$}  {cause} since {}, deprovision after {after}",
                t.user.as_str(),
                time(&t.since)
            ),
        );
    }
}

fn skipped_section(out: &mut Out, plan: &Plan) {
    if plan.skipped.is_empty() {
        return;
    }
    out.heading(&format!("Skipped ({}):", plan.skipped.len()));
    for s in &plan.skipped {
        out.line(Style::Plain, &format!("  {}: {}", s.entry, s.why));
    }
}

fn roster_section(out: &mut Out, plan: &Plan) {
    let lines = roster_diff(plan);
    if lines.is_empty() {
        out.heading(&format!("Roster: {NO_ROSTER_CHANGES}."));
        return;
    }
    out.heading("Roster:");
    for l in &lines {
        let style = match l {
            DiffLine::FileHeader(_) => Style::Bold,
            DiffLine::Hunk(_) => Style::Cyan,
            DiffLine::Context(_) => Style::Plain,
            DiffLine::Delete(_) => Style::Red,
            DiffLine::Insert(_) => Style::Green,
        };
        out.line(style, l.as_str());
    }
}
