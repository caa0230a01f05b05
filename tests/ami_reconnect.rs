//! The AMI connection dropping mid-call and coming back: the tap resynchronises through
//! CoreShowChannels, with no duplicate call.started and a clear end for vanished calls.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ami::{client_config, fixture};
use pbxtap::ami::client::{self, AmiHealth};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::replay::{self, ListedChannel, ReplayConfig};
use pbxtap::bus::{Bus, TryRecv};
use pbxtap::event::{text, Body};
use pbxtap::normalize::{NormalizeConfig, Normalizer};
use pbxtap::tap::Tap;

/// Where the drop happens: after the call is answered (DialEnd is message 51) and
/// before anyone hangs up (message 103).
const DROP_AFTER: usize = 60;

fn channel(name: &str, uid: &str, num: &str) -> ListedChannel {
    ListedChannel {
        channel: name.into(),
        uniqueid: uid.into(),
        linkedid: "1795376847.2".into(),
        caller_id_num: num.into(),
        exten: "102".into(),
    }
}

/// Replays 02-call-answered with a drop mid-call; the peer lists `channels` on reconnect.
/// Returns the call and AMI-link events seen on the bus, as `class.event[:cause_name]`.
async fn replay_with_drop(channels: Vec<ListedChannel>) -> Vec<String> {
    let mut cfg = ReplayConfig::new(vec![fixture("02-call-answered.ami")]);
    cfg.drop_after = Some(DROP_AFTER);
    cfg.channels = channels;
    let peer = replay::start(cfg).await.unwrap();
    let bus = Arc::new(Bus::new(1024, text("pbx1")));
    let mut rx = bus.subscribe("test");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client_cfg = client_config(&peer.address, AmiAuth::Md5, "tapsecret");
    let tap_bus = bus.clone();
    let task = tokio::spawn(async move {
        let mut tap = Tap::new(Normalizer::new(NormalizeConfig::default()), tap_bus, "pbx");
        let health = AmiHealth::default();
        client::run(client_cfg, &mut tap, &health, async move {
            let _ = stopped.await;
        })
        .await;
    });
    // Until the whole recording went out (twice connected), within a bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while peer.stats.sent.load(std::sync::atomic::Ordering::Relaxed) < peer.total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The call's CDR is the last event: it goes out a moment after the call's end
    // (normalize::calls::CDR_GRACE, then the next message or tick).
    let mut seen = Vec::new();
    common::until("the call's CDR", Duration::from_secs(10), async || {
        while let TryRecv::Event(ev) = rx.try_recv() {
            let name = format!("{}.{}", ev.class().as_str(), ev.name());
            match &ev.body {
                Body::CallEnded(e) => seen.push(format!("{name}:{}", e.cause_name)),
                _ if name.starts_with("call.") || name.starts_with("system.ami") => seen.push(name),
                _ => {}
            }
        }
        seen.last().is_some_and(|n| n == "call.cdr")
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
    seen
}

#[tokio::test]
async fn a_call_that_survives_the_outage_is_not_announced_twice() {
    let seen = replay_with_drop(vec![
        channel("PJSIP/101-00000002", "1795376847.2", "101"),
        channel("PJSIP/102-00000003", "1795376847.3", "102"),
    ])
    .await;
    assert_eq!(
        seen,
        [
            "system.ami_connected",
            "call.started",
            "call.routed",
            "call.ringing",
            "call.answered",
            "system.ami_disconnected",
            "system.ami_connected",
            // The call's one CDR goes out after its end (normalize::calls, CdrFold).
            "call.ended:NORMAL_CLEARING",
            "call.cdr",
        ]
    );
}

#[tokio::test]
async fn a_call_that_vanished_during_the_outage_ends_with_a_clear_cause() {
    let seen = replay_with_drop(Vec::new()).await;
    assert_eq!(
        seen,
        [
            "system.ami_connected",
            "call.started",
            "call.routed",
            "call.ringing",
            "call.answered",
            "system.ami_disconnected",
            "system.ami_connected",
            "call.ended:VANISHED_DURING_AMI_OUTAGE",
            "call.cdr",
        ]
    );
}
