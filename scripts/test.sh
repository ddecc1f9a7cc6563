#!/usr/bin/env bash
# Runs every check and test idsync has. Installs what the tests need when it is missing,
# so a fresh Debian 12 machine (as root) needs nothing else. CI calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# Test peers for later issues (slapd, promtool) are added here as their tests land.
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# OpenLDAP for tests/ldap.rs and benches/ldap.rs (started by the tests themselves).
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapsearch >/dev/null || need_apt+=(ldap-utils)
command -v openssl >/dev/null || need_apt+=(openssl)
# PostgreSQL for the state-backend tests (tests/common/postgres.rs starts its own server;
# the package's cluster need not run).
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need_apt+=(postgresql)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_apt[*]}: run as root or install them with apt-get" >&2
    exit 1
  fi
  apt-get update -q
  # Packages must not start their system services (the tests run their own slapd):
  # a policy-rc.d that denies starts, removed again unless it was already there.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
# A whole test run is not an edit loop: the incremental cache would only add ~1.4 GiB.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The LDAP tests skip when slapd is missing on a developer's machine; here they must run.
export IDSYNC_REQUIRE_SLAPD=1
# Likewise the PostgreSQL backend's tests.
export IDSYNC_REQUIRE_POSTGRES=1

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

echo "== cargo fmt --check (idsync only: vendor/ keeps its upstream formatting)"
cargo fmt -- --check
echo "== layering: every crate:: path points down (ARCHITECTURE.md)"
python3 scripts/check-layering.py
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== promtool: alert rules and their tests"
promtool check rules deploy/prometheus/idsync-alerts.yml
promtool test rules deploy/prometheus/idsync-alerts.test.yml
echo "== cargo test"
cargo test --all-targets
# Doc tests are not part of --all-targets.
cargo test --doc --quiet
echo "== soak: the daemon against a faulty sandbox for 20 s (scripts/soak.sh 30 is the real run)"
./scripts/soak.sh --seconds 20
echo "== Debian package: build it (release) and check its contents, conffile, unit and config"
deb="$(./scripts/package-deb.sh)"
./scripts/check-deb.sh "$deb"
echo "== fuzz targets, 3 s each so they cannot rot (scripts/fuzz.sh 600 is the real run)"
./scripts/fuzz.sh 3
