//! Routr conformance: a consumer that does what Fonoster's apiserver does with Routr's
//! NATS events (`tests/common/fonoster.rs`) reads them from a real nats-server, where the
//! real `pbxtap run` publishes in the `routr` dialect what a real Asterisk (the live
//! suite's test PBX) tells of real SIP calls and registrations. It must get complete
//! records: an answered call and a failed one (both times, the status, the callee, the
//! X- headers of the caller's INVITE, the direction), and a registration, its refresh and
//! its removal with their expiry.
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

fn setup(name: &str) -> Setup {
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
         [[sinks]]\ntype = \"nats\"\nurl = \"{}\"\ndialect = \"routr\"\nsip_domain = \"{DOMAIN}\"\n",
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

    /// The record of the one call 101 placed, once it has ended.
    fn ended_call(&self) -> Map<String, Value> {
        let store = self.wait_for("the call's end", |s| {
            s.calls.iter().any(|(_, r)| r.contains_key("status"))
        });
        assert_eq!(store.calls.len(), 1, "{:#?}", store.calls);
        store.calls[0].1.clone()
    }
}

/// A record's number field.
fn number(r: &Map<String, Value>, key: &str) -> f64 {
    r.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} is not a number (NaN to JavaScript): {r:?}"))
}

/// The fields every call record must have, as Fonoster stores them.
fn check_call(r: &Map<String, Value>, status: &str) {
    let field = |key: &str| r.get(key).unwrap_or_else(|| panic!("no {key}: {r:?}"));
    assert_eq!(field("status"), status, "{r:?}");
    assert_eq!(field("from"), &format!("sip:101@{DOMAIN}"), "{r:?}");
    assert_eq!(field("to"), "102", "sip: and the domain cut off: {r:?}");
    let key = field("accessKeyId");
    assert_eq!(key, "AK-101", "the INVITE's X-Access-Key-Id: {r:?}");
    let reference = field("ref").as_str().unwrap_or_default();
    assert!(
        reference.starts_with("ref-"),
        "the INVITE's X-Call-Ref: {r:?}"
    );
    assert_eq!(field("direction"), "INTRA_NETWORK", "{r:?}");
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

#[test]
fn an_answered_call_makes_a_complete_fonoster_record() {
    let s = setup("routr_an_answered_call");
    s.pbx.register(102, 120, "c102");
    let uas = s
        .pbx
        .callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    let uac = s.pbx.caller(101, "102", "uac_call", &[("talk_ms", "1500")]);
    uac.passed();
    let _ = uas.wait();
    let r = s.ended_call();
    check_call(&r, "NORMAL_CLEARING");
    let talked = number(&r, "endedAt") - number(&r, "startedAt");
    assert!((1.0..10.0).contains(&talked), "{talked} s: {r:?}");
}

#[test]
fn a_busy_callee_makes_a_record_with_routrs_status() {
    let s = setup("routr_a_busy_callee");
    s.pbx.register(102, 120, "c102");
    let uas = s.pbx.callee(102, "uas_busy", &[("ring_ms", "300")]);
    let uac = s.pbx.caller(101, "102", "uac_call", &[("talk_ms", "0")]);
    let _ = uac.wait();
    let _ = uas.wait();
    check_call(&s.ended_call(), "USER_BUSY");
}

#[test]
fn a_registration_its_refresh_and_its_removal_each_come_with_their_expiry() {
    let s = setup("routr_a_registration_lifecycle");
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
    let refs: Vec<&Value> = seen
        .refs
        .iter()
        .filter(|(c, _)| c == id)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(refs.len(), 1, "one reference per call: {refs:?}");
}
