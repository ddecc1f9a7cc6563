#!/usr/bin/env bash
# Runs every check and test idsync has. Installs what the tests need when it is missing,
# so a fresh Debian 12 machine (as root) needs nothing else. CI calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# Test peers for later issues (slapd, promtool) are added here as their tests land.
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_apt[*]}: run as root or install them with apt-get" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

# The SCIM source's tests run the real third-party SCIM server from PyPI, in a venv inside
# the clone (Debian's python3 needs python3-venv for `python3 -m venv`).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing python3 / python3-venv: run as root or install them with apt-get" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
fi
SCIM_VENV=target/scim-venv
if ! "$SCIM_VENV/bin/scim2-server" --help >/dev/null 2>&1; then
  echo "== installing scim2-server into $SCIM_VENV"
  rm -rf "$SCIM_VENV"
  python3 -m venv "$SCIM_VENV"
  "$SCIM_VENV/bin/pip" install -q --disable-pip-version-check scim2-server==0.8.3
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== promtool: alert rules and their tests"
promtool check rules deploy/prometheus/idsync-alerts.yml
promtool test rules deploy/prometheus/idsync-alerts.test.yml
echo "== cargo test"
cargo test --all-targets
# Doc tests are not part of --all-targets.
cargo test --doc --quiet
