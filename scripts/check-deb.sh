#!/usr/bin/env bash
# Checks a package built by scripts/package-deb.sh: its file list and modes
# (`dpkg-deb --contents`), the conffile, and, extracted into a temporary root, that
# `systemd-analyze verify` passes on the unit at its installed path, that the unit runs the
# packaged binary and documents the packaged README, and that the packaged config loads.
#
# Usage: scripts/check-deb.sh target/debian/idsync_<version>_amd64.deb
set -euo pipefail
deb="${1:?usage: scripts/check-deb.sh PACKAGE.deb}"
[ -f "$deb" ] || { echo "check-deb.sh: $deb not found" >&2; exit 1; }
fail() { echo "check-deb.sh: $deb: $*" >&2; exit 1; }

contents="$(dpkg-deb --contents "$deb")"
# mode path: each must be in the package, with exactly this mode.
while read -r mode path; do
  line="$(awk -v p="./$path" '$6 == p' <<<"$contents")"
  [ -n "$line" ] || fail "missing $path"
  [ "$(awk '{print $1}' <<<"$line")" = "$mode" ] || fail "$path is $(awk '{print $1}' <<<"$line"), want $mode"
  [ "$(awk '{print $2}' <<<"$line")" = root/root ] || fail "$path is not owned by root/root"
done <<'EOF'
-rwxr-xr-x usr/bin/idsync
-rw-r--r-- lib/systemd/system/idsync.service
drwxr-xr-x etc/idsync/
-rw-r--r-- etc/idsync/idsync.toml
drwx------ etc/idsync/credentials/
-rw-r--r-- usr/share/doc/idsync/README.md
-rw-r--r-- usr/share/doc/idsync/copyright
-rw-r--r-- usr/share/man/man1/idsync.1.gz
-rw-r--r-- usr/share/bash-completion/completions/idsync
-rw-r--r-- usr/share/zsh/vendor-completions/_idsync
-rw-r--r-- usr/share/fish/vendor_completions.d/idsync.fish
-rw-r--r-- usr/share/idsync/examples/directory.ldif
EOF
[ "$(dpkg-deb --field "$deb" Package)" = idsync ] || fail "Package is not idsync"
[ "$(dpkg-deb --field "$deb" Architecture)" = amd64 ] || fail "Architecture is not amd64"
case "$(basename "$deb")" in
  "idsync_$(dpkg-deb --field "$deb" Version)_amd64.deb") ;;
  *) fail "the file name does not say idsync_<Version>_amd64.deb" ;;
esac
[ "$(dpkg-deb --info "$deb" conffiles)" = /etc/idsync/idsync.toml ] || fail "/etc/idsync/idsync.toml is not the conffile"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
unit="$root/lib/systemd/system/idsync.service"
grep -q '^ExecStart=/usr/bin/idsync run -c /etc/idsync/idsync.toml$' "$unit" || fail "the unit does not run /usr/bin/idsync"
grep -q '^ExecStartPre=/usr/bin/idsync check-config -c /etc/idsync/idsync.toml$' "$unit" || fail "the unit does not check the config first"
doc="$(sed -n 's#^Documentation=file:##p' "$unit")"
[ -n "$doc" ] && [ -f "$root$doc" ] || fail "the unit's Documentation= ($doc) is not in the package"
# What `verify` needs besides the package: the targets the unit orders against and the
# ExecReload= command. Everything else it resolves inside the root, so ExecStart= must be
# the packaged /usr/bin/idsync.
mkdir -p "$root/usr/lib/systemd/system" "$root/bin"
cp -a /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
cp /bin/kill "$root/bin/kill"
if ! out="$(systemd-analyze verify --root="$root" /lib/systemd/system/idsync.service 2>&1)" || [ -n "$out" ]; then
  fail "systemd-analyze verify on the installed unit: $out"
fi

# The man page and the completions are idsync's own (generated from its clap definitions).
zcat "$root/usr/share/man/man1/idsync.1.gz" | grep -q '^\.TH idsync 1' || fail "the man page is not idsync(1)"
grep -q check-config "$root/usr/share/bash-completion/completions/idsync" || fail "bash completions lack check-config"
grep -q check-config "$root/usr/share/zsh/vendor-completions/_idsync" || fail "zsh completions lack check-config"
grep -q check-config "$root/usr/share/fish/vendor_completions.d/idsync.fish" || fail "fish completions lack check-config"

# The packaged config loads as installed: its paths point into the package, its key is a
# credential (looked up in $CREDENTIALS_DIRECTORY) and its state is the unit's.
conf="$root/etc/idsync/idsync.toml"
grep -q '^state_dir = "/var/lib/idsync"' "$conf" || fail "the config's state_dir is not /var/lib/idsync"
grep -q '^api_key_file = "wandb-api-key"' "$conf" || fail "the config's API key is not the wandb-api-key credential"
mkdir -p "$root/check/credentials"
sed "s#/usr/share/idsync/#$root/usr/share/idsync/#g" "$conf" >"$root/check/idsync.toml"
install -m 0600 /dev/null "$root/check/credentials/wandb-api-key"
echo "check-deb-key" >"$root/check/credentials/wandb-api-key"
CREDENTIALS_DIRECTORY="$root/check/credentials" "$root/usr/bin/idsync" check-config -c "$root/check/idsync.toml" >/dev/null \
  || fail "the packaged /etc/idsync/idsync.toml does not pass check-config"
echo "check-deb.sh: $deb OK"
