//! Planning benchmark (SPEC §10): 100,000 directory people / 5,000 groups against
//! 50,000 W&B users / 2,000 teams, planning alone (no network). Prints figures; run with
//! `cargo bench --bench plan`. Budget: under 1 s and under 500 MiB peak RSS.

// The binary's allocator (src/main.rs), so the figures are what `idsync` itself does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use idsync::model::{DirectorySnapshot, Group, OrgRole, OrgSnapshot, OrgUser, Team, TeamRole};
use idsync::plan::{plan, OrgRoleRule, PlanInput, PlanState, Policy, TeamRule};

fn world(people: usize, groups: usize, users: usize, teams: usize) -> (DirectorySnapshot, OrgSnapshot, Policy) {
    let mut dir = DirectorySnapshot {
        kind: "bench".into(),
        ..Default::default()
    };
    dir.people.extend((0..people).map(common::person));
    for g in 0..groups {
        // Every person is in ~3 groups; groups average 60 members.
        let members = (0..people).filter(|p| (p * 7 + g) % groups < 3).map(|p| format!("a{p}")).collect();
        dir.groups.push(Group {
            anchor: format!("g{g}"),
            name: format!("group{g}"),
            dn: Some(format!("cn=group{g},ou=groups,dc=example,dc=com")),
            members,
            subgroups: Vec::new(),
        });
    }
    let mut org = OrgSnapshot::default();
    for t in 0..teams {
        org.teams.push(Team {
            id: format!("t{t}"),
            name: format!("team{t}"),
            members: vec![],
        });
    }
    for i in 0..users {
        // Half of the org overlaps the directory, the rest left long ago or is external.
        let n = if i % 2 == 0 { i } else { people + i };
        let domain = if i % 50 == 0 { "partner.io" } else { "example.com" };
        let mut t = BTreeMap::new();
        t.insert(format!("team{}", i % teams), TeamRole::member());
        org.users.push(OrgUser {
            id: format!("u{i}"),
            email: format!("user{n}@{domain}"),
            username: format!("wb{i}"),
            display_name: String::new(),
            active: true,
            org_role: if i % 1000 == 0 { OrgRole::Admin } else { OrgRole::Member },
            teams: t,
            active_stated: true,
            unstated_team_roles: Default::default(),
            service_account: false,
            last_active: Default::default(),
            days_active: None,
        });
    }
    let mut policy = Policy {
        managed_domains: vec!["example.com".into()],
        ..Policy::default()
    };
    policy.org_roles.push(OrgRoleRule {
        group: "cn=group0,ou=groups,dc=example,dc=com".into(),
        role: OrgRole::Admin,
    });
    for t in 0..teams {
        policy.teams.push(TeamRule {
            team: format!("team{t}"),
            group: format!("cn=group{},ou=groups,dc=example,dc=com", t % groups),
            role: TeamRole::member(),
            create: false,
        });
    }
    (dir, org, policy)
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time this thread has used (Linux schedstat): unlike wall time, it does not grow
/// when other processes compete for the machine's two cores.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// Wall time, CPU time (when the OS tells) and the number of actions of one plan.
fn time_plan(dir: &DirectorySnapshot, org: &OrgSnapshot, policy: &Policy) -> (Duration, Option<Duration>, usize) {
    let state = PlanState::default();
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().unwrap_or_default();
    let cpu = thread_cpu();
    let t = Instant::now();
    let p = plan(PlanInput {
        directory: dir,
        org,
        policy,
        state: &state,
        now,
    });
    let wall = t.elapsed();
    let cpu = cpu.zip(thread_cpu()).map(|(a, b)| b.saturating_sub(a));
    (wall, cpu, p.actions.len())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and then one small
    // size only checks that the benchmark still runs.
    // IDSYNC_BENCH_SCALE=N runs one size only (1 = the budgeted one), for profiling.
    let one: Vec<usize> = std::env::var("IDSYNC_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .into_iter()
        .collect();
    let scales: &[usize] = if !one.is_empty() {
        &one
    } else if std::env::args().any(|a| a == "--bench") {
        &[10, 4, 2, 1]
    } else {
        &[100]
    };
    // Growth check on smaller sizes first, then the budgeted size.
    for &scale in scales {
        let (people, groups, users, teams) = (100_000 / scale, 5_000 / scale, 50_000 / scale, 2_000 / scale);
        let (dir, org, policy) = world(people, groups, users, teams);
        let (mut best, mut best_cpu) = (Duration::MAX, Duration::MAX);
        let mut actions = 0;
        for _ in 0..3 {
            let (d, cpu, n) = time_plan(&dir, &org, &policy);
            best = best.min(d);
            best_cpu = best_cpu.min(cpu.unwrap_or(Duration::MAX));
            actions = n;
        }
        let cpu = if best_cpu == Duration::MAX {
            String::new()
        } else {
            format!(" ({:.1} ms CPU)", best_cpu.as_secs_f64() * 1000.0)
        };
        println!(
            "plan: {people:>6} people / {groups:>4} groups vs {users:>5} users / {teams:>4} teams: {:>8.1} ms wall{cpu} (best of 3), {actions} actions",
            best.as_secs_f64() * 1000.0
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS (whole process, including the generated inputs): {rss:.0} MiB");
    }
}
