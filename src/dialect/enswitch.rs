//! The `enswitch` dialect (Enswitch / ASTPP events): flat fields `class`, `event`,
//! `timestamp` (`"<unix>.<microseconds>"`) and the event's own fields. Form-encoded for a
//! webhook POST ([`encode_form`]), one JSON object per WebSocket frame ([`encode_json`]).
//!
//! Names: the call events Enswitch itself sends keep its verbs (`call.started` → `start`,
//! `call.routed` and `call.rerouted` → `route`, `call.answered` → `answer`, `call.ended` →
//! `end`). Every
//! event carries `machine` (which machine of the cluster, a number) and `event_id`; every
//! event about a call also Enswitch's `callid`, `uniqueid` and `asteriskid`. Other events
//! keep pbxtap's names; Enswitch consumers are required to ignore events they do not know.
//!
//! As Enswitch promises, events of one class and event always carry the same fields: the
//! call's extra (`X-`) headers are one field, `extra_headers`, a JSON object (in a form,
//! that object as JSON text). Booleans are `1`/`0` in forms.

use core::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::native::HeadersObject;
use super::{write_json, EncodeError, Encoded, JsonStr};
use crate::event::{Body, Event, EventId, Headers, Value, HEADER_NAME_LEN, HEADER_VALUE_LEN};

/// What Enswitch's payloads need besides the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// `machine`: which machine of an Enswitch cluster this appliance is.
    pub machine: u32,
}

impl Default for Context {
    fn default() -> Self {
        Context { machine: 1 }
    }
}

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
        Body::CallRouted(_) | Body::CallRerouted(_) => "route",
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
    /// The extra headers: a JSON object, or its JSON text in a form.
    Headers(&'a Headers),
}

/// What every event carries besides its own fields: its time and id as Enswitch writes
/// them, made once per event.
pub struct Common {
    timestamp: Timestamp,
    id: EventId,
    machine: u32,
}

impl Common {
    pub fn of(ev: &Event, ctx: &Context) -> Self {
        Common {
            timestamp: timestamp(ev.time),
            id: ev.id(),
            machine: ctx.machine,
        }
    }
}

/// Visits every field of `ev` in the enswitch dialect, in wire order. The field set
/// depends only on the class and event.
pub fn for_each_field<'a>(ev: &'a Event, common: &'a Common, f: &mut dyn FnMut(&'a str, Flat<'a>)) {
    f("class", Flat::Str(ev.class().as_str()));
    f("event", Flat::Str(event_name(&ev.body)));
    f("timestamp", Flat::Str(common.timestamp.as_str()));
    f("machine", Flat::U64(u64::from(common.machine)));
    f("event_id", Flat::Str(common.id.as_str()));
    f("host", Flat::Str(ev.host.as_str()));
    if let Some(call_id) = ev.body.call_id() {
        // The call is Asterisk's Linkedid: Enswitch's callid and uniqueid of the call.
        // asteriskid is the Asterisk channel the event names, where it names one (the
        // call's first channel, or the CDR's), else the call's first channel, whose
        // Uniqueid is the Linkedid.
        let asterisk_id = match ev.field("session_id").or(ev.field("unique_id")) {
            Some(Value::Str(u)) if !u.is_empty() => u,
            _ => call_id,
        };
        f("callid", Flat::Str(call_id));
        f("uniqueid", Flat::Str(call_id));
        f("asteriskid", Flat::Str(asterisk_id));
    }
    ev.body.fields().for_each_field(&mut |k, v| match v {
        Value::Str(s) => f(k, Flat::Str(s)),
        Value::U64(n) => f(k, Flat::U64(n)),
        Value::Bool(b) => f(k, Flat::Bool(b)),
        Value::Headers(h) => f(k, Flat::Headers(h)),
    });
}

/// Longest JSON text of a call's extra headers: every character escaped to six bytes
/// (`\u0001`), with quotes, colons and commas.
const HEADERS_JSON_LEN: usize =
    2 + crate::event::MAX_EXTRA_HEADERS * ((HEADER_NAME_LEN + HEADER_VALUE_LEN) * 6 + 6);

/// Encodes `ev` as one JSON object into `out` (cleared first).
pub fn encode_json(ev: &Event, ctx: &Context, out: &mut Encoded) -> Result<(), EncodeError> {
    write_json(&Json(ev, &Common::of(ev, ctx)), out)
}

struct Json<'a>(&'a Event, &'a Common);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let mut result = Ok(());
        for_each_field(self.0, self.1, &mut |k, v| {
            if result.is_ok() {
                result = match v {
                    Flat::Str(s) => map.serialize_entry(&JsonStr(k), &JsonStr(s)),
                    Flat::U64(n) => map.serialize_entry(&JsonStr(k), &n),
                    Flat::Bool(b) => map.serialize_entry(&JsonStr(k), &b),
                    Flat::Headers(h) => map.serialize_entry(&JsonStr(k), &HeadersObject(h)),
                };
            }
        });
        result?;
        map.end()
    }
}

/// Encodes `ev` as `application/x-www-form-urlencoded` into `out` (cleared first).
pub fn encode_form(ev: &Event, ctx: &Context, out: &mut Encoded) -> Result<(), EncodeError> {
    out.clear();
    let common = Common::of(ev, ctx);
    let mut result = Ok(());
    let mut number = heapless::String::<20>::new();
    for_each_field(ev, &common, &mut |k, v| {
        if result.is_err() {
            return;
        }
        number.clear();
        result = (|| {
            if !out.is_empty() {
                out.extend_from_slice(b"&")?;
            }
            percent_encode(k, out)?;
            out.extend_from_slice(b"=")?;
            match v {
                Flat::Str(s) => percent_encode(s, out),
                Flat::U64(n) => {
                    let _ = write!(number, "{n}");
                    percent_encode(&number, out)
                }
                Flat::Bool(b) => percent_encode(if b { "1" } else { "0" }, out),
                Flat::Headers(h) => {
                    let mut json = [0u8; HEADERS_JSON_LEN];
                    let len = serde_json_core::to_slice(&HeadersObject(h), &mut json)
                        .map_err(|_| EncodeError::TooLarge)?;
                    // serde-json-core writes UTF-8.
                    percent_encode(core::str::from_utf8(&json[..len]).unwrap_or("{}"), out)
                }
            }
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

    const CTX: Context = Context { machine: 3 };

    fn started() -> Event {
        let mut h = Headers::default();
        h.insert("X-Account", "acme & co");
        h.insert("X-Quote", "say \"hi\"\u{1}");
        let mut ev = Event::new(
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
                context: text("lab"),
                extra_headers: h,
                ..Default::default()
            }),
        );
        ev.seq = 7;
        ev
    }

    fn id(ev: &Event) -> std::string::String {
        ev.id().as_str().into()
    }

    #[test]
    fn timestamp_has_six_fraction_digits() {
        assert_eq!(timestamp(1_234_567_890_123_456), "1234567890.123456");
        assert_eq!(timestamp(1_000_007), "1.000007");
        assert_eq!(timestamp(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn call_start_as_json_matches_enswitch_names() {
        let ev = started();
        let mut out = Encoded::new();
        encode_json(&ev, &CTX, &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            format!(
                r#"{{"class":"call","event":"start","timestamp":"1234567890.000042","machine":3,"event_id":"{}","host":"pbx1","callid":"1234567890.100000","uniqueid":"1234567890.100000","asteriskid":"1234567890.100001","call_id":"1234567890.100000","session_id":"1234567890.100001","from":"+44 20","from_name":"Zoë","to":"102","direction":"internal","channel":"PJSIP/101-00000000","account_code":"","context":"lab","tenant_id":"","extra_headers":{{"X-Account":"acme & co","X-Quote":"say \"hi\"\u0001"}}}}"#,
                id(&ev)
            )
        );
        assert!(id(&ev).starts_with("pbx1.") && id(&ev).ends_with(".7"));
    }

    #[test]
    fn form_is_percent_encoded_with_numbers_booleans_and_the_headers_as_json_text() {
        let ev = started();
        let mut out = Encoded::new();
        encode_form(&ev, &CTX, &mut out).unwrap();
        let form = core::str::from_utf8(&out).unwrap().to_string();
        assert_eq!(
            form,
            format!(
                "class=call&event=start&timestamp=1234567890.000042&machine=3&event_id={}&host=pbx1\
                 &callid=1234567890.100000&uniqueid=1234567890.100000&asteriskid=1234567890.100001\
                 &call_id=1234567890.100000&session_id=1234567890.100001&from=%2B44+20\
                 &from_name=Zo%C3%AB&to=102&direction=internal&channel=PJSIP%2F101-00000000\
                 &account_code=&context=lab&tenant_id=&extra_headers=%7B%22X-Account%22%3A%22acme+%26+co%22%2C%22X-Quote%22%3A%22say+%5C%22hi%5C%22%5Cu0001%22%7D",
                id(&ev)
            )
        );
        // The headers field decodes to the same object the JSON frame carries.
        let decoded = form
            .rsplit_once("extra_headers=")
            .map(|(_, v)| v.replace('+', " "))
            .map(|v| {
                percent_encoding::percent_decode_str(&v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap();
        assert_eq!(
            decoded,
            r#"{"X-Account":"acme & co","X-Quote":"say \"hi\"\u0001"}"#
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
        encode_form(&ended, &CTX, &mut out).unwrap();
        let form = core::str::from_utf8(&out).unwrap();
        assert!(
            form.contains("&host=h&callid=1.2&uniqueid=1.2&asteriskid=1.2&"),
            "{form}"
        );
        assert!(form.contains("&cause=16&cause_name=NORMAL_CLEARING&"));
        assert!(
            form.ends_with("&answered=1&pbx_answered=0&hangup_by=&extra_headers=%7B%7D"),
            "{form}"
        );
    }

    #[test]
    fn one_class_and_event_always_carries_the_same_fields() {
        let names = |ev: &Event| {
            let common = Common::of(ev, &CTX);
            let mut out = std::vec::Vec::new();
            for_each_field(ev, &common, &mut |k, _| out.push(k));
            out.join(",")
        };
        let mut other = started();
        if let Body::CallStarted(c) = &mut other.body {
            c.extra_headers = Headers::default();
            c.extra_headers.insert("X-Other", "1");
            c.extra_headers.insert("X-More", "2");
            c.extra_headers.insert("X-Most", "3");
        }
        assert_eq!(names(&started()), names(&other));
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
        encode_json(&ev, &Context::default(), &mut out).unwrap();
        let json = core::str::from_utf8(&out).unwrap();
        assert!(json.starts_with(r#"{"class":"endpoint","event":"registered","timestamp":"0.000001","machine":1,"event_id":""#), "{json}");
        assert!(json.contains(r#""host":"h","aor":"101""#), "{json}");
        assert!(!json.contains("callid"));
        assert!(json.contains(r#""expires":60"#));
    }

    #[test]
    fn the_largest_possible_events_fit_as_forms_and_json() {
        let mut out = Encoded::new();
        let ctx = Context { machine: u32::MAX };
        for ev in largest_events() {
            encode_form(&ev, &ctx, &mut out).unwrap();
            encode_json(&ev, &ctx, &mut out).unwrap();
        }
    }
}
