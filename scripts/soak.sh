#!/usr/bin/env bash
# Soak test: the daemon against the sandbox with faults on and a changing directory.
#   scripts/soak.sh [MINUTES]      the real run (default 30 minutes), release build
#   scripts/soak.sh --seconds 20   a short run on the debug build (the test command's mode)
# Prints a summary table and exits 1 on any violation (see scripts/soak.py for the checks).
# IDSYNC_BIN=path runs that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${IDSYNC_BIN:-}" ]; then
  if [ "${1:-}" = "--seconds" ]; then
    cargo build --quiet --bin idsync
    IDSYNC_BIN=target/debug/idsync
  else
    cargo build --quiet --release --bin idsync
    IDSYNC_BIN=target/release/idsync
  fi
fi
exec python3 scripts/soak.py --bin "$IDSYNC_BIN" "$@"
