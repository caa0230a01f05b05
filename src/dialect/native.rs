//! The `native` dialect: one flat JSON object per event,
//! `{"v":1,"seq":..,"class":"call","event":"started","time":..,"host":"pbx1",
//! "id":"pbx1.<boot>.<seq>",<fields>}`: `id` is `Event::id`, unique across restarts, so an
//! MQTT or NATS consumer can drop a copy it already has.
//!
//! Written with serde-json-core straight into a fixed buffer: no allocation per event.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{write_json, EncodeError, Encoded, JsonStr};
use crate::event::{Event, Headers, Value};

/// Version of the native event format, carried as `v`.
pub const VERSION: u8 = 1;

/// Encodes `ev` as native JSON into `out` (cleared first).
pub fn encode(ev: &Event, out: &mut Encoded) -> Result<(), EncodeError> {
    write_json(&Native(ev), out)
}

struct Native<'a>(&'a Event);

impl Serialize for Native<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ev = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(&JsonStr("v"), &VERSION)?;
        map.serialize_entry(&JsonStr("seq"), &ev.seq)?;
        map.serialize_entry(&JsonStr("class"), &JsonStr(ev.class().as_str()))?;
        map.serialize_entry(&JsonStr("event"), &JsonStr(ev.name()))?;
        map.serialize_entry(&JsonStr("time"), &ev.time)?;
        map.serialize_entry(&JsonStr("host"), &JsonStr(ev.host.as_str()))?;
        map.serialize_entry(&JsonStr("id"), &JsonStr(ev.id().as_str()))?;
        let mut result = Ok(());
        ev.body.fields().for_each_field(&mut |k, v| {
            if result.is_ok() {
                result = map.serialize_entry(&JsonStr(k), &FieldValue(v));
            }
        });
        result?;
        map.end()
    }
}

/// A field value as JSON: strings, numbers, booleans, and headers as an object.
pub struct FieldValue<'a>(pub Value<'a>);

impl Serialize for FieldValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Str(v) => JsonStr(v).serialize(s),
            Value::U64(v) => s.serialize_u64(v),
            Value::Bool(v) => s.serialize_bool(v),
            Value::Headers(h) => HeadersObject(h).serialize(s),
        }
    }
}

/// Extra headers as a JSON object `{"X-Name":"value",...}`.
pub struct HeadersObject<'a>(pub &'a Headers);

impl Serialize for HeadersObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            map.serialize_entry(&JsonStr(k), &JsonStr(v))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    #[test]
    fn call_started_is_flat_json_with_headers_object() {
        let mut h = Headers::default();
        h.insert("X-Trace", "a\"b");
        let mut ev = Event::new(
            1_700_000_000_123_456,
            &text("pbx1"),
            Body::CallStarted(CallStarted {
                call_id: text("1795376847.2"),
                session_id: text("1795376847.2"),
                from: text("101"),
                from_name: text("Alice"),
                to: text("102"),
                direction: "internal",
                channel: text("PJSIP/101-00000000"),
                context: text("lab"),
                extra_headers: h,
                ..Default::default()
            }),
        );
        ev.seq = 7;
        let mut out = Encoded::new();
        encode(&ev, &mut out).unwrap();
        let id = format!("pbx1.{}.7", crate::event::boot_id());
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            r#"{"v":1,"seq":7,"class":"call","event":"started","time":1700000000123456,"host":"pbx1","id":""#.to_string()
                + &id
                + r#"","call_id":"1795376847.2","session_id":"1795376847.2","from":"101","from_name":"Alice","to":"102","direction":"internal","channel":"PJSIP/101-00000000","account_code":"","context":"lab","tenant_id":"","extra_headers":{"X-Trace":"a\"b"}}"#
        );
    }

    #[test]
    fn the_largest_possible_events_fit() {
        let mut out = Encoded::new();
        for ev in largest_events() {
            encode(&ev, &mut out).unwrap();
        }
    }
}
