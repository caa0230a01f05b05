#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12 (idempotent: quick when all is present).
# Each package is named once, with the tests that need it.
set -euo pipefail

packages=(
  nats-server   # tests/nats_*.rs: a real NATS server
  mosquitto     # tests/mqtt_*.rs: a real MQTT broker (and mosquitto_passwd)
  openssl       # tests/{mqtt,nats,webhook}_sink.rs: private CAs and server certificates for TLS
  coreutils     # tests/watchdog.rs: `sleep` stands in for Asterisk, `date` stamps restarts
  util-linux    # tests/systemd_notify.rs: `unshare` gives pbxtap a private mount namespace
  mount         # tests/systemd_notify.rs: `mount --bind` puts a test socket at journald's path
  python3-websockets  # tests/websocket_sink.rs: an independent WebSocket client
  systemd       # tests/packaging.rs: systemd-analyze verify / security on the unit
  python3       # tests/packaging.rs: yocto/meta-pbxtap/scripts/gen-crates-inc.py
  python3-pip   # the pip packages below
  file          # tests/cross_qemu.rs: is the aarch64 binary static?
  qemu-user     # tests/cross_qemu.rs, deb.rs: runs the aarch64 binary
  debootstrap   # tests/deb.rs: a fresh Debian 12 to install the .deb into
  lintian       # tests/deb.rs: the .debs pass Debian's checks
  rustc-web     # tests/cross_qemu.rs (cross/build-here.sh): rustc that builds std for the target
  cargo-web     #   its matching cargo
  rust-web-src  #   the standard library's source for -Zbuild-std
)
pip_packages=(
  oelint-adv==9.11.2  # tests/packaging.rs: lints yocto/meta-pbxtap
  ziglang==0.17.1     # tests/cross_qemu.rs (cross/build-here.sh): C compiler and linker with musl
  websocket-client==1.8.0  # tests/portsip_conformance.rs: the PortSIP clients' WebSocket library
  prometheus-client==0.21.1  # tests/metrics.rs: Prometheus' own text-format parser
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# tests/live_asterisk.rs: the runtime libraries of the lab's Asterisk 22 and SIPp (when the
# lab is beside the checkout; PBXTAP_ASTERISK_PREFIX may name another install instead).
lab=../shared/lab/bin/lab.sh
if [ -z "${PBXTAP_ASTERISK_PREFIX:-}" ] && [ -x "$lab" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! $sudo "$lab" deps >/dev/null 2>&1; then
    $sudo apt-get update -qq
    $sudo "$lab" deps >/dev/null
  fi
fi

# tests/enswitch_live.rs: wscat, the client Enswitch's guide says to watch the feed with
# (npm; Debian's npm package only where the machine has none).
if ! command -v wscat >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v npm >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm
  fi
  $sudo npm install -g --no-fund --no-audit wscat@6.1.0 >/dev/null
fi

# For the user running the tests (~/.local/bin, which the tests also search).
pip_missing=()
for p in "${pip_packages[@]}"; do
  python3 -m pip show -q "${p%%==*}" >/dev/null 2>&1 || pip_missing+=("$p")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
  python3 -m pip install -q --user --break-system-packages "${pip_missing[@]}"
fi
