//! A consumer of Routr's NATS events that does what Fonoster's does (fonoster/fonoster at
//! 14c52dc, `mods/apiserver/src/events/`): `nats.ts` subscribes to `routr.call.*` and
//! `JSON.parse`s each message; the callback tags it with its `callId` and stores
//! `transformEvent.ts`'s result (merged per call, as InfluxDB merges the points of one tag).
//! `transform` is `transformEvent` line for line: the times through JavaScript's
//! `Date`, `to` cut at `@` with `sip:` replaced, the X- headers read by name, and
//! `mapCallDirectionToEnum`, which throws on a direction it does not know.
//!
//! Then what `index.ts` does with it: `createInfluxDbPub.ts` makes it an InfluxDB point
//! (measurement `cdr`, tag `callId`, a field per key, typed as it types them) and writes it
//! as line protocol, stamped with the time of the write ([`point`]); and what
//! `calls/createFetchCalls.ts`'s Flux query lists for an access key ([`list_calls`]): the
//! points pivoted into one row per `callId` (each field's latest value), `duration` and
//! `startedAtParsed` computed, the rows of that `accessKeyId` kept, newest first.
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

/// `createInfluxDbPub`'s point for one transformed event, as the line protocol the
/// InfluxDB client writes (`@influxdata/influxdb-client`'s `Point.toLineProtocol`: fields
/// sorted by key, a tag left out when empty), stamped `time_ns`. `Err` where the client
/// throws: `intField` of NaN (a time JavaScript could not parse).
pub fn point(call_id: &str, data: &Map<String, Value>, time_ns: u128) -> Result<String, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (key, value) in data {
        let v = match value {
            // `typeof value === "number"`: `intField`, floored.
            Value::Number(n) => format!("{}i", n.as_f64().unwrap_or(f64::NAN).floor() as i64),
            // NaN (how `transform` keeps it): `intField` throws.
            Value::Null => return Err(format!("invalid integer value for field '{key}': 'NaN'!")),
            Value::Bool(b) => (if *b { "T" } else { "F" }).to_string(),
            Value::String(s) => quoted(s),
            // `stringField` takes `String(value)`.
            Value::Array(_) | Value::Object(_) => quoted("[object Object]"),
        };
        fields.push((key.clone(), v));
    }
    if fields.is_empty() {
        return Err("no fields: the client writes nothing".into());
    }
    fields.sort();
    let fields: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={v}", escape_tag(k)))
        .collect();
    let tag = if call_id.is_empty() {
        String::new()
    } else {
        format!(",callId={}", escape_tag(call_id))
    };
    Ok(format!("cdr{tag} {} {time_ns}", fields.join(",")))
}

/// The client's `escape.tag` (keys and tag values).
fn escape_tag(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// The client's `escape.quoted` (string field values).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A field value as InfluxDB stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Field {
    fn json(&self) -> Value {
        match self {
            Field::Int(i) => Value::from(*i),
            Field::Float(f) => Value::from(*f),
            Field::Bool(b) => Value::from(*b),
            Field::Str(s) => Value::from(s.as_str()),
        }
    }
}

/// One point read back from its line: measurement, tags, fields, time.
#[derive(Debug, Clone)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Field)>,
    pub time: u128,
}

/// Splits `s` at the first `sep` outside a backslash escape and a quoted string.
fn split_once_unescaped(s: &str, sep: char) -> (&str, &str) {
    let (mut escaped, mut quoted) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => return (&s[..i], &s[i + 1..]),
            _ => {}
        }
    }
    (s, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(c) => out.push(c),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// Reads a line as InfluxDB does; `Err` where it would refuse the write.
pub fn parse_line(line: &str) -> Result<Point, String> {
    let (series, rest) = split_once_unescaped(line, ' ');
    let (fields, time) = split_once_unescaped(rest, ' ');
    let mut parts = Vec::new();
    let mut left = series;
    while !left.is_empty() {
        let (part, more) = split_once_unescaped(left, ',');
        parts.push(part);
        left = more;
    }
    let measurement = unescape(parts.first().ok_or("no measurement")?);
    let mut tags = Vec::new();
    for t in &parts[1..] {
        let (k, v) = split_once_unescaped(t, '=');
        tags.push((unescape(k), unescape(v)));
    }
    let mut parsed = Vec::new();
    let mut left = fields;
    while !left.is_empty() {
        let (f, more) = split_once_unescaped(left, ',');
        let (k, v) = split_once_unescaped(f, '=');
        let value = if let Some(q) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Field::Str(q.replace("\\\"", "\"").replace("\\\\", "\\"))
        } else if let Some(i) = v.strip_suffix('i') {
            Field::Int(i.parse().map_err(|e| format!("{k}={v}: {e}"))?)
        } else if v == "T" || v == "F" {
            Field::Bool(v == "T")
        } else {
            Field::Float(v.parse().map_err(|e| format!("{k}={v}: {e}"))?)
        };
        parsed.push((unescape(k), value));
        left = more;
    }
    if parsed.is_empty() {
        return Err(format!("no fields: {line}"));
    }
    Ok(Point {
        measurement,
        tags,
        fields: parsed,
        time: time.parse().map_err(|e| format!("time {time}: {e}"))?,
    })
}

/// A pivoted row: its measurement and `callId`, its columns, and when each field was
/// written.
type Row = (
    (String, Option<String>),
    Map<String, Value>,
    Vec<(String, u128)>,
);

/// What `createFetchCalls(influxdb)(accessKeyId, {})` returns as `items`: from the points
/// written (`lines`, in the order written), the Flux query's rows. `Err` when InfluxDB
/// would have refused a write (a field whose type changed).
pub fn list_calls(
    lines: &[String],
    access_key_id: &str,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut kinds: Vec<(String, std::mem::Discriminant<Field>)> = Vec::new();
    // |> pivot(rowKey: ["callId"], columnKey: ["_field"], valueColumn: "_value"): one row
    // per measurement and callId, each field's value at the latest time.
    let mut rows: Vec<Row> = Vec::new();
    for line in lines {
        let p = parse_line(line)?;
        for (k, v) in &p.fields {
            let kind = std::mem::discriminant(v);
            match kinds.iter().find(|(n, _)| n == k) {
                Some((_, known)) if *known != kind => {
                    return Err(format!("field type conflict: {k} in {line}"))
                }
                Some(_) => {}
                None => kinds.push((k.clone(), kind)),
            }
        }
        let call = p
            .tags
            .iter()
            .find(|(k, _)| k == "callId")
            .map(|(_, v)| v.clone());
        let key = (p.measurement.clone(), call.clone());
        let at = match rows.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                let mut row = Map::new();
                row.insert("_measurement".into(), Value::from(p.measurement.clone()));
                row.insert("callId".into(), call.map_or(Value::Null, Value::from));
                rows.push((key, row, Vec::new()));
                rows.len() - 1
            }
        };
        let (_, row, times) = &mut rows[at];
        for (k, v) in &p.fields {
            match times.iter_mut().find(|(n, _)| n == k) {
                Some((_, t)) if *t > p.time => continue,
                Some((_, t)) => *t = p.time,
                None => times.push((k.clone(), p.time)),
            }
            row.insert(k.clone(), v.json());
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let int = |v: Option<&Value>| v.and_then(Value::as_f64).map(|f| f.trunc() as i64);
    let mut listed: Vec<Map<String, Value>> = rows
        .into_iter()
        .filter_map(|(_, mut row, _)| {
            // |> map(duration: int(endedAt) - int(startedAt), startedAtParsed: int(startedAt) / 1000)
            let (started, ended) = (int(row.get("startedAt")), int(row.get("endedAt")));
            let duration = started.zip(ended).map(|(s, e)| e - s);
            row.insert("duration".into(), duration.map_or(Value::Null, Value::from));
            let parsed = started.map(|s| s / 1000);
            row.insert(
                "startedAtParsed".into(),
                parsed.map_or(Value::Null, Value::from),
            );
            // |> filter(_measurement == "cdr" and startedAtParsed < before and
            //            accessKeyId == "<key>"): a null compares false.
            let keep = row["_measurement"] == "cdr"
                && parsed.is_some_and(|p| (p as f64) < now)
                && row.get("accessKeyId").and_then(Value::as_str) == Some(access_key_id);
            keep.then_some(row)
        })
        .collect();
    // |> group() |> sort(columns: ["startedAtParsed"], desc: true) |> limit(n: 50)
    listed.sort_by_key(|r| std::cmp::Reverse(r["startedAtParsed"].as_i64()));
    listed.truncate(50);
    Ok(listed)
}

/// What the consumer has stored.
#[derive(Default, Debug, Clone)]
pub struct Store {
    /// Every point written, as line protocol, in order.
    pub lines: Vec<String>,
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
                    // Stamped by the client when written: the time now, in nanoseconds,
                    // later than the last point's.
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos();
                    let last = st
                        .lines
                        .last()
                        .and_then(|l| l.rsplit(' ').next()?.parse().ok());
                    let time = now.max(last.map_or(0, |t: u128| t + 1));
                    match point(if tag == "undefined" { "" } else { &tag }, &data, time) {
                        Ok(line) => st.lines.push(line),
                        Err(e) => st.errors.push(format!("createInfluxDbPub: {e}: {event:?}")),
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
