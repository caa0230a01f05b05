#!/usr/bin/env bash
# Runs every test: installs the real brokers and tools the tests use, then `cargo test`,
# the live suites against a real Asterisk included (tests/live_asterisk.rs,
# tests/freepbx_live.rs, tests/capture_live.rs), and their call scenarios on Asterisk 20
# and 18 (scripts/test-versions.sh).
#
# On a 2-core machine the CPU is what the run waits for, so the work is laid out to keep
# it busy (measured in README.md, next to this command):
# - the packaging tests' static builds (three targets, standard library included, into
#   target/cross: no lock shared with target/debug) start at once, at nice 10, and
#   tests/cross_qemu.rs and tests/deb.rs run after them;
# - one debug build of every other test target, then the suites, with the live scenarios
#   on Asterisk 20 and 18 beside them (each Asterisk on its own free ports): the live
#   suites mostly wait on calls, which leaves the CPU to the static builds.
# The side jobs' output is kept in target/test-logs/ and printed when they end. Nothing is
# tested less: every suite runs, and the exit status is a failure if any failed.
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
logs=target/test-logs
mkdir -p "$logs"
packaging=(cross_qemu deb)
(
  renice -n 10 -p "$BASHPID" >/dev/null
  for target in aarch64-unknown-linux-musl x86_64-unknown-linux-musl arm-unknown-linux-musleabihf; do
    # A failed build fails again, with its output, in the test that needs it.
    cross/build-here.sh "$target" qemu-test >/dev/null 2>&1 || true
  done
  cargo test --no-fail-fast "${packaging[@]/#/--test=}"
) >"$logs/packaging.log" 2>&1 &
packaging_pid=$!
# Every other target, as `cargo test --all-targets` would run it.
others=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  [[ " ${packaging[*]} " == *" $name "* ]] || others+=("--test=$name")
done
targets=(--lib --bins --benches --examples "${others[@]}")
status=0
cargo test --no-run "${targets[@]}" || status=$?
# The live scenarios again on Asterisk 20 LTS and 18 (from the lab unless
# PBXTAP_ASTERISK_PREFIX_20 / _18 name them).
scripts/test-versions.sh >"$logs/versions.log" 2>&1 &
versions_pid=$!
cargo test --no-fail-fast "${targets[@]}" || status=$?
for job in versions packaging; do
  pid_var="${job}_pid"
  job_status=0
  wait "${!pid_var}" || job_status=$?
  echo "---- $job, run beside the others (exit $job_status): $logs/$job.log" >&2
  cat "$logs/$job.log" >&2
  [ "$job_status" -eq 0 ] || status=$job_status
done
exit "$status"
