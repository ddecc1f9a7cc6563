//! Seat report benchmark (issue 6): the report for 50,000 W&B users against a directory of
//! 100,000 people, the pure build and each renderer. Prints figures; run with
//! `cargo bench --bench seats`. Budget: under 1 s for the build plus every format.

// The binary's allocator (src/main.rs), so the figures are what `idsync` itself does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use idsync::model::{DirectorySnapshot, Email, OrgRole, OrgSnapshot, OrgUser, TeamRole};
use idsync::plan::{PipelineOwner, Policy, Tombstone, TombstoneCause};
use idsync::report::seats::{build, render, SeatFormat, SeatInput, SeatPrices, SeatReport};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).single().unwrap_or_default()
}

/// Half the org is in the directory, a tenth has left, 2 % are external; activity is
/// spread over two years and unknown for a fifth.
fn world(people: usize, users: usize) -> (DirectorySnapshot, OrgSnapshot, Policy, Vec<Tombstone>) {
    let dir = DirectorySnapshot {
        kind: "bench".into(),
        people: (0..people).map(common::person).collect(),
        groups: Vec::new(),
    };
    let mut org = OrgSnapshot::default();
    let mut tombstones = Vec::new();
    for i in 0..users {
        let n = if i % 10 == 0 { people + i } else { i };
        let domain = if i % 50 == 0 {
            format!("partner{}.io", i % 7)
        } else {
            "example.com".into()
        };
        let email = format!("user{n}@{domain}");
        let mut teams = BTreeMap::new();
        for t in 0..(i % 4) {
            teams.insert(format!("team{}", (i + t * 13) % 2000), TeamRole::member());
        }
        let known = i % 5 != 0;
        org.users.push(OrgUser {
            id: format!("u{i}"),
            email: email.clone(),
            username: format!("wb{i}"),
            display_name: String::new(),
            active: i % 23 != 0,
            org_role: match i % 100 {
                0 => OrgRole::Admin,
                1..=9 => OrgRole::Viewer,
                _ => OrgRole::Member,
            },
            teams,
            active_stated: true,
            unstated_team_roles: Default::default(),
            service_account: false,
            last_active: if known {
                idsync::model::LastActive::At(now() - chrono::Duration::hours(((i * 37) % (730 * 24)) as i64))
            } else {
                idsync::model::LastActive::Unknown
            },
            days_active: known.then_some((i % 300) as u64),
        });
        if i % 10 == 0 && domain == "example.com" {
            if let Some(e) = Email::parse(&email) {
                tombstones.push(Tombstone {
                    user: e,
                    since: now() - chrono::Duration::days(1),
                    deprovision_after: Some(now() + chrono::Duration::days(2)),
                    cause: TombstoneCause::Missing,
                });
            }
        }
    }
    let mut policy = Policy {
        managed_domains: vec!["example.com".into()],
        ..Policy::default()
    };
    for i in (0..users).step_by(500) {
        if let Some(owner) = Email::parse(&format!("user{i}@example.com")) {
            policy.guards.pipeline_owners.push(PipelineOwner {
                owner,
                team: Some("team1".into()),
                name: Some(format!("pipeline {i}")),
            });
        }
    }
    (dir, org, policy, tombstones)
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    match out {
        Some(v) => (best, v),
        None => (best, f()),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and then one small
    // size only checks that the benchmark still runs.
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") {
        &[10_000, 25_000, 50_000]
    } else {
        &[500]
    };
    let prices = SeatPrices {
        member: 50.0,
        admin: Some(50.0),
        viewer: Some(10.0),
    };
    for &users in sizes {
        let (dir, org, policy, tombstones) = world(users * 2, users);
        let (t_build, report): (Duration, SeatReport) = best_of(3, || {
            build(SeatInput {
                directory: &dir,
                org: &org,
                policy: &policy,
                tombstones: &tombstones,
                prices: Some(&prices),
                inactive_days: 90,
                now: now(),
            })
        });
        assert_eq!(report.users.len(), users);
        let mut total = t_build;
        let mut line = format!(
            "seats: {users:>6} users / {:>6} people: build {:>7.1} ms",
            users * 2,
            t_build.as_secs_f64() * 1000.0
        );
        for (name, f) in [
            ("text", SeatFormat::Text),
            ("markdown", SeatFormat::Markdown),
            ("json", SeatFormat::Json),
            ("csv", SeatFormat::Csv),
        ] {
            let (t, out) = best_of(3, || render(&report, f));
            assert!(out.len() > users * 20, "{name} output is too short");
            total += t;
            line.push_str(&format!(", {name} {:>6.1} ms", t.as_secs_f64() * 1000.0));
        }
        line.push_str(&format!(
            "; all {:>7.1} ms (best of 3 each); {} inactive, {} orphans",
            total.as_secs_f64() * 1000.0,
            report.summary.inactive,
            report.summary.orphans
        ));
        println!("{line}");
    }
}
