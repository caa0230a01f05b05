//! The AMI client against the replaying peer over real TCP: login, keepalive, reconnects.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::ami::{client_config, fixture, Recorder, Seen};
use pbxtap::ami::client::{self, AmiHealth};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::replay::{self, messages_of, ReplayConfig};

/// Starts the client; a send on the returned sender stops it, and the task then gives
/// what its handler saw.
fn start(
    cfg: client::ClientConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Recorder>,
) {
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
    (tx, task)
}

/// Runs the client for `limit`, then stops it and returns what its handler saw.
async fn run_for(cfg: client::ClientConfig, limit: Duration) -> Recorder {
    let (stop, task) = start(cfg);
    tokio::time::sleep(limit).await;
    stop.send(()).unwrap();
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

/// A peer that accepts TCP and then sends `script` (the banner, say) and nothing more,
/// whatever pbxtap writes. Says on `connections` each time it is dialled.
async fn stalling_peer(script: &'static [u8]) -> (String, tokio::sync::mpsc::Receiver<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = tx.send(()).await;
            tokio::spawn(async move {
                let _ = s.write_all(script).await;
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    (address, rx)
}

#[tokio::test]
async fn a_peer_that_stalls_before_login_is_dropped_at_the_deadline_and_redialled() {
    for (script, code) in [
        (&b""[..], "ami_login_timeout"),
        (&b"Asterisk Call Manager/9.0.0\r\n"[..], "ami_login_timeout"),
        (
            &b"HTTP/1.1 200 OK\r\nServer: not-asterisk\r\n"[..],
            "ami_login_timeout",
        ),
        (&b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..], "ami_no_banner"),
    ] {
        let (address, mut dialled) = stalling_peer(script).await;
        let mut cfg = client_config(&address, AmiAuth::Md5, "tapsecret");
        cfg.session.login_timeout = Duration::from_secs(1);
        let (stop, task) = start(cfg);
        // Dialled, given up on, and dialled again: the normal disconnect/backoff path.
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(10), dialled.recv())
                .await
                .unwrap_or_else(|_| panic!("{script:?}: not redialled within 10 s"));
        }
        stop.send(()).unwrap();
        let rec = task.await.unwrap();
        assert!(
            rec.count(&Seen::Disconnected(code)) >= 1,
            "{script:?}: {:?}",
            rec.seen
        );
        assert_eq!(rec.count(&Seen::Connected), 0);
    }
}

/// The peer refuses `PJSIPShowContacts` (as a chan_sip-only Asterisk, or a user without
/// the right, does): the other lists still come every period, not only after login.
#[tokio::test]
async fn a_refused_contact_list_does_not_stop_the_other_periodic_lists() {
    let peer = replay::start(ReplayConfig::new(vec![fixture("02-call-answered.ami")]))
        .await
        .unwrap();
    let mut cfg = client_config(&peer.address, AmiAuth::Md5, "tapsecret");
    cfg.session.contacts_every = Some(Duration::from_millis(500));
    let (stop, task) = start(cfg);
    // After login: the resync list and the first periodic one; then one per period.
    let lists = || peer.stats.channel_lists.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lists() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "CoreShowChannels asked {} times in 10 s with a list every 500 ms",
            lists()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    let rec = task.await.unwrap();
    assert_eq!(rec.count(&Seen::Connected), 1, "one connection throughout");
}
