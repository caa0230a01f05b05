#!/usr/bin/env python3
"""A PortSIP v22 Pub/Sub client written from PortSIP's documentation (the 22.3 WSI page
and the webhook event reference), with websocket-client and certificate verification
(WEBSOCKET_CLIENT_CA_BUNDLE names the CA).

usage: v22_client.py URL DOMAIN USERNAME PASSWORD EXTENSION

Connects to URL (wss://HOST:8887/wsi), authenticates as the tenant administrator, checks
the reply ({"command":"auth","id":...,"status":0}), subscribes to extension_events for
EXTENSION and to cdr_events, checks that reply, then prints every message it receives as
one JSON line, checking each against the documented keys and types. Exits 0 after the
first call_cdr, 1 with the reason on the first deviation, 2 when nothing comes for 60 s.
"""
import json
import sys

from websocket import create_connection

url, domain, username, password, extension = sys.argv[1:6]


def fail(why):
    print("FAIL " + why, flush=True)
    sys.exit(1)


def expect_keys(msg, spec):
    for key, kind in spec.items():
        if key not in msg:
            fail("%s lacks %s: %s" % (msg.get("event_type"), key, json.dumps(msg)))
        if not isinstance(msg[key], kind) or (kind is int and isinstance(msg[key], bool)):
            fail("%s.%s is %r, not %s" % (msg.get("event_type"), key, msg[key], kind.__name__))


def unix_string(msg, key):
    v = msg[key]
    if not (isinstance(v, str) and v.isdigit()):
        fail("%s.%s is not a UNIX-seconds string: %r" % (msg["event_type"], key, v))


ws = create_connection(url, timeout=60)
ws.send(json.dumps({"command": "auth", "username": username, "password": password, "domain": domain}))
reply = json.loads(ws.recv())
if reply.get("command") != "auth" or reply.get("status") != 0 or not isinstance(reply.get("id"), str):
    fail("auth reply: %s" % json.dumps(reply))
ws.send(json.dumps({"command": "subscribe", "topics": ["extension_events", "cdr_events"], "extensions": [extension]}))
reply = json.loads(ws.recv())
if reply.get("command") != "subscribe" or reply.get("status") != 0:
    fail("subscribe reply: %s" % json.dumps(reply))
print("SUBSCRIBED", flush=True)

STATUS_ENTRY = {"extension": str, "extension_id": str, "call_status": str, "online": bool,
                "presence": str, "presence_note": str, "push_online": bool, "time": str}
# The event reference's tables, every field, with the types it gives ("Unix timestamp in
# string format", "numeric tenant ID in string format"); where the table gives none, the
# example's (status_code "0" and ring_duration "0" strings at the top, talk_duration a
# number; per target status_code a number, the durations strings). Where the example has
# a field the table lacks, it is checked too (call_targets[].id, user_data, ended_reason).
CALL_UPDATE = {"event_type": str, "time": str, "session_id": str, "cdr_id": str, "direction": str,
               "caller_display_name": str, "caller": str, "callee_display_name": str,
               "callee": str, "tenant_id": str, "did": str, "outbound_caller_id": str}
CALL_START = dict(CALL_UPDATE, user_data=str, call_id=str)
CDR = {"event_type": str, "start_time": str, "ring_time": str, "answered_time": str,
       "ended_time": str, "session_id": str, "cdr_id": str, "call_id": str, "callee": str,
       "callee_domain": str, "caller": str, "caller_display_name": str, "caller_domain": str,
       "call_status": str, "trunk_name": str, "tenant_id": str, "tenant_name": str,
       "status_code": str, "direction": str, "end_reason": str, "did": str,
       "outbound_caller_id": str, "ring_duration": str, "talk_duration": int,
       "call_targets": list, "user_data": str, "ended_reason": str}
TARGET = {"call_type": str, "start_time": str, "ring_time": str, "answered_time": str,
          "ended_time": str, "cdr_id": str, "callee": str, "caller": str, "destination": str,
          "status": str, "trunk_name": str, "cost": str, "status_code": int, "direction": str,
          "end_reason": str, "did": str, "outbound_caller_id": str, "ring_duration": str,
          "talk_duration": str, "id": str}
DIRECTIONS = ("internal", "inbound", "inbound_outbound", "outbound")
REASONS = ("None", "caller_disconnected", "callee_disconnected", "replaced", "referred",
           "redirected", "blind_transfer_complete", "attended_transfer_complete", "cancelled")
CALL_TYPES = ("callback_call", "none", "normal_call", "queue_call", "queue_callback_call",
              "ring_group_call")


def digits(msg, key):
    v = msg[key]
    if not (isinstance(v, str) and v.isdigit()):
        fail("%s.%s is not a number in a string: %r" % (msg.get("event_type"), key, v))


while True:
    try:
        msg = json.loads(ws.recv())
    except Exception as e:
        print("TIMEOUT %s" % e, flush=True)
        sys.exit(2)
    kind = msg.get("event_type")
    if kind == "extension_status":
        expect_keys(msg, {"status": list, "tenant_id": str})
        for entry in msg["status"]:
            expect_keys(entry, STATUS_ENTRY)
            unix_string(entry, "time")
            if entry["extension"] != "sip:%s@%s" % (extension, domain):
                fail("status for another extension: %s" % json.dumps(msg))
            if entry["call_status"] not in ("ON_CALL", "RINGING", ""):
                fail("call_status %r" % entry["call_status"])
    elif kind == "extension_call":
        expect_keys(msg, {"extension": str, "call_status": str, "tenant_id": str, "extension_id": str, "time": str})
        if msg["call_status"] not in ("ON_CALL", "RINGING", ""):
            fail("call_status %r" % msg["call_status"])
    elif kind in ("call_start", "call_update_info"):
        expect_keys(msg, CALL_START if kind == "call_start" else CALL_UPDATE)
        unix_string(msg, "time")
        digits(msg, "tenant_id")
        if msg["direction"] not in DIRECTIONS:
            fail("direction %r" % msg["direction"])
    elif kind == "call_cdr":
        expect_keys(msg, CDR)
        for key in ("start_time", "ended_time", "ring_time", "answered_time"):
            unix_string(msg, key)
        for key in ("tenant_id", "status_code", "ring_duration"):
            digits(msg, key)
        if msg["call_status"] not in ("answered", "noanswer", "fail"):
            fail("call_status %r" % msg["call_status"])
        if msg["direction"] not in ("ext", "in", "out", "in2out"):
            fail("direction %r" % msg["direction"])
        if msg["end_reason"] not in REASONS or msg["ended_reason"] != msg["end_reason"]:
            fail("end_reason %r, ended_reason %r" % (msg["end_reason"], msg["ended_reason"]))
        for target in msg["call_targets"]:
            expect_keys(target, TARGET)
            for key in ("start_time", "ended_time", "ring_time", "answered_time"):
                unix_string(target, key)
            for key in ("ring_duration", "talk_duration"):
                digits(target, key)
            if (target["end_reason"] not in REASONS or target["status"] not in ("answered", "noanswer")
                    or target["direction"] not in DIRECTIONS or target["call_type"] not in CALL_TYPES):
                fail("target %s" % json.dumps(target))
    elif kind in ("extension_presence", "extension_agent_status"):
        pass
    else:
        fail("a message v22 does not have on these topics: %s" % json.dumps(msg))
    print(json.dumps(msg), flush=True)
    if kind == "call_cdr":
        sys.exit(0)
