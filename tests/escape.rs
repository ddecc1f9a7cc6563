//! Terminal escape injection end to end: a directory and a W&B org whose names carry
//! ESC[2J (clear screen), BEL, the one-byte CSI U+009B and U+202E (right-to-left
//! override). Nothing idsync prints for a human may carry them raw; JSON must still carry
//! the exact values.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// Clear screen, bell, an 8-bit "CSI 31m" (red) and a right-to-left override.
const H: &str = "\x1b[2J\x07\u{9b}31m\u{202e}";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn evil_dn() -> String {
    format!("uid=evil{H},ou=people,dc=example,dc=com")
}

fn group_dn() -> String {
    format!("cn=ml{H},ou=groups,dc=example,dc=com")
}

fn team() -> String {
    format!("ml{H}")
}

/// TOML basic-string escapes for `s`, so the config names the hostile DN and team.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04X}", u32::from(c)));
        }
    }
    out.push('"');
    out
}

/// root (admin, in sync); evil (hostile DN and cn, in the hostile group, so planned into
/// the hostile team); a person without email under a hostile DN (skipped); bob in W&B
/// only, with a hostile display name, in the hostile team (a tombstone and removals).
fn directory() -> String {
    format!(
        "version: 1

dn: uid=root,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: root
cn: root
mail: root@example.com
entryUUID: anchor-root

dn:: {evil}
objectClass: inetOrgPerson
uid: evil
cn:: {cn}
mail: evil@example.com
entryUUID: anchor-evil

dn:: {nomail}
objectClass: inetOrgPerson
uid: nomail
cn: nomail
entryUUID: anchor-nomail

dn:: {group}
objectClass: groupOfNames
cn:: {gcn}
member:: {evil}
",
        evil = b64(&evil_dn()),
        cn = b64(&format!("Evil{H}Name")),
        nomail = b64(&format!("uid=nomail{H},ou=people,dc=example,dc=com")),
        group = b64(&group_dn()),
        gcn = b64(&team()),
    )
}

async fn fixture() -> Fixture {
    let tables = format!(
        "[[policy.teams]]\nteam = {}\ngroup = {}\nrole = \"member\"\n",
        toml_str(&team()),
        toml_str(&group_dn())
    );
    let org = json!({
        "users": [
            {"email": "root@example.com", "username": "root", "org_role": "admin", "teams": {}},
            {"email": "bob@example.com", "username": "bob", "display_name": format!("Bob{H}"), "org_role": "member",
             "teams": {team(): "member"}},
        ],
        "teams": [{"name": team()}],
    });
    Fixture::start(Setup {
        org,
        ldif: directory(),
        tables: &tables,
        ..Setup::default()
    })
    .await
}

/// A character a terminal would act on, other than the layout a renderer puts there.
fn is_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    if let Some((i, c)) = s.char_indices().find(|&(_, c)| is_control(c)) {
        panic!("{what}: raw U+{:04X} at byte {i}:\n{s:?}", u32::from(c));
    }
}

/// Runs idsync and checks that neither stdout nor stderr carries a raw control.
async fn run_clean(f: &Fixture, args: &[&str]) -> std::process::Output {
    let o = f.run(args).await;
    assert_clean(&format!("stdout of {args:?}"), &o.stdout);
    assert_clean(&format!("stderr of {args:?}"), &o.stderr);
    o
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Every string anywhere in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

fn contains_exact(v: &Value, needle: &str) -> bool {
    let mut all = Vec::new();
    strings(v, &mut all);
    all.iter().any(|s| s.contains(needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_are_shown_escaped_and_kept_exact_in_json() {
    let f = fixture().await;

    // plan, every format: the hostile values are there, visibly escaped.
    for format in ["text", "markdown"] {
        let o = run_clean(&f, &["plan", "--format", format]).await;
        let t = text(&o);
        assert_eq!(code(&o), 2, "changes pending:\n{t}");
        // (Markdown also escapes the `[`.)
        assert!(
            t.contains("ml\\x1b") && t.contains("\\x07\\u009b31m\\u202e"),
            "the team, escaped ({format}):\n{t}"
        );
        assert!(t.contains("uid=nomail\\x1b"), "the skipped entry's DN, escaped ({format}):\n{t}");
    }
    let o = run_clean(&f, &["plan", "--format", "json"]).await;
    let plan = json_of(&o);
    let add = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "add_to_team" && a["user"] == "evil@example.com")
        .unwrap_or_else(|| panic!("evil is added to the team: {plan:#}"));
    assert_eq!(add["team"], team(), "the exact team name round-trips");
    assert!(add["reason"].as_str().unwrap().contains(&group_dn()), "{add:#}");
    assert!(contains_exact(&plan, &format!("uid=nomail{H},ou=people")), "the skipped DN, exact");

    // Colour stays (the renderer's own SGR codes), the hostile sequences do not.
    let o = f.run(&["plan", "--color", "always"]).await;
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("\x1b[32m"), "still coloured:\n{t:?}");
    assert!(
        !t.contains("\x1b[2J") && !t.contains('\u{9b}') && !t.contains('\u{202e}') && !t.contains('\x07'),
        "{t:?}"
    );

    // check-config --connect quotes the policy's group and team as found.
    let o = run_clean(&f, &["check-config", "--connect"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("cn=ml\\x1b[2J"), "the group, escaped:\n{}", text(&o));

    // explain: the directory entry, its name and its group.
    let o = run_clean(&f, &["explain", "evil@example.com"]).await;
    let t = text(&o);
    assert!(
        t.contains("uid=evil\\x1b[2J\\x07\\u009b31m\\u202e,ou=people"),
        "the DN, escaped:\n{t}"
    );
    let o = run_clean(&f, &["explain", "evil@example.com", "--format", "json"]).await;
    let x = json_of(&o);
    assert!(contains_exact(&x, &evil_dn()) && contains_exact(&x, &group_dn()), "{x:#}");

    // report seats: bob's display name and team come from W&B.
    for format in ["text", "markdown", "csv"] {
        let o = run_clean(&f, &["report", "seats", "--format", format, "--wide"]).await;
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert!(text(&o).contains("\\x1b[2J"), "a hostile value, escaped ({format}):\n{}", text(&o));
    }
    let o = run_clean(&f, &["report", "seats", "--format", "json"]).await;
    assert!(contains_exact(&json_of(&o), &team()), "the exact team in the seat report");

    // apply, then status and approvals read the store.
    let o = run_clean(&f, &["apply", "--yes"]).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("\\x1b[2J"), "the applied team add, escaped:\n{}", text(&o));
    let users = f.users().await;
    assert_eq!(
        users["evil@example.com"]["teams"][team()],
        "member",
        "W&B got the exact team: {users:#?}"
    );
    run_clean(&f, &["status"]).await;
    run_clean(&f, &["approvals"]).await;
    let o = run_clean(&f, &["history", "evil@example.com"]).await;
    assert!(text(&o).contains("ml\\x1b[2J"), "the team in the history, escaped:\n{}", text(&o));
    let o = run_clean(&f, &["history", "evil@example.com", "--format", "json"]).await;
    assert!(contains_exact(&json_of(&o), &team()), "the exact team in the history JSON");

    // An error path: a directory entry under a hostile DN that idsync cannot read (an
    // Active Directory account flag that is not a number).
    f.set_source(
        "[source]\nkind = \"ldif\"\npath = \"directory.ldif\"\ndialect = \"active-directory\"\n\
         [source.users]\nbase = \"ou=people,dc=example,dc=com\"\n[source.groups]\nbase = \"ou=groups,dc=example,dc=com\"\n",
    );
    f.write_ldif(&format!(
        "{}\ndn:: {}\nobjectClass: inetOrgPerson\nuid: broken\nmail: broken@example.com\nuserAccountControl: x\n",
        directory(),
        b64(&format!("cn=broken{H},ou=people,dc=example,dc=com"))
    ));
    for args in [
        &["plan"][..],
        &["apply", "--yes"],
        &["report", "seats"],
        &["explain", "evil@example.com"],
    ] {
        let o = run_clean(&f, args).await;
        assert_eq!(code(&o), 1, "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cn=broken\\x1b[2J"), "{args:?}: the DN, escaped:\n{err}");
    }
    // The failed apply is a run in the store; status shows its error.
    let o = run_clean(&f, &["status"]).await;
    let st = run_clean(&f, &["status", "--format", "json"]).await;
    if contains_exact(&json_of(&st), &format!("cn=broken{H}")) {
        assert!(text(&o).contains("cn=broken\\x1b[2J"), "{}", text(&o));
    }

    // The daemon logs the failed run with its error, in text and in JSON.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&f.cfg).unwrap().replace(
        "state_dir = \"state\"",
        &format!("state_dir = \"state\"\nlisten = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&f.cfg, &cfg).unwrap();
    let o = run_clean(&f, &["run", "--once"]).await;
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(log.contains("run finished") && log.contains("cn=broken\\x1b[2J"), "{log}");
    std::fs::write(&f.cfg, format!("{cfg}\n[log]\nformat = \"json\"\n")).unwrap();
    let o = run_clean(&f, &["run", "--once"]).await;
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| contains_exact(l, &format!("cn=broken{H},ou=people"))),
        "the exact DN in a JSON log line: {lines:#?}"
    );
}
