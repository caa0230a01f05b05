//! Event sequences as a consumer reads them, for the live suite and its replays: each
//! event as `class.event key=value ...` with the fields a consumer reads, filtered to one
//! call, compared line by line.

use serde_json::Value;

/// `class.event` of an event.
pub fn name(e: &Value) -> String {
    format!(
        "{}.{}",
        e["class"].as_str().unwrap_or("?"),
        e["event"].as_str().unwrap_or("?")
    )
}

/// The fields a consumer reads of each event, as `key=value` after its name.
pub fn shown(e: &Value) -> String {
    let n = name(e);
    let fields: &[&str] = match n.as_str() {
        "call.started" => &["from", "to", "direction"],
        "call.routed" | "call.ringing" | "call.answered" | "call.noanswer" | "call.rerouted" => {
            &["target"]
        }
        "call.failed" => &["target", "cause", "cause_name", "sip_code"],
        "call.ended" => &[
            "from",
            "to",
            "cause",
            "cause_name",
            "sip_code",
            "answered",
            "pbx_answered",
        ],
        "call.held" | "call.unheld" => &["aor", "peer_aor"],
        "call.cdr" => &["source", "destination", "disposition"],
        "target.added" | "target.ringing" => &["target"],
        "target.noanswer" | "target.failed" | "target.ended" => {
            &["target", "cause", "cause_name", "sip_code"]
        }
        "endpoint.registered" | "endpoint.unregistered" => {
            &["aor", "contact", "expires", "user_agent"]
        }
        "queue.caller_joined" => &["queue", "caller"],
        // `waited` is Asterisk's HoldTime, whole seconds of a wait the test paces: checked
        // on its own, within a range.
        "queue.caller_left" => &["queue", "caller", "reason"],
        "queue.sla_breached" => &["queue", "caller", "waited"],
        _ => &[],
    };
    let mut out = n;
    for f in fields {
        let v = &e[*f];
        let v = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        out.push_str(&format!(" {f}={v}"));
    }
    out
}

/// The `call_id` of the first call started from `from`.
pub fn call_from(events: &[Value], from: &str) -> String {
    events
        .iter()
        .find(|e| name(e) == "call.started" && e["from"] == from)
        .and_then(|e| e["call_id"].as_str())
        .unwrap_or_else(|| panic!("no call.started from {from} in {events:#?}"))
        .to_string()
}

/// `got` is `want`, line by line; a `*` in a wanted line stands for any text (for what
/// Asterisk itself varies from run to run, such as a transferred CDR's destination).
pub fn assert_seq(got: &[String], want: &[&str]) {
    let same = got.len() == want.len() && got.iter().zip(want).all(|(g, w)| glob(g, w));
    assert!(
        same,
        "\ngot:\n  {}\nwant:\n  {}",
        got.join("\n  "),
        want.join("\n  ")
    );
}

pub fn glob(text: &str, pattern: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// `seq` without the events of the leg to `target`, and those events: a leg that lost
/// (cancelled when another answered) ends concurrently with the rest of the call, so
/// only its own order is fixed.
pub fn split_leg(seq: Vec<String>, target: &str) -> (Vec<String>, Vec<String>) {
    let mine = format!("target={target}");
    let (leg, rest): (Vec<String>, Vec<String>) = seq
        .into_iter()
        .partition(|l| l.starts_with("target.ended") && l.contains(&mine));
    (rest, leg)
}

/// `seq` without the `target.*` events of the legs to `targets`, and each leg's own: legs
/// that are dialled together (a ring group, a ringall queue) are added, ring and end in
/// any order among each other, so each leg's order is checked on its own.
pub fn split_legs(seq: Vec<String>, targets: &[&str]) -> (Vec<String>, Vec<Vec<String>>) {
    let of = |l: &str, t: &str| {
        l.starts_with("target.") && l.contains(&format!(" target={t} "))
            || l.starts_with("target.") && l.ends_with(&format!(" target={t}"))
    };
    let legs = targets
        .iter()
        .map(|t| seq.iter().filter(|l| of(l, t)).cloned().collect())
        .collect();
    let rest = seq
        .into_iter()
        .filter(|l| !targets.iter().any(|t| of(l, t)))
        .collect();
    (rest, legs)
}

/// Every event of the call `call_id` (queue events too), shown.
pub fn of_call_all(events: &[Value], call_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["call_id"] == call_id)
        .map(shown)
        .collect()
}

/// The call and target events of the call `call_id`, shown.
pub fn of_call(events: &[Value], call_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| matches!(e["class"].as_str(), Some("call" | "target")))
        .filter(|e| e["call_id"] == call_id)
        .map(shown)
        .collect()
}

/// The events of call `call_id` split into its own (shown, in order) and each leg's
/// `target.*` events, one list per channel (`contact`), shown, the lists sorted: legs that
/// are dialled together race each other, and a phone rung twice is two legs.
pub fn legs_by_channel(events: &[Value], call_id: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mine: Vec<&Value> = events.iter().filter(|e| e["call_id"] == call_id).collect();
    let rest = mine
        .iter()
        .filter(|e| e["class"] != "target")
        .map(|e| shown(e))
        .collect();
    let mut channels: Vec<&str> = Vec::new();
    for e in mine.iter().filter(|e| e["class"] == "target") {
        let c = e["contact"].as_str().unwrap_or("");
        if !channels.contains(&c) {
            channels.push(c);
        }
    }
    let mut legs: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            mine.iter()
                .filter(|e| e["class"] == "target" && e["contact"] == *c)
                .map(|e| shown(e))
                .collect()
        })
        .collect();
    legs.sort();
    (rest, legs)
}

/// `legs` are `want`, as sorted lists of legs (see [`legs_by_channel`]).
pub fn assert_legs(legs: &[Vec<String>], want: &[&[&str]]) {
    let mut want: Vec<Vec<String>> = want
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect();
    want.sort();
    assert_eq!(legs, want, "the legs, by channel");
}

/// No event names a Local channel as a party: not as a target, a contact, an answering
/// channel, a caller, a CDR's channels, nor anywhere else but the rest of Asterisk's own
/// CDR record (`last_data`: the dial string as the dialplan wrote it).
pub fn assert_no_local_party(events: &[Value]) {
    for e in events {
        let text = if name(e) == "call.cdr" {
            format!("{} {}", e["channel"], e["destination_channel"])
        } else {
            e.to_string()
        };
        assert!(
            !text.contains("Local/"),
            "an event names a Local channel: {e}"
        );
    }
}

/// Every `call.cdr` is the one record of a call that was started: none for a leg of its
/// own (Asterisk writes a record per leg, a Local channel's `;2` included).
pub fn assert_one_cdr_per_call(events: &[Value]) {
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| name(e) == "call.started")
        .map(|e| &e["call_id"])
        .collect();
    let mut seen = Vec::new();
    for cdr in events.iter().filter(|e| name(e) == "call.cdr") {
        let call = &cdr["call_id"];
        assert!(started.contains(&call), "a CDR of no call: {cdr}");
        assert!(!seen.contains(&call), "a second CDR of one call: {cdr}");
        seen.push(call);
    }
}

/// The first `event` (`class.event`) of call `call_id` names a channel starting with
/// `prefix` (`PJSIP/102-`): the party or caller a consumer sees, not a Local channel.
pub fn assert_channel(events: &[Value], event: &str, call_id: &str, prefix: &str) {
    let e = events
        .iter()
        .find(|e| name(e) == event && e["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no {event} for {call_id}"));
    assert!(
        e["channel"].as_str().is_some_and(|c| c.starts_with(prefix)),
        "{event} should name {prefix}...: {e}"
    );
}
