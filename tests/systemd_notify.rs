//! pbxtap under systemd: a unix datagram socket stands in for systemd's NOTIFY_SOCKET and
//! another, bind-mounted at journald's path in pbxtap's own mount namespace, for the
//! journal; the real binary runs against the replaying AMI peer.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, Peer};
use nix::sys::signal::Signal;
use pbxtap::ami::client::AmiHealth;
use pbxtap::bus::Bus;
use pbxtap::event::{text, AmiLink, Body};
use pbxtap::watchdog::{systemd, Pipeline};

/// Datagrams received on a socket, each with when it arrived.
struct Socket(UnixDatagram);

impl Socket {
    fn bind(path: &Path) -> Socket {
        let s = UnixDatagram::bind(path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Socket(s)
    }

    fn recv_for(&self, within: Duration) -> Vec<(Instant, Vec<u8>)> {
        let until = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while Instant::now() < until {
            if let Ok(n) = self.0.recv(&mut buf) {
                out.push((Instant::now(), buf[..n].to_vec()));
            }
        }
        out
    }

    /// Receives until a datagram satisfies `pred`, or panics after `within`.
    fn recv_until(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + within;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            assert!(Instant::now() < until, "nothing matching within {within:?}");
            if let Ok(n) = self.0.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if pred(&text) {
                    return text;
                }
            }
        }
    }
}

fn text_of(d: &[(Instant, Vec<u8>)]) -> Vec<(Instant, String)> {
    d.iter()
        .map(|(t, b)| (*t, String::from_utf8_lossy(b).to_string()))
        .collect()
}

fn config(peer: &Peer) -> String {
    // Watching AMI only (no pidfile, no name): the test machine runs no Asterisk.
    format!(
        "host = \"pbx1\"\n{}[[sinks]]\ntype = \"stdout\"\n[watchdog]\npidfile = \"\"\nprocess_name = \"\"\ncheck_interval_secs = 1\nping_interval_secs = 1\nstall_secs = 2\n",
        peer.ami_toml()
    )
}

#[test]
fn ready_then_watchdog_at_half_the_interval_with_status_then_stopping() {
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let sock = Socket::bind(&notify);
    let mut d = Daemon::start_in(
        dir,
        &config(&peer),
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
        true,
    );
    let ready = sock.recv_until(Duration::from_secs(10), |m| m.contains("READY=1"));
    assert!(ready.contains("\nSTATUS="), "{ready}");
    let got = text_of(&sock.recv_for(Duration::from_secs(4)));
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    // Every 500 ms: about 8 in 4 s.
    assert!(
        (6..=10).contains(&pings.len()),
        "{} pings in 4 s: {got:?}",
        pings.len()
    );
    let gaps: Vec<Duration> = pings.windows(2).map(|p| p[1] - p[0]).collect();
    eprintln!(
        "figure: {} WATCHDOG=1 in 4 s with WATCHDOG_USEC=1000000, gaps {:?}..{:?}",
        pings.len(),
        gaps.iter().min().unwrap(),
        gaps.iter().max().unwrap()
    );
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(250) && gap < Duration::from_millis(900),
            "pings {gap:?} apart"
        );
    }
    let status = &got.last().unwrap().1;
    assert!(
        status.contains("STATUS=AMI connected (booted, ping ")
            && status.contains("; Asterisk up; events in ")
            && status.contains(", dropped 0"),
        "{status}"
    );
    d.signal(Signal::SIGTERM);
    let stopping = sock.recv_until(Duration::from_secs(5), |m| m.contains("STOPPING=1"));
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn no_watchdog_pings_while_the_sink_is_stuck() {
    // Enough events to fill the stdout pipe, which the test leaves unread: the stdout
    // sink's write never completes, so after `stall_secs` (2 s) with events waiting in
    // its ring pbxtap must stop telling systemd it is alive, and say why in STATUS=.
    let demo = [
        "01-register-unregister.ami",
        "02-call-answered.ami",
        "03-call-hold-unhold.ami",
        "11-queue-answered.ami",
    ];
    let peer = Peer::start(&demo, 10, Some(Duration::from_millis(1)));
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let sock = Socket::bind(&notify);
    let mut d = Daemon::start_in(
        dir,
        &config(&peer),
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "600000"),
        ],
        false,
    );
    sock.recv_until(Duration::from_secs(10), |m| m.contains("READY=1"));
    // Wait for a silence of 3 s (ten missed pings) while pbxtap still runs.
    let started = Instant::now();
    let mut pings_before = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pings never stopped"
        );
        let got = text_of(&sock.recv_for(Duration::from_secs(3)));
        let pings = got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
        if pings == 0 {
            let (_, status) = got.last().expect("STATUS= goes on while stuck");
            assert!(
                status.contains("STUCK: stdout#0 made no progress for"),
                "{status}"
            );
            break;
        }
        pings_before += pings;
    }
    assert!(pings_before >= 2, "pings flowed before the sink got stuck");
    assert!(d.is_running());
    // Unblock the sink: the pings come back.
    let mut out = d.take_stdout();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let unblocked = Instant::now();
    sock.recv_until(Duration::from_secs(10), |m| m.contains("WATCHDOG=1"));
    eprintln!(
        "figure: pings stopped after {pings_before} (stall_secs = 2) and resumed {:?} after the reader came back",
        unblocked.elapsed()
    );
}

/// The gate inside the systemd task, through the library: a sink that takes nothing off
/// its ring while events wait stops WATCHDOG=1, and STATUS= names it.
#[tokio::test]
async fn a_stalled_sink_stops_watchdog_and_is_named_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let sock = tokio::net::UnixDatagram::from_std(sock).unwrap();
    let bus = Arc::new(Bus::new(16, text("pbx1")));
    let _stalled = bus.subscribe("nats#0");
    let ami = Arc::new(AmiHealth::default());
    let ticking = ami.clone();
    tokio::spawn(async move {
        loop {
            ticking.ticks.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let pipeline = Pipeline {
        ami,
        bus: Arc::downgrade(&bus),
        monitor: None,
        asterisk: Arc::new(AtomicU8::new(0)),
        sink_stall: Duration::from_millis(300),
    };
    let notifier = systemd::Notifier::new(path.to_str().unwrap()).unwrap();
    let task = tokio::spawn(systemd::run(
        Some(Arc::new(notifier)),
        Some(Duration::from_millis(100)),
        pipeline,
    ));
    let next = || recv_one(&sock);
    assert!(next().await.starts_with("READY=1\n"));
    // Idle sink: pings.
    assert!(next().await.starts_with("WATCHDOG=1\n"));
    bus.publish_body(Body::AmiConnected(AmiLink::default()));
    // Busy and not reading: pings go on within the allowance, then stop.
    let started = Instant::now();
    let stuck = loop {
        let m = next().await;
        if !m.contains("WATCHDOG=1") {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still pinging: {m}"
        );
    };
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(
        stuck.contains("STUCK: nats#0 made no progress for"),
        "{stuck}"
    );
    for _ in 0..3 {
        let m = next().await;
        assert!(!m.contains("WATCHDOG=1"), "{m}");
    }
    task.abort();
}

async fn recv_one(sock: &tokio::net::UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("a notification")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// One journald native-protocol datagram: its fields in order. Each field is either
/// `NAME=value\n` or `NAME\n`, the value's length as 64-bit little endian, the value, `\n`.
struct Entry(Vec<(String, String)>);

impl Entry {
    fn parse(mut b: &[u8]) -> Entry {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        let mut fields = Vec::new();
        while !b.is_empty() {
            let nl = b
                .iter()
                .position(|&c| c == b'\n')
                .expect("field without newline");
            let line = &b[..nl];
            if let Some(eq) = line.iter().position(|&c| c == b'=') {
                fields.push((lossy(&line[..eq]), lossy(&line[eq + 1..])));
                b = &b[nl + 1..];
            } else {
                let rest = &b[nl + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                assert_eq!(rest[8 + len], b'\n', "length-encoded value ends in newline");
                fields.push((lossy(line), lossy(&rest[8..8 + len])));
                b = &rest[8 + len + 1..];
            }
        }
        Entry(fields)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Receives journal entries until one satisfies `pred`, or panics (with pbxtap's stderr)
/// after `within`.
fn journal_until(
    sock: &Socket,
    d: &Daemon,
    within: Duration,
    pred: impl Fn(&Entry) -> bool,
) -> Entry {
    let until = Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        assert!(
            Instant::now() < until,
            "no matching journal entry within {within:?}; stderr:\n{}",
            d.stderr()
        );
        if let Ok(n) = sock.0.recv(&mut buf) {
            let entry = Entry::parse(&buf[..n]);
            if pred(&entry) {
                return entry;
            }
        }
    }
}

#[test]
fn logs_reach_the_journal_with_structured_fields() {
    // tracing-journald always sends to /run/systemd/journal/socket. pbxtap runs in a
    // private mount namespace where a temp dir is bind-mounted over /run/systemd/journal,
    // so its `socket`, bound here, is the journal pbxtap sees. Needs root (CI runs as root).
    let unshare = common::require("unshare", "util-linux");
    let mount = common::require("mount", "mount");
    std::fs::create_dir_all("/run/systemd/journal")
        .expect("create /run/systemd/journal (this test runs as root)");
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let sock = Socket::bind(&journal.join("socket"));
    let script = r#""$0" --bind "$1" /run/systemd/journal && shift && exec "$@""#;
    let d = Daemon::start_wrapped(
        dir,
        &config(&peer),
        &[("JOURNAL_STREAM", "8:12345")],
        true,
        &[
            unshare.as_os_str(),
            "--mount".as_ref(),
            "sh".as_ref(),
            "-c".as_ref(),
            script.as_ref(),
            mount.as_os_str(),
            journal.as_os_str(),
        ],
    );
    let wait = Duration::from_secs(10);
    let connected = journal_until(&sock, &d, wait, |e| {
        e.get("MESSAGE") == Some("AMI connected")
    });
    let address = peer.address();
    for (name, value) in [
        // tracing-journald's default mapping: INFO is notice (5).
        ("PRIORITY", "5"),
        ("SYSLOG_IDENTIFIER", "pbxtap"),
        ("CODE", "ami_connected"),
        ("ADDRESS", address),
        ("TARGET", "pbxtap::ami::client"),
    ] {
        assert_eq!(
            connected.get(name),
            Some(value),
            "{name} in {:?}",
            connected.0
        );
    }
    let file = connected.get("CODE_FILE").unwrap_or_default();
    assert!(file.ends_with("src/ami/client.rs"), "{:?}", connected.0);
    let line = connected.get("CODE_LINE").unwrap_or_default();
    assert!(line.parse::<u32>().is_ok(), "{:?}", connected.0);
    // No field prefix: the tracing field `code` is `CODE`, not `F_CODE`.
    assert!(
        connected.0.iter().all(|(n, _)| !n.starts_with("F_")),
        "{:?}",
        connected.0
    );
    // A sink named in its own field: add a sink and reload.
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    let ws = common::free_port();
    std::fs::write(
        &d.config,
        format!("{cfg}[[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{ws}\"\nauthkey = \"0123456789abcdef\"\n"),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    let started = journal_until(&sock, &d, wait, |e| e.get("CODE") == Some("sink_started"));
    assert_eq!(started.get("SINK"), Some("websocket#1"), "{:?}", started.0);
    let reloaded = journal_until(&sock, &d, wait, |e| {
        e.get("CODE") == Some("config_reloaded")
    });
    assert_eq!(reloaded.get("SINKS"), Some("2"), "{:?}", reloaded.0);
    // Nothing went to stderr: it all went to the journal.
    assert!(!d.stderr().contains("AMI connected"), "{}", d.stderr());
}

/// A NOTIFY_SOCKET nobody listens on: the failure is logged, and pbxtap does not claim it
/// told systemd it was ready.
#[test]
fn ready_is_claimed_only_when_systemd_was_told() {
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let nobody = dir.path().join("nobody-listens");
    let d = Daemon::start(
        &config(&peer),
        &[("NOTIFY_SOCKET", nobody.to_str().unwrap())],
        true,
    );
    d.wait_stderr(Duration::from_secs(10), "cannot notify systemd");
    // The READY line would come right after the failure, from the same task.
    d.wait_line(Duration::from_secs(10), |l| {
        l.contains("\"event\":\"registered\"")
    });
    let stderr = d.stderr();
    assert!(!stderr.contains("told systemd we are ready"), "{stderr}");
}

/// With systemd's watchdog at 2 s the status loop runs every second; the count of log
/// lines the rate limit held back is still told at most once per minute, not each second.
#[test]
fn held_back_log_lines_are_told_once_a_minute_with_a_fast_watchdog() {
    use tokio_tungstenite::tungstenite;
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let sock = Socket::bind(&notify);
    let feed = common::free_port();
    let key = "abcdefghijklmnopqrstuvwxyz123456";
    let config = format!(
        "{}[[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{feed}\"\nauthkey = \"{key}\"\n",
        config(&peer)
    );
    let d = Daemon::start_in(
        dir,
        &config,
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
        true,
    );
    sock.recv_until(Duration::from_secs(10), |m| m.contains("READY=1"));
    common::wait_for_port(feed, Duration::from_secs(10));
    // Each client logs "client connected" and "client disconnected": one every 100 ms for
    // 5 s is far past the 10 lines a minute one call site may log, through 5 status runs.
    let url = format!("ws://127.0.0.1:{feed}/events/websocket/?authkey={key}");
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let stream = std::net::TcpStream::connect(("127.0.0.1", feed)).unwrap();
        let (mut ws, _) = tungstenite::client(url.as_str(), stream).unwrap();
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
        std::thread::sleep(Duration::from_millis(100));
    }
    d.wait_stderr(Duration::from_secs(5), "log_suppressed");
    let told = d.stderr().matches("code=\"log_suppressed\"").count();
    assert_eq!(told, 1, "{}", d.stderr());
}
