//! The command line's contract (SPEC §2): usage errors exit 1, and no command dies of a
//! signal it did not ask for.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;

use common::*;

fn idsync(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(args)
        .env_remove("IDSYNC_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_1_never_2_or_3() {
    for args in [
        &["plan", "--bogus"][..],
        &["apply", "--approve"],
        &["report", "seats", "--inactive-days", "0"],
        &["plan", "--format", "yaml"],
        &["explain"],
        &["explain", "a@example.com", "--format", "markdown"],
        &["status", "--format", "yaml"],
        &["no-such-command"],
        &[],
    ] {
        let out = idsync(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stderr.is_empty(), "{args:?} says what is wrong");
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["plan", "--help"],
        &["explain", "--help"],
        &["status", "--help"],
    ] {
        let out = idsync(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

/// A plain TCP server that answers any request with an HTTP error and hangs up: a TLS
/// client talking to it gets garbage, then writes to a closed socket.
fn plain_http_server() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(false).unwrap();
    let h = std::thread::spawn(move || {
        // Bounded: a few connections (retries), then the thread ends with the test.
        for _ in 0..20 {
            // Answer at once, without reading the TLS hello, and hang up: the client's
            // next write meets a closed socket (EPIPE, and SIGPIPE unless ignored).
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            drop(s);
        }
    });
    (addr, h)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_to_a_plain_http_server_is_an_error_not_a_silent_sigpipe() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[])], &[]),
        ldif: ldif(&[P("root", true)], &[]),
        target: "max_retries = 1",
        ..Setup::default()
    })
    .await;
    let (addr, _server) = plain_http_server();
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    let url = f.sb.url();
    std::fs::write(&f.cfg, cfg.replace(&url, &format!("https://{addr}"))).unwrap();
    for args in [
        &["plan"][..],
        &["apply", "--yes"],
        &["check-config", "--connect"],
        &["report", "seats"],
    ] {
        let out = f.run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), None, "{args:?} died of a signal: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(stderr.contains("error:"), "{args:?} says what failed: {stderr}");
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef idsync"), ("fish", "complete -c idsync")] {
        let out = idsync(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains(marker), "{shell}: {s}");
        for cmd in ["plan", "apply", "approve", "show", "completions"] {
            assert!(s.contains(cmd), "{shell} completes {cmd}");
        }
    }
    assert_eq!(idsync(&["completions", "tcsh"]).status.code(), Some(1));
    let man = idsync(&["man"]);
    assert_eq!(man.status.code(), Some(0));
    let roff = String::from_utf8_lossy(&man.stdout);
    assert!(
        roff.contains(".TH idsync") && roff.contains("check\\-config") && roff.contains("apply"),
        "{roff}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn show_rerenders_a_saved_plan_and_hints_name_the_real_file() {
    let f = pipeline_owner_left().await;
    let plan = f.run(&["plan", "--out", "review/held plan.json"]).await;
    assert_eq!(code(&plan), 1, "a missing directory for --out is an error: {}", text(&plan));
    std::fs::create_dir(f.path("review")).unwrap();
    let plan = f.run(&["plan", "--out", "review/held plan.json"]).await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    let shown = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        shown.contains("to release: idsync approve 'review/held plan.json' --id "),
        "{shown}"
    );

    // `show` needs nothing but the file: no config, no W&B, no directory.
    let saved = f.path("review/held plan.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("show")
        .arg(&saved)
        .env_remove("IDSYNC_CONFIG")
        .env("NO_COLOR", "1")
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let again = String::from_utf8_lossy(&out.stdout);
    assert!(again.contains("pipeline-key") && again.contains("ci-bot@example.com"), "{again}");
    assert!(again.contains(&format!("idsync approve '{}' --id", saved.display())), "{again}");
    for format in ["markdown", "json"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
            .args(["show", "--format", format])
            .arg(&saved)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}");
    }
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["show", "--format", "json"])
        .arg(&saved)
        .output()
        .unwrap();
    let a: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(a, b, "show --format json gives back the saved plan");
    assert_eq!(idsync(&["show", "/nonexistent/plan.json"]).status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn colour_only_on_a_terminal_unless_asked() {
    let f = root_and_alice().await;
    // Logs and report into pipes (as `idsync plan 2> f`, `tee`, systemd-run --pipe): plain.
    let mut cmd = f.command(&["plan"]);
    cmd.env_remove("NO_COLOR").env("RUST_LOG", "debug");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEBUG"),
        "RUST_LOG=debug logs something:\n{}",
        text(&out)
    );
    assert!(
        !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
        "no ANSI escapes in pipes:\n{}",
        text(&out)
    );
    let mut cmd = f.command(&["plan", "--color", "always"]);
    cmd.env("RUST_LOG", "debug");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert!(
        out.stdout.contains(&0x1b) && out.stderr.contains(&0x1b),
        "--color always colours both"
    );
    let out = f.run(&["plan", "--color", "sometimes"]).await;
    assert_eq!(code(&out), 1);
}

#[test]
fn a_busy_port_is_one_clear_error_and_no_banner() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = idsync(&["sandbox", "--listen", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("sandbox:").count(), 1, "named once: {err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        !err.contains("W&B sandbox on http://"),
        "no banner for a sandbox that is not serving: {err}"
    );
}

#[test]
fn the_demo_says_where_its_files_are_and_keeps_them_when_asked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["demo", "--keep"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    let kept = s.lines().find_map(|l| l.strip_prefix("Kept ")).expect("names the kept directory");
    let dir = std::path::PathBuf::from(kept.split(" (").next().unwrap());
    assert!(
        dir.join("idsync.toml").is_file() && dir.join("state/idsync.db").is_file(),
        "{}",
        dir.display()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("demo")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let gone = s.lines().find(|l| l.contains("is deleted now")).expect("says the files are gone");
    let dir = std::path::PathBuf::from(gone.split(" (").next().unwrap());
    assert!(!dir.exists(), "{}", dir.display());
}

// ---------------------------------------------------------------- check-config

/// A fixture with one team `ml` in W&B and a `cn=ml` group in the directory.
async fn ml_fixture(tables: &str) -> Fixture {
    Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[("ml", "admin")])], &["ml"]),
        ldif: ldif(&[P("root", true)], &[("ml", &["root"])]),
        tables,
        ..Setup::default()
    })
    .await
}

fn edit_config(f: &Fixture, from: &str, to: &str) {
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    assert!(cfg.contains(from), "{from:?} not in the fixture's config:\n{cfg}");
    std::fs::write(&f.cfg, cfg.replacen(from, to, 1)).unwrap();
}

/// `file:line:` of the first line of the fixture's config containing `needle`.
fn located(f: &Fixture, needle: &str) -> String {
    let cfg = std::fs::read_to_string(&f.cfg).unwrap();
    let line = cfg.lines().position(|l| l.contains(needle)).expect("needle in config") + 1;
    format!("{}:{line}:", f.cfg.display())
}

const ML_TEAM: &str = "[[policy.teams]]\nteam = \"ml\"\ngroup = \"cn=ml,ou=groups,dc=example,dc=com\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn check_config_fails_on_an_unset_key_variable_that_every_run_would_fail_on() {
    let f = ml_fixture(ML_TEAM).await;
    edit_config(&f, "api_key_file = \"key\"", "api_key_env = \"IDSYNC_CLI_TEST_KEY\"");
    let out = f.run(&["check-config"]).await;
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    assert!(
        t.contains(&format!(
            "{}1: [target] api_key_env: environment variable IDSYNC_CLI_TEST_KEY is not set",
            located(&f, "api_key_env")
        )),
        "{t}"
    );
    // `plan` agrees (it is what check-config predicts), and set, both pass.
    assert_eq!(code(&f.run(&["plan"]).await), 1);
    let out = f
        .run_with_env(&["check-config", "--connect"], &[("IDSYNC_CLI_TEST_KEY", KEY)])
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!text(&out).contains(KEY), "the key is never printed");
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_fails_on_a_missing_ldif_file_naming_the_resolved_path() {
    let f = ml_fixture(ML_TEAM).await;
    std::fs::remove_file(f.path("directory.ldif")).unwrap();
    let out = f.run(&["check-config"]).await;
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    let resolved = f.path("directory.ldif").display().to_string();
    assert!(
        t.contains(&format!(
            "{}1: [source] path: {resolved} cannot be read",
            located(&f, "directory.ldif")
        )),
        "{t}"
    );
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_connect_names_a_team_or_group_that_does_not_exist_with_a_suggestion() {
    let f = ml_fixture("[[policy.teams]]\nteam = \"ML\"\ngroup = \"cn=mll,ou=groups,dc=example,dc=com\"\n").await;
    // Without --connect nothing is read, so nothing is known about names.
    assert_eq!(code(&f.run(&["check-config"]).await), 0);
    let out = f.run(&["check-config", "--connect"]).await;
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    assert!(t.contains("2 errors in the configuration"), "{t}");
    assert!(
        t.contains(&format!(
            "{}1: [[policy.teams]] #1 team: W&B has no team \"ML\" and create = false",
            located(&f, "team = \"ML\"")
        )),
        "{t}"
    );
    assert!(t.contains("did you mean \"ml\"?"), "{t}");
    assert!(t.contains("did you mean \"cn=ml,ou=groups,dc=example,dc=com\"?"), "{t}");
    // create = true makes a missing team fine (idsync creates it); the group is still wrong.
    edit_config(&f, "team = \"ML\"", "team = \"ML\"\ncreate = true");
    let t = text(&f.run(&["check-config", "--connect"]).await);
    assert!(t.contains("team ML: not in W&B: idsync creates it"), "{t}");
    assert!(!t.contains("W&B has no team"), "{t}");
    assert!(
        t.contains("the directory has no group \"cn=mll,ou=groups,dc=example,dc=com\""),
        "{t}"
    );
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_connect_on_a_wrong_scim_path_points_at_target_scim_path() {
    let f = ml_fixture(ML_TEAM).await;
    edit_config(&f, "timeout = \"10s\"", "timeout = \"10s\"\nscim_path = \"/scim/v2\"");
    let out = f.run(&["check-config", "--connect"]).await;
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    assert!(t.contains("W&B answered 404") && t.contains("/scim/v2/"), "{t}");
    assert!(t.contains("check target.scim_path"), "{t}");
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_type_errors_are_located_and_in_words_never_serde_s() {
    let f = ml_fixture(ML_TEAM).await;
    edit_config(&f, "managed_domains = [\"example.com\"]", "managed_domains = \"example.com\"");
    let out = f.run(&["check-config"]).await;
    let t = text(&out);
    assert_eq!(code(&out), 1, "{t}");
    assert!(
        t.contains(&format!(
            "{}19: [policy] managed_domains: expected a list in brackets",
            located(&f, "managed_domains")
        )),
        "{t}"
    );
    assert!(t.contains("put it in brackets: managed_domains = [\"example.com\"]"), "{t}");
    assert!(!t.contains("invalid type") && !t.contains("sequence"), "{t}");
    f.sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_shows_progress_on_a_terminal_and_never_in_a_pipe() {
    // Twelve creates at 30 ms a request: long enough for the spinner and the bar to draw.
    let f = slow_fixture(std::time::Duration::from_millis(30)).await;
    let piped = f.run(&["plan"]).await;
    assert!(!text(&piped).contains("reading the directory"), "{}", text(&piped));
    let (code_, out) = tokio::task::block_in_place(|| run_on_terminal(&f, &["apply", "--yes"], ""));
    assert_eq!(code_, 0, "{out}");
    assert!(out.contains("applying "), "no progress bar on the terminal:\n{out}");
    assert!(out.contains("12 applied"), "{out}");
    // Off a terminal (the harness's pipes): no bar, no spinner, in stdout or stderr.
    let f = slow_fixture(std::time::Duration::from_millis(30)).await;
    let apply = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let all = text(&apply);
    assert!(!all.contains("applying ") && !all.contains("reading the directory"), "{all}");
}
