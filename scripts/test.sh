#!/usr/bin/env bash
# Runs every test: installs the real brokers and tools the tests use, then `cargo test`,
# the live suites against a real Asterisk included (tests/live_asterisk.rs,
# tests/freepbx_live.rs), then their call scenarios on Asterisk 20 and 18
# (scripts/test-versions.sh).
#
# The packaging tests (tests/cross_qemu.rs, tests/deb.rs) build pbxtap statically for
# three targets and install it in a Debian chroot: minutes of CPU and little waiting,
# while the live suites mostly wait on calls. So they run beside the rest, at a lower
# priority (nice 10), from the start; their output is kept in target/test-logs/packaging.log
# and printed when they end. Nothing is tested less: every suite runs, and the exit status
# is a failure if any failed.
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
packaging=(cross_qemu deb)
mkdir -p target/test-logs
log=target/test-logs/packaging.log
nice -n 10 cargo test --no-fail-fast "${packaging[@]/#/--test=}" >"$log" 2>&1 &
packaging_pid=$!
# Every other target, as `cargo test --all-targets` would run it.
others=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  [[ " ${packaging[*]} " == *" $name "* ]] || others+=("--test=$name")
done
status=0
cargo test --no-fail-fast --lib --bins --benches --examples "${others[@]}" || status=$?
# The live scenarios again on Asterisk 20 LTS and 18 (from the lab unless
# PBXTAP_ASTERISK_PREFIX_20 / _18 name them); run even when the above failed, so one run
# shows every failure.
scripts/test-versions.sh || status=$?
packaging_status=0
wait "$packaging_pid" || packaging_status=$?
echo "---- packaging tests (${packaging[*]}), run beside the others: $log" >&2
cat "$log" >&2
[ "$packaging_status" -eq 0 ] || status=$packaging_status
exit "$status"
