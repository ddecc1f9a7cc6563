use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::model::{DirectorySnapshot, Email, LastActive, OrgRole, OrgSnapshot, OrgUser, Person, TeamRole};
use crate::plan::{PipelineOwner, Policy, Tombstone, TombstoneCause};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).single().unwrap()
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

/// A small world: a directory, an org and a policy managing example.com.
struct W {
    dir: DirectorySnapshot,
    org: OrgSnapshot,
    policy: Policy,
    tombstones: Vec<Tombstone>,
}

impl W {
    fn new() -> W {
        W {
            dir: DirectorySnapshot {
                kind: "ldif".into(),
                ..Default::default()
            },
            org: OrgSnapshot::default(),
            policy: Policy {
                managed_domains: vec!["example.com".into()],
                ..Policy::default()
            },
            tombstones: Vec::new(),
        }
    }
    fn person(mut self, email: &str, enabled: bool) -> W {
        let uid = email.split('@').next().unwrap().to_string();
        self.dir.people.push(Person {
            anchor: format!("anchor-{uid}-{}", self.dir.people.len()),
            email: Some(email.into()),
            username: uid.clone(),
            display_name: uid.clone(),
            enabled,
            source_ref: format!("uid={uid},ou=people,dc=example,dc=com"),
        });
        self
    }
    /// A W&B user; `last` is days before `now` (None: the server does not say).
    fn user(mut self, email: &str, role: OrgRole, active: bool, last: Option<Duration>) -> W {
        let n = self.org.users.len();
        self.org.users.push(OrgUser {
            id: format!("u{n}"),
            email: email.into(),
            username: email.split('@').next().unwrap_or("x").to_string(),
            display_name: String::new(),
            active,
            org_role: role,
            teams: BTreeMap::new(),
            active_stated: true,
            unstated_team_roles: Default::default(),
            service_account: false,
            last_active: last.map_or(LastActive::Unknown, |d| LastActive::At(now() - d)),
            days_active: last.map(|_| 7),
        });
        self
    }
    /// A W&B user whose `lastActiveAt` is `null`: never active.
    fn never(mut self, email: &str, role: OrgRole, active: bool) -> W {
        self = self.user(email, role, active, None);
        if let Some(u) = self.org.users.last_mut() {
            u.last_active = LastActive::Never;
            u.days_active = Some(0);
        }
        self
    }
    fn report(&self, prices: Option<&SeatPrices>, days: u32) -> SeatReport {
        build(SeatInput {
            directory: &self.dir,
            org: &self.org,
            policy: &self.policy,
            tombstones: &self.tombstones,
            prices,
            inactive_days: days,
            now: now(),
        })
    }
}

fn row<'r>(r: &'r SeatReport, email: &str) -> &'r SeatUser {
    r.users
        .iter()
        .find(|u| u.email == email)
        .unwrap_or_else(|| panic!("{email} not in the report"))
}

fn days(n: i64) -> Option<Duration> {
    Some(Duration::days(n))
}

#[test]
fn seats_are_counted_by_role_and_state() {
    let w = W::new()
        .user("a1@example.com", OrgRole::Admin, true, days(1))
        .user("a2@example.com", OrgRole::Admin, false, days(1))
        .user("m1@example.com", OrgRole::Member, true, days(200))
        .user("m2@example.com", OrgRole::Member, true, None)
        .user("m3@example.com", OrgRole::Member, false, days(400))
        .user("v1@example.com", OrgRole::Viewer, true, days(91))
        .user("o1@example.com", OrgRole::Other("owner".into()), true, days(3));
    let r = w.report(None, 90);
    let s = &r.summary;
    assert_eq!((s.users, s.active, s.deactivated), (7, 5, 2));
    let rc = |role: &str| {
        let c = &s.by_role[role];
        (c.active, c.deactivated, c.inactive)
    };
    assert_eq!(rc("admin"), (1, 1, 0));
    // m3 is inactive for 400 days but deactivated: it holds no seat, so it is not counted.
    assert_eq!(rc("member"), (2, 1, 1));
    assert_eq!(rc("viewer"), (1, 0, 1));
    assert_eq!(rc("owner"), (1, 0, 0));
    assert_eq!((s.inactive, s.activity_unknown), (2, 1));
    assert_eq!(r.metrics().inactive_users, 2);
    // Rows are sorted by email.
    let emails: Vec<&str> = r.users.iter().map(|u| u.email.as_str()).collect();
    let mut sorted = emails.clone();
    sorted.sort();
    assert_eq!(emails, sorted);
}

#[test]
fn service_accounts_listed_by_w_and_b_hold_no_seat_and_are_no_user() {
    let mut w = W::new()
        .person("sa-deploy@example.com", true)
        .user("a1@example.com", OrgRole::Admin, true, days(1))
        .user("sa-deploy@example.com", OrgRole::Admin, true, days(400))
        .user("", OrgRole::Member, true, None);
    for u in &mut w.org.users[1..] {
        u.service_account = true;
    }
    let prices = SeatPrices {
        member: 10.0,
        admin: Some(50.0),
        viewer: None,
    };
    let r = w.report(Some(&prices), 90);
    let s = &r.summary;
    assert_eq!((s.users, s.service_accounts, s.active, s.deactivated), (1, 2, 1, 0));
    assert_eq!(s.by_role["admin"].active, 1);
    assert_eq!((s.inactive, s.activity_unknown, s.no_usable_email, s.in_scope), (0, 0, 0, 1));
    assert_eq!(s.cost.as_ref().unwrap().monthly_total, 50.0);
    assert_eq!(r.users.len(), 1);
}

#[test]
fn an_empty_org_still_lists_the_three_roles() {
    let r = W::new().report(None, 90);
    assert_eq!(r.summary.by_role.keys().collect::<Vec<_>>(), ["admin", "member", "viewer"]);
    assert_eq!(r.summary.users, 0);
    assert!(render_text(&r).contains("none"));
}

#[test]
fn exactly_n_days_is_not_inactive_one_second_more_is() {
    let n = 90;
    let exact = Duration::days(n);
    let w = W::new()
        .user("exact@example.com", OrgRole::Member, true, Some(exact))
        .user("over@example.com", OrgRole::Member, true, Some(exact + Duration::seconds(1)))
        .user("under@example.com", OrgRole::Member, true, Some(exact - Duration::seconds(1)))
        .user("future@example.com", OrgRole::Member, true, Some(Duration::days(-2)));
    let r = w.report(None, n as u32);
    assert_eq!(row(&r, "exact@example.com").inactive, Some(false));
    assert_eq!(row(&r, "exact@example.com").days_since_active, Some(90));
    assert_eq!(row(&r, "over@example.com").inactive, Some(true));
    assert_eq!(row(&r, "over@example.com").days_since_active, Some(90));
    assert_eq!(row(&r, "under@example.com").inactive, Some(false));
    assert_eq!(row(&r, "under@example.com").days_since_active, Some(89));
    // A clock-skewed future timestamp is recent activity, never negative days.
    assert_eq!(row(&r, "future@example.com").inactive, Some(false));
    assert_eq!(row(&r, "future@example.com").days_since_active, Some(0));
    assert_eq!(r.summary.inactive, 1);

    // The threshold is an input: at 89 days all three past ones are more than 89 days old.
    assert_eq!(w.report(None, 89).summary.inactive, 3);
    assert_eq!(inactivity(now() - exact, now(), 90), (90, false));
    assert_eq!(inactivity(now() - exact - Duration::milliseconds(1), now(), 90), (90, true));
}

#[test]
fn unknown_activity_is_reported_as_unknown_never_guessed() {
    let mut w = W::new()
        .person("old@example.com", true)
        .user("old@example.com", OrgRole::Member, true, None);
    // daysActive without lastActiveAt says nothing about *when*: still unknown.
    w.org.users[0].days_active = Some(1000);
    let r = w.report(None, 90);
    let u = row(&r, "old@example.com");
    assert_eq!((u.last_active_at.as_deref(), u.days_since_active, u.inactive), (None, None, None));
    assert_eq!(u.days_active, Some(1000));
    assert_eq!((r.summary.inactive, r.summary.activity_unknown), (0, 1));

    let csv = render_csv(&r);
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let rec = rd.records().next().unwrap().unwrap();
    let col = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
    assert_eq!(&rec[col("last_active_at")], "unknown");
    assert_eq!(&rec[col("days_since_active")], "unknown");
    assert_eq!(&rec[col("inactive")], "unknown");
    assert_eq!(&rec[col("days_active")], "1000");

    let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert!(json["users"][0]["last_active_at"].is_null());
    assert!(json["users"][0]["inactive"].is_null());

    let text = render_text(&r);
    let line = text.lines().find(|l| l.contains("old@example.com")).unwrap();
    assert!(line.contains("unknown"), "{line}");
}

#[test]
fn orphans_externals_and_the_rest_are_classified_by_the_plans_scope() {
    let mut w = W::new()
        .person("here@example.com", true)
        .person("off@example.com", false)
        .person("twice@example.com", true)
        .person("twice@example.com", true)
        .user("here@example.com", OrgRole::Member, true, days(1))
        .user("gone@example.com", OrgRole::Member, true, days(1))
        .user("gone-deactivated@example.com", OrgRole::Member, false, days(1))
        .user("off@example.com", OrgRole::Member, true, days(1))
        .user("twice@example.com", OrgRole::Member, true, days(1))
        .user("breakglass@example.com", OrgRole::Admin, true, days(1))
        .user("idsync-bot@example.com", OrgRole::Admin, true, days(1))
        .user("Ann@Partner.io", OrgRole::Member, true, days(1))
        .user("bo@partner.io", OrgRole::Member, false, days(1))
        .user("cy@gmail.com", OrgRole::Viewer, true, days(1))
        .user("not an email", OrgRole::Member, true, days(1));
    w.policy.ignore_users.insert(email("breakglass@example.com"));
    w.policy.self_username = Some("idsync-bot".into());
    let r = w.report(None, 90);

    let class = |e: &str| {
        let u = row(&r, e);
        (u.scope, u.directory, u.orphan)
    };
    use DirectoryState::*;
    assert_eq!(class("here@example.com"), (Scope::Managed, Enabled, false));
    assert_eq!(class("gone@example.com"), (Scope::Managed, Missing, true));
    // Deactivated users hold no seat: the end state of a deprovision, not an orphan.
    assert_eq!(class("gone-deactivated@example.com"), (Scope::Managed, Missing, false));
    assert_eq!(class("off@example.com"), (Scope::Managed, Disabled, false));
    assert_eq!(class("twice@example.com"), (Scope::Managed, Conflict, false));
    assert_eq!(class("breakglass@example.com"), (Scope::Ignored, Missing, false));
    assert_eq!(class("idsync-bot@example.com"), (Scope::SelfIdentity, Missing, false));
    assert_eq!(class("ann@partner.io"), (Scope::External, Missing, false));
    assert_eq!(class("cy@gmail.com"), (Scope::External, Missing, false));
    assert_eq!(class("not an email"), (Scope::NoEmail, Missing, false));
    assert!(row(&r, "off@example.com").directory_disabled && row(&r, "off@example.com").in_directory);
    assert!(!row(&r, "gone@example.com").in_directory);

    let s = &r.summary;
    assert_eq!(s.orphans, 1);
    assert_eq!(
        r.metrics(),
        SeatMetrics {
            inactive_users: 0,
            orphan_users: 1
        }
    );
    assert_eq!(s.disabled_in_directory, 1);
    assert_eq!(s.in_scope, 5);
    assert_eq!((s.ignored, s.no_usable_email, s.external_users), (1, 1, 3));
    let ext: Vec<(&str, usize, usize)> = s.externals.iter().map(|(d, c)| (d.as_str(), c.users, c.active)).collect();
    assert_eq!(ext, [("gmail.com", 1, 1), ("partner.io", 2, 1)]);

    // seat_metrics, the daemon's entry point, agrees with the report.
    assert_eq!(seat_metrics(&w.dir, &w.org, &w.policy, 90, now()), r.metrics());
}

#[test]
fn cost_prices_active_seats_by_role_with_member_as_the_fallback() {
    let w = W::new()
        .user("a1@example.com", OrgRole::Admin, true, days(1))
        .user("a2@example.com", OrgRole::Admin, true, days(100))
        .user("m1@example.com", OrgRole::Member, true, days(1))
        .user("m2@example.com", OrgRole::Member, true, days(120))
        .user("m3@example.com", OrgRole::Member, true, None)
        .user("m4@example.com", OrgRole::Member, false, days(500))
        .user("v1@example.com", OrgRole::Viewer, true, days(1))
        .user("x1@partner.io", OrgRole::Member, true, days(1));
    let prices = SeatPrices {
        member: 20.5,
        admin: Some(50.0),
        viewer: None,
    };
    let r = w.report(Some(&prices), 90);
    let c = r.summary.cost.as_ref().expect("cost with prices");
    // 2 × 50 + 4 × 20.5 (externals hold seats too; the deactivated one does not) + 1 viewer at the member price.
    assert_eq!(c.by_role["admin"].seats, 2);
    assert_eq!(c.by_role["admin"].monthly, 100.0);
    assert_eq!(c.by_role["member"].seats, 4);
    assert_eq!(c.by_role["member"].monthly, 82.0);
    assert_eq!((c.by_role["viewer"].seats, c.by_role["viewer"].price), (1, 20.5));
    assert!(!c.by_role["viewer"].own_price);
    assert_eq!(c.monthly_total, 202.5);
    // Inactive seats: a2 (admin, 50) and m2 (member, 20.5); unknown m3 is not counted.
    assert_eq!(c.inactive_monthly, 70.5);
    assert_eq!(c.notes.len(), 1);
    assert!(c.notes[0].contains("viewer"), "{:?}", c.notes);
    assert_eq!(row(&r, "m4@example.com").monthly_price, None);
    assert_eq!(row(&r, "a1@example.com").monthly_price, Some(50.0));
    let text = render_text(&r);
    assert!(
        text.contains("estimated monthly cost 202.50 (of which 70.50 for inactive users' seats)"),
        "{text}"
    );

    // Without prices there is no cost, and the report says how to get one.
    let r = w.report(None, 90);
    assert!(r.summary.cost.is_none());
    assert!(r.users.iter().all(|u| u.monthly_price.is_none()));
    assert!(render_text(&r).contains("set [report] seat_price"));
}

#[test]
fn cost_sums_before_rounding() {
    let mut w = W::new();
    for i in 0..3 {
        w = w.user(&format!("m{i}@example.com"), OrgRole::Member, true, days(1));
    }
    let prices = SeatPrices {
        member: 0.333,
        admin: None,
        viewer: Some(0.0),
    };
    let c = w.report(Some(&prices), 90).summary.cost.unwrap();
    assert_eq!(c.monthly_total, 1.0);
    assert!(c.notes.is_empty(), "no admin or viewer seats, nothing stood in: {:?}", c.notes);
}

#[test]
fn tombstones_teams_and_pipeline_owners_are_shown_per_user() {
    let mut w = W::new()
        .user("left@example.com", OrgRole::Member, true, days(1))
        .user("due@example.com", OrgRole::Member, true, days(1))
        .user("ci@example.com", OrgRole::Member, true, days(1));
    w.org.users[0].teams.insert("ml|ops".into(), TeamRole::new("admin"));
    w.org.users[0].teams.insert("a,b \"q\"".into(), TeamRole::new("viewer"));
    w.tombstones = vec![
        Tombstone {
            user: email("left@example.com"),
            since: now() - Duration::hours(1),
            deprovision_after: Some(now() + Duration::hours(71)),
            cause: TombstoneCause::Missing,
        },
        Tombstone {
            user: email("due@example.com"),
            since: now() - Duration::days(5),
            deprovision_after: Some(now() - Duration::days(2)),
            cause: TombstoneCause::Missing,
        },
    ];
    w.policy.guards.pipeline_owners = vec![
        PipelineOwner {
            owner: email("ci@example.com"),
            team: None,
            name: None,
        },
        PipelineOwner {
            owner: email("ci@example.com"),
            team: Some("ml".into()),
            name: Some("nightly-train".into()),
        },
    ];
    let r = w.report(None, 90);
    let left = row(&r, "left@example.com");
    let t = left.tombstone.as_ref().unwrap();
    assert_eq!((t.cause, t.deprovision_due), (TombstoneCause::Missing, false));
    assert_eq!(t.deprovision_after.as_deref(), Some("2026-12-04T11:00:00Z"));
    assert!(row(&r, "due@example.com").tombstone.as_ref().unwrap().deprovision_due);
    assert_eq!(r.summary.tombstones, 2);
    let ci = row(&r, "ci@example.com");
    assert!(ci.pipeline_key_owner);
    assert_eq!(ci.pipelines, ["guards.pipeline_key_owners", "nightly-train (team ml)"]);
    assert_eq!(r.summary.pipeline_key_owners, 1);

    let text = render_text(&r);
    assert!(text.contains("deprovision due"), "{text}");
    assert!(text.contains("missing since 2026-12-01, deprovision after 2026-12-04"), "{text}");

    // Markdown escapes the pipe in a team name so the table keeps its columns.
    let md = render_markdown(&r);
    // The last such line is the user table's (the orphan table comes first).
    let line = md.lines().rfind(|l| l.starts_with("| left@example.com")).unwrap();
    assert!(line.contains("ml\\|ops:admin"), "{line}");
    assert_eq!(line.matches(" | ").count(), USER_COLUMNS.len() - 1, "{line}");
}

#[test]
fn csv_has_a_header_and_parses_back_field_for_field() {
    let mut w = W::new()
        .person("left@example.com", true)
        .user("left@example.com", OrgRole::Admin, true, days(3))
        .user("x@partner.io", OrgRole::Member, false, None);
    w.org.users[0].teams.insert("a,b \"q\"".into(), TeamRole::new("viewer"));
    w.org.users[0].teams.insert("ml".into(), TeamRole::new("admin"));
    let prices = SeatPrices {
        member: 10.0,
        admin: Some(12.25),
        viewer: None,
    };
    let r = w.report(Some(&prices), 90);
    let text = render_csv(&r);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, CSV_HEADER);
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let get = |i: usize, name: &str| rows[i][CSV_HEADER.iter().position(|h| *h == name).unwrap()].to_string();
    assert_eq!(get(0, "email"), "left@example.com");
    assert_eq!(get(0, "teams"), "a,b \"q\":viewer;ml:admin");
    assert_eq!(get(0, "active"), "true");
    assert_eq!(get(0, "inactive"), "false");
    assert_eq!(get(0, "days_since_active"), "3");
    assert_eq!(get(0, "monthly_price"), "12.25");
    assert_eq!(get(0, "directory"), "enabled");
    assert_eq!(get(1, "email"), "x@partner.io");
    assert_eq!(get(1, "scope"), "external");
    assert_eq!(get(1, "monthly_price"), "");
    assert_eq!(get(1, "last_active_at"), "unknown");
}

#[test]
fn json_has_the_documented_shape() {
    let w = W::new()
        .person("a@example.com", true)
        .user("a@example.com", OrgRole::Admin, true, days(100));
    let v: serde_json::Value = serde_json::from_str(&render_json(&w.report(None, 90))).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["report"], "seats");
    assert_eq!(v["generated_at"], "2026-12-01T12:00:00Z");
    assert_eq!(v["summary"]["inactive_days"], 90);
    assert_eq!(
        v["summary"]["by_role"]["admin"],
        serde_json::json!({"active": 1, "deactivated": 0, "inactive": 1})
    );
    assert!(v["summary"]["cost"].is_null());
    let u = &v["users"][0];
    for key in [
        "email",
        "username",
        "org_role",
        "active",
        "teams",
        "last_active_at",
        "days_active",
        "days_since_active",
        "inactive",
        "directory",
        "in_directory",
        "directory_disabled",
        "scope",
        "in_scope",
        "orphan",
        "pipeline_key_owner",
        "pipelines",
        "tombstone",
        "monthly_price",
    ] {
        assert!(u.get(key).is_some(), "users[].{key} missing: {u}");
    }
    assert_eq!(u["last_active_at"], "2026-08-23T12:00:00Z");
    assert_eq!(u["inactive"], true);
    assert_eq!(u["scope"], "managed");
    assert_eq!(u["directory"], "enabled");
}

#[test]
fn every_format_renders_every_user() {
    let mut w = W::new();
    for i in 0..25 {
        w = w.user(&format!("u{i}@example.com"), OrgRole::Member, i % 3 != 0, days(i * 10));
    }
    let r = w.report(None, 90);
    for f in [SeatFormat::Text, SeatFormat::Markdown, SeatFormat::Json, SeatFormat::Csv] {
        let out = render(&r, f);
        for i in 0..25 {
            assert!(out.contains(&format!("u{i}@example.com")), "{f:?} lacks u{i}");
        }
    }
}

#[test]
fn text_and_markdown_show_the_same_sections_in_the_same_order() {
    let r = W::new().report(None, 90);
    let text = render_text(&r);
    let md = render_markdown(&r);
    let titles: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ') && l.ends_with(':')).collect();
    let md_titles: Vec<String> = md.lines().filter_map(|l| l.strip_prefix("### ")).map(|t| format!("{t}:")).collect();
    assert_eq!(
        titles,
        [
            "Seats by org role:",
            "Inactive for more than 90 days (0):",
            "Orphans: in a managed domain, not in the directory (0):",
            "External collaborators by domain (0):",
            "Users (0):"
        ]
    );
    assert_eq!(md_titles, titles);
    // Empty sections say so in each format's way.
    assert!(
        text.contains("Orphans: in a managed domain, not in the directory (0):\n  none\n"),
        "{text}"
    );
    assert!(md.contains("### Users (0)\n\nNone.\n"), "{md}");
}

#[test]
fn null_last_active_is_never_active_listed_and_priced_as_inactive() {
    let w = W::new()
        .person("new@example.com", true)
        .person("old@example.com", true)
        .person("unk@example.com", true)
        .user("old@example.com", OrgRole::Member, true, days(200))
        .user("unk@example.com", OrgRole::Member, true, None)
        .never("new@example.com", OrgRole::Member, true)
        .never("left@example.com", OrgRole::Member, false);
    let prices = SeatPrices {
        member: 10.0,
        admin: None,
        viewer: None,
    };
    let r = w.report(Some(&prices), 90);
    let new = row(&r, "new@example.com");
    assert!(new.never_active);
    assert_eq!(
        (new.last_active_at.as_deref(), new.days_since_active, new.inactive),
        (None, None, Some(true))
    );
    // Only a missing lastActiveAt is unknown.
    let unk = row(&r, "unk@example.com");
    assert!(!unk.never_active);
    assert_eq!(unk.inactive, None);
    let s = &r.summary;
    assert_eq!((s.inactive, s.never_active, s.activity_unknown), (2, 1, 1));
    assert_eq!(s.by_role["member"].inactive, 2);
    // The seat of an invited user who never came is a seat to reclaim.
    assert_eq!(s.cost.as_ref().unwrap().inactive_monthly, 20.0);
    assert_eq!(r.metrics().inactive_users, 2);

    let text = render_text(&r);
    assert!(
        text.contains("\n  1 active user never active (W&B reports lastActiveAt: null)"),
        "{text}"
    );
    assert!(text.contains("activity unknown for 1 active user (the server"), "{text}");
    assert!(!text.contains("does not report lastActiveAt for them"), "{text}");
    // Listed with the inactive users, never-active first.
    let section = text.split("Inactive for more than 90 days (2):\n").nth(1).unwrap();
    let rows: Vec<&str> = section.lines().skip(1).take(2).collect();
    assert!(rows[0].contains("new@example.com") && rows[0].contains("never"), "{rows:?}");
    assert!(rows[1].contains("old@example.com"), "{rows:?}");

    let csv = render_csv(&r);
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let recs: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    let col = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
    let new_rec = recs.iter().find(|r| &r[0] == "new@example.com").unwrap();
    assert_eq!(&new_rec[col("last_active_at")], "never");
    assert_eq!(&new_rec[col("inactive")], "true");
    let unk_rec = recs.iter().find(|r| &r[0] == "unk@example.com").unwrap();
    assert_eq!(&unk_rec[col("last_active_at")], "unknown");

    let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(json["summary"]["never_active"], 1);
    let u = json["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "new@example.com")
        .unwrap();
    assert!(
        u["last_active_at"].is_null() && u["never_active"] == true && u["inactive"] == true,
        "{u}"
    );
}

#[test]
fn the_inactive_flag_is_set_only_for_seats_the_summary_counts() {
    let w = W::new()
        .user("recent@example.com", OrgRole::Member, true, days(1))
        .user("old@example.com", OrgRole::Member, true, days(200))
        .user("unk@example.com", OrgRole::Member, true, None)
        .user("off-old@example.com", OrgRole::Member, false, days(400))
        .user("off-unk@example.com", OrgRole::Member, false, None)
        .never("off-never@example.com", OrgRole::Member, false);
    let r = w.report(None, 90);
    for u in r.users.iter().filter(|u| !u.active) {
        // A deactivated user holds no seat: never "inactive", whatever its activity.
        assert_eq!(u.inactive, Some(false), "{}", u.email);
    }
    assert_eq!(row(&r, "off-old@example.com").days_since_active, Some(400));
    let flagged = r.users.iter().filter(|u| u.inactive == Some(true)).count();
    assert_eq!((flagged, r.summary.inactive), (1, 1));
    let unknown = r.users.iter().filter(|u| u.inactive.is_none()).count();
    assert_eq!((unknown, r.summary.activity_unknown), (1, 1));
}

#[test]
fn counts_of_one_are_singular() {
    let mut w = W::new()
        .person("here@example.com", true)
        .user("here@example.com", OrgRole::Member, true, days(0))
        .user("gone@example.com", OrgRole::Member, true, days(200))
        .never("new@example.com", OrgRole::Member, true)
        .user("x@partner.io", OrgRole::Member, true, None)
        .user("", OrgRole::Member, true, days(0));
    w.org.users[4].service_account = true;
    w.policy.guards.pipeline_owners = vec![PipelineOwner {
        owner: email("here@example.com"),
        team: None,
        name: None,
    }];
    let r = w.report(None, 1);
    let text = render_text(&r);
    let summary: String = text.lines().take_while(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
    for good in [
        "4 W&B users: 4 active (seats in use), 0 deactivated",
        "2 active users inactive for more than 1 day",
        "1 active user never active",
        "activity unknown for 1 active user (",
        "3 in scope; 2 orphans (",
        "1 external collaborator in 1 domain;",
        "1 pipeline-key owner",
        "1 service account listed by W&B",
    ] {
        assert!(summary.contains(good), "{good:?} not in\n{summary}");
    }
    for bad in [
        "1 orphans",
        "1 domains",
        "1 days",
        "1 external collaborators",
        "1 active users",
        "1 pipeline-key owners",
    ] {
        assert!(!text.contains(bad), "{bad:?} in\n{text}");
    }
    assert!(text.contains("Inactive for more than 1 day (2):"), "{text}");
}

#[test]
fn the_text_report_fits_100_columns_and_wide_shows_every_cell_whole() {
    let long = "a.very.long.first-name.and.surname@research.example.com";
    let teams: Vec<String> = (0..12).map(|i| format!("research-team-number-{i}")).collect();
    let mut w = W::new()
        .user(long, OrgRole::Other("a-custom-org-role-with-a-long-name".into()), true, days(120))
        .user("ci@example.com", OrgRole::Member, true, days(1));
    for t in &teams {
        w.org.users[0].teams.insert(t.clone(), TeamRole::new("admin"));
    }
    w.tombstones = vec![Tombstone {
        user: email(long),
        since: now() - Duration::hours(1),
        deprovision_after: Some(now() + Duration::hours(71)),
        cause: TombstoneCause::Missing,
    }];
    w.policy.guards.pipeline_owners = vec![PipelineOwner {
        owner: email(long),
        team: Some("research-team-number-1".into()),
        name: Some("the-nightly-training-pipeline-of-the-research-department".into()),
    }];
    let r = w.report(None, 90);
    let text = render_text(&r);
    for l in text.lines() {
        assert!(l.chars().count() <= 100, "{} columns:\n{l}\n\n{text}", l.chars().count());
    }
    // Wrapped, not lost: the email whole on its own line, every team on a detail line.
    assert!(text.lines().any(|l| l.trim() == long), "{text}");
    for t in &teams {
        assert!(text.contains(&format!("{t}:admin")), "{t} missing:\n{text}");
    }
    assert!(text.contains("pipeline key: the-nightly-training-pipeline"), "{text}");
    assert!(
        text.contains("tombstone: missing since 2026-12-01, deprovision after 2026-12-04"),
        "{text}"
    );
    // A cell that is cut says so.
    assert!(
        text.lines()
            .any(|l| l.contains("a-custom-org-role") && l.contains('…') && !l.contains("with-a-long-name")),
        "{text}"
    );

    let wide = render_with(&r, SeatFormat::Text, Layout::Wide);
    assert!(!wide.contains('…'), "{wide}");
    let line = wide.lines().rfind(|l| l.trim_start().starts_with(long)).unwrap();
    assert!(line.chars().count() > 100);
    assert!(
        line.contains("a-custom-org-role-with-a-long-name") && line.contains("research-team-number-9:admin"),
        "{line}"
    );
    // The default layout of `render` is the one that fits.
    assert_eq!(render(&r, SeatFormat::Text), text);
}
