#!/usr/bin/env bash
# Runs the live scenarios that older Asterisks answer differently on the lab's Asterisk
# 20.20.1 LTS and 18.26.4 (no TechCause, chan_sip built): the calls' outcomes (answered,
# refused 486/404/603/480, cancelled, unanswered, ring group, queue, originate), a chan_sip
# phone's registration and call (tests/pbx/etc/sip.conf), and the whole FreePBX-shaped suite. The README's version matrix says what differs and why.
#
# PBXTAP_ASTERISK_PREFIX_20 and PBXTAP_ASTERISK_PREFIX_18 name the prefixes; unset, the
# lab's bundles in ../shared/lab (LAB_ASTERISK=20 / 18). With neither, it fails: the suite
# never skips. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
lab=../shared/lab/bin/lab.sh
scenarios=(
  a_call_answered_and_hung_up_by_the_caller
  a_busy_callee_486
  a_callee_not_found_404
  a_declined_call_603
  an_unavailable_callee_480
  a_caller_who_cancels_while_it_rings
  a_call_nobody_answers
  a_ring_group_where_one_of_two_phones_answers
  a_queue_call_answered_after_a_wait
  a_call_made_with_ami_originate
  # Ignored where it runs by default (22 has no chan_sip); run here with --include-ignored.
  a_chan_sip_phone_registers_and_calls_a_pjsip_phone
)
for version in 20 18; do
  var="PBXTAP_ASTERISK_PREFIX_$version"
  prefix="${!var:-}"
  if [ -z "$prefix" ]; then
    [ -x "$lab" ] || { echo "test-versions.sh: no $lab and no $var: nothing to test against" >&2; exit 1; }
    prefix=$(LAB_ASTERISK=$version "$lab" prefix)
  fi
  echo "live scenarios against $(LD_LIBRARY_PATH="$prefix/lib" "$prefix/sbin/asterisk" -V 2>/dev/null || echo "$prefix")" >&2
  # Their recordings apart from the main suites' (which run beside them in scripts/test.sh).
  export PBXTAP_LIVE_AMI_DIR="$PWD/target/tmp/live-ami-asterisk$version"
  PBXTAP_ASTERISK_PREFIX="$prefix" cargo test --test live_asterisk "$@" -- --include-ignored "${scenarios[@]}"
  PBXTAP_ASTERISK_PREFIX="$prefix" cargo test --test freepbx_live "$@"
done
