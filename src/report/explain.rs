//! `idsync explain EMAIL`: rendering an [`Explanation`] as text or JSON. Pure.
//!
//! Every reason shown comes from the explanation, which the plan core built from its own
//! functions: this module only lays it out.

use std::collections::BTreeMap;

use crate::plan::{Action, Explanation, Verdict};

use super::{deprovision_time, detail, marker, time, tombstone_cause, Release, TextOrJson};

/// The version of the explain JSON; bumped only when a field changes meaning or goes.
const VERSION: u32 = 1;

pub fn render(x: &Explanation, format: TextOrJson) -> String {
    match format {
        TextOrJson::Text => render_text(x),
        TextOrJson::Json => render_json(x),
    }
}

/// Pretty JSON: `{"version": 1, ...}` with every field of [`Explanation`] (README:
/// "idsync explain"); actions are the plan's action objects (SPEC §6).
pub fn render_json(x: &Explanation) -> String {
    super::versioned_json(VERSION, x)
}

/// The one-line verdict: what the person's exit code means, in words.
fn headline(x: &Explanation) -> String {
    let ready = x.actions.iter().filter(|a| a.is_ready()).count();
    let held = x.actions.len() - ready;
    match x.verdict {
        Verdict::Unknown => format!("{}: not found in the directory nor in W&B.", x.email),
        Verdict::NothingPlanned => format!("{}: nothing planned.", x.email),
        Verdict::Pending => format!("{}: {ready} action(s) pending.", x.email),
        Verdict::Held => format!("{}: {held} action(s) held by a guard, {ready} ready.", x.email),
    }
}

pub fn render_text(x: &Explanation) -> String {
    let mut out = String::new();
    // Every line passes here (see `escape`).
    let mut line = |s: &str| {
        out.push_str(&super::escape::neutralise(s, super::escape::Keep::Nothing));
        out.push('\n');
    };
    line(&headline(x));
    if x.verdict == Verdict::Unknown {
        if !x.did_you_mean.is_empty() {
            line(&format!("Did you mean: {}?", x.did_you_mean.join(", ")));
        }
        for n in &x.notes {
            line(&format!("Note: {n}"));
        }
        return out;
    }
    line(&format!(
        "In scope: {}",
        if x.in_scope {
            "yes (idsync may change this W&B user)"
        } else {
            "no (idsync never changes this W&B user)"
        }
    ));

    line("");
    line("Directory:");
    if x.directory.is_empty() {
        line("  no entry with this email");
    }
    for d in &x.directory {
        line(&format!(
            "  {} ({}; anchor {}, username {}, name {})",
            d.source_ref,
            if d.enabled { "enabled" } else { "disabled" },
            d.anchor,
            d.username,
            d.display_name
        ));
        if d.groups.is_empty() {
            line("    groups: none");
        } else {
            line("    groups:");
        }
        for g in &d.groups {
            let mut s = format!("      {}", g.dn.as_deref().unwrap_or(&g.name));
            if !g.via.is_empty() {
                s.push_str(&format!(" (nested, via {})", g.via.join(" > ")));
            }
            if !g.rules.is_empty() {
                s.push_str(&format!(" -> {}", g.rules.join("; ")));
            }
            line(&s);
        }
    }

    line("");
    line("Desired (from the policy):");
    match &x.desired {
        None => line("  nothing: no enabled, in-scope directory entry with a unique email wants a W&B user for it"),
        Some(d) => {
            match &d.create {
                Some(why) => line(&format!("  may create or reactivate: {why}")),
                None => line("  may create or reactivate: no"),
            }
            match &d.org_role {
                Some(w) => line(&format!("  org role {}: {}", w.role, w.rule)),
                None => line("  org role: no policy.org_roles group has this person (a new user gets policy.default_org_role)"),
            }
            if d.teams.is_empty() {
                line("  teams: none from policy.teams");
            }
            for t in &d.teams {
                line(&format!("  team {} as {}: {}", t.team, t.role, t.rule));
            }
        }
    }

    line("");
    line("W&B:");
    if x.wandb.is_empty() {
        line("  no user with this email");
    }
    for u in &x.wandb {
        let teams: Vec<String> = u.teams.iter().map(|(t, r)| format!("{t}:{r}")).collect();
        line(&format!(
            "  {} userName {}, {}, org role {}, teams: {}{}",
            u.id,
            u.user_name,
            if u.active { "active" } else { "inactive" },
            u.org_role,
            if teams.is_empty() { "none".to_string() } else { teams.join(", ") },
            if u.service_account { " (service account)" } else { "" }
        ));
    }

    if !x.actions.is_empty() {
        line("");
        line(&format!("Planned actions ({}):", x.actions.len()));
        let by_id: BTreeMap<_, &Action> = x.actions.iter().map(|a| (&a.id, a)).collect();
        for a in &x.actions {
            let status = if a.is_ready() {
                if a.approved {
                    "ready (approved)".to_string()
                } else {
                    "ready".to_string()
                }
            } else {
                format!("HELD by {}", a.guard.map(|g| g.as_str()).unwrap_or("a guard"))
            };
            // The person's own email goes without saying; a team creation has none.
            let who = a
                .user
                .as_ref()
                .filter(|u| u.as_str() != x.email)
                .map(|u| u.to_string())
                .unwrap_or_default();
            let parts: Vec<String> = [marker(a.kind).to_string(), a.id.to_string(), a.kind.to_string(), who, detail(a)]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            line(&format!("  {}  [{status}]", parts.join(" ")));
            line(&format!("      reason: {}", a.reason));
            for h in &a.holds {
                line(&format!("      held by {}: {}", h.guard, h.reason));
            }
            if !a.depends_on.is_empty() {
                let deps: Vec<&str> = a.depends_on.iter().map(|d| d.as_str()).collect();
                line(&format!("      after: {}", deps.join(", ")));
            }
            if !a.is_ready() {
                let hint = match Release::of(&by_id, a) {
                    r @ Release::Approve(_) => format!("to release: idsync plan --out PLAN.json, review, then {}", r.hint("PLAN.json")),
                    r @ Release::Never => r.hint("PLAN.json"),
                };
                line(&format!("      {hint}"));
            }
        }
    }

    if let Some(t) = &x.tombstone {
        line("");
        let (cause, after) = (tombstone_cause(t), deprovision_time(t));
        line(&format!("Tombstone: {cause} since {}, deprovision after {after}", time(&t.since)));
    }

    if !x.why_nothing.is_empty() {
        line("");
        line("Why nothing is planned:");
        for w in &x.why_nothing {
            line(&format!("  - {w}"));
        }
    }
    if !x.notes.is_empty() {
        line("");
        line("Notes:");
        for n in &x.notes {
            line(&format!("  - {n}"));
        }
    }
    out
}
