#!/usr/bin/env bash
# Builds target/debian/idsync_<version>_amd64.deb with dpkg-deb (no cargo-deb: nothing to
# install from the network). Contents:
#   /usr/bin/idsync
#   /lib/systemd/system/idsync.service          systemd/idsync.service (ExecStart=/usr/bin/idsync)
#   /etc/idsync/idsync.toml                     config.example.toml, production paths (a conffile)
#   /etc/idsync/credentials/                    mode 0700: LoadCredential= reads secrets from here
#   /usr/share/doc/idsync/README.md, copyright  where the unit's Documentation= points
#   /usr/share/idsync/examples/                 the example directory, inventory and sandbox org
#   /usr/share/man/man1/idsync.1.gz             `idsync man`
#   bash, zsh and fish completions              `idsync completions SHELL`
# The service is not enabled or started: the config needs editing first (README).
#
# Usage: scripts/package-deb.sh [--binary PATH] [--out DIR]
#   --binary PATH  package this idsync binary instead of building `cargo build --release`
#   --out DIR      where the .deb goes (default target/debian)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/debian"
while (($#)); do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "package-deb.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done

command -v dpkg-deb >/dev/null || { echo "package-deb.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
arch="$(dpkg --print-architecture)"
if [ "$arch" != amd64 ]; then
  echo "package-deb.sh: builds amd64 packages only; this machine is $arch" >&2
  exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
[ -n "$version" ] || { echo "package-deb.sh: no version in Cargo.toml" >&2; exit 1; }

if [ -z "$binary" ]; then
  cargo build --release --locked --quiet
  binary="target/release/idsync"
fi
[ -x "$binary" ] || { echo "package-deb.sh: $binary is not an executable" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

install -D -m 0755 "$binary" "$root/usr/bin/idsync"
install -D -m 0644 systemd/idsync.service "$root/lib/systemd/system/idsync.service"
grep -q '^ExecStart=/usr/bin/idsync run ' "$root/lib/systemd/system/idsync.service" \
  || { echo "package-deb.sh: the unit does not run /usr/bin/idsync" >&2; exit 1; }

# The example config with the paths a package install has. Each edit must apply, so a
# change to config.example.toml cannot silently ship the development paths.
install -d -m 0755 "$root/etc/idsync"
install -d -m 0700 "$root/etc/idsync/credentials"
conf="$root/etc/idsync/idsync.toml"
{
  echo "# /etc/idsync/idsync.toml, installed by the idsync package (a conffile: upgrades keep your"
  echo "# edits). Edit [source], [target] and [policy], put the W&B API key in"
  echo "# /etc/idsync/credentials/wandb-api-key (mode 0600), then:"
  echo "#   CREDENTIALS_DIRECTORY=/etc/idsync/credentials idsync check-config -c /etc/idsync/idsync.toml --connect"
  echo "#   systemctl enable --now idsync"
  echo "# Every key is documented below, with its default."
  echo
  cat config.example.toml
} >"$conf"
edit() { # edit REGEX REPLACEMENT: one line of the config, which must match
  grep -q -E "$1" "$conf" || { echo "package-deb.sh: config.example.toml has no line matching $1" >&2; exit 1; }
  sed -i -E "s|$1|$2|" "$conf"
}
edit '^path = "examples/directory.ldif"' 'path = "/usr/share/idsync/examples/directory.ldif"'
edit '^api_key_file = "examples/secrets/wandb-api-key"' 'api_key_file = "wandb-api-key"'
edit '^pipeline_inventory = "examples/pipelines.toml"' 'pipeline_inventory = "/usr/share/idsync/examples/pipelines.toml"'
edit '^state_dir = "state"( *)#.*$' 'state_dir = "/var/lib/idsync"\1# the unit'"'"'s StateDirectory=idsync: keep it here'
chmod 0644 "$conf"

install -D -m 0644 README.md "$root/usr/share/doc/idsync/README.md"
install -d -m 0755 "$root/usr/share/idsync/examples"
install -m 0644 examples/directory.ldif examples/pipelines.toml examples/sandbox-org.json "$root/usr/share/idsync/examples/"
cat >"$root/usr/share/doc/idsync/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: idsync

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF

install -d -m 0755 "$root/usr/share/man/man1"
"$root/usr/bin/idsync" man | gzip -9n >"$root/usr/share/man/man1/idsync.1.gz"
install -d -m 0755 "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$root/usr/bin/idsync" completions bash >"$root/usr/share/bash-completion/completions/idsync"
"$root/usr/bin/idsync" completions zsh >"$root/usr/share/zsh/vendor-completions/_idsync"
"$root/usr/bin/idsync" completions fish >"$root/usr/share/fish/vendor_completions.d/idsync.fish"
chmod 0644 "$root/usr/share/man/man1/idsync.1.gz" "$root/usr/share/bash-completion/completions/idsync" \
  "$root/usr/share/zsh/vendor-completions/_idsync" "$root/usr/share/fish/vendor_completions.d/idsync.fish"

install -d -m 0755 "$root/DEBIAN"
installed_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<EOF
Package: idsync
Version: $version
Architecture: amd64
Maintainer: idsync maintainers <idsync@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= 2.34)
Section: admin
Priority: optional
Description: keeps a Weights & Biases organization in step with the company directory
 idsync reads people and groups from LDAP / Active Directory, an LDIF export or an
 identity provider (SCIM, Okta, Entra ID), plans the W&B org and team changes that
 follow, holds the dangerous ones behind guards (last admin, pipeline keys, mass
 removals, a shrunken directory) and applies the rest over W&B's SCIM API. It runs
 as a systemd service with Prometheus metrics.
EOF
echo /etc/idsync/idsync.toml >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# The service is not enabled or started: /etc/idsync/idsync.toml needs editing first.
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

mkdir -p "$out"
deb="$out/idsync_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
