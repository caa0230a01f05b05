//! A consumer of Routr's NATS events that does what Fonoster's does (fonoster/fonoster at
//! 14c52dc, `mods/apiserver/src/events/`): `nats.ts` subscribes to `routr.call.*` and
//! `JSON.parse`s each message; the callback tags it with its `callId` and stores
//! `transformEvent.ts`'s result (merged per call, as InfluxDB merges the points of one tag).
//! `transform` is `transformEvent` line for line: the times through JavaScript's
//! `Date`, `to` cut at `@` with `sip:` replaced, the X- headers read by name, and
//! `mapCallDirectionToEnum`, which throws on a direction it does not know.
//!
//! Registrations are not read by Fonoster's apiserver; `registrations` keeps what a
//! consumer of `routr.endpoint.registered` gets, parsed the same way.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{Map, Value};

/// JavaScript's `new Date(s).getTime()` for the ISO 8601 UTC forms Routr writes
/// (`2026-11-22T19:47:27.493Z`, `2026-11-22T19:47:27Z`); `None` where JavaScript gives NaN.
pub fn js_date_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match &s[19..] {
        "Z" => 0,
        frac if frac.starts_with('.') && frac.ends_with('Z') && (3..=11).contains(&frac.len()) => {
            let digits = &frac[1..frac.len() - 1];
            let mut ms = digits.get(..3.min(digits.len()))?.to_string();
            while ms.len() < 3 {
                ms.push('0');
            }
            digits
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| ms.parse().ok())??
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis)
}

/// `mapCallDirectionToEnum`: `Err` where Fonoster's throws.
pub fn map_call_direction(direction: &str) -> Result<&'static str, String> {
    match direction {
        "from-pstn" => Ok("FROM_PSTN"),
        "peer-to-pstn" | "agent-to-pstn" => Ok("TO_PSTN"),
        "agent-to-agent" | "agent-to-peer" | "peer-to-agent" => Ok("INTRA_NETWORK"),
        other => Err(format!("Invalid call direction: {other}")),
    }
}

/// `transformEvent`. A time JavaScript cannot parse becomes `null` (NaN in JSON).
pub fn transform(event: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut t = event.clone();
    let secs = |v: &Value| {
        v.as_str()
            .and_then(js_date_millis)
            .map_or(Value::Null, |ms| Value::from(ms as f64 / 1000.0))
    };
    let truthy = |v: Option<&Value>| match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    };
    if truthy(event.get("startTime")) {
        let time = secs(&event["startTime"]);
        t.insert("startedAt".into(), time.clone());
        t.insert("endedAt".into(), time);
        t.remove("startTime");
    }
    if truthy(event.get("endTime")) {
        t.insert("endedAt".into(), secs(&event["endTime"]));
        t.remove("endTime");
    }
    if truthy(event.get("hangupCause")) {
        t.insert("status".into(), event["hangupCause"].clone());
        t.remove("hangupCause");
    }
    if let Some(to) = event.get("to").filter(|v| truthy(Some(v))) {
        let to = to.as_str().ok_or("to.split is not a function")?;
        let user = to.split('@').next().unwrap_or("").replacen("sip:", "", 1);
        t.insert("to".into(), Value::from(user));
    }
    if let Some(Value::Object(h)) = event.get("extraHeaders") {
        if !h.is_empty() {
            let header = |name: &str| h.get(name).filter(|v| truthy(Some(v))).cloned();
            if let Some(v) = header("X-Access-Key-Id") {
                t.insert("accessKeyId".into(), v);
            }
            // Fonoster makes up a uuid when the call carries no reference: a new one for
            // each event.
            let reference = header("X-Call-Ref").unwrap_or_else(|| {
                static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Value::from(format!("<uuid-{n}>"))
            });
            t.insert("ref".into(), reference);
            if let Some(v) = header("X-Dod-Number") {
                t.insert("from".into(), v);
            }
            if header("X-Is-Api-Originated-Type").is_some() {
                t.insert("type".into(), Value::from("API_ORIGINATED"));
            }
            if let Some(v) = header("X-Call-Direction") {
                let direction = map_call_direction(v.as_str().unwrap_or(""))?;
                t.insert("direction".into(), Value::from(direction));
            }
        }
    }
    t.remove("extraHeaders");
    t.remove("callId");
    Ok(t)
}

/// What the consumer has stored.
#[derive(Default, Debug, Clone)]
pub struct Store {
    /// One record per `callId`, in the order calls were first seen.
    pub calls: Vec<(String, Map<String, Value>)>,
    /// Every reference written for a `callId`, in order: Fonoster's pivot keeps one per
    /// call, so two different ones split a call.
    pub refs: Vec<(String, Value)>,
    /// Every `routr.endpoint.registered` payload, in order.
    pub registrations: Vec<Map<String, Value>>,
    /// What made the consumer fail (a message `JSON.parse` or `transformEvent` threw on).
    pub errors: Vec<String>,
}

/// Subscribes on `client` as Fonoster's apiserver does (and to registrations), and
/// stores what arrives until the client is dropped.
pub async fn consume(client: &async_nats::Client, base: &str) -> Arc<Mutex<Store>> {
    let store = Arc::new(Mutex::new(Store::default()));
    let mut calls = client.subscribe(format!("{base}.call.*")).await.unwrap();
    let mut regs = client
        .subscribe(format!("{base}.endpoint.registered"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let s = store.clone();
    tokio::spawn(async move {
        while let Some(m) = calls.next().await {
            let parsed: Result<Map<String, Value>, _> = serde_json::from_slice(&m.payload);
            let mut st = s.lock().unwrap();
            let event = match parsed {
                Ok(e) => e,
                Err(e) => {
                    st.errors.push(format!("JSON.parse: {e}"));
                    continue;
                }
            };
            let tag = event
                .get("callId")
                .and_then(Value::as_str)
                .unwrap_or("undefined")
                .to_string();
            match transform(&event) {
                Ok(data) => {
                    if let Some(r) = data.get("ref") {
                        st.refs.push((tag.clone(), r.clone()));
                    }
                    match st.calls.iter_mut().find(|(id, _)| *id == tag) {
                        Some((_, record)) => record.extend(data),
                        None => st.calls.push((tag, data)),
                    }
                }
                Err(e) => st.errors.push(format!("transformEvent: {e}: {event:?}")),
            }
        }
    });
    let s = store.clone();
    tokio::spawn(async move {
        while let Some(m) = regs.next().await {
            let mut st = s.lock().unwrap();
            match serde_json::from_slice(&m.payload) {
                Ok(e) => st.registrations.push(e),
                Err(e) => st.errors.push(format!("JSON.parse: {e}")),
            }
        }
    });
    store
}
