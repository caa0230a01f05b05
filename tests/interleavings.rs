//! Order independence: Asterisk publishes a call's events from several threads (the
//! caller's, each dialled channel's, each Local channel's), so the AMI stream interleaves
//! them differently from one run to the next. Recorded calls from the live suites (real
//! Asterisk 22, Local channels included) are replayed in interleavings that keep every
//! causal order: each channel's own events, a channel's Newchannel before anything about
//! it, the caller's own state changes and hangup where they were. The races Asterisk
//! really has are let loose: a leg's Ringing before its DialBegin, a `;2` hung up before
//! its `;1`, a DialEnd after its leg's Hangup, and whatever two independent legs do. Each
//! interleaving must give each call the same events, up to the order of independent legs
//! (compared as a multiset, with the call-level target of `routed`/`ringing`/`rerouted`,
//! which the first leg to get there decides, left out).

mod common;

use std::collections::BTreeMap;

use common::sequence::shown;
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::dialect::{native, Encoded};
use pbxtap::event::{text, Event};
use pbxtap::normalize::{self, NormalizeConfig, Normalizer};
use proptest::prelude::*;
use serde_json::Value;

/// One AMI message of a recording, with what the reordering needs to know of it.
#[derive(Clone, Debug)]
struct Msg {
    text: String,
    event: String,
    /// The channels (Uniqueids) it is about.
    about: Vec<String>,
    /// Never moved: the caller's own state changes and hangup, and what is not a channel
    /// event (CDRs, queues, variables).
    anchor: bool,
    state: String,
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
}

/// The messages of `file` (a live recording) that pbxtap reads, in order.
fn messages(file: &str) -> Vec<Msg> {
    let path = format!(
        "{}/tests/fixtures/ami/live/{file}.ami",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\r\n", "\n");
    let mut out: Vec<Msg> = Vec::new();
    let mut first_of_call: BTreeMap<String, String> = BTreeMap::new();
    // A Local channel's two halves are one thread of causes (what one does, the other
    // sees): both are known by the `;1`'s Uniqueid.
    let mut ones: BTreeMap<String, String> = BTreeMap::new();
    let mut pair_of: BTreeMap<String, String> = BTreeMap::new();
    for block in data.split("\n\n").skip(1) {
        let Some(event) = header(block, "Event") else {
            continue;
        };
        if !normalize::reads(event, block.as_bytes()) {
            continue;
        }
        let uid = header(block, "Uniqueid").unwrap_or("").to_string();
        if event == "Newchannel" {
            let name = header(block, "Channel").unwrap_or("");
            if let Some(base) = name
                .strip_suffix(";1")
                .filter(|_| name.starts_with("Local/"))
            {
                ones.insert(base.to_string(), uid.clone());
            }
            if let Some(one) = name.strip_suffix(";2").and_then(|b| ones.get(b)) {
                pair_of.insert(uid.clone(), one.clone());
            }
        }
        let key = |u: &str| pair_of.get(u).cloned().unwrap_or_else(|| u.to_string());
        let linked = header(block, "Linkedid").unwrap_or("").to_string();
        let channel_event = matches!(
            event,
            "Newchannel" | "Newstate" | "DialBegin" | "DialEnd" | "HangupRequest" | "Hangup"
        );
        let mut about = Vec::new();
        if !uid.is_empty() {
            about.push(key(&uid));
        }
        if let Some(dest) = header(block, "DestUniqueid") {
            about.push(key(dest));
        }
        if event == "Newchannel" {
            first_of_call.entry(linked).or_insert(uid.clone());
        }
        let caller = first_of_call.values().any(|c| *c == uid);
        let anchor = !channel_event
            || (caller && !event.starts_with("Dial"))
            || header(block, "ActionID").is_some();
        out.push(Msg {
            text: format!("{block}\n\n"),
            event: event.to_string(),
            about,
            anchor,
            state: header(block, "ChannelState").unwrap_or("").to_string(),
        });
    }
    out
}

/// Whether `a`, then `b` right after it, may come the other way round.
fn may_swap(a: &Msg, b: &Msg) -> bool {
    if a.anchor || b.anchor {
        return false;
    }
    let shared = a.about.iter().any(|x| b.about.contains(x));
    if !shared {
        // Independent, unless one introduces a channel (both are about different ones).
        return true;
    }
    let dial_and_ringing = |d: &Msg, n: &Msg| {
        d.event == "DialBegin" && n.event == "Newstate" && n.state == "5" && d.about.len() == 2
    };
    let end_and_hangup = |d: &Msg, h: &Msg| d.event == "DialEnd" && h.event == "Hangup";
    // The two halves of a Local channel hang up in either order.
    let halves = a.event == "Hangup" && b.event == "Hangup";
    dial_and_ringing(a, b) || dial_and_ringing(b, a) || end_and_hangup(a, b) || halves
}

/// The events each call of `msgs` normalizes to, shown, as a sorted multiset per call.
fn calls_of(msgs: &[Msg]) -> BTreeMap<String, Vec<String>> {
    let mut parser = Parser::new(Limits::default());
    parser.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
    let mut norm = Normalizer::new(NormalizeConfig::default());
    let host = text("lab");
    let mut events = Vec::new();
    let mut now = 1_800_000_000_000_000u64;
    let mut buf = Encoded::new();
    let mut push = |b, now| {
        native::encode(&Event::new(now, &host, b), &mut buf).unwrap();
        events.push(serde_json::from_slice::<Value>(&buf).unwrap());
    };
    for m in msgs {
        parser.push(m.text.as_bytes(), &mut |f| {
            if let Ok(Frame::Message(msg)) = f {
                now += 100_000;
                norm.handle(&msg, now, &mut |b| push(b, now));
            }
        });
    }
    norm.flush_cdrs(&mut |b| push(b, now));
    let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &events {
        let Some(call) = e["call_id"].as_str() else {
            continue;
        };
        let mut line = shown(e);
        if ["call.routed", "call.ringing", "call.rerouted"]
            .iter()
            .any(|n| line.starts_with(n))
        {
            line = line.split(" target=").next().unwrap().to_string();
        }
        calls.entry(call.to_string()).or_default().push(line);
    }
    for lines in calls.values_mut() {
        assert!(
            lines.first().is_some_and(|l| l.starts_with("call.started")),
            "a call's first event is its start: {lines:?}"
        );
        lines.sort();
    }
    calls
}

/// `msgs` after the adjacent swaps at `positions` that are allowed, each tried in turn.
fn interleave(msgs: &[Msg], positions: &[usize]) -> Vec<Msg> {
    let mut out = msgs.to_vec();
    for &p in positions {
        let i = p % (out.len() - 1);
        if may_swap(&out[i], &out[i + 1]) {
            out.swap(i, i + 1);
        }
    }
    out
}

const RECORDINGS: [&str; 9] = [
    "a_ring_group_of_local_legs",
    "a_queue_whose_members_are_local_channels",
    "an_extension_reached_through_a_local_channel",
    "follow_me_rings_the_desk_then_the_mobile_which_accepts",
    "click_to_dial_by_originate_of_a_local_channel",
    "a_directed_pickup_names_the_phone_that_picked_up",
    "a_ring_group_where_one_of_two_phones_answers",
    "rejected_603",
    "voicemail_behind_a_local_channel_is_the_pbx_picking_up",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_causal_interleaving_gives_each_call_the_same_events(
        which in 0..RECORDINGS.len(),
        positions in proptest::collection::vec(any::<usize>(), 0..400),
    ) {
        let msgs = messages(RECORDINGS[which]);
        let want = calls_of(&msgs);
        let got = calls_of(&interleave(&msgs, &positions));
        prop_assert_eq!(got, want, "{}", RECORDINGS[which]);
    }
}

/// The swaps do move things: the races the property is about happen in what it tries.
#[test]
fn the_interleavings_include_the_races_asterisk_has() {
    let msgs = messages("a_ring_group_of_local_legs");
    let mut seen = (false, false);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let positions: Vec<usize> = (0..400)
            .map(|_| {
                // xorshift64: the same runs every time.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as usize
            })
            .collect();
        let out = interleave(&msgs, &positions);
        for (i, m) in out.iter().enumerate() {
            if m.event == "Newstate" && m.state == "5" {
                seen.0 |= out[i + 1..]
                    .iter()
                    .any(|d| d.event == "DialBegin" && d.about.get(1) == m.about.first());
            }
            if m.event == "Hangup" {
                seen.1 |= out[i + 1..]
                    .iter()
                    .any(|d| d.event == "DialEnd" && d.about.get(1) == m.about.first());
            }
        }
    }
    assert_eq!(
        seen,
        (true, true),
        "(ringing before DialBegin, DialEnd after Hangup)"
    );
}
