//! The present for a consumer that starts late, against the lab's real Asterisk and a real
//! mosquitto: pbxtap keeps every registered contact and every live call retained under
//! `<topic>/state/<host>/...`, clears a call's when it ends, and at a restart clears what
//! an earlier run left before publishing the present again.
//!
//! Run: `cargo test --test state_live` with `PBXTAP_ASTERISK_PREFIX` set to the lab's
//! Asterisk (`scripts/test.sh` sets it).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::daemon::{field, name, Daemon};
use common::mqtt::{retained, Mosquitto};
use common::pbx::Pbx;

const WAIT: Duration = Duration::from_secs(40);
const STATE: &str = "pbxtap/state/lab/#";
/// Phone 102 in the test PBX's queue (`tests/pbx/etc/queues.conf`).
const MEMBER: &str = "queue_member/lab-queue/PJSIP_102";

fn start_tap(pbx: &Pbx, broker: u16) -> Daemon {
    let config = format!(
        "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n\
         [[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{broker}\"\n",
        pbx.ami_toml()
    );
    let daemon = Daemon::start(&config, &[], true);
    daemon.wait_line(WAIT, |l| l.contains("\"event\":\"ami_connected\""));
    daemon
}

/// The kinds and keys of what a late consumer learns: `contact/101/<uri>`, `call/<id>`.
fn pieces(state: &BTreeMap<String, String>) -> Vec<String> {
    state
        .keys()
        .map(|t| t.strip_prefix("pbxtap/state/lab/").unwrap_or(t).to_string())
        .collect()
}

/// Waits until a consumer connecting now learns exactly `want` (kinds and keys, prefixes
/// of them for contacts, whose URIs carry SIPp's ports); returns what it learned.
fn wait_state(
    rt: &tokio::runtime::Runtime,
    broker: u16,
    want: &[&str],
) -> BTreeMap<String, String> {
    let mut got = BTreeMap::new();
    common::wait_until(
        &format!("a late consumer to learn exactly {want:?}"),
        WAIT,
        || {
            got = rt.block_on(retained(broker, STATE));
            let have = pieces(&got);
            have.len() == want.len() && want.iter().zip(&have).all(|(w, h)| h.starts_with(w))
        },
    );
    got
}

#[test]
fn a_consumer_started_after_the_calls_began_learns_every_contact_and_live_call() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pbx = Pbx::start("state_for_a_late_consumer");
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut tap = start_tap(&pbx, broker.port);
    pbx.register(101, 120, "s101");
    pbx.register(102, 120, "s102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "200"), ("talk_ms", "0")]);
    let uac = pbx.caller(101, "102", "uac_call", &[("talk_ms", "6000")]);
    let answered = tap.wait_line(WAIT, |l| name(l) == "call.answered");
    let call_id = field(&answered, "call_id").unwrap().to_string();

    // Started while the call is up: both contacts, the call, and 102 as a member of the
    // test PBX's queue (its state follows the phone's), each as its latest event.
    let call = format!("call/{call_id}");
    let state = wait_state(
        &rt,
        broker.port,
        &[&call, "contact/101/", "contact/102/", MEMBER],
    );
    let now = &state[&format!("pbxtap/state/lab/{call}")];
    assert_eq!(field(now, "call_id"), Some(call_id.as_str()), "{now}");
    for (topic, payload) in &state {
        assert_eq!(field(payload, "host"), Some("lab"), "{topic}: {payload}");
        if topic.contains("/contact/") {
            assert_eq!(name(payload), "endpoint.registered", "{payload}");
        }
    }

    // The call ends: its piece goes.
    let _ = uac.wait();
    let _ = uas.wait();
    tap.wait_line(WAIT, |l| name(l) == "call.ended");
    wait_state(&rt, broker.port, &["contact/101/", "contact/102/", MEMBER]);

    // pbxtap is killed; 102 leaves while it is away. The next run clears what the last
    // one left, and tells the present again: only 101 (queue members are not listed at
    // login yet: the member shows again at its next change).
    tap.signal(nix::sys::signal::Signal::SIGKILL);
    tap.wait_exit(WAIT);
    pbx.register(102, 0, "s102");
    let tap = start_tap(&pbx, broker.port);
    tap.wait_stderr(WAIT, "mqtt_state_swept");
    wait_state(&rt, broker.port, &["contact/101/"]);
    pbx.register(101, 0, "s101");
    wait_state(&rt, broker.port, &[]);
}
