#!/usr/bin/env python3
"""The reference AMI client of benches/asterisk_cost.rs: what a script that forwards
every event does, at its cheapest. It logs in with `Events: on`, reads everything Asterisk
sends with a plain socket, and counts the bytes and the messages (blocks ending in a blank
line). It does nothing else with them, so what it costs Asterisk is the cost of a listener
that takes every event.

usage: reference_client.py PORT USERNAME SECRET [EVENTS]

EVENTS is the login's `Events:` value (default `on`); `off` makes a session that is sent
nothing: what merely having an AMI client costs Asterisk.

Prints `connected` once logged in. On SIGTERM prints `bytes=N messages=M` and exits 0.
"""
import signal
import socket
import sys

port, username, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
events = sys.argv[4] if len(sys.argv) > 4 else "on"
counts = {"bytes": 0, "messages": 0}


def done(*_):
    print("bytes=%d messages=%d" % (counts["bytes"], counts["messages"]), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(("Action: Login\r\nUsername: %s\r\nSecret: %s\r\nEvents: %s\r\n\r\n"
              % (username, secret, events)).encode())
sock.settimeout(None)
tail = b""
logged_in = False
while True:
    data = sock.recv(65536)
    if not data:
        done()
    counts["bytes"] += len(data)
    # A message ends with an empty line; one may straddle two reads.
    chunk = tail + data
    counts["messages"] += chunk.count(b"\r\n\r\n")
    tail = chunk[-3:]
    if not logged_in and b"Response: Success" in chunk:
        logged_in = True
        print("connected", flush=True)
