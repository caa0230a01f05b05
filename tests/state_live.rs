//! The present for a consumer that starts late, against the lab's real Asterisk and a real
//! mosquitto: pbxtap keeps every registered contact and every live call retained under
//! `<topic>/state/<host>/...` (queue members with their pause and its reason), clears a
//! call's when it ends, and at a restart clears what an earlier run left before
//! publishing the present again.
//!
//! Run: `cargo test --test state_live` with `PBXTAP_ASTERISK_PREFIX` set to the lab's
//! Asterisk (`scripts/test.sh` sets it).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::daemon::{field, name, Daemon};
use common::mqtt::{retained, Mosquitto};
use common::nats::{connect, last_values, NatsServer};
use common::pbx::{Pbx, RawAmi};

const WAIT: Duration = Duration::from_secs(40);
/// Phones 102 and 103 in the test PBX's queue (`tests/pbx/etc/queues.conf`); 103 never
/// registers here, so it is listed `unavailable`.
const MEMBER: &str = "queue_member/lab-queue/PJSIP/102";
const MEMBER_103: &str = "queue_member/lab-queue/PJSIP/103";
/// The FreePBX-shaped queue's members (Local channels, told by the phones they follow).
const FPBX_102: &str = "queue_member/fpbx-queue/PJSIP/102";
const FPBX_103: &str = "queue_member/fpbx-queue/PJSIP/103";
/// Every queue membership of the test PBX, in the order the state keys sort in.
const MEMBERS: [&str; 4] = [FPBX_102, FPBX_103, MEMBER, MEMBER_103];

/// The two brokers the state is kept in, and a late consumer of each.
struct Brokers {
    rt: tokio::runtime::Runtime,
    mosquitto: Mosquitto,
    nats: NatsServer,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Brokers {
    /// Mosquitto, and nats-server with a stream for the events (`pbx.*.*`) and one that
    /// keeps the last message of each state subject (`pbx.state.>`).
    fn start() -> Brokers {
        use async_nats::jetstream::{self, stream};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mosquitto = Mosquitto::start(dirs.0.path(), "");
        let nats = NatsServer::with_jetstream(common::free_port(), dirs.1.path());
        rt.block_on(async {
            let js = jetstream::new(connect(&nats.url()).await);
            for (name, subject, last) in [("EVENTS", "pbx.*.*", -1), ("STATE", "pbx.state.*.>", 1)]
            {
                js.create_stream(stream::Config {
                    name: name.into(),
                    subjects: vec![subject.into()],
                    max_messages_per_subject: last,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        });
        Brokers {
            rt,
            mosquitto,
            nats,
            _dirs: dirs,
        }
    }

    /// The real pbxtap with the stdout sink (to follow the calls), the MQTT sink and the
    /// NATS sink on JetStream with `state`, logged in to `pbx`.
    fn tap(&self, pbx: &Pbx) -> Daemon {
        let config = format!(
            "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\n\
             [[sinks]]\ntype = \"nats\"\nurl = \"{}\"\ndialect = \"native\"\nsubject = \"pbx\"\n\
             jetstream = true\nstate = true\n",
            pbx.ami_toml(),
            self.mosquitto.port,
            self.nats.url()
        );
        let daemon = Daemon::start(&config, &[], true);
        daemon.wait_line(WAIT, |l| l.contains("\"event\":\"ami_connected\""));
        daemon
    }

    /// Waits until a consumer of each broker that starts now learns exactly `want`
    /// (`kind/key...`, prefixes for contacts, whose URIs carry SIPp's ports); returns
    /// what each learned, by `kind/key`.
    fn wait_state(&self, want: &[&str]) -> [BTreeMap<String, String>; 2] {
        let mut got = [BTreeMap::new(), BTreeMap::new()];
        let want: Vec<String> = want.iter().map(|w| same_key(w)).collect();
        common::wait_until(
            &format!("late consumers to learn exactly {want:?}"),
            WAIT,
            || {
                let mqtt = self
                    .rt
                    .block_on(retained(self.mosquitto.port, "pbxtap/state/lab/#"));
                let nats =
                    self.rt
                        .block_on(last_values(&self.nats.url(), "STATE", "pbx.state.lab.>"));
                got = [
                    keyed(mqtt, "pbxtap/state/lab/"),
                    keyed(nats, "pbx.state.lab."),
                ];
                got.iter().all(|g| {
                    g.len() == want.len()
                        && want.iter().zip(g.keys()).all(|(w, k)| k.starts_with(w))
                })
            },
        );
        got
    }
}

/// A key as both brokers can show it: MQTT writes `/` in a key as `_`, NATS writes `.` as
/// `_`, and they separate the parts with `/` and `.`.
fn same_key(key: &str) -> String {
    key.replace(['.', '/', '_'], "/")
}

/// `state` by `same_key` of what follows `prefix`.
fn keyed(state: BTreeMap<String, String>, prefix: &str) -> BTreeMap<String, String> {
    state
        .into_iter()
        .map(|(k, v)| (same_key(k.strip_prefix(prefix).unwrap_or(&k)), v))
        .collect()
}

#[test]
fn a_consumer_started_after_the_calls_began_learns_every_contact_and_live_call() {
    let brokers = Brokers::start();
    let pbx = Pbx::start("state_for_a_late_consumer");
    let mut tap = brokers.tap(&pbx);
    pbx.register(101, 120, "s101");
    pbx.register(102, 120, "s102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "200"), ("talk_ms", "0")]);
    let uac = pbx.caller(101, "102", "uac_call", &[("talk_ms", "6000")]);
    let answered = tap.wait_line(WAIT, |l| name(l) == "call.answered");
    let call_id = field(&answered, "call_id").unwrap().to_string();

    // Started while the call is up: both contacts, the call, and the queue's members
    // (102's state follows the phone's), each as its latest event.
    let call = format!("call/{call_id}");
    for state in
        brokers.wait_state(&[&[&call, "contact/101/", "contact/102/"][..], &MEMBERS].concat())
    {
        let now = &state[&same_key(&call)];
        assert_eq!(field(now, "call_id"), Some(call_id.as_str()), "{now}");
        for (key, payload) in &state {
            assert_eq!(field(payload, "host"), Some("lab"), "{key}: {payload}");
            if key.starts_with("contact") {
                assert_eq!(name(payload), "endpoint.registered", "{payload}");
            }
        }
    }

    // The call ends: its piece goes.
    let _ = uac.wait();
    let _ = uas.wait();
    tap.wait_line(WAIT, |l| name(l) == "call.ended");
    brokers.wait_state(&[&["contact/101/", "contact/102/"][..], &MEMBERS].concat());

    // pbxtap is killed. While it is away, 102 leaves and its member is paused for lunch.
    // The next run clears what the last one left, and tells the present again from the
    // lists it asks for at login: 101 registered, 102's member paused with its reason.
    tap.signal(nix::sys::signal::Signal::SIGKILL);
    tap.wait_exit(WAIT);
    pbx.register(102, 0, "s102");
    let mut ami = RawAmi::login(pbx.ami_port, "tap", "tapsecret").unwrap();
    ami.send(&[
        ("Action", "QueuePause"),
        ("Interface", "PJSIP/102"),
        ("Paused", "true"),
        ("Reason", "lunch"),
        ("ActionID", "pause"),
    ])
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    ami.read_until("ActionID: pause", deadline).unwrap();
    let tap = brokers.tap(&pbx);
    tap.wait_stderr(WAIT, "mqtt_state_swept");
    tap.wait_stderr(WAIT, "nats_state_swept");
    // The member was swept, so what shows is what the list told.
    for state in brokers.wait_state(&[&["contact/101/"][..], &MEMBERS].concat()) {
        let member = &state[&same_key(MEMBER)];
        assert_eq!(field(member, "state"), Some("paused"), "{member}");
        assert_eq!(field(member, "reason"), Some("lunch"), "{member}");
    }
    pbx.register(101, 0, "s101");
    brokers.wait_state(&MEMBERS);
}
