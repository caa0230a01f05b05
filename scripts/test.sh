#!/usr/bin/env bash
# Runs every test: installs the real brokers and tools the tests use, then `cargo test`,
# the live suites against a real Asterisk included (tests/live_asterisk.rs,
# tests/freepbx_live.rs), then their call scenarios on Asterisk 20 and 18
# (scripts/test-versions.sh).
#
# The live suite takes Asterisk and SIPp from PBXTAP_ASTERISK_PREFIX; unset, from the lab
# beside the checkout (../shared/lab). With neither, the live suite fails and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if [ -z "${PBXTAP_ASTERISK_PREFIX:-}" ] && [ -x ../shared/lab/bin/lab.sh ]; then
  PBXTAP_ASTERISK_PREFIX=$(../shared/lab/bin/lab.sh prefix)
  export PBXTAP_ASTERISK_PREFIX
fi
status=0
cargo test --all-targets --no-fail-fast || status=$?
# The live scenarios again on Asterisk 20 LTS and 18 (from the lab unless
# PBXTAP_ASTERISK_PREFIX_20 / _18 name them); run even when the above failed, so one run
# shows every failure.
scripts/test-versions.sh || status=$?
exit "$status"
