//! The `routr` dialect: the subjects and JSON payloads of Routr's NATS publisher, so a
//! consumer written for Routr works against pbxtap unchanged.
//!
//! Routr publishes three subjects, `<base>.call.started`, `<base>.call.ended` and
//! `<base>.endpoint.registered`; every other event has no Routr subject and is not sent
//! in this dialect ([`encode`] returns `None`). As Routr's code writes them: keys in the
//! order of a Java `HashMap`, `from`/`to`/`aor` as `sip:<user>@<domain>`, times as Java's
//! `Instant` at millisecond precision (`...:27.493Z`, `...:27Z` at an exact second), a
//! de-registration as `endpoint.registered` with `expires: 0`, and `X-Call-Direction`
//! set as Routr's router sets it (docs/nats.md has the table).

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{write_json, EncodeError, Encoded, JsonStr};
use crate::event::{Body, Event, Headers};
use crate::normalize::cause;

/// What Routr's payloads need besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The host of the SIP URIs: `sip:101@<domain>`.
    pub domain: &'a str,
    /// Keys and values added at the top level of `call.started`, after Routr's own (as
    /// Routr adds its resources' `extended` metadata).
    pub metadata: &'a [(String, String)],
    /// Per endpoint (the caller's channel's, by name), keys over `metadata`'s.
    pub endpoints: &'a [(String, Vec<(String, String)>)],
    /// Per call: the caller's `X-` variables named `<prefix><key>` (`X-Meta-accessKeyId`)
    /// are the call's own metadata, over the endpoint's, and leave `extraHeaders`. Empty:
    /// none.
    pub prefix: &'a str,
}

impl Context<'_> {
    /// The metadata key a call's header `name` stands for: the rest after the prefix,
    /// when it is a key the config would take (not one of Routr's [`FIELDS`]).
    fn key_of<'n>(&self, name: &'n str) -> Option<&'n str> {
        let p = self.prefix.len();
        let named = p > 0
            && name.len() > p
            && name.as_bytes()[..p].eq_ignore_ascii_case(self.prefix.as_bytes());
        let key = name.get(p..).filter(|_| named)?;
        (is_metadata_key(key) && !FIELDS.contains(&key)).then_some(key)
    }

    /// The metadata of a call whose first channel is `channel` and whose caller's headers
    /// are `headers`: the call's own keys, the endpoint's it does not set, and the sink's
    /// neither sets.
    fn metadata_of<'c>(
        &'c self,
        channel: &str,
        headers: &'c Headers,
    ) -> impl Iterator<Item = (&'c str, &'c str)> {
        let endpoint = crate::event::channel_endpoint(channel);
        let own: &[(String, String)] = self
            .endpoints
            .iter()
            .find(|(e, _)| e == endpoint)
            .map_or(&[], |(_, m)| m.as_slice());
        let call = move || {
            headers
                .iter()
                .filter_map(move |(k, v)| Some((self.key_of(k)?, v)))
        };
        let endpoint = own
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(move |(k, _)| !call().any(|(c, _)| c == *k));
        let shared = self
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(move |(k, _)| {
                !call().any(|(c, _)| c == *k) && !own.iter().any(|(o, _)| o == k)
            });
        call().chain(endpoint).chain(shared)
    }
}

/// A metadata key: 1 to [`MAX_METADATA_KEY`] letters, digits, `_` or `-`.
pub fn is_metadata_key(key: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    !key.is_empty() && key.len() <= MAX_METADATA_KEY && key.bytes().all(word)
}

/// Most metadata keys (an endpoint's and the sink's together), and the longest key and
/// value (bytes), as the config allows.
pub const MAX_METADATA: usize = 16;
/// Most endpoints with metadata of their own.
pub const MAX_METADATA_ENDPOINTS: usize = 256;
pub const MAX_METADATA_KEY: usize = 64;
pub const MAX_METADATA_VALUE: usize = 256;

/// The fields of Routr's payloads: a metadata key may not be one of them.
pub const FIELDS: [&str; 10] = [
    "callId",
    "from",
    "to",
    "startTime",
    "endTime",
    "hangupCause",
    "extraHeaders",
    "expires",
    "aor",
    "registeredAt",
];

/// Length of an ISO 8601 UTC time with milliseconds: `2025-01-01T00:00:00.123Z`.
pub const ISO_LEN: usize = 24;

/// An ISO 8601 time, as written in the payloads.
pub type IsoTime = heapless::String<ISO_LEN>;

/// Writes `micros` (microseconds since the Unix epoch) as Java's `Instant.toString()` of
/// an instant truncated to milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`, and
/// `YYYY-MM-DDTHH:MM:SSZ` when the milliseconds are 0.
pub fn iso8601(micros: u64) -> IsoTime {
    let millis = micros / 1000;
    let secs = millis / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let day_secs = secs % 86_400;
    let mut out = IsoTime::new();
    // Cannot fail: years up to 9999 fit ISO_LEN; u64 microseconds end in year 586912,
    // which is clamped to keep the format fixed-width.
    let _ = core::fmt::write(
        &mut out,
        format_args!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y.clamp(0, 9999),
            m,
            d,
            day_secs / 3600,
            day_secs / 60 % 60,
            day_secs % 60,
        ),
    );
    let _ = match millis % 1000 {
        0 => out.push('Z').map_err(|_| core::fmt::Error),
        ms => core::fmt::write(&mut out, format_args!(".{ms:03}Z")),
    };
    out
}

/// The proleptic Gregorian date (year, month 1-12, day 1-31) of `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Routr's hangup cause name for a SIP final response, as Routr derives it.
pub fn hangup_cause(sip_code: u16) -> &'static str {
    match sip_code {
        200 | 487 => "NORMAL_CLEARING",
        401 | 403 | 407 | 603 => "CALL_REJECTED",
        404 | 485 | 604 => "UNALLOCATED",
        408 => "NO_USER_RESPONSE",
        420 => "NO_ROUTE_DESTINATION",
        480 | 483 => "NO_ANSWER",
        484 => "INVALID_NUMBER_FORMAT",
        486 | 600 => "USER_BUSY",
        488 => "NOT_ACCEPTABLE_HERE",
        503 => "SERVICE_UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// The SIP final response a call ended with: the one the normalizer found (from the
/// answer or Asterisk's DialStatus), else the one its Q.850 cause stands for.
fn ended_sip_code(sip_code: u16, q850: u16) -> u16 {
    if sip_code != 0 {
        sip_code
    } else {
        cause::sip_code(q850)
    }
}

/// The subject suffix (after `<base>.`) Routr uses for `ev`, or `None` when Routr has none.
pub fn subject_suffix(ev: &Event) -> Option<&'static str> {
    match &ev.body {
        Body::CallStarted(_) => Some("call.started"),
        Body::CallEnded(_) => Some("call.ended"),
        Body::EndpointRegistered(_) => Some("endpoint.registered"),
        Body::EndpointUnregistered(r) if r.status == "Removed" => Some("endpoint.registered"),
        _ => None,
    }
}

/// The `X-Call-Direction` Routr's router would set for pbxtap's `direction`; `None` when
/// the direction is unknown (Fonoster's consumer rejects a value it does not know). The
/// only value `X-Call-Direction` ever takes.
pub fn call_direction(direction: &str) -> Option<&'static str> {
    match direction {
        "internal" => Some("agent-to-agent"),
        "inbound" => Some("from-pstn"),
        "outbound" => Some("agent-to-pstn"),
        _ => None,
    }
}

/// Encodes `ev` as Routr's JSON into `out` (cleared first) and returns its subject suffix;
/// `Ok(None)` (and `out` empty) for events Routr has no subject for.
pub fn encode(
    ev: &Event,
    ctx: &Context<'_>,
    out: &mut Encoded,
) -> Result<Option<&'static str>, EncodeError> {
    out.clear();
    let Some(suffix) = subject_suffix(ev) else {
        return Ok(None);
    };
    write_json(&Routr(ev, ctx), out)?;
    Ok(Some(suffix))
}

struct Routr<'a>(&'a Event, &'a Context<'a>);

/// `sip:<user>@<domain>`, as Routr builds its URIs; an empty user (a withheld caller ID)
/// is `anonymous`.
struct SipUri<'a>(&'a str, &'a str);

impl Serialize for SipUri<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut uri = heapless::String::<{ crate::event::TEXT_LEN * 2 + 8 }>::new();
        let user = if self.0.is_empty() {
            "anonymous"
        } else {
            self.0
        };
        // Cannot fail: both parts are bounded text.
        let _ = core::fmt::write(&mut uri, format_args!("sip:{user}@{}", self.1));
        s.serialize_str(&uri)
    }
}

impl Serialize for Routr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ev, domain) = (self.0, self.1.domain);
        let time = iso8601(ev.time);
        let mut map = s.serialize_map(None)?;
        match &ev.body {
            Body::CallStarted(c) => {
                map.serialize_entry(&JsonStr("callId"), &JsonStr(c.call_id.as_str()))?;
                map.serialize_entry(&JsonStr("from"), &SipUri(&c.from, domain))?;
                map.serialize_entry(&JsonStr("startTime"), &JsonStr(time.as_str()))?;
                let headers = ExtraHeaders(
                    Some((&c.extra_headers, self.1)),
                    call_direction(c.direction),
                );
                map.serialize_entry(&JsonStr("extraHeaders"), &headers)?;
                map.serialize_entry(&JsonStr("to"), &SipUri(&c.to, domain))?;
                for (k, v) in self.1.metadata_of(&c.channel, &c.extra_headers) {
                    map.serialize_entry(&JsonStr(k), &JsonStr(v))?;
                }
            }
            // Routr's are the headers of the message that ended the call (the BYE), which
            // pbxtap cannot see: `{}`. Not the call's X- variables again: Fonoster would
            // give the end a reference of its own.
            Body::CallEnded(c) => {
                map.serialize_entry(&JsonStr("callId"), &JsonStr(c.call_id.as_str()))?;
                map.serialize_entry(&JsonStr("extraHeaders"), &ExtraHeaders(None, None))?;
                map.serialize_entry(&JsonStr("endTime"), &JsonStr(time.as_str()))?;
                let sip = ended_sip_code(c.sip_code, c.cause);
                map.serialize_entry(&JsonStr("hangupCause"), &JsonStr(hangup_cause(sip)))?;
            }
            // Routr publishes a de-registration (a REGISTER with expires 0) as a
            // registration with `expires: 0`; Asterisk tells it as the contact `Removed`.
            Body::EndpointRegistered(r) | Body::EndpointUnregistered(r) => {
                map.serialize_entry(&JsonStr("expires"), &r.expires)?;
                map.serialize_entry(&JsonStr("aor"), &SipUri(&r.aor, domain))?;
                map.serialize_entry(&JsonStr("registeredAt"), &JsonStr(time.as_str()))?;
                map.serialize_entry(&JsonStr("extraHeaders"), &ExtraHeaders(None, None))?;
            }
            // `encode` only serializes events that have a subject.
            _ => {}
        }
        map.end()
    }
}

/// The `X-` headers (any case) as a JSON object, with `X-Call-Direction` only as pbxtap's
/// direction gives it (the second value), replacing any the call carried, as Routr's
/// router does: Fonoster's consumer stops at a value it does not know. The call's own
/// metadata headers (the context's `prefix`) are at the top level instead. `{}` when
/// there are none.
struct ExtraHeaders<'a>(Option<(&'a Headers, &'a Context<'a>)>, Option<&'static str>);

impl Serialize for ExtraHeaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let (headers, ctx) = (self.0.map(|(h, _)| h), self.0.map(|(_, c)| c));
        for (k, v) in headers.into_iter().flat_map(|h| h.iter()) {
            let x = k.len() > 2 && k.as_bytes()[..2].eq_ignore_ascii_case(b"x-");
            let metadata = ctx.is_some_and(|c| c.key_of(k).is_some());
            if x && !metadata && !k.eq_ignore_ascii_case("X-Call-Direction") {
                map.serialize_entry(&JsonStr(k), &JsonStr(v))?;
            }
        }
        if let Some(direction) = self.1 {
            map.serialize_entry(&JsonStr("X-Call-Direction"), &JsonStr(direction))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    #[test]
    fn the_largest_possible_events_fit() {
        let mut out = Encoded::new();
        let long = "d".repeat(crate::event::TEXT_LEN);
        // The most metadata the config allows, every value character escaped.
        let key = |i: usize| format!("{i:02}{}", "k".repeat(MAX_METADATA_KEY - 2));
        let metadata: std::vec::Vec<_> = (0..MAX_METADATA)
            .map(|i| (key(i), "\"".repeat(MAX_METADATA_VALUE)))
            .collect();
        let ctx = Context {
            domain: &long,
            metadata: &metadata,
            endpoints: &[],
            prefix: "",
        };
        for ev in largest_events() {
            encode(&ev, &ctx, &mut out).unwrap();
        }
    }

    const CTX: Context<'static> = Context {
        domain: "pbx.local",
        metadata: &[],
        endpoints: &[],
        prefix: "",
    };

    fn json(ev: &Event) -> (Option<&'static str>, std::string::String) {
        let mut out = Encoded::new();
        let suffix = encode(ev, &CTX, &mut out).unwrap();
        (
            suffix,
            std::string::String::from_utf8(out.to_vec()).unwrap(),
        )
    }

    /// 2025-01-01T00:00:00.123Z
    const NEW_YEAR_2025: u64 = 1_735_689_600_123_456;

    #[test]
    fn iso8601_of_known_dates() {
        // Java's Instant: no fraction at an exact second, else three digits.
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(490_000), "1970-01-01T00:00:00.490Z");
        assert_eq!(iso8601(999), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(NEW_YEAR_2025), "2025-01-01T00:00:00.123Z");
        // A leap day, the last millisecond of a day, and a century that is not a leap year.
        assert_eq!(iso8601(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_709_251_199_999_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601(4_107_542_400_000_000), "2100-03-01T00:00:00Z");
        assert_eq!(iso8601(1_795_376_847_000_000), "2026-11-22T19:47:27Z");
        assert_eq!(iso8601(253_402_300_799_999_000), "9999-12-31T23:59:59.999Z");
        assert!(iso8601(u64::MAX).len() <= ISO_LEN);
    }

    #[test]
    fn civil_from_days_round_trips_every_day_for_800_years() {
        // Days from 1970 to 2770, checked against a day-by-day calendar walk.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(800 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[m as usize - 1] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn call_started_has_exactly_routrs_fields_in_routrs_order() {
        let mut h = Headers::default();
        h.insert("X-Tenant", "acme");
        h.insert("x-lab-trace", "t\"1");
        h.insert("X-Call-Direction", "made-up");
        let started = |direction, from: &str| {
            Event::new(
                NEW_YEAR_2025,
                &text("pbx1"),
                Body::CallStarted(CallStarted {
                    call_id: text("1795376847.2"),
                    from: text(from),
                    to: text("102"),
                    from_name: text("Alice"),
                    direction,
                    extra_headers: h.clone(),
                    ..Default::default()
                }),
            )
        };
        assert_eq!(
            json(&started("internal", "101")),
            (
                Some("call.started"),
                r#"{"callId":"1795376847.2","from":"sip:101@pbx.local","startTime":"2025-01-01T00:00:00.123Z","extraHeaders":{"X-Tenant":"acme","x-lab-trace":"t\"1","X-Call-Direction":"agent-to-agent"},"to":"sip:102@pbx.local"}"#.into()
            )
        );
        for (direction, routr) in [("inbound", "from-pstn"), ("outbound", "agent-to-pstn")] {
            let (_, json) = json(&started(direction, "101"));
            assert!(
                json.contains(&format!(r#""X-Call-Direction":"{routr}"}}"#)),
                "{json}"
            );
        }
        // Unknown: no X-Call-Direction at all (the call's own is never passed on); no
        // caller ID.
        let (_, json) = json(&started("unknown", ""));
        assert!(!json.contains("X-Call-Direction"), "{json}");
        assert!(
            json.contains(r#""from":"sip:anonymous@pbx.local""#),
            "{json}"
        );
    }

    /// The sink's `metadata` (Fonoster's `accessKeyId`) at the top level of
    /// `call.started`, after Routr's own fields, as Routr adds `extended`; an endpoint's
    /// own keys over the sink's, by the caller's channel (a trunk's for a call from the
    /// PSTN); not in `call.ended`.
    #[test]
    fn metadata_goes_at_the_top_of_call_started_only() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let metadata = [pair("accessKeyId", "AK\"1"), pair("region", "eu")];
        let endpoints = [("carrier".to_string(), vec![pair("accessKeyId", "AK-TRUNK")])];
        let ctx = Context {
            domain: "pbx.local",
            metadata: &metadata,
            endpoints: &endpoints,
            prefix: "X-Meta-",
        };
        let mut out = Encoded::new();
        let started = |channel: &str| {
            Event::new(
                NEW_YEAR_2025,
                &text("pbx1"),
                Body::CallStarted(CallStarted {
                    call_id: text("1.2"),
                    to: text("102"),
                    channel: text(channel),
                    ..Default::default()
                }),
            )
        };
        encode(&started("PJSIP/101-00000001"), &ctx, &mut out).unwrap();
        let json = std::str::from_utf8(&out).unwrap();
        assert!(
            json.ends_with(r#""to":"sip:102@pbx.local","accessKeyId":"AK\"1","region":"eu"}"#),
            "{json}"
        );
        encode(&started("PJSIP/carrier-00000002"), &ctx, &mut out).unwrap();
        let json = std::str::from_utf8(&out).unwrap();
        assert!(
            json.ends_with(r#""to":"sip:102@pbx.local","accessKeyId":"AK-TRUNK","region":"eu"}"#),
            "{json}"
        );
        let ended = Event::new(
            NEW_YEAR_2025,
            &text("pbx1"),
            Body::CallEnded(CallEnded::default()),
        );
        encode(&ended, &ctx, &mut out).unwrap();
        assert!(!std::str::from_utf8(&out).unwrap().contains("accessKeyId"));

        // The call's own (the dialplan's `X-Meta-*`, any case) over the endpoint's and the
        // sink's, and out of extraHeaders; a name that is no key, or is one of Routr's
        // fields, stays a header.
        let mut ev = started("PJSIP/carrier-00000003");
        let Body::CallStarted(c) = &mut ev.body else {
            unreachable!()
        };
        for (k, v) in [
            ("x-meta-accessKeyId", "AK-CALL"),
            ("X-Meta-callId", "shadow"),
            ("X-Meta-a.b", "dot"),
            ("X-Meta-", "empty"),
            ("X-Trace", "t1"),
        ] {
            c.extra_headers.insert(k, v);
        }
        encode(&ev, &ctx, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["accessKeyId"], "AK-CALL", "{v}");
        assert_eq!(v["region"], "eu", "{v}");
        assert_eq!(v["callId"], "1.2", "{v}");
        assert_eq!(
            v["extraHeaders"],
            serde_json::json!({"X-Meta-callId": "shadow", "X-Meta-a.b": "dot", "X-Meta-": "empty",
                               "X-Trace": "t1"}),
            "{v}"
        );
        let json = std::str::from_utf8(&out).unwrap();
        assert_eq!(json.matches("accessKeyId").count(), 1, "{json}");
        assert!(
            json.ends_with(r#""to":"sip:102@pbx.local","accessKeyId":"AK-CALL","region":"eu"}"#),
            "{json}"
        );
    }

    #[test]
    fn call_ended_names_the_cause_as_routr_does() {
        let ended = |sip_code, cause| {
            let ev = Event::new(
                NEW_YEAR_2025,
                &text("pbx1"),
                Body::CallEnded(CallEnded {
                    call_id: text("1.2"),
                    cause,
                    sip_code,
                    ..Default::default()
                }),
            );
            json(&ev)
        };
        assert_eq!(
            ended(200, 16),
            (
                Some("call.ended"),
                r#"{"callId":"1.2","extraHeaders":{},"endTime":"2025-01-01T00:00:00.123Z","hangupCause":"NORMAL_CLEARING"}"#.into()
            )
        );
        // Without a SIP code, the Q.850 cause is mapped to one first.
        assert!(ended(0, 17).1.contains(r#""hangupCause":"USER_BUSY""#));
        assert!(ended(0, 3).1.contains(r#""hangupCause":"UNALLOCATED""#));
        assert!(ended(0, 34)
            .1
            .contains(r#""hangupCause":"SERVICE_UNAVAILABLE""#));
        assert!(ended(0, 0).1.contains(r#""hangupCause":"UNKNOWN""#));
        // DialStatus NOANSWER arrives as 480.
        assert!(ended(480, 16).1.contains(r#""hangupCause":"NO_ANSWER""#));
    }

    #[test]
    fn routrs_sip_to_cause_table() {
        let table: &[(&[u16], &str)] = &[
            (&[200, 487], "NORMAL_CLEARING"),
            (&[401, 403, 407, 603], "CALL_REJECTED"),
            (&[404, 485, 604], "UNALLOCATED"),
            (&[408], "NO_USER_RESPONSE"),
            (&[420], "NO_ROUTE_DESTINATION"),
            (&[480, 483], "NO_ANSWER"),
            (&[484], "INVALID_NUMBER_FORMAT"),
            (&[486, 600], "USER_BUSY"),
            (&[488], "NOT_ACCEPTABLE_HERE"),
            (&[503], "SERVICE_UNAVAILABLE"),
            (&[0, 180, 410, 500, 502, 504], "UNKNOWN"),
        ];
        for (codes, name) in table {
            for c in *codes {
                assert_eq!(hangup_cause(*c), *name, "{c}");
            }
        }
    }

    /// The table in docs/nats.md: Q.850 cause (or DialStatus) → SIP → Routr's name.
    #[test]
    fn asterisk_causes_through_sip_to_routrs_names() {
        let q850: &[(u16, u16, &str)] = &[
            (16, 200, "NORMAL_CLEARING"),
            (1, 404, "UNALLOCATED"),
            (3, 404, "UNALLOCATED"),
            (17, 486, "USER_BUSY"),
            (18, 408, "NO_USER_RESPONSE"),
            (19, 480, "NO_ANSWER"),
            (20, 480, "NO_ANSWER"),
            (21, 403, "CALL_REJECTED"),
            (22, 410, "UNKNOWN"),
            (26, 487, "NORMAL_CLEARING"),
            (27, 502, "UNKNOWN"),
            (28, 484, "INVALID_NUMBER_FORMAT"),
            (31, 480, "NO_ANSWER"),
            (34, 503, "SERVICE_UNAVAILABLE"),
            (38, 503, "SERVICE_UNAVAILABLE"),
            (41, 503, "SERVICE_UNAVAILABLE"),
            (42, 503, "SERVICE_UNAVAILABLE"),
            (44, 503, "SERVICE_UNAVAILABLE"),
            (58, 503, "SERVICE_UNAVAILABLE"),
            (88, 488, "NOT_ACCEPTABLE_HERE"),
            (102, 504, "UNKNOWN"),
            (127, 487, "NORMAL_CLEARING"),
            (0, 0, "UNKNOWN"),
        ];
        for &(q, sip, name) in q850 {
            assert_eq!(cause::sip_code(q), sip, "Q.850 {q}");
            assert_eq!(hangup_cause(ended_sip_code(0, q)), name, "Q.850 {q}");
        }
        let dial: &[(&str, u16, &str)] = &[
            ("ANSWER", 200, "NORMAL_CLEARING"),
            ("BUSY", 486, "USER_BUSY"),
            ("NOANSWER", 480, "NO_ANSWER"),
            ("CONGESTION", 503, "SERVICE_UNAVAILABLE"),
            ("CHANUNAVAIL", 480, "NO_ANSWER"),
            ("CANCEL", 487, "NORMAL_CLEARING"),
        ];
        for &(status, sip, name) in dial {
            assert_eq!(cause::dial_status_sip_code(status), sip, "{status}");
            // The SIP code the normalizer found wins over the Q.850 cause.
            assert_eq!(hangup_cause(ended_sip_code(sip, 16)), name, "{status}");
        }
    }

    #[test]
    fn registration_removal_and_events_without_a_subject() {
        let reg = |status: &str, expires| Registration {
            aor: text("101"),
            contact: text("sip:101@127.0.0.1:5071"),
            expires,
            status: text(status),
            ..Default::default()
        };
        let ev = |body| Event::new(NEW_YEAR_2025, &text("pbx1"), body);
        assert_eq!(
            json(&ev(Body::EndpointRegistered(reg("Reachable", 3600)))),
            (
                Some("endpoint.registered"),
                r#"{"expires":3600,"aor":"sip:101@pbx.local","registeredAt":"2025-01-01T00:00:00.123Z","extraHeaders":{}}"#.into()
            )
        );
        // A de-registration: Routr's registration with expires 0.
        assert_eq!(
            json(&ev(Body::EndpointUnregistered(reg("Removed", 0)))),
            (
                Some("endpoint.registered"),
                r#"{"expires":0,"aor":"sip:101@pbx.local","registeredAt":"2025-01-01T00:00:00.123Z","extraHeaders":{}}"#.into()
            )
        );
        for body in [
            // Unreachable is no REGISTER: Routr says nothing.
            Body::EndpointUnregistered(reg("Unreachable", 0)),
            Body::CallAnswered(CallTarget::default()),
            Body::SinkDown(SinkStatus::default()),
        ] {
            assert_eq!(json(&ev(body)), (None, std::string::String::new()));
        }
    }
}
