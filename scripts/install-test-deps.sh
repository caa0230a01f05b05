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
