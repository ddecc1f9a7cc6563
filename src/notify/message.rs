//! When a run is worth a message, and what the message says. Pure: no I/O, no clock (the
//! run's facts and what the last message said are inputs), so every rule is unit-tested.
//!
//! Invariants: a message is due only for an event `[notify] on` lists; "held" means the set
//! of held action ids differs from the one the last message listed (never "something is
//! held", which would repeat every run); "failed" means this run failed and the previous
//! one did not; the text stays within [`MAX_ITEMS`] actions and about [`MAX_CHARS`]
//! characters, saying how many it left out; it never contains a secret (it is built from
//! the plan and the run's error, which never carry one).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{NotifyFormat, NotifyOn};
use crate::sync::RunResult;

/// At most this many held actions are listed; the rest are counted.
pub const MAX_ITEMS: usize = 20;
/// The text is kept near this many characters (Slack shows about 4,000 before "see more").
pub const MAX_CHARS: usize = 3_000;
/// One held action's reason is cut here.
const MAX_REASON_CHARS: usize = 300;

/// What a finished run did, as the message reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    pub run_id: String,
    /// `run` (the daemon, `run --once`) or `apply`.
    pub command: String,
    pub result: RunResult,
    pub finished: DateTime<Utc>,
    /// The W&B URL the run synced to (not a secret), so several deployments can share a channel.
    pub target: String,
    pub error: Option<String>,
    /// The fresh plan's held actions; `None` when the run failed before it had a plan.
    pub held: Option<Vec<HeldItem>>,
    pub ready: usize,
    pub applied: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Why the directory read looked wrong, when it did.
    pub suspicious: Option<String>,
}

/// One held action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldItem {
    pub id: String,
    pub kind: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub guard: Option<String>,
    pub reason: String,
    /// Whether `idsync approve` can release it (`last-admin` and `self` holds cannot be).
    pub overridable: bool,
}

/// What the store remembers for the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The held action ids the last message listed; `None` before the first message.
    pub notified_held: Option<BTreeSet<String>>,
    /// The previous sync's result (`run` or `apply`); `None` when there was none or it is unknown.
    pub previous: Option<RunResult>,
}

impl RunFacts {
    /// The ids of the held actions, when known.
    pub fn held_ids(&self) -> Option<BTreeSet<String>> {
        self.held.as_ref().map(|h| h.iter().map(|a| a.id.clone()).collect())
    }
}

/// The events of `on` this run is a reason to post for, in a fixed order (held, failed,
/// applied); empty when no message is due.
pub fn events(on: &[NotifyOn], facts: &RunFacts, memory: &Memory) -> Vec<NotifyOn> {
    let mut out = Vec::new();
    let wants = |e: NotifyOn| on.contains(&e);
    if wants(NotifyOn::Held) {
        if let Some(ids) = facts.held_ids() {
            // Before any message, nothing was listed: a first run with holds is news.
            if ids != memory.notified_held.clone().unwrap_or_default() {
                out.push(NotifyOn::Held);
            }
        }
    }
    if wants(NotifyOn::Failed) && facts.result == RunResult::Failure && memory.previous != Some(RunResult::Failure) {
        out.push(NotifyOn::Failed);
    }
    if wants(NotifyOn::Applied) && facts.applied > 0 {
        out.push(NotifyOn::Applied);
    }
    out
}

/// A message ready to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The human-readable text (markdown), as posted in `slack` format (escaped there).
    pub text: String,
    /// The request body.
    pub body: Value,
}

/// Builds the message for `events`. `config_arg` is `-c FILE` when the config is not at the
/// default path, so the review commands it shows work as pasted.
pub fn build(format: NotifyFormat, facts: &RunFacts, events: &[NotifyOn], memory: &Memory, config_arg: Option<&str>) -> Message {
    let previous = memory.notified_held.clone().unwrap_or_default();
    let text = text(facts, &previous, config_arg);
    let body = match format {
        NotifyFormat::Slack => json!({ "text": slack_escape(&text) }),
        NotifyFormat::Json => json_body(facts, events, &previous, &text, config_arg),
    };
    Message { text, body }
}

/// The summary line: who, which run, how it ended, the counts.
fn summary(facts: &RunFacts) -> String {
    let held = facts.held.as_ref().map(Vec::len);
    let mut counts = vec![
        format!("{} applied", facts.applied),
        format!("{} failed", facts.failed),
        format!("{} skipped", facts.skipped),
    ];
    if let Some(h) = held {
        counts.push(format!("{h} held"));
    }
    format!(
        "idsync {} {}: {} for {} ({})",
        facts.command,
        facts.run_id,
        facts.result.as_str(),
        facts.target,
        counts.join(", ")
    )
}

fn review_commands(config_arg: Option<&str>) -> String {
    let c = config_arg.map(|c| format!(" {c}")).unwrap_or_default();
    format!("Review: `idsync plan{c} --out plan.json`, then `idsync approve{c} plan.json --id ID` (`idsync approvals{c}` lists pending approvals).")
}

fn text(facts: &RunFacts, previous: &BTreeSet<String>, config_arg: Option<&str>) -> String {
    let mut head = vec![summary(facts)];
    if let Some(e) = &facts.error {
        head.push(format!("Error: {}", cut(&one_line(e), MAX_REASON_CHARS)));
    }
    if let Some(why) = &facts.suspicious {
        head.push(format!(
            "Suspicious directory read (nothing from it was stored): {}",
            cut(&one_line(why), MAX_REASON_CHARS)
        ));
    }
    let Some(held) = &facts.held else {
        return head.join("\n");
    };
    let now: BTreeSet<&str> = held.iter().map(|a| a.id.as_str()).collect();
    let released = previous.iter().filter(|id| !now.contains(id.as_str())).count();
    if held.is_empty() {
        if released > 0 {
            head.push(format!(
                "No action is held any more ({released} released or gone since the last message)."
            ));
        }
        return head.join("\n");
    }
    let new = held.iter().filter(|a| !previous.contains(&a.id)).count();
    let mut title = format!("\nHeld for review ({}", held.len());
    if new > 0 && new < held.len() {
        title.push_str(&format!(", {new} new"));
    }
    if released > 0 {
        title.push_str(&format!(", {released} released since the last message"));
    }
    title.push_str("):");
    head.push(title);
    let footer = if held.iter().any(|a| a.overridable) {
        review_commands(config_arg)
    } else {
        let c = config_arg.map(|c| format!(" {c}")).unwrap_or_default();
        format!("These holds cannot be approved (last-admin, self): fix the cause; `idsync plan{c}` explains each.")
    };
    let mut out = head.join("\n");
    // Room for the list: what is left after the header, the footer and a "… and N more" line.
    let budget = MAX_CHARS.saturating_sub(out.len() + footer.len() + 60);
    let mut used = 0;
    let mut listed = 0;
    for a in held.iter().take(MAX_ITEMS) {
        let line = item_line(a, !previous.contains(&a.id) && !previous.is_empty());
        if used + line.len() + 1 > budget {
            break;
        }
        used += line.len() + 1;
        out.push('\n');
        out.push_str(&line);
        listed += 1;
    }
    if listed < held.len() {
        let c = config_arg.map(|c| format!(" {c}")).unwrap_or_default();
        out.push_str(&format!("\n… and {} more (`idsync plan{c}` lists them all)", held.len() - listed));
    }
    out.push_str("\n\n");
    out.push_str(&footer);
    out
}

/// `• `id` kind user team T — guard: reason (new)`.
fn item_line(a: &HeldItem, new: bool) -> String {
    let mut what = a.kind.clone();
    if let Some(u) = &a.user {
        what.push_str(&format!(" {u}"));
    }
    if let Some(t) = &a.team {
        what.push_str(&format!(" team {t}"));
    }
    let guard = a.guard.as_deref().unwrap_or("held");
    format!(
        "• `{}` {what} — {guard}: {}{}",
        a.id,
        cut(&one_line(&a.reason), MAX_REASON_CHARS),
        if new { " (new)" } else { "" }
    )
}

fn json_body(facts: &RunFacts, events: &[NotifyOn], previous: &BTreeSet<String>, text: &str, config_arg: Option<&str>) -> Value {
    let held = facts.held.as_ref().map(|h| {
        h.iter()
            .take(MAX_ITEMS)
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
                v["new"] = json!(!previous.contains(&a.id));
                v
            })
            .collect::<Vec<_>>()
    });
    json!({
        "version": 1,
        "source": "idsync",
        "events": events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "run_id": facts.run_id,
        "command": facts.command,
        "result": facts.result.as_str(),
        "finished_at": facts.finished,
        "target": facts.target,
        "summary": {
            "ready": facts.ready,
            "applied": facts.applied,
            "failed": facts.failed,
            "skipped": facts.skipped,
            "held": facts.held.as_ref().map(Vec::len),
        },
        "error": facts.error,
        "suspicious": facts.suspicious,
        "held": held,
        "held_total": facts.held.as_ref().map(Vec::len),
        "review": review_commands(config_arg),
        "text": text,
    })
}

/// Slack's mrkdwn reads `&`, `<` and `>` as markup; these three must be escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to at most `max` characters, ending in "…" when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const ALL: [NotifyOn; 3] = [NotifyOn::Held, NotifyOn::Failed, NotifyOn::Applied];

    fn item(id: &str, user: &str) -> HeldItem {
        HeldItem {
            id: id.into(),
            kind: "deprovision_user".into(),
            user: Some(user.into()),
            team: None,
            guard: Some("pipeline-key".into()),
            reason: format!("{user} owns API keys that pipelines use <ci> & more"),
            overridable: true,
        }
    }

    fn facts(result: RunResult, held: Option<Vec<HeldItem>>, applied: usize) -> RunFacts {
        RunFacts {
            run_id: "20261202T010000Z-abcdef".into(),
            command: "run".into(),
            result,
            finished: Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap(),
            target: "https://api.wandb.ai".into(),
            error: (result == RunResult::Failure).then(|| "W&B https://api.wandb.ai: GET /Users failed:\n 503".to_string()),
            held,
            ready: 0,
            applied,
            failed: 0,
            skipped: 0,
            suspicious: None,
        }
    }

    fn memory(held: Option<&[&str]>, previous: Option<RunResult>) -> Memory {
        Memory {
            notified_held: held.map(|h| h.iter().map(|s| s.to_string()).collect()),
            previous,
        }
    }

    #[test]
    fn a_message_is_due_when_the_held_set_changes_not_while_it_stays() {
        let held = Some(vec![item("a1", "ci@example.com")]);
        let f = facts(RunResult::Held, held.clone(), 0);
        assert_eq!(events(&ALL, &f, &memory(None, None)), vec![NotifyOn::Held], "first holds are news");
        assert!(
            events(&ALL, &f, &memory(Some(&["a1"]), Some(RunResult::Held))).is_empty(),
            "same set: quiet"
        );
        assert_eq!(events(&ALL, &f, &memory(Some(&["zz"]), None)), vec![NotifyOn::Held]);
        let released = facts(RunResult::Success, Some(vec![]), 0);
        assert_eq!(
            events(&ALL, &released, &memory(Some(&["a1"]), None)),
            vec![NotifyOn::Held],
            "released is news"
        );
        assert!(
            events(&ALL, &released, &memory(None, None)).is_empty(),
            "nothing held, nothing said"
        );
        // Not listed in `on`: never.
        assert!(events(&[NotifyOn::Applied], &f, &memory(None, None)).is_empty());
    }

    #[test]
    fn only_the_first_failure_after_a_success_is_news() {
        let failed = facts(RunResult::Failure, None, 0);
        assert_eq!(
            events(&ALL, &failed, &memory(None, Some(RunResult::Success))),
            vec![NotifyOn::Failed]
        );
        assert_eq!(events(&ALL, &failed, &memory(None, Some(RunResult::Held))), vec![NotifyOn::Failed]);
        assert_eq!(
            events(&ALL, &failed, &memory(None, None)),
            vec![NotifyOn::Failed],
            "a first run that fails"
        );
        assert!(
            events(&ALL, &failed, &memory(None, Some(RunResult::Failure))).is_empty(),
            "still failing: quiet"
        );
        // A failed read knows nothing of holds: the held set is not judged.
        assert!(events(&ALL, &failed, &memory(Some(&["a1"]), Some(RunResult::Failure))).is_empty());
    }

    #[test]
    fn anything_applied_is_news_when_asked_for() {
        let f = facts(RunResult::Success, Some(vec![]), 3);
        assert_eq!(events(&ALL, &f, &memory(Some(&[]), None)), vec![NotifyOn::Applied]);
        assert!(events(&[NotifyOn::Held, NotifyOn::Failed], &f, &memory(Some(&[]), None)).is_empty());
    }

    #[test]
    fn the_text_has_the_summary_the_holds_and_how_to_review_them() {
        let f = facts(
            RunResult::Held,
            Some(vec![item("a1", "ci@example.com"), item("b2", "old@example.com")]),
            2,
        );
        let m = build(
            NotifyFormat::Json,
            &f,
            &[NotifyOn::Held],
            &memory(Some(&["a1", "gone"]), None),
            Some("-c /etc/x.toml"),
        );
        let t = &m.text;
        assert!(
            t.starts_with("idsync run 20261202T010000Z-abcdef: held for https://api.wandb.ai (2 applied, 0 failed, 0 skipped, 2 held)\n"),
            "{t}"
        );
        assert!(t.contains("Held for review (2, 1 new, 1 released since the last message):"), "{t}");
        assert!(
            t.contains(
                "• `a1` deprovision_user ci@example.com — pipeline-key: ci@example.com owns API keys that pipelines use <ci> & more\n"
            ),
            "{t}"
        );
        assert!(t.contains("• `b2` deprovision_user old@example.com — pipeline-key: "), "{t}");
        assert!(t.contains("& more (new)"), "the new one is marked: {t}");
        assert!(
            t.ends_with("Review: `idsync plan -c /etc/x.toml --out plan.json`, then `idsync approve -c /etc/x.toml plan.json --id ID` (`idsync approvals -c /etc/x.toml` lists pending approvals)."),
            "{t}"
        );
        let b = &m.body;
        assert_eq!(b["version"], 1);
        assert_eq!(b["events"], json!(["held"]));
        assert_eq!(b["result"], "held");
        assert_eq!(b["summary"]["held"], 2);
        assert_eq!(b["held"][0]["id"], "a1");
        assert_eq!(b["held"][0]["guard"], "pipeline-key");
        assert_eq!(
            (b["held"][0]["new"].as_bool(), b["held"][1]["new"].as_bool()),
            (Some(false), Some(true))
        );
        assert_eq!(b["text"], t.as_str());
    }

    #[test]
    fn slack_gets_only_escaped_text() {
        let f = facts(RunResult::Held, Some(vec![item("a1", "ci@example.com")]), 0);
        let m = build(NotifyFormat::Slack, &f, &[NotifyOn::Held], &Memory::default(), None);
        let obj = m.body.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"]);
        let t = m.body["text"].as_str().unwrap();
        assert!(t.contains("&lt;ci&gt; &amp; more"), "{t}");
        assert!(t.contains("`idsync plan --out plan.json`"), "no -c at the default path: {t}");
    }

    #[test]
    fn a_failure_says_what_failed_on_one_line() {
        let f = facts(RunResult::Failure, None, 0);
        let m = build(NotifyFormat::Slack, &f, &[NotifyOn::Failed], &Memory::default(), None);
        assert_eq!(
            m.text,
            "idsync run 20261202T010000Z-abcdef: failure for https://api.wandb.ai (0 applied, 0 failed, 0 skipped)\nError: W&B https://api.wandb.ai: GET /Users failed: 503"
        );
        let j = build(NotifyFormat::Json, &f, &[NotifyOn::Failed], &Memory::default(), None).body;
        assert!(j["held"].is_null() && j["summary"]["held"].is_null(), "unknown, not zero: {j}");
    }

    #[test]
    fn long_lists_are_cut_at_twenty_actions_and_about_three_thousand_characters() {
        let many: Vec<HeldItem> = (0..500).map(|i| item(&format!("id{i:04}"), &format!("u{i}@example.com"))).collect();
        let m = build(
            NotifyFormat::Slack,
            &facts(RunResult::Held, Some(many.clone()), 0),
            &ALL,
            &Memory::default(),
            None,
        );
        assert_eq!(m.text.matches("\n• ").count(), MAX_ITEMS);
        assert!(m.text.contains("… and 480 more (`idsync plan` lists them all)"), "{}", m.text);
        assert!(m.text.len() <= MAX_CHARS, "{} chars", m.text.len());
        // Long reasons fill the budget before twenty lines do.
        let wordy: Vec<HeldItem> = many
            .into_iter()
            .map(|mut a| {
                a.reason = "x".repeat(5_000);
                a
            })
            .collect();
        let m = build(
            NotifyFormat::Json,
            &facts(RunResult::Held, Some(wordy), 0),
            &ALL,
            &Memory::default(),
            None,
        );
        let listed = m.text.matches("\n• ").count();
        assert!((1..MAX_ITEMS).contains(&listed), "{listed}");
        assert!(m.text.contains(&format!("… and {} more", 500 - listed)), "{}", m.text);
        assert!(m.text.len() <= MAX_CHARS + 100, "{} chars", m.text.len());
        assert_eq!(m.body["held"].as_array().unwrap().len(), MAX_ITEMS);
        assert_eq!(m.body["held_total"], 500);
    }

    #[test]
    fn released_holds_say_so_and_unapprovable_ones_say_what_to_do() {
        let f = facts(RunResult::Success, Some(vec![]), 1);
        let m = build(NotifyFormat::Slack, &f, &ALL, &memory(Some(&["a1", "b2"]), None), None);
        assert!(
            m.text
                .ends_with("No action is held any more (2 released or gone since the last message)."),
            "{}",
            m.text
        );
        let mut a = item("c3", "root@example.com");
        a.overridable = false;
        a.guard = Some("last-admin".into());
        let m = build(
            NotifyFormat::Slack,
            &facts(RunResult::Held, Some(vec![a]), 0),
            &ALL,
            &Memory::default(),
            None,
        );
        assert!(m.text.contains("cannot be approved"), "{}", m.text);
        assert!(!m.text.contains("idsync approve "), "{}", m.text);
    }
}
