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
