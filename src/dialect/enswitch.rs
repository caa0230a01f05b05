//! The `enswitch` dialect (Enswitch / ASTPP events): flat fields `class`, `event`,
//! `timestamp` (`"<unix>.<microseconds>"`) and the event's own fields. Form-encoded for a
//! webhook POST ([`encode_form`]), one JSON object per WebSocket frame ([`encode_json`]).
//!
//! Names: the call events Enswitch itself sends keep its verbs (`call.started` → `start`,
//! `call.rerouted` → `route`, `call.answered` → `answer`, `call.ended` → `end`), and every
//! event about a call also carries Enswitch's `callid` and `uniqueid`. Other events keep
//! pbxtap's names; Enswitch consumers are required to ignore events they do not know.
//! Extra (`X-`) headers become fields of their own name. Booleans are `1`/`0` in forms.

use core::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{write_json, EncodeError, Encoded, JsonStr};
use crate::event::{Body, Event, Value};

/// `"<unix seconds>.<microseconds>"`, six digits after the point.
pub type Timestamp = heapless::String<24>;

/// The event's time as Enswitch writes it: `1234567890.123456`.
pub fn timestamp(time_micros: u64) -> Timestamp {
    let mut s = Timestamp::new();
    // Cannot fail: u64::MAX / 1e6 has 14 digits, plus the point and 6 digits.
    let _ = write!(
        s,
        "{}.{:06}",
        time_micros / 1_000_000,
        time_micros % 1_000_000
    );
    s
}

/// The `event` field: Enswitch's verb where it has one, else pbxtap's name.
pub fn event_name(body: &Body) -> &'static str {
    match body {
        Body::CallStarted(_) => "start",
        Body::CallRerouted(_) => "route",
        Body::CallAnswered(_) => "answer",
        Body::CallEnded(_) => "end",
        other => other.name(),
    }
}

/// One flat field: a value as Enswitch sends it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flat<'a> {
    Str(&'a str),
    U64(u64),
    Bool(bool),
}

/// Visits every field of `ev` in the enswitch dialect, in wire order.
pub fn for_each_field<'a>(ev: &'a Event, ts: &'a Timestamp, f: &mut dyn FnMut(&'a str, Flat<'a>)) {
    f("class", Flat::Str(ev.class().as_str()));
    f("event", Flat::Str(event_name(&ev.body)));
    f("timestamp", Flat::Str(ts.as_str()));
    f("host", Flat::Str(ev.host.as_str()));
    if let Some(Value::Str(call_id)) = ev.field("call_id") {
        let unique_id = match ev.field("session_id").or(ev.field("unique_id")) {
            Some(Value::Str(u)) if !u.is_empty() => u,
            _ => call_id,
        };
        f("callid", Flat::Str(call_id));
        f("uniqueid", Flat::Str(unique_id));
    }
    ev.body.fields().for_each_field(&mut |k, v| match v {
        Value::Str(s) => f(k, Flat::Str(s)),
        Value::U64(n) => f(k, Flat::U64(n)),
        Value::Bool(b) => f(k, Flat::Bool(b)),
        Value::Headers(h) => {
            for (name, value) in h.iter() {
                f(name, Flat::Str(value));
            }
        }
    });
}

/// Encodes `ev` as one JSON object into `out` (cleared first).
pub fn encode_json(ev: &Event, out: &mut Encoded) -> Result<(), EncodeError> {
    write_json(&Json(ev), out)
}

struct Json<'a>(&'a Event);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ts = timestamp(self.0.time);
        let mut map = s.serialize_map(None)?;
        let mut result = Ok(());
        for_each_field(self.0, &ts, &mut |k, v| {
            if result.is_ok() {
                result = match v {
                    Flat::Str(s) => map.serialize_entry(&JsonStr(k), &JsonStr(s)),
                    Flat::U64(n) => map.serialize_entry(&JsonStr(k), &n),
                    Flat::Bool(b) => map.serialize_entry(&JsonStr(k), &b),
                };
            }
        });
        result?;
        map.end()
    }
}

/// Encodes `ev` as `application/x-www-form-urlencoded` into `out` (cleared first).
pub fn encode_form(ev: &Event, out: &mut Encoded) -> Result<(), EncodeError> {
    out.clear();
    let ts = timestamp(ev.time);
    let mut result = Ok(());
    let mut number = heapless::String::<20>::new();
    for_each_field(ev, &ts, &mut |k, v| {
        if result.is_err() {
            return;
        }
        number.clear();
        let value = match v {
            Flat::Str(s) => s,
            Flat::U64(n) => {
                let _ = write!(number, "{n}");
                number.as_str()
            }
            Flat::Bool(b) => {
                if b {
                    "1"
                } else {
                    "0"
                }
            }
        };
        result = (|| {
            if !out.is_empty() {
                out.extend_from_slice(b"&")?;
            }
            percent_encode(k, out)?;
            out.extend_from_slice(b"=")?;
            percent_encode(value, out)
        })();
    });
    if result.is_err() {
        out.clear();
    }
    result
}

/// Form encoding (WHATWG `application/x-www-form-urlencoded`): unreserved bytes as they
/// are, space as `+`, everything else `%XX`.
fn percent_encode(s: &str, out: &mut Encoded) -> Result<(), EncodeError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.extend_from_slice(&[b])?
            }
            b' ' => out.extend_from_slice(b"+")?,
            _ => {
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])?
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    fn started() -> Event {
        let mut h = Headers::default();
        h.insert("X-Account", "acme & co");
        Event::new(
            1_234_567_890_000_042,
            &text("pbx1"),
            Body::CallStarted(CallStarted {
                call_id: text("1234567890.100000"),
                session_id: text("1234567890.100001"),
                from: text("+44 20"),
                from_name: text("Zoë"),
                to: text("102"),
                direction: "internal",
                channel: text("PJSIP/101-00000000"),
                extra_headers: h,
            }),
        )
    }

    #[test]
    fn timestamp_has_six_fraction_digits() {
        assert_eq!(timestamp(1_234_567_890_123_456), "1234567890.123456");
        assert_eq!(timestamp(1_000_007), "1.000007");
        assert_eq!(timestamp(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn call_start_as_json_matches_enswitch_names() {
        let mut out = Encoded::new();
        encode_json(&started(), &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            r#"{"class":"call","event":"start","timestamp":"1234567890.000042","host":"pbx1","callid":"1234567890.100000","uniqueid":"1234567890.100001","call_id":"1234567890.100000","session_id":"1234567890.100001","from":"+44 20","from_name":"Zoë","to":"102","direction":"internal","channel":"PJSIP/101-00000000","X-Account":"acme & co"}"#
        );
    }

    #[test]
    fn form_is_percent_encoded_with_numbers_and_booleans() {
        let mut out = Encoded::new();
        encode_form(&started(), &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            "class=call&event=start&timestamp=1234567890.000042&host=pbx1\
             &callid=1234567890.100000&uniqueid=1234567890.100001\
             &call_id=1234567890.100000&session_id=1234567890.100001&from=%2B44+20\
             &from_name=Zo%C3%AB&to=102&direction=internal&channel=PJSIP%2F101-00000000\
             &X-Account=acme+%26+co"
        );
        let ended = Event::new(
            5,
            &text("h"),
            Body::CallEnded(CallEnded {
                call_id: text("1.2"),
                cause: 16,
                cause_name: "NORMAL_CLEARING",
                answered: true,
                ..Default::default()
            }),
        );
        encode_form(&ended, &mut out).unwrap();
        let form = core::str::from_utf8(&out).unwrap();
        assert!(form.starts_with(
            "class=call&event=end&timestamp=0.000005&host=h&callid=1.2&uniqueid=1.2&"
        ));
        assert!(form.contains("&cause=16&cause_name=NORMAL_CLEARING&"));
        assert!(form.ends_with("&answered=1"), "{form}");
    }

    #[test]
    fn events_without_a_call_keep_pbxtap_names_and_no_callid() {
        let ev = Event::new(
            1,
            &text("h"),
            Body::EndpointRegistered(Registration {
                aor: text("101"),
                expires: 60,
                technology: "PJSIP",
                ..Default::default()
            }),
        );
        let mut out = Encoded::new();
        encode_json(&ev, &mut out).unwrap();
        let json = core::str::from_utf8(&out).unwrap();
        assert!(json.starts_with(r#"{"class":"endpoint","event":"registered","timestamp":"0.000001","host":"h","aor":"101""#));
        assert!(!json.contains("callid"));
        assert!(json.contains(r#""expires":60"#));
    }

    #[test]
    fn the_largest_possible_events_fit_as_forms_and_json() {
        let mut out = Encoded::new();
        for ev in largest_events() {
            encode_form(&ev, &mut out).unwrap();
            encode_json(&ev, &mut out).unwrap();
        }
    }
}
