//! Recorded Asterisk sessions through the parser and the normalizer: the exact events.

use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::event::{Body, Value};
use pbxtap::normalize::{NormalizeConfig, Normalizer};

/// Fields shown in the one-line rendering of an event, when present and not empty.
const SHOWN: &[&str] = &[
    "call_id",
    "from",
    "to",
    "target",
    "aor",
    "peer_aor",
    "status",
    "extension",
    "state",
    "queue",
    "agent",
    "caller",
    "reason",
    "cause",
    "cause_name",
    "sip_code",
    "dial_status",
    "answered",
    "pbx_answered",
    "disposition",
    "extra_headers",
];

/// One line per event: `call.ended call_id=1.2 cause=16 ...`.
pub fn render(body: &Body) -> String {
    let mut line = format!("{}.{}", body.class().as_str(), body.name());
    body.fields().for_each_field(&mut |k, v| {
        if !SHOWN.contains(&k) {
            return;
        }
        let v = match v {
            Value::Str("") => return,
            Value::Str(s) => s.to_string(),
            Value::U64(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Headers(h) if h.is_empty() => return,
            Value::Headers(h) => h
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        line.push_str(&format!(" {k}={v}"));
    });
    line
}

/// Feeds a recording, one message per simulated second, then a tick, and renders every
/// event.
fn events_of(file: &str) -> Vec<String> {
    bodies_of(file, render)
}

/// Feeds a recording as [`events_of`] does, and gives each event to `each`.
fn bodies_of(file: &str, each: fn(&Body) -> String) -> Vec<String> {
    let data = std::fs::read(format!(
        "{}/tests/fixtures/ami/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {file}: {e}"));
    let mut parser = Parser::new(Limits::default());
    let mut norm = Normalizer::new(NormalizeConfig::default());
    let mut out = Vec::new();
    let mut now = 1_000_000_000_000_000u64;
    parser.push(&data, &mut |f| {
        if let Ok(Frame::Message(m)) = f {
            now += 1_000_000;
            norm.handle(&m, now, &mut |b| out.push(each(&b)));
        }
    });
    // The daemon's tick a second later: what waits for the next message (a call's CDR
    // after the last Hangup) goes out.
    norm.tick(now + 1_000_000, &mut |b| out.push(each(&b)));
    out
}

fn check(file: &str, expected: &[&str]) {
    let got = events_of(file);
    if got != expected {
        panic!(
            "{file}: events differ\n--- got:\n{}\n--- expected:\n{}",
            got.join("\n"),
            expected.join("\n")
        );
    }
}

#[test]
fn registration_and_unregistration() {
    check(
        "01-register-unregister.ami",
        &[
            "endpoint.presence extension=101 state=available",
            "endpoint.registered aor=101 status=NonQualified",
            "endpoint.presence extension=102 state=available",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ready",
            "endpoint.registered aor=102 status=NonQualified",
            "endpoint.presence extension=103 state=available",
            "queue.agent_status queue=lab-queue agent=PJSIP/103 state=ready",
            "endpoint.registered aor=103 status=NonQualified",
            "endpoint.unregistered aor=101 status=Removed",
            "endpoint.presence extension=101 state=unavailable",
            "endpoint.presence extension=102 state=unavailable",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=unavailable",
            "endpoint.unregistered aor=102 status=Removed",
            "endpoint.presence extension=103 state=unavailable",
            "queue.agent_status queue=lab-queue agent=PJSIP/103 state=unavailable",
            "endpoint.unregistered aor=103 status=Removed",
        ],
    );
}

#[test]
fn call_answered_and_hung_up_normal_clearing() {
    check(
        "02-call-answered.ami",
        &[
            "call.started call_id=1795376847.2 from=101 to=102",
            "call.routed call_id=1795376847.2 target=102",
            "target.added call_id=1795376847.2 target=102 cause=0 sip_code=0",
            "target.ringing call_id=1795376847.2 target=102 cause=0 sip_code=0",
            "call.ringing call_id=1795376847.2 target=102",
            "endpoint.presence extension=102 state=ringing",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ringing",
            "endpoint.presence extension=101 state=in_use",
            "call.answered call_id=1795376847.2 target=102",
            "endpoint.presence extension=102 state=in_use",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=in_call",
            "endpoint.presence extension=101 state=unavailable",
            "target.ended call_id=1795376847.2 target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
            "call.ended call_id=1795376847.2 from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
            "endpoint.presence extension=102 state=available",
            "call.cdr call_id=1795376847.2 disposition=ANSWERED",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ready",
        ],
    );
}

#[test]
fn hold_and_unhold() {
    check(
        "03-call-hold-unhold.ami",
        &[
            "call.started call_id=1795376859.4 from=101 to=102",
            "call.routed call_id=1795376859.4 target=102",
            "target.added call_id=1795376859.4 target=102 cause=0 sip_code=0",
            "target.ringing call_id=1795376859.4 target=102 cause=0 sip_code=0",
            "call.ringing call_id=1795376859.4 target=102",
            "endpoint.presence extension=102 state=ringing",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ringing",
            "endpoint.presence extension=101 state=in_use",
            "call.answered call_id=1795376859.4 target=102",
            "endpoint.presence extension=102 state=in_use",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=in_call",
            "call.held call_id=1795376859.4 aor=101 peer_aor=102",
            "endpoint.presence extension=102 state=on_hold",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=in_call",
            "call.unheld call_id=1795376859.4 aor=101 peer_aor=102",
            "endpoint.presence extension=102 state=in_use",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=in_call",
            "target.ended call_id=1795376859.4 target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
            "endpoint.presence extension=102 state=available",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ready",
            "call.ended call_id=1795376859.4 from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
            "endpoint.presence extension=101 state=unavailable",
            "call.cdr call_id=1795376859.4 disposition=ANSWERED",
        ],
    );
}

#[test]
fn busy_is_cause_17_and_486() {
    check(
        "04-call-busy-dialplan.ami",
        &[
            "call.started call_id=1795376876.6 from=101 to=486",
            "endpoint.presence extension=101 state=busy",
            "call.failed call_id=1795376876.6 target=486 sip_code=486 cause=17 cause_name=USER_BUSY",
            "call.ended call_id=1795376876.6 from=101 to=486 cause=17 cause_name=USER_BUSY sip_code=486 answered=false pbx_answered=false",
            "endpoint.presence extension=101 state=unavailable",
            "call.cdr call_id=1795376876.6 disposition=BUSY",
        ],
    );
}

#[test]
fn congestion_is_cause_34_and_503() {
    check(
        "06-call-congestion-dialplan.ami",
        &[
            "call.started call_id=1795376891.9 from=101 to=503",
            "endpoint.presence extension=101 state=busy",
            "call.failed call_id=1795376891.9 target=503 sip_code=503 cause=34 cause_name=NORMAL_CIRCUIT_CONGESTION",
            "call.ended call_id=1795376891.9 from=101 to=503 cause=34 cause_name=NORMAL_CIRCUIT_CONGESTION sip_code=503 answered=false pbx_answered=false",
            "endpoint.presence extension=101 state=unavailable",
            "call.cdr call_id=1795376891.9 disposition=CONGESTION",
        ],
    );
}

#[test]
fn no_answer() {
    check(
        "07-call-noanswer-timeout.ami",
        &[
            "call.started call_id=1795376899.10 from=101 to=102",
            "call.routed call_id=1795376899.10 target=102",
            "target.added call_id=1795376899.10 target=102 cause=0 sip_code=0",
            "target.ringing call_id=1795376899.10 target=102 cause=0 sip_code=0",
            "call.ringing call_id=1795376899.10 target=102",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ringing",
            "endpoint.presence extension=102 state=ringing",
            "endpoint.presence extension=101 state=in_use",
            "target.noanswer call_id=1795376899.10 target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
            "call.noanswer call_id=1795376899.10 target=102",
            "endpoint.presence extension=101 state=unavailable",
            "target.ended call_id=1795376899.10 target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
            "call.ended call_id=1795376899.10 from=101 to=102 cause=19 cause_name=NO_ANSWER sip_code=480 answered=false pbx_answered=false",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ready",
            "call.cdr call_id=1795376899.10 disposition=NO ANSWER",
            "endpoint.presence extension=102 state=available",
        ],
    );
}

#[test]
fn unregistered_extension_fails_with_404() {
    check(
        "09-call-unregistered-extension.ami",
        &[
            "call.started call_id=1795376937.14 from=101 to=103",
            "call.failed call_id=1795376937.14 target=103 sip_code=404 cause=3 cause_name=NO_ROUTE_DESTINATION",
            "call.ended call_id=1795376937.14 from=101 to=103 cause=3 cause_name=NO_ROUTE_DESTINATION sip_code=404 answered=false pbx_answered=false",
            "call.cdr call_id=1795376937.14 disposition=FAILED",
        ],
    );
}

#[test]
fn unknown_extension_gives_no_call_events() {
    check("10-call-nonexistent-extension.ami", &[]);
}

#[test]
fn queue_call_answered_by_one_agent() {
    check(
        "11-queue-answered.ami",
        &[
            "call.started call_id=1795376952.15 from=101 to=8001",
            "endpoint.presence extension=101 state=in_use",
            "queue.caller_joined queue=lab-queue call_id=1795376952.15 caller=101",
            "call.routed call_id=1795376952.15 target=102",
            "target.added call_id=1795376952.15 target=102 cause=0 sip_code=0",
            "target.added call_id=1795376952.15 target=103 cause=0 sip_code=0",
            "target.ringing call_id=1795376952.15 target=102 cause=0 sip_code=0",
            "call.ringing call_id=1795376952.15 target=102",
            "endpoint.presence extension=102 state=ringing",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ringing",
            "target.ringing call_id=1795376952.15 target=103 cause=0 sip_code=0",
            "queue.agent_status queue=lab-queue agent=PJSIP/103 state=ringing",
            "endpoint.presence extension=103 state=ringing",
            "call.answered call_id=1795376952.15 target=102",
            "endpoint.presence extension=102 state=in_use",
            "target.ended call_id=1795376952.15 target=103 cause=26 cause_name=ANSWERED_ELSEWHERE sip_code=487",
            "endpoint.presence extension=103 state=available",
            "queue.caller_left queue=lab-queue call_id=1795376952.15 caller=101 reason=answered",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=in_call",
            "queue.agent_status queue=lab-queue agent=PJSIP/103 state=ready",
            "endpoint.presence extension=101 state=unavailable",
            "target.ended call_id=1795376952.15 target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
            "call.ended call_id=1795376952.15 from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=true",
            "endpoint.presence extension=102 state=available",
            "call.cdr call_id=1795376952.15 disposition=ANSWERED",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ready",
        ],
    );
}

#[test]
fn originate_of_a_local_channel() {
    check(
        "13-ami-originate-local.ami",
        &[
            // The Originate rang a Local channel that the dialplan answered itself, and the
            // call went on in the dialplan: no party, no target (Local channels are
            // plumbing), answered by the PBX.
            "call.started call_id=1795376977.20 to=tone",
            "call.ended call_id=1795376977.20 to=tone cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
            "call.cdr call_id=1795376977.20 disposition=ANSWERED",
        ],
    );
    // Nor does any field name the Local channel (the CDR's `last_data` is the dialplan's
    // own text).
    let local = bodies_of("13-ami-originate-local.ami", |b| {
        let mut named = String::new();
        b.fields().for_each_field(&mut |k, v| {
            if let Value::Str(s) = v {
                if s.contains("Local/") && k != "last_data" {
                    named.push_str(&format!("{} {k}={s} ", b.name()));
                }
            }
        });
        named
    });
    assert_eq!(local.concat(), "");
}

#[test]
fn custom_vars_without_x_headers() {
    check(
        "14-custom-vars-headers.ami",
        &[
            "call.started call_id=1795376992.22 from=101 to=700",
            "call.routed call_id=1795376992.22 target=102",
            "target.added call_id=1795376992.22 target=102 cause=0 sip_code=0",
            "endpoint.presence extension=101 state=in_use",
            "target.ringing call_id=1795376992.22 target=102 cause=0 sip_code=0",
            "call.ringing call_id=1795376992.22 target=102",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ringing",
            "endpoint.presence extension=102 state=ringing",
            "call.answered call_id=1795376992.22 target=102",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=in_call",
            "endpoint.presence extension=102 state=in_use",
            "target.ended call_id=1795376992.22 target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
            "queue.agent_status queue=lab-queue agent=PJSIP/102 state=ready",
            "endpoint.presence extension=102 state=available",
            "call.ended call_id=1795376992.22 from=101 to=700 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
            "endpoint.presence extension=101 state=unavailable",
            "call.cdr call_id=1795376992.22 disposition=ANSWERED",
        ],
    );
}

#[test]
fn qualify_unreachable_then_expiry() {
    check(
        "15-qualify-unreachable-expiry.ami",
        &[
            "endpoint.registered aor=104 status=NonQualified",
            "endpoint.presence extension=104 state=available",
            "endpoint.unregistered aor=104 status=Unreachable",
            "endpoint.presence extension=104 state=unavailable",
        ],
    );
}

#[test]
fn x_channel_variables_become_extra_headers() {
    let got = events_of("derived/02-call-answered-x-headers.ami");
    assert_eq!(
        got[0],
        "call.started call_id=1795376847.2 from=101 to=102 extra_headers=X-Tenant:acme,x-lab-trace:t-1"
    );
    let ended = got.iter().find(|l| l.starts_with("call.ended")).unwrap();
    assert!(
        ended.ends_with("extra_headers=X-Tenant:acme,x-lab-trace:t-1,X-Account:42"),
        "{ended}"
    );
}

/// Every recording's events, rendered with their time, with or without the parser passing
/// over the events the normalizer does not read; and how many it passed over. An event's
/// time is its message's place in the stream, the same in both runs.
fn timed_events_of(data: &[u8], filter: bool) -> (Vec<String>, u64) {
    let mut parser = Parser::new(Limits::default());
    if filter {
        parser.set_filter(pbxtap::normalize::reads);
    }
    let mut norm = Normalizer::new(NormalizeConfig::default());
    let mut out = Vec::new();
    parser.push(data, &mut |f| {
        if let Ok(Frame::Message(m)) = f {
            let at = m.raw().as_ptr() as u64 - data.as_ptr() as u64;
            let now = 1_000_000_000_000_000 + at * 1_000;
            norm.handle(&m, now, &mut |b| out.push(format!("{now} {}", render(&b))));
        }
    });
    (out, parser.stats().passed_over)
}

#[test]
fn passing_over_unread_events_changes_no_event() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ami");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .chain(std::fs::read_dir(format!("{dir}/derived")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "recordings missing from {dir}");
    let (mut events, mut passed_over) = (0, 0);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let (every, _) = timed_events_of(&data, false);
        let (read, n) = timed_events_of(&data, true);
        assert_eq!(every, read, "{}", file.display());
        events += every.len();
        passed_over += n;
    }
    // The recordings are mostly events pbxtap does not read.
    assert!(
        events > 100 && passed_over > 200,
        "{events} events, {passed_over} passed over"
    );
}
