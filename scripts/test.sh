#!/usr/bin/env bash
# Runs every test: installs the real brokers and tools the tests use, then `cargo test`,
# the live suite against a real Asterisk included (tests/live_asterisk.rs).
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
cargo test --all-targets --no-fail-fast
