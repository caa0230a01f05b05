//! Signals to the real pbxtap binary: SIGTERM drains the sinks within the deadline and
//! exits 0; SIGHUP reloads the config, or keeps the running one when the new is invalid.

mod common;

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::{field, name, Daemon, Peer};
use nix::sys::signal::Signal;

const DEMO: [&str; 4] = [
    "01-register-unregister.ami",
    "02-call-answered.ami",
    "03-call-hold-unhold.ami",
    "11-queue-answered.ami",
];

fn config(peer: &Peer, drain_secs: u64) -> String {
    format!(
        "host = \"pbx1\"\n{}[buffers]\nper_sink = 8192\ndrain_secs = {drain_secs}\n[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n",
        peer.ami_toml()
    )
}

/// The number after `key` in a log line (`... left=12 ...`).
fn number_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn seq(line: &str) -> u64 {
    field(line, "seq").unwrap().parse().unwrap()
}

#[test]
fn sigterm_with_a_slow_sink_drains_within_the_deadline_and_exits_0() {
    let peer = Peer::start(&DEMO, 40, None);
    let mut d = Daemon::start(&config(&peer, 1), &[], false);
    // A slow consumer behind a small pipe, 256 bytes every 100 ms, which starts only
    // once pbxtap has filled the pipe: from then on, what pbxtap still holds (the 4 KiB
    // in the pipe come first) takes longer than the 1 s deadline to deliver.
    let mut out = d.take_stdout();
    nix::fcntl::fcntl(&out, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(peer.peer.stats.sent.load(Ordering::Relaxed) > 100);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            std::thread::sleep(Duration::from_millis(100));
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let term = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10));
    let took = term.elapsed();
    let stderr = d.stderr();
    assert!(status.success(), "{status:?}\n{stderr}");
    // drain_secs (1 s) plus EXIT_GRACE (2 s) at the very most, plus slack for a loaded machine.
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM:\n{stderr}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "exited {took:?} after SIGTERM: no drain?\n{stderr}"
    );
    let timeout = stderr
        .lines()
        .find(|l| l.contains("code=\"sink_drain_timeout\""))
        .unwrap_or_else(|| panic!("no drain timeout logged:\n{stderr}"));
    let left = number_after(timeout, " left=");
    eprintln!(
        "figure: slow sink, drain_secs = 1: exit 0 {took:?} after SIGTERM, {} delivered while draining, {left} left in the ring",
        number_after(timeout, " delivered=")
    );
    assert!(
        timeout.contains(&format!("{left} events undelivered left in its ring")),
        "{timeout}"
    );
    // What is left is what the ring holds (buffers.per_sink), never what was dropped.
    assert!(left <= 8192, "{timeout}");
    let dropped = number_after(timeout, " dropped=");
    assert!(
        timeout.contains(&format!("({dropped} dropped before")),
        "{timeout}"
    );
    let mut bytes = Vec::new();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(2)) {
        bytes.extend(chunk);
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| l.ends_with('}')).collect();
    // In order and without a gap: nothing accepted was dropped on the way.
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(seq(l), i as u64 + 1, "{l}");
    }
}

#[test]
fn sigterm_with_a_sink_that_keeps_up_delivers_everything_and_exits_0() {
    let peer = Peer::start(&DEMO, 40, None);
    let mut d = Daemon::start(&config(&peer, 5), &[], false);
    let rx = common::lines_of(d.take_stdout());
    // SIGTERM in mid-stream, once events flow.
    let mut all = Vec::new();
    while all.len() < 300 {
        all.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("events flow"),
        );
    }
    let term = Instant::now();
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    let took = term.elapsed();
    all.extend(rx.iter());
    let stderr = d.stderr();
    assert!(!stderr.contains("sink_drain_timeout"), "{stderr}");
    let drained = stderr
        .lines()
        .find(|l| l.contains("code=\"sink_drained\""))
        .unwrap_or_else(|| panic!("no drain logged:\n{stderr}"));
    let lines = all;
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(seq(l), i as u64 + 1, "{l}");
    }
    assert!(lines.len() as u64 >= number_after(drained, " delivered="));
    eprintln!(
        "figure: sink keeping up: exit 0 {took:?} after SIGTERM, {} events delivered while draining, {} in all, none lost",
        number_after(drained, " delivered="),
        lines.len()
    );
}

/// What the normalizer still holds when SIGTERM comes goes out before the exit: the CDR
/// of a call that ended a moment ago (in its 0.5 s grace), and the `call.started` of a
/// call just begun (held for the dialplan's variables).
#[test]
fn sigterm_right_after_a_call_ends_still_delivers_its_cdr_and_a_held_start() {
    let held_start = {
        let whole = common::ami::fixture("03-call-hold-unhold.ami");
        let text = String::from_utf8(whole).unwrap();
        let at = text.find("Event: Newchannel").unwrap();
        let end = at + text[at..].find("\r\n\r\n").unwrap() + 4;
        text.as_bytes()[..end].to_vec()
    };
    let recordings = vec![
        common::ami::fixture("02-call-answered.ami"),
        held_start,
        common::ami::fixture("01-register-unregister.ami"),
    ];
    let peer = Peer::start_with(pbxtap::ami::replay::ReplayConfig::new(recordings));
    let mut d = Daemon::start(&config(&peer, 5), &[], false);
    let rx = common::lines_of(d.take_stdout());
    // Up to the first endpoint line after the call's end: the registrations that come
    // after the new start.
    let mut all = Vec::new();
    let mut ended = false;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("events flow");
        let n = name(&line);
        all.push(line);
        ended |= n == "call.ended";
        if ended && n.starts_with("endpoint.") {
            break;
        }
    }
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    all.extend(rx.iter());
    let names: Vec<String> = all.iter().map(|l| name(l)).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "call.cdr").count(),
        1,
        "the ended call's CDR: {names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "call.started").count(),
        2,
        "both calls' starts: {names:?}"
    );
}

#[test]
fn sighup_with_a_bad_config_keeps_running_on_the_old_one() {
    let peer = Peer::start(&DEMO, 2, Some(Duration::from_millis(4)));
    let mut d = Daemon::start(&config(&peer, 5), &[], true);
    let first = d.wait_line(Duration::from_secs(10), |l| {
        name(l) == "system.ami_connected"
    });
    assert_eq!(seq(&first), 1);
    let good = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, format!("{good}[log]\nlevel = \"loud\"\n")).unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_stderr(
        Duration::from_secs(5),
        "new config rejected, keeping the running one",
    );
    assert!(d.stderr().contains("log.level"), "{}", d.stderr());
    // Events keep coming on the same AMI session and the same sink, without a gap.
    let mut last = 1;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for l in d.lines_for(Duration::from_millis(100)) {
            assert_ne!(name(&l), "system.ami_connected", "AMI reconnected: {l}");
            assert_eq!(seq(&l), last + 1, "{l}");
            last += 1;
        }
    }
    assert!(last > 20, "only {last} events");
    assert!(d.is_running());
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn sighup_restarts_changed_sinks_and_keeps_the_ami_tap() {
    let peer = Peer::start(&DEMO, 2, Some(Duration::from_millis(4)));
    let mut d = Daemon::start(&config(&peer, 5), &[], true);
    d.wait_line(Duration::from_secs(10), |l| {
        name(l) == "system.ami_connected"
    });
    let sent_before = peer.peer.stats.sent.load(Ordering::Relaxed);
    let good = std::fs::read_to_string(&d.config).unwrap();
    let ws = common::free_port();
    let key = "0123456789abcdef";
    std::fs::write(
        &d.config,
        format!("{good}[[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{ws}\"\nauthkey = \"{key}\"\n"),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_stderr(Duration::from_secs(5), "config reloaded");
    assert!(
        peer.peer.stats.sent.load(Ordering::Relaxed) < peer.peer.total,
        "the replay ended before the reload; {sent_before} sent then"
    );
    // The added sink serves events, while the first sink, not restarted, misses none.
    let url = format!("ws://127.0.0.1:{ws}/events/websocket/?authkey={key}");
    let added = std::thread::spawn(move || {
        use futures_util::StreamExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let mut frames = 0;
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until, client.next()).await {
                frames += 1;
            }
            frames
        })
    });
    let mut seqs: Vec<u64> = vec![1];
    for l in d.lines_for(Duration::from_secs(3)) {
        assert_ne!(name(&l), "system.ami_connected", "AMI reconnected: {l}");
        seqs.push(seq(&l));
    }
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1, "a gap or a repeat on stdout");
    }
    let frames = added.join().unwrap();
    assert!(frames > 10, "the added sink sent {frames} events");
    assert!(d.stderr().contains("sink=websocket#1"), "{}", d.stderr());
    assert!(
        !d.stderr().contains("sink=stdout#0"),
        "stdout#0 was restarted: {}",
        d.stderr()
    );
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn sighup_with_a_sink_that_cannot_start_keeps_its_previous_settings() {
    let peer = Peer::start(&DEMO, 2, Some(Duration::from_millis(4)));
    let mut d = Daemon::start(&config(&peer, 5), &[], true);
    d.wait_line(Duration::from_secs(10), |l| {
        name(l) == "system.ami_connected"
    });
    // sinks[0] becomes a WebSocket server on a port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&d.config).unwrap().replace(
        "type = \"stdout\"",
        &format!(
            "type = \"websocket\"\nlisten = \"127.0.0.1:{port}\"\nauthkey = \"0123456789abcdef\""
        ),
    );
    std::fs::write(&d.config, cfg).unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_stderr(Duration::from_secs(5), "config reloaded");
    let stderr = d.stderr();
    assert!(
        stderr.contains("code=\"sink_start_failed\" sink=websocket#0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sinks[0] runs on its previous settings"),
        "{stderr}"
    );
    // Events still come out on stdout, from the same AMI session.
    let more = d.lines_for(Duration::from_secs(2));
    assert!(more.len() > 5, "{more:?}");
    assert!(more.iter().all(|l| name(l) != "system.ami_connected"));
    drop(taken);
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn sighup_that_restarts_a_websocket_sink_closes_its_clients_with_a_reason() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    // Asterisk down: nothing but the reload happens.
    let ami = common::free_port();
    let ws = common::free_port();
    let key = "0123456789abcdef0123456789abcdef";
    let cfg = |queue: usize| {
        format!(
            "[ami]\naddress = \"127.0.0.1:{ami}\"\nsecret = \"s\"\n[watchdog]\nenabled = false\n\
             [[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{ws}\"\nauthkey = \"{key}\"\nclient_queue = {queue}\n"
        )
    };
    let d = Daemon::start(&cfg(64), &[], true);
    d.wait_stderr(Duration::from_secs(10), "websocket feed listening");
    let url = format!("ws://127.0.0.1:{ws}/events/websocket/?authkey={key}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut client, _) = rt.block_on(tokio_tungstenite::connect_async(&url)).unwrap();
    d.wait_stderr(Duration::from_secs(5), "client connected");
    std::fs::write(&d.config, cfg(128)).unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_stderr(Duration::from_secs(5), "config reloaded");
    // The old sink's client is told, with 1012 (service restart) and why.
    let frame = rt
        .block_on(async {
            loop {
                match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
                    Err(_) => break None,
                    Ok(Some(Ok(Message::Close(frame)))) => break frame,
                    Ok(Some(Ok(_))) => continue,
                    Ok(other) => panic!("no close frame: {other:?}"),
                }
            }
        })
        .unwrap_or_else(|| panic!("no close frame within 5 s:\n{}", d.stderr()));
    assert_eq!(frame.code, CloseCode::Restart);
    assert!(frame.reason.contains("reconnect"), "{frame:?}");
    // And reconnecting reaches the new sink.
    rt.block_on(tokio_tungstenite::connect_async(&url))
        .unwrap_or_else(|e| panic!("reconnect after the reload: {e}\n{}", d.stderr()));
    d.signal(Signal::SIGTERM);
}
