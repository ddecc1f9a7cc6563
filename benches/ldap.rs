//! LDAP pull benchmark (SPEC §10): 100,000 people and 1,000 groups in a local slapd,
//! idsync's whole directory read (connect, bind, paged searches, snapshot) against
//! `ldapsearch -x -E pr=500/noprompt` asking for the same entries and attributes with
//! the same page size, output to /dev/null, in the same run. Budget: within 1.3×.
//! Run with `cargo bench --bench ldap`; under `cargo test --all-targets` it reads a
//! tiny directory once (or skips when slapd is not installed).

#[path = "../tests/common/slapd.rs"]
mod slapd;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use idsync::config::SourceConfig;
use slapd::{Options, Slapd, BIND_DN, BIND_PW, GROUPS, PEOPLE};

// The same allocator as the `idsync` binary (src/main.rs), so the figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAGE: u32 = 500;
const USER_FILTER: &str = "(objectClass=inetOrgPerson)";
const GROUP_FILTER: &str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))";

fn seed(people: usize, groups: usize) -> String {
    let mut s = slapd::many_people(people);
    for g in 0..groups {
        write!(s, "dn: cn=group{g},{GROUPS}\nobjectClass: groupOfNames\ncn: group{g}\n").unwrap();
        // Every person is in one group.
        for p in (g..people).step_by(groups) {
            writeln!(s, "member: uid=u{p:06},{PEOPLE}").unwrap();
        }
        s.push('\n');
    }
    s
}

fn ldapsearch(server: &Slapd, base: &str, filter: &str, attrs: &[&str]) {
    let status = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &server.url(), "-D", BIND_DN, "-w", BIND_PW, "-b", base])
        .arg("-E")
        .arg(format!("pr={PAGE}/noprompt"))
        .arg(filter)
        .args(attrs)
        .stdout(Stdio::null())
        .status()
        .expect("ldapsearch");
    assert!(status.success(), "ldapsearch failed");
}

fn time_ldapsearch(server: &Slapd) -> Duration {
    let start = Instant::now();
    // The attributes idsync asks for with the default config.
    ldapsearch(
        server,
        PEOPLE,
        USER_FILTER,
        &["mail", "uid", "cn", "entryUUID", "pwdAccountLockedTime"],
    );
    ldapsearch(server, GROUPS, GROUP_FILTER, &["cn", "entryUUID", "member", "uniqueMember"]);
    start.elapsed()
}

fn time_idsync(rt: &tokio::runtime::Runtime, cfg: &SourceConfig, dir: &std::path::Path, people: usize) -> Duration {
    let start = Instant::now();
    let snap = rt
        .block_on(idsync::source::read_directory(cfg, dir))
        .unwrap_or_else(|e| panic!("idsync read failed: {e}"));
    let took = start.elapsed();
    assert_eq!(snap.people.len(), people, "idsync read every person");
    took
}

fn main() {
    if !slapd::available() {
        println!("ldap bench: skipped (slapd / ldap-utils not installed; scripts/test.sh installs them)");
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (people, groups, rounds) = if full { (100_000, 1_000, 3) } else { (300, 3, 1) };
    let t = Instant::now();
    let server = Slapd::start(Options {
        seed: seed(people, groups),
        ..Options::default()
    });
    println!(
        "slapd seeded with {people} people / {groups} groups in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ldap-password"), BIND_PW).unwrap();
    let cfg: SourceConfig = toml::from_str(&format!(
        "kind = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{BIND_DN}\"\nbind_password_file = \"ldap-password\"\npage_size = {PAGE}\n\
         [users]\nbase = \"{PEOPLE}\"\n[groups]\nbase = \"{GROUPS}\"\n",
        server.url()
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // Warm slapd's caches once, then alternate the two so both see the same machine.
    time_ldapsearch(&server);
    let (mut best_ls, mut best_id) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        best_ls = best_ls.min(time_ldapsearch(&server));
        best_id = best_id.min(time_idsync(&rt, &cfg, dir.path(), people));
    }
    let ratio = best_id.as_secs_f64() / best_ls.as_secs_f64();
    println!(
        "ldapsearch -E pr={PAGE}/noprompt (people + groups, to /dev/null): {:>8.1} ms (best of {rounds})",
        ms(best_ls)
    );
    println!(
        "idsync LDAP read (connect, bind, paged searches, snapshot):   {:>8.1} ms (best of {rounds})",
        ms(best_id)
    );
    println!(
        "ratio idsync / ldapsearch: {ratio:.2}x (budget 1.3x: {})",
        if ratio <= 1.3 { "within" } else { "OVER" }
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
