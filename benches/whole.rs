//! The whole command as a user runs it (SPEC §10, issue 14): the release `idsync` binary,
//! a W&B sandbox on loopback and a directory, timed from the outside with the child's
//! own peak resident memory (`wait4`'s rusage). Prints, in one run:
//!
//! - `idsync plan --format json` from an LDIF export (W&B from the sandbox), at 10k, 25k,
//!   50k and 100k people (half as many W&B users), for growth;
//! - the same from a live slapd (paged 500) beside `ldapsearch -E pr=500` for the same
//!   entries in the same run, and the ratio;
//! - `idsync apply` throughput against the sandbox at 20 ms latency, 1-, 4- and 8-way.
//!
//! Runs are interleaved and the median and best printed: wall time on this 2-core VM
//! swings between identical runs. `cargo bench --bench whole` runs it all (about five
//! minutes); under `cargo test --all-targets` it runs one tiny round of each, so it
//! cannot rot. `IDSYNC_BENCH_SCALE=N` runs only the size 100,000 / N.

#[path = "../tests/common/slapd.rs"]
mod slapd;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slapd::{Options, Slapd, BIND_DN, BIND_PW, GROUPS, PEOPLE};

const BIN: &str = env!("CARGO_BIN_EXE_idsync");
const API_KEY: &str = "bench-key";
const PAGE: u32 = 500;

/// A world like the plan bench's: `people` directory people in `groups` groups (each
/// person in three, so groups average 3 × people / groups members), `users` W&B users
/// (half of them directory people, the rest gone or external, one in 50 on a partner
/// domain, one in 1,000 an admin), `teams` teams each mapped to one group.
struct World {
    people: usize,
    groups: usize,
    users: usize,
    teams: usize,
}

impl World {
    fn at(scale: usize) -> World {
        World {
            people: 100_000 / scale,
            groups: 5_000 / scale,
            users: 50_000 / scale,
            teams: 2_000 / scale,
        }
    }

    /// Group numbers of person `p`.
    fn groups_of(&self, p: usize) -> [usize; 3] {
        let g = self.groups;
        // (p * 7 + group) % groups < 3, solved for group.
        let base = (g - (p * 7) % g) % g;
        [base, (base + 1) % g, (base + 2) % g]
    }

    /// The directory's entries (people then groups), for an LDIF file and for slapd.
    fn entries(&self) -> String {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.groups];
        for p in 0..self.people {
            for g in self.groups_of(p) {
                members[g].push(p);
            }
        }
        let mut s = String::with_capacity(self.people * 200 + self.people * 3 * 50);
        for i in 0..self.people {
            let uid = format!("u{i:06}");
            write!(
                s,
                "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: User {i}\nsn: {i}\nmail: {uid}@example.com\n\n"
            )
            .unwrap();
        }
        for (g, m) in members.iter().enumerate() {
            write!(s, "dn: cn=group{g},{GROUPS}\nobjectClass: groupOfNames\ncn: group{g}\n").unwrap();
            for p in m {
                writeln!(s, "member: uid=u{p:06},{PEOPLE}").unwrap();
            }
            s.push('\n');
        }
        s
    }

    /// The sandbox's seed org (JSON).
    fn org(&self) -> String {
        let teams: Vec<_> = (0..self.teams).map(|t| serde_json::json!({ "name": format!("team{t}") })).collect();
        let users: Vec<_> = (0..self.users)
            .map(|i| {
                let n = if i % 2 == 0 { i } else { self.people + i };
                let domain = if i % 50 == 0 { "partner.io" } else { "example.com" };
                serde_json::json!({
                    "email": format!("u{n:06}@{domain}"),
                    "username": format!("wb{i}"),
                    "org_role": if i % 1000 == 0 { "admin" } else { "member" },
                    "teams": { format!("team{}", i % self.teams): "member" },
                })
            })
            .collect();
        serde_json::json!({ "users": users, "teams": teams }).to_string()
    }

    /// The policy: every team mapped to one group, group0 gives the org admin role.
    fn policy(&self) -> String {
        let mut s = String::from(
            "[policy]\nmanaged_domains = [\"example.com\"]\n\
             [[policy.org_roles]]\ngroup = \"cn=group0,ou=groups,dc=example,dc=com\"\nrole = \"admin\"\n",
        );
        for t in 0..self.teams {
            write!(
                s,
                "[[policy.teams]]\nteam = \"team{t}\"\ngroup = \"cn=group{},ou=groups,dc=example,dc=com\"\n",
                t % self.groups
            )
            .unwrap();
        }
        s
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `idsync sandbox` serving `org`, killed on drop.
struct Sandbox {
    child: Child,
    url: String,
}

impl Sandbox {
    fn start(dir: &Path, org: &str, latency: &str) -> Sandbox {
        let org_file = dir.join("org.json");
        std::fs::write(&org_file, org).unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .arg("sandbox")
            .args(["--listen", &format!("127.0.0.1:{port}"), "--api-key", API_KEY])
            .arg("--org")
            .arg(&org_file)
            .args(["--latency", latency])
            // 50,000 users need paging, which W&B may or may not honour (WANDB.md).
            .arg("--honour-paging")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        // Ready when it accepts connections (bounded: a big seed takes a few seconds).
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the sandbox did not start within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sandbox { child, url }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config directory: the source section, the sandbox target, the policy.
fn config(dir: &Path, source: &str, target_url: &str, policy: &str, concurrency: usize) -> PathBuf {
    std::fs::write(dir.join("wandb-api-key"), API_KEY).unwrap();
    std::fs::write(dir.join("ldap-password"), BIND_PW).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["wandb-api-key", "ldap-password"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = dir.join("idsync.toml");
    let text = format!(
        "{source}\n[target]\nurl = \"{target_url}\"\napi_key_file = \"wandb-api-key\"\nmax_concurrency = {concurrency}\n\
         {policy}\n[guards]\nmax_deprovisions = 1000000\nmax_deprovision_percent = 100\nmax_team_removals = 1000000\n\
         [daemon]\nstate_dir = \"state\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn ldif_source() -> String {
    "[source]\nkind = \"ldif\"\npath = \"directory.ldif\"\n[source.users]\nbase = \"ou=people,dc=example,dc=com\"\n\
     [source.groups]\nbase = \"ou=groups,dc=example,dc=com\"\n"
        .into()
}

fn ldap_source(server: &Slapd) -> String {
    format!(
        "[source]\nkind = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{BIND_DN}\"\nbind_password_file = \"ldap-password\"\n\
         page_size = {PAGE}\n[source.users]\nbase = \"{PEOPLE}\"\n[source.groups]\nbase = \"{GROUPS}\"\n",
        server.url()
    )
}

/// One run of a child process: wall time, its CPU time and its peak resident memory.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
    rss_mib: f64,
}

/// Runs `cmd` to the end with stdout to /dev/null and measures it with `wait4`.
// Reaped by wait4 below, which std's Child cannot see.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command, ok_codes: &[i32]) -> Run {
    use std::io::{Read, Seek};
    // stderr to a file, not a pipe: a chatty child must not block on a full pipe.
    let mut err = tempfile::tempfile().unwrap();
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(err.try_clone().unwrap()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only the status and rusage it is given, for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4");
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    if !ok_codes.contains(&code) {
        let mut text = String::new();
        let _ = err.seek(std::io::SeekFrom::Start(0));
        let _ = err.read_to_string(&mut text);
        panic!("{cmd:?} exited {code}: {text}");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Run {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        rss_mib: ru.ru_maxrss as f64 / 1024.0,
    }
}

fn plan_cmd(cfg: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["plan", "--format", "json", "--config"]).arg(cfg);
    c
}

fn ldapsearch_cmd(server: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> Command {
    let mut c = Command::new("ldapsearch");
    c.args(["-x", "-LLL", "-H", &server.url(), "-D", BIND_DN, "-w", BIND_PW, "-b", base])
        .arg("-E")
        .arg(format!("pr={PAGE}/noprompt"))
        .arg(filter)
        .args(attrs);
    c
}

/// Both of idsync's searches with the default config, as ldapsearch.
fn time_ldapsearch(server: &Slapd) -> Run {
    let a = measure(
        &mut ldapsearch_cmd(
            server,
            PEOPLE,
            "(objectClass=inetOrgPerson)",
            &["mail", "uid", "cn", "entryUUID", "pwdAccountLockedTime"],
        ),
        &[0],
    );
    let b = measure(
        &mut ldapsearch_cmd(
            server,
            GROUPS,
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
            &["cn", "entryUUID", "member", "uniqueMember"],
        ),
        &[0],
    );
    Run {
        wall: a.wall + b.wall,
        cpu: a.cpu + b.cpu,
        rss_mib: a.rss_mib.max(b.rss_mib),
    }
}

struct Summary {
    best: Run,
    median: Run,
}

fn summarize(runs: &[Run]) -> Summary {
    let pick = |f: &dyn Fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (wb, wm) = pick(&|r| r.wall.as_secs_f64());
    let (cb, cm) = pick(&|r| r.cpu.as_secs_f64());
    let (rb, rm) = pick(&|r| r.rss_mib);
    Summary {
        best: Run {
            wall: Duration::from_secs_f64(wb),
            cpu: Duration::from_secs_f64(cb),
            rss_mib: rb,
        },
        median: Run {
            wall: Duration::from_secs_f64(wm),
            cpu: Duration::from_secs_f64(cm),
            rss_mib: rm,
        },
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn line(name: &str, s: &Summary) {
    println!(
        "{name:<44} {:>8.0} ms {:>8.0} ms {:>8.0} ms {:>7.0} MiB",
        ms(s.median.wall),
        ms(s.best.wall),
        ms(s.median.cpu),
        s.median.rss_mib
    );
}

fn header() {
    println!(
        "{:<44} {:>11} {:>11} {:>11} {:>11}",
        "", "wall median", "wall best", "CPU median", "peak RSS"
    );
}

/// `idsync plan --format json` from an LDIF export against the sandbox, per size.
fn plan_from_ldif(scales: &[usize], rounds: usize) {
    println!("\nidsync plan --format json, directory from LDIF, W&B from the sandbox ({rounds} rounds)");
    header();
    for &scale in scales {
        let w = World::at(scale);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("directory.ldif"), w.entries()).unwrap();
        let sandbox = Sandbox::start(dir.path(), &w.org(), "0ms");
        let cfg = config(dir.path(), &ldif_source(), &sandbox.url, &w.policy(), 4);
        // Exit 2 (changes pending) or 3 (some held) is the expected outcome.
        let runs: Vec<Run> = (0..rounds).map(|_| measure(&mut plan_cmd(&cfg), &[0, 2, 3])).collect();
        line(&format!("{} people / {} W&B users", w.people, w.users), &summarize(&runs));
    }
}

/// The same plan from a live slapd, interleaved with ldapsearch reading the same.
fn plan_from_slapd(scale: usize, rounds: usize) {
    if !slapd::available() {
        println!("\nplan from slapd: skipped (slapd / ldap-utils not installed; scripts/test.sh installs them)");
        return;
    }
    let w = World::at(scale);
    let t = Instant::now();
    let server = Slapd::start(Options {
        seed: w.entries(),
        ..Options::default()
    });
    println!(
        "\nidsync plan --format json from slapd (paged {PAGE}) vs ldapsearch, {} people / {} groups \
         (slapd seeded in {:.1} s, {rounds} rounds interleaved)",
        w.people,
        w.groups,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(dir.path(), &w.org(), "0ms");
    let cfg = config(dir.path(), &ldap_source(&server), &sandbox.url, &w.policy(), 4);
    // Warm slapd's caches once.
    time_ldapsearch(&server);
    let (mut ls, mut id) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ls.push(time_ldapsearch(&server));
        id.push(measure(&mut plan_cmd(&cfg), &[0, 2, 3]));
    }
    let (ls, id) = (summarize(&ls), summarize(&id));
    header();
    line(&format!("ldapsearch -E pr={PAGE}/noprompt (both searches)"), &ls);
    line("idsync plan --format json (whole command)", &id);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let median = ratio(id.median.wall, ls.median.wall);
    println!(
        "ratio idsync plan / ldapsearch: {median:.2}x median, {:.2}x best (goal 1.3x: {})",
        ratio(id.best.wall, ls.best.wall),
        if median <= 1.3 { "within" } else { "OVER" }
    );
}

/// `idsync apply` of `n` team adds against the sandbox at 20 ms per request.
fn apply_throughput(n: usize, ways: &[usize], rounds: usize) {
    println!("\nidsync apply, {n} team adds, sandbox at 20 ms latency ({rounds} rounds interleaved, whole command)");
    println!("{:<44} {:>11} {:>11}", "", "actions/s", "best");
    let org = serde_json::json!({
        "users": (0..n).map(|i| serde_json::json!({"email": format!("u{i:06}@example.com"), "username": format!("u{i:06}")}))
            .chain(std::iter::once(serde_json::json!({"email": "root@example.com", "username": "root", "org_role": "admin"})))
            .collect::<Vec<_>>(),
        "teams": [{"name": "team0"}],
    })
    .to_string();
    let mut ldif = String::new();
    for i in 0..n {
        let uid = format!("u{i:06}");
        write!(
            ldif,
            "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nmail: {uid}@example.com\n\n"
        )
        .unwrap();
    }
    write!(
        ldif,
        "dn: uid=root,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: root\ncn: root\nmail: root@example.com\n\n"
    )
    .unwrap();
    // root is the org admin through a group of its own: the team's members are not
    // admins, so the run is exactly n team adds (it was n org-role changes as well).
    write!(
        ldif,
        "dn: cn=admins,{GROUPS}\nobjectClass: groupOfNames\ncn: admins\nmember: uid=root,{PEOPLE}\n\n\
         dn: cn=group0,{GROUPS}\nobjectClass: groupOfNames\ncn: group0\nmember: uid=root,{PEOPLE}\n"
    )
    .unwrap();
    for i in 0..n {
        writeln!(ldif, "member: uid=u{i:06},{PEOPLE}").unwrap();
    }
    let policy = "[policy]\nmanaged_domains = [\"example.com\"]\n\
                  [[policy.org_roles]]\ngroup = \"cn=admins,ou=groups,dc=example,dc=com\"\nrole = \"admin\"\n\
                  [[policy.teams]]\nteam = \"team0\"\ngroup = \"cn=group0,ou=groups,dc=example,dc=com\"\n";
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _ in 0..rounds {
        for (k, &way) in ways.iter().enumerate() {
            // A fresh sandbox and state each time, so every run applies the same n adds.
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("directory.ldif"), &ldif).unwrap();
            let sandbox = Sandbox::start(dir.path(), &org, "20ms");
            let cfg = config(dir.path(), &ldif_source(), &sandbox.url, policy, way);
            let mut cmd = Command::new(BIN);
            cmd.args(["apply", "--yes", "--config"]).arg(&cfg);
            let run = measure(&mut cmd, &[0]);
            results[k].push(n as f64 / run.wall.as_secs_f64());
        }
    }
    for (k, &way) in ways.iter().enumerate() {
        let v = &mut results[k];
        v.sort_by(f64::total_cmp);
        println!(
            "{:<44} {:>11.1} {:>11.1}",
            format!("max_concurrency = {way}"),
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let one: Option<usize> = std::env::var("IDSYNC_BENCH_SCALE").ok().and_then(|s| s.parse().ok());
    // For profiling: write the LDIF world of that size (directory.ldif, org.json and an
    // idsync.toml for a sandbox on 127.0.0.1:18089) into a directory and stop.
    if let Ok(out) = std::env::var("IDSYNC_BENCH_WRITE") {
        let (w, dir) = (World::at(one.unwrap_or(1)), Path::new(&out));
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("directory.ldif"), w.entries()).unwrap();
        std::fs::write(dir.join("org.json"), w.org()).unwrap();
        config(dir, &ldif_source(), "http://127.0.0.1:18089", &w.policy(), 4);
        println!("wrote {out}: idsync sandbox --listen 127.0.0.1:18089 --api-key {API_KEY} --honour-paging --org {out}/org.json");
        return;
    }
    if full {
        // IDSYNC_BENCH_PART=ldif|slapd|apply runs one part only, for profiling and A/B runs.
        let part = std::env::var("IDSYNC_BENCH_PART").unwrap_or_default();
        let runs = |p: &str| part.is_empty() || part == p;
        let scales: Vec<usize> = one.map(|s| vec![s]).unwrap_or_else(|| vec![10, 4, 2, 1]);
        if runs("ldif") {
            plan_from_ldif(&scales, 5);
        }
        if runs("slapd") {
            plan_from_slapd(one.unwrap_or(1), 5);
        }
        if runs("apply") {
            apply_throughput(200, &[1, 4, 8], 3);
        }
    } else {
        // A tiny round of each, so the benchmark keeps working.
        plan_from_ldif(&[1000], 1);
        plan_from_slapd(1000, 1);
        apply_throughput(10, &[1, 4], 1);
    }
}
