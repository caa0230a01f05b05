//! The real pbxtap against a live test PBX (`common::pbx`), its stdout sink collected, for
//! the live suites (`tests/live_asterisk.rs`, `tests/freepbx_live.rs`): start it, wait for
//! an event with a deadline, and fence a scenario's end.

use std::time::Duration;

use serde_json::Value;

use super::daemon::Daemon;
use super::pbx::Pbx;
use super::sequence::name;

/// Longest any event is waited for.
pub const WAIT: Duration = Duration::from_secs(40);
/// The phone used as the end-of-scenario fence, and its AOR.
pub const FENCE: u16 = 105;
pub const FENCE_AOR: &str = "105";

/// The real pbxtap, its stdout sink collected, logged in to `pbx`.
pub struct Tap {
    pub daemon: Daemon,
}

impl Tap {
    pub fn start(pbx: &Pbx) -> Tap {
        Tap::start_with(pbx, "")
    }

    /// With `extra` TOML appended to the config.
    pub fn start_with(pbx: &Pbx, extra: &str) -> Tap {
        Tap::start_with_ami(pbx, "", extra)
    }

    /// With `ami` keys added to `[ami]`, and `extra` TOML appended to the config.
    pub fn start_with_ami(pbx: &Pbx, ami: &str, extra: &str) -> Tap {
        let config = format!(
            "host = \"lab\"\n{}{ami}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n{extra}",
            pbx.ami_toml()
        );
        let daemon = Daemon::start(&config, &[], true);
        daemon.wait_line(WAIT, |l| l.contains("\"event\":\"ami_connected\""));
        Tap { daemon }
    }

    pub fn daemon_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    pub fn events(&self) -> Vec<Value> {
        self.daemon
            .stdout_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until an event satisfies `pred`; returns every event so far.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        super::wait_until(what, WAIT, || {
            out = self.events();
            out.iter().any(&pred)
        });
        out
    }

    /// Registers and unregisters the fence phone, and waits for its removal: every event
    /// Asterisk sent before it has then reached the stdout sink.
    ///
    /// Twice: a call's one CDR goes out `CDR_GRACE` after its end, at the next message, so
    /// the second round's events come after it.
    pub fn fence(&self, pbx: &Pbx) -> Vec<Value> {
        let mut events = Vec::new();
        for round in 0..2 {
            let tag = format!("fence{}-{round}", self.events().len());
            pbx.register(FENCE, 60, &tag);
            pbx.register(FENCE, 0, &tag);
            events = self.wait_for("the fence phone's unregistration", |e| {
                name(e) == "endpoint.unregistered"
                    && e["aor"] == FENCE_AOR
                    && e["contact"].as_str().is_some_and(|c| c.ends_with(&tag))
            });
        }
        events
    }
}

/// The `call.ended` of `call_id`.
pub fn ended<'a>(events: &'a [Value], call_id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| name(e) == "call.ended" && e["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no call.ended for {call_id}"))
}

/// The scenario is over: `phones` (extension, contact tag) unregister, and every event
/// up to the fence.
pub fn done(pbx: &Pbx, tap: &Tap, phones: &[(u16, &str)]) -> Vec<Value> {
    for (ext, tag) in phones {
        pbx.register(*ext, 0, tag);
    }
    tap.fence(pbx)
}
