//! The AMI client against the replaying peer over real TCP: login, keepalive, reconnects.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::ami::{client_config, fixture, Recorder, Seen};
use pbxtap::ami::client::{self, AmiHealth};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::replay::{self, messages_of, ReplayConfig};

/// Runs the client for `limit`, then stops it and returns what its handler saw.
async fn run_for(cfg: client::ClientConfig, limit: Duration) -> Recorder {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut rec = Recorder::default();
        let health = AmiHealth::default();
        client::run(cfg, &mut rec, &health, async move {
            let _ = rx.await;
        })
        .await;
        rec
    });
    tokio::time::sleep(limit).await;
    tx.send(()).unwrap();
    task.await.unwrap()
}

#[tokio::test]
async fn plain_and_md5_logins_deliver_the_recording_exactly() {
    let rec_bytes = fixture("02-call-answered.ami");
    let expected: Vec<Seen> = messages_of(&rec_bytes)
        .iter()
        .map(|m| {
            let line = std::str::from_utf8(m).unwrap().lines().next().unwrap();
            Seen::Message(line.split_once(": ").unwrap().1.to_string())
        })
        .collect();
    for auth in [AmiAuth::Plain, AmiAuth::Md5] {
        let peer = replay::start(ReplayConfig::new(vec![rec_bytes.clone()]))
            .await
            .unwrap();
        let rec = run_for(
            client_config(&peer.address, auth, "tapsecret"),
            Duration::from_millis(800),
        )
        .await;
        assert_eq!(rec.seen[0], Seen::Connected, "{auth:?}");
        // The resync list (empty here) then the recording, message for message.
        let msgs: Vec<Seen> = rec.seen[1..]
            .iter()
            .filter(|s| **s != Seen::Message("CoreShowChannelsComplete".into()))
            .cloned()
            .collect();
        assert_eq!(msgs, expected, "{auth:?}");
        assert_eq!(peer.stats.logins_ok.load(Ordering::Relaxed), 1);
        assert_eq!(
            *peer.stats.events_mask.lock().unwrap(),
            "system,call,agent,user,cdr"
        );
    }
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_and_retried_with_backoff() {
    let peer = replay::start(ReplayConfig::new(vec![fixture("02-call-answered.ami")]))
        .await
        .unwrap();
    let rec = run_for(
        client_config(&peer.address, AmiAuth::Md5, "wrong"),
        Duration::from_secs(2),
    )
    .await;
    let failed = peer.stats.logins_failed.load(Ordering::Relaxed);
    // Backoff 100..400 ms with jitter: a handful of attempts in 2 s, never a tight loop.
    assert!((3..=25).contains(&failed), "{failed} attempts");
    assert_eq!(rec.count(&Seen::Connected), 0);
    assert_eq!(rec.count(&Seen::Disconnected("ami_login_rejected")), failed);
    assert_eq!(peer.stats.logins_ok.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_unanswered_ping_forces_a_reconnect() {
    let mut cfg = ReplayConfig::new(vec![fixture("01-register-unregister.ami")]);
    cfg.answer_pings = false;
    let peer = replay::start(cfg).await.unwrap();
    // Ping after 1 s, timeout 1 s more (checked each second): reconnect within ~3 s.
    let rec = run_for(
        client_config(&peer.address, AmiAuth::Plain, "tapsecret"),
        Duration::from_millis(4500),
    )
    .await;
    assert!(
        rec.count(&Seen::Disconnected("ami_ping_timeout")) >= 1,
        "{:?}",
        rec.seen
    );
    assert!(peer.stats.connections.load(Ordering::Relaxed) >= 2);
    assert!(peer.stats.pings.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_resumes_where_it_stopped() {
    let rec_bytes = fixture("02-call-answered.ami");
    let total = messages_of(&rec_bytes).len();
    let mut cfg = ReplayConfig::new(vec![rec_bytes]);
    cfg.drop_after = Some(40);
    let peer = replay::start(cfg).await.unwrap();
    let rec = run_for(
        client_config(&peer.address, AmiAuth::Plain, "tapsecret"),
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(rec.count(&Seen::Connected), 2, "{:?}", rec.seen);
    assert_eq!(rec.count(&Seen::Disconnected("ami_closed")), 1);
    let stream = rec.messages() - rec.count(&Seen::Message("CoreShowChannelsComplete".into()));
    assert_eq!(stream, total);
}

#[tokio::test]
async fn nothing_listening_is_a_clear_connect_error() {
    let port = common::free_port();
    let rec = run_for(
        client_config(&format!("127.0.0.1:{port}"), AmiAuth::Plain, "x"),
        Duration::from_millis(500),
    )
    .await;
    assert!(
        rec.count(&Seen::Disconnected("ami_connect_failed")) >= 1,
        "{:?}",
        rec.seen
    );
}
