use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::model::Email;
use crate::plan::{Action, ActionKind, Guard, Hold, Plan, Skipped, SourceSummary, Status, TargetSummary, Tombstone, TombstoneCause};

const NO_COLOR: RenderOptions = RenderOptions {
    color: false,
    plan_file: None,
};
const COLOR: RenderOptions = RenderOptions {
    color: true,
    plan_file: None,
};

fn t(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, h, 0, 0).single().unwrap()
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn empty_plan() -> Plan {
    Plan {
        version: 1,
        generated_at: t(12),
        source: SourceSummary {
            kind: "ldap".into(),
            users: 4,
            groups: 2,
            ..SourceSummary::default()
        },
        target: TargetSummary { users: 3, teams: 1 },
        summary: BTreeMap::new(),
        actions: Vec::new(),
        tombstones: Vec::new(),
        skipped: Vec::new(),
        roster_before: vec!["alice@example.com  admin  ml:admin".into()],
        roster_after: vec!["alice@example.com  admin  ml:admin".into()],
        identity_pending: Default::default(),
        undo: None,
    }
}

fn create(user: &str) -> Action {
    Action::new(
        ActionKind::CreateUser,
        Some(email(user)),
        None,
        None,
        format!("uid={user} is in cn=wandb-users"),
    )
}

fn add_to_team(user: &str, team: &str, role: &str) -> Action {
    let mut a = Action::new(
        ActionKind::AddToTeam,
        Some(email(user)),
        Some(team.into()),
        Some(role.into()),
        format!("member of cn={team}"),
    );
    a.to = Some(role.into());
    a
}

fn set_org_role(user: &str, from: &str, to: &str) -> Action {
    let mut a = Action::new(
        ActionKind::SetOrgRole,
        Some(email(user)),
        None,
        Some(to.into()),
        "in no org-role group".into(),
    );
    a.from = Some(from.into());
    a.to = Some(to.into());
    a
}

fn deprovision(user: &str) -> Action {
    let mut a = Action::new(
        ActionKind::DeprovisionUser,
        Some(email(user)),
        None,
        None,
        "missing from the directory since 2024-04-28T12:00:00Z (grace 72h expired)".into(),
    );
    a.from = Some("active".into());
    a.to = Some("removed from org".into());
    a
}

fn hold(mut a: Action, guard: Guard, reason: &str) -> Action {
    a.status = Status::Held;
    a.guard = Some(guard);
    a.held_reason = Some(reason.into());
    a.holds.push(Hold {
        guard,
        reason: reason.into(),
    });
    a
}

/// A plan with every section filled: ready actions of each marker, an overridable and a
/// non-overridable hold, a dependent hold, tombstones, skipped entries and a roster change.
fn full_plan() -> Plan {
    let dana_create = create("dana@example.com");
    let mut dana_team = add_to_team("dana@example.com", "ml-research", "member");
    dana_team.depends_on.push(dana_create.id.clone());

    let ci_create = hold(create("ci2@example.com"), Guard::SeatLimit, "max_seats = 3 reached");
    let mut ci_team = hold(
        add_to_team("ci2@example.com", "ml-research", "member"),
        Guard::SeatLimit,
        &format!("depends on held action {} (create_user ci2@example.com)", ci_create.id),
    );
    ci_team.depends_on.push(ci_create.id.clone());

    let alice_demote = hold(
        set_org_role("alice@example.com", "admin", "member"),
        Guard::LastAdmin,
        "would leave 0 active org admins (min_org_admins = 1)",
    );
    let mut bot = hold(
        deprovision("ci-bot@example.com"),
        Guard::PipelineKey,
        "ci-bot@example.com owns pipeline keys (guards.pipeline_key_owners)",
    );
    bot.holds.push(Hold {
        guard: Guard::MassDeprovision,
        reason: "2 deprovisions exceed max_deprovisions = 1".into(),
    });

    let mut plan = empty_plan();
    plan.actions = vec![
        dana_create,
        ci_create,
        dana_team,
        ci_team,
        alice_demote,
        deprovision("frank@example.com"),
        bot,
    ];
    plan.tombstones = vec![
        Tombstone {
            user: email("eve@example.com"),
            since: t(1),
            deprovision_after: Some(t(13)),
            cause: TombstoneCause::Missing,
        },
        Tombstone {
            user: email("gus@example.com"),
            since: t(2),
            deprovision_after: None,
            cause: TombstoneCause::Disabled,
        },
    ];
    plan.skipped = vec![Skipped {
        entry: "uid=noemail,ou=people,dc=example,dc=com".into(),
        why: "no usable email".into(),
    }];
    plan.roster_before = vec![
        "alice@example.com  admin  ml-research:admin".into(),
        "ci-bot@example.com  member".into(),
        "frank@example.com  member  ml-research:member".into(),
    ];
    plan.roster_after = vec![
        "alice@example.com  admin  ml-research:admin".into(),
        "ci-bot@example.com  member".into(),
        "dana@example.com  member  ml-research:member".into(),
    ];
    plan
}

fn text(plan: &Plan) -> String {
    render(plan, Format::Text, &NO_COLOR)
}

fn markdown(plan: &Plan) -> String {
    render(plan, Format::Markdown, &NO_COLOR)
}

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

#[test]
fn empty_plan_text_says_in_sync() {
    let out = text(&empty_plan());
    assert_eq!(
        out,
        "idsync plan, generated 2024-05-01T12:00:00Z\n\
         Source ldap: 4 people, 2 groups. W&B: 3 users, 1 team.\n\
         In sync: no changes.\n\
         \n\
         Roster: no roster changes.\n"
    );
}

#[test]
fn empty_plan_markdown_says_in_sync_without_tables() {
    let out = markdown(&empty_plan());
    assert!(out.starts_with("## idsync plan\n"));
    assert!(out.contains("**In sync: no changes.**"));
    assert!(!out.contains("| change | count |"));
    assert!(out.contains("_no roster changes._"));
}

const SHRANK: &str = "the directory shrank from 100 to 40 enabled people";

fn suspicious_plan() -> Plan {
    let mut plan = empty_plan();
    plan.source.suspicious = Some(SHRANK.into());
    plan
}

#[test]
fn a_suspicious_read_is_never_reported_in_sync_and_says_why_in_text() {
    let out = text(&suspicious_plan());
    assert!(!out.contains("In sync"), "{out}");
    let warning = line_with(&out, "SUSPICIOUS");
    assert!(warning.contains(SHRANK), "{out}");
    assert!(out.contains("no tombstone clock starts"), "{out}");
    assert!(out.contains("idsync approve"), "the way to accept a real shrink: {out}");
}

#[test]
fn a_suspicious_read_says_why_in_markdown() {
    let out = markdown(&suspicious_plan());
    assert!(!out.contains("In sync"), "{out}");
    assert!(out.contains("Suspicious directory read") && out.contains(SHRANK), "{out}");
}

#[test]
fn a_suspicious_read_says_why_in_json_and_a_healthy_one_keeps_the_spec_source() {
    let v: serde_json::Value = serde_json::from_str(&render_json(&suspicious_plan())).unwrap();
    assert_eq!(
        v["source"],
        serde_json::json!({"kind": "ldap", "users": 4, "groups": 2, "suspicious": SHRANK})
    );
    let back = parse_plan_json(&render_json(&suspicious_plan())).unwrap();
    assert_eq!(
        back.source.suspicious.as_deref(),
        Some(SHRANK),
        "`show` of a saved plan says it too"
    );
    let v: serde_json::Value = serde_json::from_str(&render_json(&empty_plan())).unwrap();
    assert_eq!(v["source"], serde_json::json!({"kind": "ldap", "users": 4, "groups": 2}));
}

#[test]
fn tombstones_alone_do_not_break_in_sync() {
    let mut plan = empty_plan();
    plan.tombstones = full_plan().tombstones;
    let out = text(&plan);
    assert!(out.contains("In sync: no changes. 2 tombstones.\n"), "{out}");
}

#[test]
fn text_summary_counts_ready_kinds_held_and_extras() {
    let out = text(&full_plan());
    assert!(
        out.contains(
            "Plan: 1 user to create, 1 team addition, 1 to deprovision, 4 held. \
             2 tombstones, 1 skipped.\n"
        ),
        "{out}"
    );
}

#[test]
fn text_has_every_section_in_order() {
    let out = text(&full_plan());
    let order = [
        "idsync plan, generated",
        "Ready actions (3):",
        "Held (needs a human) (4):",
        "Tombstones (2):",
        "Skipped (1):",
        "Roster:",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|h| out.find(h).unwrap_or_else(|| panic!("missing {h:?} in:\n{out}")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
}

#[test]
fn ready_actions_are_one_line_each_with_marker_id_and_reason() {
    let plan = full_plan();
    let out = text(&plan);
    let dana = &plan.actions[0];
    assert_eq!(
        line_with(&out, &dana.id.to_string()),
        format!(
            "+ {} create_user      dana@example.com                             \
             reason: uid=dana@example.com is in cn=wandb-users",
            dana.id
        )
    );
    let team = line_with(&out, &plan.actions[2].id.to_string());
    assert!(team.starts_with("+ "), "{team}");
    assert!(team.contains("ml-research (as member)"), "{team}");
    let frank = line_with(&out, &plan.actions[5].id.to_string());
    assert!(frank.starts_with("- "), "{frank}");
    assert!(
        frank.contains("active → removed from org  reason: missing from the directory"),
        "{frank}"
    );
}

#[test]
fn role_changes_are_marked_with_tilde() {
    let mut plan = empty_plan();
    plan.actions = vec![set_org_role("bob@example.com", "member", "admin")];
    let out = text(&plan);
    let l = line_with(&out, "bob@example.com");
    assert!(l.starts_with("~ "), "{l}");
    assert!(l.contains("set_org_role bob@example.com member → admin"), "{l}");
    assert!(out.contains("Plan: 1 org role change.\n"), "{out}");
}

#[test]
fn held_actions_show_guard_reason_and_approval_command() {
    let plan = full_plan();
    let out = text(&plan);
    let bot = &plan.actions[6];
    let section = &out[out.find("  pipeline-key").unwrap()..];
    let block: Vec<&str> = section.lines().take(6).collect();
    assert_eq!(block[0], "  pipeline-key");
    assert!(block[1].starts_with(&format!("    - {} deprovision_user", bot.id)));
    assert_eq!(
        block[2],
        "        held: ci-bot@example.com owns pipeline keys (guards.pipeline_key_owners)"
    );
    assert_eq!(
        block[3],
        "        also held by mass-deprovision: 2 deprovisions exceed max_deprovisions = 1"
    );
    assert!(block[4].starts_with("        reason: missing from the directory"));
    assert_eq!(block[5], format!("        to release: idsync approve PLAN.json --id {}", bot.id));
}

#[test]
fn non_overridable_holds_say_they_cannot_be_approved() {
    let plan = full_plan();
    let out = text(&plan);
    let section = &out[out.find("  last-admin").unwrap()..];
    let block: Vec<&str> = section.lines().take(5).collect();
    assert_eq!(block[0], "  last-admin (not overridable by approval)");
    assert!(block[1].contains(&plan.actions[4].id.to_string()));
    assert_eq!(block[4], "        cannot be approved: fix the directory or the config");
    // The non-overridable group comes before the overridable ones.
    assert!(out.find("  last-admin").unwrap() < out.find("  seat-limit").unwrap());
}

#[test]
fn dependent_holds_are_released_by_approving_the_chain() {
    let plan = full_plan();
    let out = text(&plan);
    let (create, team) = (&plan.actions[1].id, &plan.actions[3].id);
    assert!(
        out.contains(&format!("        to release: idsync approve PLAN.json --id {create} --id {team}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("        to release: idsync approve PLAN.json --id {create}\n")));
}

#[test]
fn a_dependent_of_a_non_overridable_hold_cannot_be_approved() {
    let base = hold(
        set_org_role("alice@example.com", "admin", "member"),
        Guard::SelfIdentity,
        "idsync itself",
    );
    let mut dep = hold(add_to_team("alice@example.com", "ml", "member"), Guard::SeatLimit, "seats");
    dep.depends_on.push(base.id.clone());
    let mut plan = empty_plan();
    plan.actions = vec![base, dep.clone()];
    let by_id = plan.actions.iter().map(|a| (&a.id, a)).collect();
    assert_eq!(Release::of(&by_id, &dep), Release::Never);
}

#[test]
fn a_dependency_cycle_in_an_edited_plan_does_not_hang() {
    let mut a = hold(create("a@example.com"), Guard::SeatLimit, "seats");
    let mut b = hold(add_to_team("a@example.com", "ml", "member"), Guard::SeatLimit, "seats");
    a.depends_on.push(b.id.clone());
    b.depends_on.push(a.id.clone());
    let mut plan = empty_plan();
    plan.actions = vec![a.clone(), b.clone()];
    let out = text(&plan);
    assert!(
        out.contains(&format!("to release: idsync approve PLAN.json --id {} --id {}\n", b.id, a.id)),
        "{out}"
    );
}

#[test]
fn tombstones_show_since_and_deprovision_after_or_never() {
    let out = text(&full_plan());
    assert!(out.contains(
        "  eve@example.com  missing from the directory since 2024-05-01T01:00:00Z, \
         deprovision after 2024-05-01T13:00:00Z\n"
    ));
    assert!(out.contains(
        "  gus@example.com  disabled in the directory since 2024-05-01T02:00:00Z, \
         deprovision after never (deprovision = off)\n"
    ));
}

#[test]
fn skipped_entries_show_why() {
    let out = text(&full_plan());
    assert!(out.contains("  uid=noemail,ou=people,dc=example,dc=com: no usable email\n"));
}

#[test]
fn roster_diff_shows_removed_and_added_users() {
    let out = text(&full_plan());
    let diff = &out[out.find("Roster:").unwrap()..];
    assert_eq!(
        diff,
        "Roster:\n\
         --- W&B now\n\
         +++ after ready actions\n\
         @@ -1,3 +1,3 @@\n \
         alice@example.com  admin  ml-research:admin\n \
         ci-bot@example.com  member\n\
         -frank@example.com  member  ml-research:member\n\
         +dana@example.com  member  ml-research:member\n"
    );
}

#[test]
fn roster_diff_keeps_only_nearby_context() {
    let mut plan = empty_plan();
    plan.roster_before = (0..20).map(|i| format!("u{i:02}@example.com  member")).collect();
    plan.roster_after = plan.roster_before.clone();
    plan.roster_after[10] = "u10@example.com  admin".into();
    let lines = roster_diff(&plan);
    let strs: Vec<&str> = lines.iter().map(DiffLine::as_str).collect();
    assert_eq!(
        strs,
        [
            "--- W&B now",
            "+++ after ready actions",
            "@@ -9,5 +9,5 @@",
            " u08@example.com  member",
            " u09@example.com  member",
            "-u10@example.com  member",
            "+u10@example.com  admin",
            " u11@example.com  member",
            " u12@example.com  member",
        ]
    );
}

#[test]
fn no_ansi_without_color_and_ansi_with_it() {
    let plan = full_plan();
    let plain = render(&plan, Format::Text, &NO_COLOR);
    assert!(!plain.contains('\x1b'), "{plain}");
    let colored = render(&plan, Format::Text, &COLOR);
    assert!(colored.contains("\x1b[32m+ "), "green for additions");
    assert!(colored.contains("\x1b[31m- "), "red for removals");
    assert!(colored.contains("\x1b[1;33mHeld (needs a human)"), "held header");
    assert!(colored.contains("\x1b[31m-frank@example.com"), "red diff line");
    assert!(colored.contains("\x1b[32m+dana@example.com"), "green diff line");
    // Colour only decorates: stripping it gives the plain report back.
    assert_eq!(strip_ansi(&colored), plain);
}

#[test]
fn markdown_and_json_never_have_ansi() {
    let plan = full_plan();
    for f in [Format::Markdown, Format::Json] {
        assert!(!render(&plan, f, &COLOR).contains('\x1b'), "{f}");
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn markdown_has_every_section() {
    let plan = full_plan();
    let out = markdown(&plan);
    for needle in [
        "## idsync plan\n",
        "| change | count |\n|---|---:|\n| user to create | 1 |\n",
        "| held | 4 |\n",
        "### Ready actions (3)\n\n| id | kind | user | team | change | reason |\n|---|---|---|---|---|---|\n",
        "### Held (needs a human) (4)\n",
        "#### `last-admin` (not overridable by approval)\n",
        "#### `pipeline-key`\n",
        "### Tombstones (2)\n",
        "| gus@example.com | disabled | 2024-05-01T02:00:00Z | never (deprovision = off) |\n",
        "### Skipped (1)\n\n- uid=noemail,ou=people,dc=example,dc=com: no usable email\n",
        "```diff\n--- W&B now\n+++ after ready actions\n@@ -1,3 +1,3 @@\n",
        "-frank@example.com  member  ml-research:member\n+dana@example.com  member  ml-research:member\n```\n",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let bot = &plan.actions[6].id;
    assert!(out.contains(&format!(
        "also `mass-deprovision`: 2 deprovisions exceed max_deprovisions = 1 | \
         missing from the directory since 2024-04-28T12:00:00Z (grace 72h expired) | \
         `idsync approve PLAN.json --id {bot}` |\n"
    )));
    assert!(out.contains("| cannot be approved: fix the directory or the config |\n"));
}

#[test]
fn markdown_ready_row_is_exact() {
    let plan = full_plan();
    let out = markdown(&plan);
    let id = &plan.actions[2].id;
    assert!(out.contains(&format!(
        "| `{id}` | `add_to_team` | dana@example.com | ml-research | as member | member of cn=ml-research |\n"
    )));
}

#[test]
fn markdown_escapes_pipes_and_markup_in_cells() {
    let mut plan = empty_plan();
    let mut a = add_to_team("bob@example.com", "a|b", "member");
    a.reason = "group cn=x|y,dc=*z* [1]\nsecond line".into();
    plan.actions = vec![a];
    let out = markdown(&plan);
    let row = line_with(&out, "bob@example.com");
    assert!(row.contains("| a\\|b |"), "{row}");
    assert!(row.ends_with("| group cn=x\\|y,dc=\\*z\\* \\[1\\] second line |"), "{row}");
    // Header, separator and row: no stray cell breaks.
    assert_eq!(row.matches(" | ").count(), 5, "{row}");
}

#[test]
fn markdown_diff_fence_outgrows_backticks_in_the_roster() {
    let mut plan = empty_plan();
    plan.roster_after = vec!["alice@example.com  admin  ```weird:admin".into()];
    let out = markdown(&plan);
    assert!(out.contains("````diff\n"), "{out}");
    assert!(out.ends_with("\n````\n"), "{out}");
}

#[test]
fn rendering_is_deterministic() {
    let plan = full_plan();
    for f in [Format::Text, Format::Markdown, Format::Json] {
        for opts in [NO_COLOR, COLOR] {
            assert_eq!(render(&plan, f, &opts), render(&plan.clone(), f, &opts));
        }
    }
}

#[test]
fn json_round_trips() {
    let plan = full_plan();
    let json = render_json(&plan);
    let back = parse_plan_json(&json).unwrap();
    // Everything but the summary is the plan itself; the summary is filled in full.
    assert_eq!(
        Plan {
            summary: plan.summary.clone(),
            ..back.clone()
        },
        plan
    );
    assert_eq!(render_json(&back), json);
}

#[test]
fn streamed_json_is_the_plan_serialised_with_the_full_summary() {
    // write_json borrows the plan instead of cloning it: the text must stay exactly what
    // serialising the plan itself (with the full summary) gives, field order included.
    let plan = full_plan();
    let mut full = plan.clone();
    let v: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    full.summary = serde_json::from_value(v["summary"].clone()).unwrap();
    assert_eq!(render_json(&plan), serde_json::to_string_pretty(&full).unwrap() + "\n");
    let mut streamed = Vec::new();
    crate::report::write_json(&plan, &mut streamed).unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), render_json(&plan));
}

#[test]
fn json_has_the_spec_shape_with_nulls() {
    let plan = full_plan();
    let v: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["generated_at"], "2024-05-01T12:00:00Z");
    assert_eq!(v["source"], serde_json::json!({"kind": "ldap", "users": 4, "groups": 2}));
    assert_eq!(v["target"], serde_json::json!({"users": 3, "teams": 1}));
    assert_eq!(
        v["summary"],
        serde_json::json!({
            "create_team": 0, "create_user": 1, "reactivate_user": 0, "set_org_role": 0,
            "add_to_team": 1, "set_team_role": 0, "remove_from_team": 0,
            "deprovision_user": 1, "held": 4
        })
    );
    let first = v["actions"][0].as_object().unwrap();
    for field in [
        "id",
        "kind",
        "user",
        "team",
        "role",
        "from",
        "to",
        "reason",
        "status",
        "guard",
        "held_reason",
    ] {
        assert!(first.contains_key(field), "action lacks {field}");
    }
    assert_eq!(first["kind"], "create_user");
    assert_eq!(first["user"], "dana@example.com");
    assert_eq!(first["status"], "ready");
    for null in ["team", "role", "from", "to", "guard", "held_reason"] {
        assert!(first[null].is_null(), "{null} should be null");
    }
    let bot = &v["actions"][6];
    assert_eq!(bot["status"], "held");
    assert_eq!(bot["guard"], "pipeline-key");
    assert_eq!(
        v["tombstones"][0],
        serde_json::json!({
            "user": "eve@example.com", "since": "2024-05-01T01:00:00Z",
            "deprovision_after": "2024-05-01T13:00:00Z", "cause": "missing"
        })
    );
    assert!(v["tombstones"][1]["deprovision_after"].is_null());
}

#[test]
fn json_keeps_the_spec_field_order() {
    let json = render_json(&full_plan());
    let top = [
        "\"version\"",
        "\"generated_at\"",
        "\"source\"",
        "\"target\"",
        "\"summary\"",
        "\"actions\"",
        "\"tombstones\"",
    ];
    let pos: Vec<usize> = top.iter().map(|k| json.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn parse_rejects_unknown_versions_clearly() {
    let json = render_json(&full_plan()).replacen("\"version\": 1", "\"version\": 2", 1);
    let err = parse_plan_json(&json).unwrap_err().to_string();
    assert_eq!(
        err,
        "plan version 2 is not supported: this idsync reads version 1 \
         (re-create the plan with `idsync plan --out PLAN.json`)"
    );
    let err = parse_plan_json("{\"actions\": []}").unwrap_err().to_string();
    assert!(err.contains("no \"version\" field"), "{err}");
}

#[test]
fn parse_reports_where_broken_json_is() {
    let err = parse_plan_json("{\"version\": 1,\n \"actions\": [}").unwrap_err().to_string();
    assert!(err.starts_with("not a valid idsync plan: "), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn parse_rejects_actions_whose_id_does_not_match() {
    let plan = full_plan();
    let json = render_json(&plan).replacen("\"user\": \"frank@example.com\"", "\"user\": \"mallory@example.com\"", 1);
    let err = parse_plan_json(&json).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "plan file is inconsistent: action {} does not match its kind, user, team and role",
            plan.actions[5].id
        )),
        "{err}"
    );
}

#[test]
fn parse_rejects_non_normalised_emails() {
    let json = render_json(&full_plan()).replacen("\"user\": \"eve@example.com\"", "\"user\": \"Eve@Example.com\"", 1);
    let err = parse_plan_json(&json).unwrap_err().to_string();
    assert!(err.contains("\"Eve@Example.com\" is not a lower-case email"), "{err}");
}

#[test]
fn format_parses_from_strings_and_clap() {
    assert_eq!("text".parse::<Format>().unwrap(), Format::Text);
    assert_eq!("Markdown".parse::<Format>().unwrap(), Format::Markdown);
    assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
    assert_eq!(
        "yaml".parse::<Format>().unwrap_err().to_string(),
        "unknown report format \"yaml\": expected text, markdown or json"
    );
    use clap::ValueEnum;
    let names: Vec<String> = Format::value_variants()
        .iter()
        .filter_map(|f| f.to_possible_value())
        .map(|p| p.get_name().to_string())
        .collect();
    assert_eq!(names, ["text", "markdown", "json"]);
    for f in Format::value_variants() {
        assert_eq!(f.to_string().parse::<Format>().unwrap(), *f);
    }
}

#[test]
fn render_json_matches_render_with_json_format() {
    let plan = full_plan();
    assert_eq!(render(&plan, Format::Json, &NO_COLOR), render_json(&plan));
}

#[test]
fn approved_ready_actions_say_which_guards_were_overridden() {
    let mut a = deprovision("ci-bot@example.com");
    a.approved = true;
    a.holds.push(Hold {
        guard: Guard::PipelineKey,
        reason: "owns pipeline keys".into(),
    });
    let mut plan = empty_plan();
    plan.actions = vec![a];
    assert!(text(&plan).contains(" [approved over pipeline-key]\n"));
    assert!(markdown(&plan).contains(" (approved over pipeline-key) |\n"));
}

#[test]
fn an_undo_plan_names_its_run_lists_what_it_left_out_and_warns_in_every_format() {
    let mut plan = empty_plan();
    plan.actions.push(create("bob@example.com"));
    plan.undo = Some(crate::plan::UndoInfo {
        run_id: "20261201T090000Z-abcdef".into(),
        left_out: vec![Skipped {
            entry: "add_to_team carol@example.com team ml".into(),
            why: "superseded: run r2 applied remove_from_team carol@example.com team ml at 2026-12-01T10:00:00Z".into(),
        }],
        warnings: vec!["bob@example.com: the directory does not list this person".into()],
    });
    let text = render(&plan, Format::Text, &RenderOptions::default());
    assert!(text.starts_with("idsync undo of run 20261201T090000Z-abcdef"), "{text}");
    assert!(
        text.contains("Not undone (1):\n  add_to_team carol@example.com team ml: superseded: run r2"),
        "{text}"
    );
    assert!(text.contains("Warnings (1):\n  bob@example.com: the directory"), "{text}");
    let md = render(&plan, Format::Markdown, &RenderOptions::default());
    assert!(md.contains("### Undo of run 20261201T090000Z-abcdef"), "{md}");
    assert!(md.contains("- not undone: ") && md.contains("superseded: run r2"), "{md}");
    assert!(md.contains("**warning:** bob@example.com"), "{md}");
    // Saved and read back, it is still an undo plan: `apply --plan` re-derives the undo.
    let back = parse_plan_json(&render_json(&plan)).unwrap();
    assert_eq!(back.undo, plan.undo);
    // A directory plan's JSON has no `undo` key at all.
    let v: serde_json::Value = serde_json::from_str(&render_json(&empty_plan())).unwrap();
    assert!(v.get("undo").is_none());
}
