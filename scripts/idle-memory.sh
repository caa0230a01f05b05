#!/usr/bin/env bash
# Resident memory of an idle `pbxtap run` with every sink configured, AMI connected, and
# where it goes (docs/performance.md, "Memory with every sink").
#
# usage: scripts/idle-memory.sh [PBXTAP_BINARY]   (default: target/release/pbxtap; the
#        shipped static build: cross/build-here.sh x86_64-unknown-linux-musl, then
#        target/cross/x86_64-unknown-linux-musl/release/pbxtap)
#
# Starts a fake Asterisk that accepts any login (python3), a real nats-server and a real
# mosquitto on free ports; the webhook's endpoint is down, the WebSocket feed listens. After
# 5 s it prints VmRSS and its split (anonymous, file-backed) and the largest mappings.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/pbxtap}
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ami=$(port) nats=$(port) mqtt=$(port) ws=$(port) metrics=$(port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
python3 - "$ami" <<'PY' &
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(5)
def serve(c):
    c.sendall(b"Asterisk Call Manager/11.0.0\r\n")
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            return
        buf += d
        while b"\r\n\r\n" in buf:
            msg, buf = buf.split(b"\r\n\r\n", 1)
            aid = b""
            for line in msg.split(b"\r\n"):
                if line.lower().startswith(b"actionid:"):
                    aid = line.split(b":", 1)[1].strip()
            c.sendall(b"Response: Success\r\nActionID: " + aid + b"\r\n\r\n")
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
pids+=($!)
nats-server -a 127.0.0.1 -p "$nats" >/dev/null 2>&1 & pids+=($!)
mosquitto -p "$mqtt" >/dev/null 2>&1 & pids+=($!)
cat >"$dir/pbxtap.toml" <<EOC
host = "mem"
[ami]
address = "127.0.0.1:$ami"
username = "pbxtap"
secret = "secret"
manager_conf = "/dev/null"
[watchdog]
enabled = false
[metrics]
enabled = true
listen = "127.0.0.1:$metrics"
[[sinks]]
type = "stdout"
[[sinks]]
type = "nats"
url = "nats://127.0.0.1:$nats"
[[sinks]]
type = "mqtt"
url = "mqtt://127.0.0.1:$mqtt"
[[sinks]]
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[sinks]]
type = "websocket"
listen = "127.0.0.1:$ws"
authkey = "idle-memory-authkey"
EOC
"$bin" check-config "$dir/pbxtap.toml" >/dev/null
"$bin" run --config "$dir/pbxtap.toml" >/dev/null 2>"$dir/stderr" &
pid=$!
pids+=($pid)
sleep 5
kill -0 "$pid" || { cat "$dir/stderr"; exit 1; }
grep -E "^(VmRSS|RssAnon|RssFile|Threads)" "/proc/$pid/status"
echo "largest mappings (KiB resident):"
awk '/^[0-9a-f]+-/{name=$6} /^Rss:/{if ($2 >= 100) print "  " $2 "  " (name == "" ? "[anonymous]" : name)}' \
  "/proc/$pid/smaps" | sort -rn | head -8
