//! The wall clock stepping under the real tap (normalizer, lag watch, bus), as on a
//! Raspberry Pi whose clock NTP sets hours or years after boot. A clock of the test's own
//! is injected (`Tap::with_clock`): recordings are played on it at their recorded pace,
//! ticking every second as the AMI client does, and the wall clock is stepped in the
//! middle. Every event must come out the same as without the step (durations, waits,
//! alarms), with one `system.clock_stepped` more and no lag alarm; only the stamps
//! differ. With and without Asterisk's own `Timestamp:` on each message (which steps with
//! the wall clock, as Asterisk's would on the same box; the message at the step is stamped
//! on the old clock and read on the new, as one in flight would be).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ami::fixture;
use pbxtap::ami::client::Handler;
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::ami::replay::messages_of;
use pbxtap::bus::{Bus, TryRecv};
use pbxtap::clock::Clock;
use pbxtap::event::{text, Body, Event};
use pbxtap::normalize::{NormalizeConfig, Normalizer};
use pbxtap::tap::Tap;

const S: u64 = 1_000_000;
/// Where the Pi's clock starts: fake-hwclock's last saved time, far behind.
const STALE_BOOT: u64 = 1_600_000_000 * S;
const TEN_YEARS: i64 = 315_360_000 * S as i64;
const HOUR: i64 = 3600 * S as i64;

#[derive(Default)]
struct Times {
    wall: u64,
    monotonic: u64,
    synchronized: Option<bool>,
}

/// The test's clock: both readings set by the test.
#[derive(Clone, Default)]
struct TestClock(Arc<Mutex<Times>>);

impl TestClock {
    fn advance(&self, by: u64) {
        let mut t = self.0.lock().unwrap();
        t.wall += by;
        t.monotonic += by;
    }

    fn step(&self, by: i64) {
        let mut t = self.0.lock().unwrap();
        t.wall = t.wall.saturating_add_signed(by);
        t.synchronized = Some(true);
    }
}

impl Clock for TestClock {
    fn wall(&self) -> u64 {
        self.0.lock().unwrap().wall
    }

    fn monotonic(&self) -> u64 {
        self.0.lock().unwrap().monotonic
    }

    fn synchronized(&self) -> Option<bool> {
        self.0.lock().unwrap().synchronized
    }
}

/// A run: the messages of `recording` (AMI text, banner first or not) fed at their
/// recorded pace, `step` applied to the wall clock just before message `at`.
struct Run<'a> {
    messages: Vec<&'a [u8]>,
    /// Waits before each message.
    delays: Vec<Duration>,
    step: Option<(usize, i64)>,
    timestamps: bool,
    cfg: NormalizeConfig,
}

impl<'a> Run<'a> {
    /// `messages` at their recorded pace, no step yet.
    fn recorded(messages: &[&'a [u8]], timestamps: bool, cfg: NormalizeConfig) -> Run<'a> {
        Run {
            delays: pbxtap::ami::pace::delays(messages),
            messages: messages.to_vec(),
            step: None,
            timestamps,
            cfg,
        }
    }

    fn events(&self) -> Vec<Event> {
        let bus = Arc::new(Bus::new(65_536, text("pbx1")));
        let mut rx = bus.subscribe("test");
        let clock = TestClock::default();
        {
            let mut t = clock.0.lock().unwrap();
            t.wall = STALE_BOOT;
            t.synchronized = Some(false);
        }
        let mut tap = Tap::new(Normalizer::new(self.cfg.clone()), bus.clone(), "a")
            .with_lag_warning(2000)
            .with_clock(Box::new(clock.clone()));
        let mut parser = Parser::new(Limits::default());
        parser.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        let mut since_tick = 0;
        let mut wait = |tap: &mut Tap, by: u64| {
            // Ticks every second, as the AMI client does, between messages.
            let mut left = by;
            while since_tick + left >= S {
                let part = S - since_tick;
                clock.advance(part);
                left -= part;
                since_tick = 0;
                tap.tick();
            }
            clock.advance(left);
            since_tick += left;
        };
        for (i, m) in self.messages.iter().enumerate() {
            wait(&mut tap, self.delays[i].as_micros() as u64);
            if let Some((at, by)) = self.step {
                if at == i {
                    clock.step(by);
                }
            }
            let message = if self.timestamps {
                // The message at the step was stamped by Asterisk just before it, on the
                // old clock, and is read just after.
                let before = match self.step {
                    Some((at, by)) if at == i => clock.wall().saturating_add_signed(-by),
                    _ => clock.wall(),
                };
                stamped(m, before)
            } else {
                m.to_vec()
            };
            parser.push(&message, &mut |f| {
                if let Ok(Frame::Message(msg)) = f {
                    tap.message(&msg);
                }
            });
        }
        // Time for what is held (starts, CDRs in their grace, SLA checks) to come out.
        wait(&mut tap, 90 * S);
        let mut out = Vec::new();
        while let TryRecv::Event(ev) = rx.try_recv() {
            out.push(ev);
        }
        out
    }
}

/// `message` with Asterisk's `Timestamp:` header at `wall`.
fn stamped(message: &[u8], wall: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let (first, rest) = text.split_once("\r\n").unwrap();
    format!(
        "{first}\r\nTimestamp: {}.{:06}\r\n{rest}",
        wall / S,
        wall % S
    )
    .into_bytes()
}

fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}.{}", e.class().as_str(), e.name()))
        .collect()
}

/// The run with `step` gives the same bodies as the run without, plus one
/// `system.clock_stepped` of that size; no lag alarm in either. Returns the run without.
fn same_with_and_without(run: &mut Run, step: (usize, i64)) -> Vec<Event> {
    run.step = None;
    let plain = run.events();
    run.step = Some(step);
    let stepped = run.events();
    // The step is NTP's sync in these runs: `system.clock_synchronized` follows it.
    let (clock, rest): (Vec<Event>, Vec<Event>) = stepped
        .into_iter()
        .filter(|e| !matches!(e.body, Body::ClockSynchronized(_)))
        .partition(|e| matches!(e.body, Body::ClockStepped(_)));
    let ctx = format!(
        "step {} s, timestamps {}",
        step.1 / S as i64,
        run.timestamps
    );
    let bodies = |evs: &[Event]| evs.iter().map(|e| e.body.clone()).collect::<Vec<_>>();
    assert_eq!(bodies(&rest), bodies(&plain), "{ctx}: {:?}", names(&rest));
    assert_eq!(clock.len(), 1, "{ctx}: one system.clock_stepped");
    let Body::ClockStepped(s) = &clock[0].body else {
        unreachable!()
    };
    assert_eq!(s.step_ms, step.1.unsigned_abs() / 1000, "{ctx}");
    assert_eq!(s.direction, if step.1 > 0 { "forward" } else { "backward" });
    assert!(s.synchronized, "{ctx}");
    for evs in [&plain, &rest] {
        assert!(
            !evs.iter().any(|e| matches!(e.body, Body::AmiLagging(_))),
            "{ctx}: a lag alarm: {:?}",
            names(evs)
        );
    }
    // Stamps after the step are on the new clock.
    let last = rest.last().unwrap().time;
    assert!(
        last.abs_diff(STALE_BOOT.saturating_add_signed(step.1)) < 600 * S,
        "{ctx}"
    );
    plain
}

/// The middle of the call: the first message after its answer.
fn after(messages: &[&[u8]], event: &str) -> usize {
    let needle = format!("Event: {event}\r\n");
    messages
        .iter()
        .position(|m| String::from_utf8_lossy(m).contains(&needle))
        .unwrap_or_else(|| panic!("no {event}"))
        + 1
}

fn body_of<'a>(events: &'a [Event], name: &str) -> &'a Event {
    events
        .iter()
        .find(|e| format!("{}.{}", e.class().as_str(), e.name()) == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(events)))
}

#[test]
fn an_answered_call_keeps_its_duration_and_billsec_across_steps() {
    let rec = fixture("live/a_call_answered_and_hung_up_by_the_callee.ami");
    let messages = messages_of(&rec);
    let mid = after(&messages, "BridgeEnter");
    for timestamps in [false, true] {
        let mut run = Run::recorded(&messages, timestamps, NormalizeConfig::default());
        for step in [TEN_YEARS, -HOUR] {
            let plain = same_with_and_without(&mut run, (mid, step));
            let Body::CallEnded(ended) = &body_of(&plain, "call.ended").body else {
                unreachable!()
            };
            assert!(ended.answered);
            assert!(
                (1..60).contains(&ended.duration) && ended.billsec <= ended.duration,
                "{ended:?}"
            );
        }
    }
}

#[test]
fn a_queue_wait_raises_no_false_sla_alarm_across_steps() {
    let rec = fixture("live/a_queue_call_answered_after_a_wait.ami");
    let messages = messages_of(&rec);
    let mid = after(&messages, "QueueCallerJoin");
    for timestamps in [false, true] {
        let sla = NormalizeConfig {
            queue_sla_secs: 30,
            ..NormalizeConfig::default()
        };
        let mut run = Run::recorded(&messages, timestamps, sla);
        for step in [HOUR, -HOUR, TEN_YEARS] {
            let plain = same_with_and_without(&mut run, (mid, step));
            assert!(
                !names(&plain).contains(&"queue.sla_breached".to_string()),
                "{:?}",
                names(&plain)
            );
            let Body::QueueCallerLeft(left) = &body_of(&plain, "queue.caller_left").body else {
                unreachable!()
            };
            assert!(left.waited < 30, "{left:?}");
        }
    }
}

/// Five failed logins 10 s apart are one `system.login_failures` (5 within 60 s), the
/// wall clock stepping an hour either way after the second.
#[test]
fn a_login_failure_window_is_kept_across_steps() {
    let one =
        "Event: InvalidPassword\r\nPrivilege: security,all\r\nService: PJSIP\r\nAccountID: 101\r\n\
               RemoteAddress: IPV4/UDP/192.0.2.9/5060\r\n\r\n";
    let messages: Vec<&[u8]> = (0..5).map(|_| one.as_bytes()).collect();
    for timestamps in [false, true] {
        let mut run = Run {
            delays: vec![Duration::from_secs(10); 5],
            messages: messages.clone(),
            step: None,
            timestamps,
            cfg: NormalizeConfig {
                login_failures: 5,
                login_window_secs: 60,
                ..NormalizeConfig::default()
            },
        };
        for step in [HOUR, -HOUR] {
            let plain = same_with_and_without(&mut run, (2, step));
            let Body::LoginFailures(f) = &body_of(&plain, "system.login_failures").body else {
                unreachable!()
            };
            assert_eq!(f.failures, 5);
        }
    }
}

/// Until systemd-timesyncd says the clock is synchronised, a consumer is told once; and
/// once it is.
#[test]
fn an_unsynchronised_clock_is_told_and_then_its_synchronisation() {
    let rec = fixture("live/a_call_answered_and_hung_up_by_the_callee.ami");
    let messages = messages_of(&rec);
    let mut run = Run::recorded(&messages, false, NormalizeConfig::default());
    run.step = Some((after(&messages, "BridgeEnter"), TEN_YEARS));
    let events = run.events();
    let told: Vec<String> = names(&events)
        .into_iter()
        .filter(|n| n.starts_with("system.clock_"))
        .collect();
    assert_eq!(
        told,
        [
            "system.clock_unsynchronized",
            "system.clock_stepped",
            "system.clock_synchronized"
        ]
    );
    run.step = None;
    let unsynced = run.events();
    assert_eq!(
        names(&unsynced)
            .iter()
            .filter(|n| n.starts_with("system.clock_"))
            .count(),
        1
    );
}
