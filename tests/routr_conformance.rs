//! Routr conformance: a consumer that does what Fonoster's apiserver does with Routr's
//! NATS events (`tests/common/fonoster.rs`: `transformEvent`, the InfluxDB point it
//! writes, the rows `ListCalls` returns for an access key) reads them from a real
//! nats-server, where the real `pbxtap run` publishes in the `routr` dialect what a real
//! Asterisk (the live suite's test PBX) tells of real SIP calls and registrations. Every
//! call must be listed once under its key, with one reference, its times, status, callee
//! and direction; a registration, its refresh and its removal must come with their expiry.
//!
//! Needs `PBXTAP_ASTERISK_PREFIX` (scripts/test.sh sets it to the lab's Asterisk) and
//! nats-server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::Daemon;
use common::fonoster::{self, js_date_millis, Store};
use common::nats::NatsServer;
use common::pbx::Pbx;
use serde_json::{Map, Value};

/// Longest any record is waited for.
const WAIT: Duration = Duration::from_secs(40);
const DOMAIN: &str = "pbx.example";

/// A test PBX, a nats-server, pbxtap publishing Routr's events between them, and the
/// Fonoster-like consumer reading them.
struct Setup {
    pbx: Pbx,
    _nats: NatsServer,
    _daemon: Daemon,
    store: Arc<Mutex<Store>>,
    _client: async_nats::Client,
    _rt: tokio::runtime::Runtime,
}

/// `sink` is added to the NATS sink's config.
fn setup(name: &str, sink: &str) -> Setup {
    let nats = NatsServer::start(common::free_port(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async_nats::connect(nats.url())).unwrap();
    let store = rt.block_on(fonoster::consume(&client, "routr"));
    let pbx = Pbx::start(name);
    // Contacts listed every second: a refresh shows within one. The `dialplan` class
    // brings the VarSet of the X- variables the test PBX sets from the INVITE's headers
    // (docs/nats.md's recipe).
    let config = format!(
        "host = \"lab\"\n{}contacts_poll_secs = 1\nevents = \"system,call,agent,user,cdr,dialplan\"\n\
         [watchdog]\nenabled = false\n\
         [[sinks]]\ntype = \"nats\"\nurl = \"{}\"\ndialect = \"routr\"\nsip_domain = \"{DOMAIN}\"\n{sink}",
        pbx.ami_toml(),
        nats.url()
    );
    let daemon = Daemon::start(&config, &[], false);
    daemon.wait_stderr(WAIT, "AMI connected");
    Setup {
        pbx,
        _nats: nats,
        _daemon: daemon,
        store,
        _client: client,
        _rt: rt,
    }
}

impl Setup {
    /// Waits until the store satisfies `pred`, failing at once on a consumer error.
    fn wait_for(&self, what: &str, pred: impl Fn(&Store) -> bool) -> Store {
        let mut seen = Store::default();
        common::wait_until(what, WAIT, || {
            seen = self.store.lock().unwrap().clone();
            assert!(
                seen.errors.is_empty(),
                "the consumer failed: {:?}",
                seen.errors
            );
            pred(&seen)
        });
        seen
    }

    /// The store once `n` calls have ended.
    fn ended(&self, n: usize) -> Store {
        let ended = |s: &Store| {
            s.calls
                .iter()
                .filter(|(_, r)| r.contains_key("status"))
                .count()
        };
        let store = self.wait_for("the call's end", |s| ended(s) >= n);
        assert_eq!(store.calls.len(), n, "{:#?}", store.calls);
        store
    }
}

/// The rows Fonoster's `ListCalls` returns for `key`, from what the consumer wrote.
fn list_calls(store: &Store, key: &str) -> Vec<Map<String, Value>> {
    fonoster::list_calls(&store.lines, key).unwrap_or_else(|e| panic!("InfluxDB refused: {e}"))
}

/// Every reference the consumer wrote for the call `id`.
fn refs_of<'a>(store: &'a Store, id: &Value) -> Vec<&'a Value> {
    store
        .refs
        .iter()
        .filter(|(c, _)| Some(c.as_str()) == id.as_str())
        .map(|(_, r)| r)
        .collect()
}

/// A record's number field.
fn number(r: &Map<String, Value>, key: &str) -> f64 {
    r.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} is not a number (NaN to JavaScript): {r:?}"))
}

/// The fields every call row must have, as Fonoster's `ListCalls` returns them: `to`
/// dialled, the `status`, and its reference (the INVITE's `X-Call-Ref` when `invite_ref`,
/// else one Fonoster drew).
fn check_call(r: &Map<String, Value>, to: &str, status: &str, invite_ref: bool) {
    let field = |key: &str| r.get(key).unwrap_or_else(|| panic!("no {key}: {r:?}"));
    assert_eq!(field("status"), status, "{r:?}");
    assert_eq!(field("from"), &format!("sip:101@{DOMAIN}"), "{r:?}");
    assert_eq!(field("to"), to, "sip: and the domain cut off: {r:?}");
    let reference = field("ref").as_str().unwrap_or_default();
    assert_eq!(
        reference.starts_with("ref-"),
        invite_ref,
        "the INVITE's X-Call-Ref, or one Fonoster drew: {r:?}"
    );
    assert_eq!(field("direction"), "INTRA_NETWORK", "{r:?}");
    assert_eq!(
        field("duration").as_f64(),
        Some(number(r, "endedAt") - number(r, "startedAt")),
        "{r:?}"
    );
    let (started, ended) = (number(r, "startedAt"), number(r, "endedAt"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - 120.0 < started && started <= ended && ended <= now,
        "{started} .. {ended} (now {now})"
    );
}

#[test]
fn dates_as_javascript_reads_them() {
    assert_eq!(js_date_millis("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        js_date_millis("2026-11-22T19:47:27.493Z"),
        Some(1_795_376_847_493)
    );
    assert_eq!(
        js_date_millis("2026-11-22T19:47:27Z"),
        Some(1_795_376_847_000)
    );
    assert_eq!(
        js_date_millis("2000-02-29T23:59:59.9Z"),
        Some(951_868_799_900)
    );
    for bad in ["101", "2026-11-22 19:47:27", "2026-13-01T00:00:00Z", ""] {
        assert_eq!(js_date_millis(bad), None, "{bad}");
    }
}

/// Fonoster's `ListCalls` over the live test PBX's calls, in the order placed:
/// - answered, and busy: the INVITE's X- headers give their key (`X-Access-Key-Id:
///   AK-101`) and reference (`X-Call-Ref`);
/// - unanswered (402 rings 102 for 4 s), without X- headers: its key is the sink's
///   `metadata`, its reference one Fonoster draws;
/// - answered through 302, whose dialplan sets `X-Meta-accessKeyId`: the call's own key
///   (`metadata_prefix`), over the sink's.
///
/// Each is listed once under its key, with one reference, its direction and its status.
#[test]
fn fonosters_list_calls_has_every_call_once_with_one_reference() {
    let s = setup(
        "routr_list_calls",
        "metadata = { accessKeyId = \"AK-CONFIG\" }\nmetadata_prefix = \"X-Meta-\"\n",
    );
    s.pbx.register(102, 120, "c102");
    let call = |to: &str, callee: &str, keys: &[(&str, &str)], talk_ms: &str| {
        let uas = s.pbx.callee(102, callee, keys);
        let _ = s
            .pbx
            .caller(101, to, "uac_call", &[("talk_ms", talk_ms)])
            .wait();
        let _ = uas.wait();
    };
    let answer = [("ring_ms", "300"), ("talk_ms", "0")];
    call("102", "uas_answer", &answer, "1500");
    s.ended(1);
    call("102", "uas_busy", &[("ring_ms", "300")], "0");
    s.ended(2);
    call("402", "uas_ring", &[], "0");
    s.ended(3);
    call("302", "uas_answer", &answer, "1500");
    let store = s.ended(4);

    let mut invite = list_calls(&store, "AK-101");
    assert_eq!(invite.len(), 2, "{invite:#?}");
    // Sorted by `startedAtParsed`, which is the start in seconds / 1000: calls placed
    // seconds apart tie. Sorted here by status.
    invite.sort_by_key(|r| r["status"].as_str().map(String::from));
    check_call(&invite[0], "102", "NORMAL_CLEARING", true);
    check_call(&invite[1], "102", "USER_BUSY", true);
    let talked = number(&invite[0], "endedAt") - number(&invite[0], "startedAt");
    assert!((1.0..10.0).contains(&talked), "{talked} s: {:?}", invite[0]);
    let config = list_calls(&store, "AK-CONFIG");
    assert_eq!(config.len(), 1, "{config:#?}");
    check_call(&config[0], "402", "NO_ANSWER", false);
    let dialplan = list_calls(&store, "AK-PLAN-101");
    assert_eq!(dialplan.len(), 1, "{dialplan:#?}");
    check_call(&dialplan[0], "302", "NORMAL_CLEARING", false);

    for row in invite.iter().chain(&config).chain(&dialplan) {
        let refs = refs_of(&store, &row["callId"]);
        assert_eq!(refs, [&row["ref"]], "one reference per call: {row:?}");
    }
}

#[test]
fn a_registration_its_refresh_and_its_removal_each_come_with_their_expiry() {
    let s = setup("routr_a_registration_lifecycle", "");
    let aor = format!("sip:102@{DOMAIN}");
    let expires_of = |st: &Store| -> Vec<u64> {
        st.registrations
            .iter()
            .filter(|r| r["aor"] == aor.as_str())
            .map(|r| r["expires"].as_u64().unwrap_or(u64::MAX))
            .collect()
    };
    // Asterisk keeps a contact's expiration time, not the REGISTER's Expires: pbxtap
    // tells the seconds left when it lists the contacts (every second here), which is
    // the Expires or a second or two under it.
    let near = |got: u64, asked: u64| (asked - 3..=asked).contains(&got);
    s.pbx.register(102, 120, "r1");
    s.wait_for(
        "the registration",
        |st| matches!(expires_of(st)[..], [a] if near(a, 120)),
    );
    s.pbx.register(102, 300, "r1");
    s.wait_for(
        "the refresh",
        |st| matches!(expires_of(st)[..], [a, b] if near(a, 120) && near(b, 300)),
    );
    s.pbx.register(102, 0, "r1");
    let st = s.wait_for(
        "the removal",
        |st| matches!(expires_of(st)[..], [a, b, 0] if near(a, 120) && near(b, 300)),
    );
    for r in &st.registrations {
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["aor", "expires", "extraHeaders", "registeredAt"],
            "Routr's fields (serde_json sorts them): {r:?}"
        );
        let at = r["registeredAt"].as_str().unwrap_or_default();
        assert!(js_date_millis(at).is_some(), "{r:?}");
    }
}

proptest::proptest! {
    /// Whatever direction pbxtap gives a call and whatever `X-Call-Direction` (in any case)
    /// the dialplan set, Fonoster's consumer takes the `call.started` it is sent: the
    /// header is only ever one of Routr's values, or absent.
    #[test]
    fn x_call_direction_is_only_ever_one_fonoster_knows(
        direction in proptest::sample::select(vec!["internal", "inbound", "outbound", "unknown"]),
        name in proptest::sample::select(vec!["X-Call-Direction", "x-call-direction", "X-CALL-DIRECTION"]),
        value in "[ -~]{0,24}",
        other in "[a-z]{1,8}",
    ) {
        use pbxtap::event::{text, Body, CallStarted, Event, Headers};
        let mut headers = Headers::default();
        headers.insert(&format!("X-{other}"), "v");
        headers.insert(name, &value);
        let ev = Event::new(
            1_735_689_600_000_000,
            &text("pbx1"),
            Body::CallStarted(CallStarted {
                call_id: text("1.2"),
                from: text("101"),
                to: text("102"),
                direction,
                extra_headers: headers,
                ..Default::default()
            }),
        );
        let mut out = pbxtap::dialect::Encoded::new();
        let ctx = pbxtap::dialect::routr::Context {
            domain: "pbx.local",
            metadata: &[],
            endpoints: &[],
            prefix: "",
        };
        pbxtap::dialect::routr::encode(&ev, &ctx, &mut out).unwrap();
        let payload: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        // Under any spelling: a consumer may look it up without regard to case.
        let sent: Vec<&str> = payload["extraHeaders"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("X-Call-Direction"))
            .filter_map(|(_, v)| v.as_str())
            .collect();
        let ours: Vec<&str> = pbxtap::dialect::routr::call_direction(direction).into_iter().collect();
        proptest::prop_assert_eq!(sent, ours);
        proptest::prop_assert!(fonoster::transform(&payload).is_ok(), "{:?}", payload);
    }
}

/// A call whose dialplan set X- variables but no `X-Call-Ref` nor `X-Access-Key-Id`
/// (replayed from a recording through the real daemon): the key comes from the sink's
/// `metadata`, and the call is one record with one reference, as Fonoster's `ListCalls`
/// needs it.
#[test]
fn a_call_without_its_own_key_or_ref_is_one_record_with_the_configured_key() {
    let nats = NatsServer::start(common::free_port(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async_nats::connect(nats.url())).unwrap();
    let store = rt.block_on(fonoster::consume(&client, "routr"));
    let peer = common::daemon::Peer::start(&["derived/02-call-answered-x-headers.ami"], 1, None);
    let config = format!(
        "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"nats\"\nurl = \"{}\"\n\
         dialect = \"routr\"\nmetadata = {{ accessKeyId = \"AK-CONFIG\" }}\n",
        peer.ami_toml(),
        nats.url()
    );
    let _daemon = Daemon::start(&config, &[], false);
    let mut seen = Store::default();
    common::wait_until("the call's end", WAIT, || {
        seen = store.lock().unwrap().clone();
        seen.calls.iter().any(|(_, r)| r.contains_key("status"))
    });
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(seen.calls.len(), 1, "{:#?}", seen.calls);
    let (id, record) = &seen.calls[0];
    assert_eq!(record["accessKeyId"], "AK-CONFIG", "{record:?}");
    assert_eq!(record["direction"], "INTRA_NETWORK", "{record:?}");
    let rows = list_calls(&seen, "AK-CONFIG");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["callId"], id.as_str());
    assert_eq!(rows[0]["status"], "NORMAL_CLEARING", "{:?}", rows[0]);
    let refs = refs_of(&seen, &rows[0]["callId"]);
    assert_eq!(refs, [&rows[0]["ref"]], "one reference per call");
}

/// The model's InfluxDB side, on payloads written out: `createInfluxDbPub`'s types (a
/// number an integer, floored; text quoted and escaped), and the query's pivot (the latest
/// point's value per field), `duration`, filter by key and order.
#[test]
fn points_and_rows_as_fonosters_influxdb_side_makes_them() {
    let data = |v: Value| v.as_object().unwrap().clone();
    let started = data(serde_json::json!({"from": "sip:101@pbx", "to": "102",
        "startedAt": 1_795_376_847.493, "endedAt": 1_795_376_847.493, "ref": "r \"1\"",
        "accessKeyId": "AK 1", "direction": "INTRA_NETWORK"}));
    let line = fonoster::point("c,1", &started, 7).unwrap();
    assert_eq!(
        line,
        "cdr,callId=c\\,1 accessKeyId=\"AK 1\",direction=\"INTRA_NETWORK\",endedAt=1795376847i,\
         from=\"sip:101@pbx\",ref=\"r \\\"1\\\"\",startedAt=1795376847i,to=\"102\" 7"
    );
    let ended = data(serde_json::json!({"endedAt": 1_795_376_850.2, "status": "NORMAL_CLEARING"}));
    let other = data(serde_json::json!({"startedAt": 1_795_380_000.0, "accessKeyId": "AK 1"}));
    let lines = [
        line,
        fonoster::point("c,1", &ended, 8).unwrap(),
        fonoster::point("c2", &other, 9).unwrap(),
        fonoster::point(
            "c3",
            &data(serde_json::json!({"startedAt": 1.0, "accessKeyId": "AK 2"})),
            10,
        )
        .unwrap(),
    ];
    let rows = fonoster::list_calls(&lines, "AK 1").unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["callId"], "c2", "newest first");
    let r = &rows[1];
    assert_eq!(r["callId"], "c,1");
    assert_eq!(r["ref"], "r \"1\"");
    assert_eq!(r["endedAt"], 1_795_376_850_i64, "the latest point's value");
    assert_eq!(r["duration"], 3);
    assert_eq!(r["startedAtParsed"], 1_795_376);
    assert_eq!(r["status"], "NORMAL_CLEARING");
    // NaN (a time JavaScript could not read) makes intField throw; a field that changes
    // type is refused by InfluxDB.
    assert!(fonoster::point("c", &data(serde_json::json!({"startedAt": null})), 1).is_err());
    let text = fonoster::point("c", &data(serde_json::json!({"endedAt": "x"})), 11).unwrap();
    assert!(fonoster::list_calls(&[lines[0].clone(), text], "AK 1").is_err());
}
