#!/usr/bin/env bash
# Runs the live suite (tests/live_asterisk.rs) against a real Asterisk 22 and SIPp.
#
# PBXTAP_ASTERISK_PREFIX names the Asterisk + SIPp prefix (sbin/asterisk,
# lib/asterisk/modules, bin/sipp). Unset, it is the lab's bundle in ../shared/lab, whose
# runtime libraries are installed first (root or sudo). Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PBXTAP_ASTERISK_PREFIX:-}" ]; then
  lab=../shared/lab/bin/lab.sh
  [ -x "$lab" ] || { echo "test-live.sh: no $lab and no PBXTAP_ASTERISK_PREFIX: nothing to test against" >&2; exit 1; }
  scripts/install-test-deps.sh
  PBXTAP_ASTERISK_PREFIX=$("$lab" prefix)
  export PBXTAP_ASTERISK_PREFIX
fi
echo "live suite against $("$PBXTAP_ASTERISK_PREFIX/sbin/asterisk" -V 2>/dev/null || echo "$PBXTAP_ASTERISK_PREFIX")" >&2
cargo test --test live_asterisk "$@"
