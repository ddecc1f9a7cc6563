//! The shipped unit file: `systemd-analyze verify` is clean and `systemd-analyze security`
//! rates its exposure at 2.0 or below. (scripts/test.sh installs systemd-analyze.)

use std::process::Command;

const UNIT: &str = include_str!("../systemd/idsync.service");

/// A copy of the unit whose ExecStart names the binary under test: verify checks that
/// the executable exists.
fn unit_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idsync.service");
    assert!(UNIT.contains("/usr/bin/idsync run "), "the unit runs the daemon");
    std::fs::write(&path, UNIT.replace("/usr/bin/idsync", env!("CARGO_BIN_EXE_idsync"))).unwrap();
    (dir, path)
}

fn analyze(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is installed (scripts/test.sh installs Debian's systemd package)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unit_file_verifies_clean() {
    let (_dir, path) = unit_copy();
    let (ok, stdout, stderr) = analyze(&["verify", path.to_str().unwrap()]);
    assert!(ok, "systemd-analyze verify failed:\n{stdout}{stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("idsync.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify warns about the unit:\n{stdout}{stderr}"
    );
}

#[test]
fn unit_file_exposure_is_at_most_two() {
    let (_dir, path) = unit_copy();
    let (_, stdout, stderr) = analyze(&["security", "--offline=true", path.to_str().unwrap()]);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}{stderr}"));
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure from {line:?}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{stdout}");
}

#[test]
fn unit_file_uses_notify_credentials_and_a_dynamic_user() {
    for needle in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=idsync",
        "LoadCredential=",
        "WatchdogSec=",
        "ExecReload=",
    ] {
        assert!(UNIT.lines().any(|l| l.starts_with(needle)), "{needle} missing from the unit");
    }
}
