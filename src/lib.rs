//! pbxtap: taps Asterisk's AMI, turns it into one event model, and fans it out.
//!
//! Layout, in the order events flow:
//! - `ami::frame`: bytes → AMI messages (pure, bounded). `ami::client`: the TCP session.
//! - `normalize`: AMI messages → `event::Event`s, with fixed-capacity live-call tables.
//! - `clock`: the wall clock stamps, the monotonic timeline measures; clock steps.
//! - `lag`: how late Asterisk's events arrive (`system.ami_lagging`).
//! - `bus`: fan-out to fixed-capacity rings per sink, one per priority; the tap never
//!   waits on a sink.
//! - `state`: which events set or clear the present (contacts, calls, ...), for sinks that
//!   keep it.
//! - `sink::*`: stdout, NATS, MQTT, webhook, WebSocket; `dialect::*`: their wire formats.
//! - `settings`: the shared config error and key helpers (a leaf); `config` composes every
//!   part's own settings with the TOML file, environment overrides and secrets.
//! - `backoff`: the one reconnect/retry delay rule; `accept`: the one rule for a failing
//!   `accept` on a listener; `logging`: journald or stderr.
//! - `watchdog`: Asterisk's health into the bus; liveness and status to systemd.

pub mod accept;
pub mod ami;
pub mod app;
pub mod backoff;
pub mod bus;
pub mod clock;
pub mod config;
pub mod dialect;
pub mod event;
pub mod lag;
pub mod logging;
pub mod metrics;
pub mod normalize;
pub mod settings;
pub mod sink;
pub mod state;
pub mod tap;
pub mod watchdog;
