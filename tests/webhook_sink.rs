//! The webhook sink end to end: the real pbxtap binary taps a fake AMI peer replaying a
//! recorded call and POSTs every event to a real HTTP server started by the test, which
//! answers as each test scripts it (200, 500, 400, or never).

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ami::fixture;
use common::daemon::Daemon;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pbxtap::ami::replay::{self, ReplayConfig, ReplayPeer};
use sha2::Sha256;
use tokio::net::TcpListener;

/// The header an event's id travels in.
const IDEMPOTENCY: &str = pbxtap::sink::webhook::IDEMPOTENCY_HEADER;
/// The call in 02-call-answered.ami (its Linkedid).
const CALL: &str = "1795376847.2";
/// Events the normalizer makes of 02-call-answered.ami (tests/normalize_scenarios.rs).
const EVENTS_OF_02: usize = 17;
/// Longest a test waits for something that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

/// How the server answers one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answer (the connection stays open).
    Hang,
    /// Close the connection without answering.
    Drop,
}

/// One request the server got.
#[derive(Debug)]
struct Got {
    query: String,
    headers: hyper::HeaderMap,
    body: String,
    /// The status answered; `None` when the server hung.
    reply: Option<u16>,
    at: Instant,
}

impl Got {
    fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
    fn form_field(&self, key: &str) -> String {
        self.form()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    /// `seq` of a native JSON body.
    fn seq(&self) -> u64 {
        common::daemon::field(&self.body, "seq")
            .unwrap()
            .parse()
            .unwrap()
    }
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// Serves HTTP/1.1 on one connection, recording each request and answering by `script`.
async fn serve(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    got: Arc<Mutex<Vec<Got>>>,
    script: Script,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let (got, script) = (got.clone(), script.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let reply = {
                let mut got = got.lock().unwrap();
                let reply = script(got.len());
                got.push(Got {
                    query: parts.uri.query().unwrap_or("").to_string(),
                    headers: parts.headers,
                    body: String::from_utf8(body.to_vec()).unwrap(),
                    reply: match reply {
                        Reply::Status(s) => Some(s),
                        Reply::Hang | Reply::Drop => None,
                    },
                    at: Instant::now(),
                });
                reply
            };
            match reply {
                Reply::Status(s) => Ok::<_, std::io::Error>(
                    Response::builder()
                        .status(s)
                        .header("content-type", "text/plain")
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                ),
                Reply::Hang => std::future::pending().await,
                // An error ends hyper's connection without a response.
                Reply::Drop => Err(std::io::Error::other("dropped")),
            }
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A real HTTP/1.1 server on 127.0.0.1 that records every request.
struct Server {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Server {
    /// Starts a server answering its `n`th request (from 0) with `script(n)`; over TLS
    /// when `tls` is given.
    async fn start_with(
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let shared = got.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (got, script, tls) = (shared.clone(), script.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, got, script).await,
                        Some(tls) => {
                            // A client that does not trust us fails the handshake: nothing to serve.
                            if let Ok(stream) = tls.accept(stream).await {
                                serve(stream, got, script).await
                            }
                        }
                    }
                });
            }
        });
        Server { port, got }
    }

    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_with(script, None).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn with<R>(&self, f: impl FnOnce(&[Got]) -> R) -> R {
        f(&self.got.lock().unwrap())
    }
}

/// A fake Asterisk replaying `recordings`, staying connected afterwards.
async fn peer(recordings: &[&str], pace: Option<Duration>) -> ReplayPeer {
    let mut cfg = ReplayConfig::new(recordings.iter().map(|r| fixture(r)).collect());
    cfg.pace = pace;
    replay::start(cfg).await.unwrap()
}

/// `pbxtap run` with a webhook sink (`webhook`: its keys) and a stdout sink, its stdout
/// (the stdout sink) and stderr (logs) collected.
fn start_pbxtap(peer: &ReplayPeer, webhook: &str, buffers: &str, dir: tempfile::TempDir) -> Daemon {
    let config = format!(
        "host = \"pbx1\"\n[ami]\naddress = \"{}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n\
         [buffers]\ndrain_secs = 2\n{buffers}\n\
         [[sinks]]\ntype = \"webhook\"\n{webhook}\n[[sinks]]\ntype = \"stdout\"\n",
        peer.address
    );
    Daemon::start_in(dir, &config, &[("NO_COLOR", "1")], true)
}

/// How long pbxtap may take to stop after SIGTERM (the sinks drain within `drain_secs`).
const STOP: Duration = Duration::from_secs(15);

/// Lines of the stdout sink that are not `system.*`: what the tap made of the recording.
fn pbx_events(stdout: &[String]) -> Vec<&String> {
    stdout
        .iter()
        .filter(|l| common::daemon::field(l, "class") != Some("system"))
        .collect()
}

fn seqs(stdout: &[String]) -> Vec<u64> {
    stdout
        .iter()
        .map(|l| common::daemon::field(l, "seq").unwrap().parse().unwrap())
        .collect()
}

/// How many requests for `seq` the server answered with `status`.
fn answered(got: &[Got], seq: u64, status: u16) -> usize {
    got.iter()
        .filter(|g| g.reply == Some(status) && g.seq() == seq)
        .count()
}

/// Every event printed by the stdout sink was answered 200 exactly once, and each call's
/// events were delivered in order.
fn assert_each_delivered_once_in_call_order(stdout: &[String], got: &[Got]) {
    for seq in seqs(stdout) {
        assert_eq!(answered(got, seq, 200), 1, "event seq {seq}");
    }
    let call_seqs: Vec<u64> = got
        .iter()
        .filter(|g| g.reply == Some(200) && common::daemon::field(&g.body, "call_id") == Some(CALL))
        .map(Got::seq)
        .collect();
    assert!(call_seqs.len() >= 8, "{call_seqs:?}");
    assert!(
        call_seqs.windows(2).all(|w| w[0] < w[1]),
        "the call's events were delivered out of order: {call_seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enswitch_form_fields_of_a_recorded_call_and_the_auth_key_reach_the_server() {
    let server = Server::start(|_| Reply::Status(200)).await;
    let peer = peer(&["02-call-answered.ami"], None).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hook.key");
    std::fs::write(&key_file, "k3y+/= \n").unwrap();
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\nauthkey_file = \"{}\"\n",
            server.url("/pbx/events?tenant=7"),
            key_file.display()
        ),
        "",
        dir,
    );
    common::until("every PBX event at the server", PATIENCE, async || {
        let pbx = server.with(|got| {
            got.iter()
                .filter(|g| g.form_field("class") != "system")
                .count()
        });
        pbx == EVENTS_OF_02 && pbx_events(&pbxtap.stdout_lines()).len() == EVENTS_OF_02
    })
    .await;
    let (stdout, _) = pbxtap.stop(STOP).await;

    server.with(|got| {
        for g in got {
            assert_eq!(g.reply, Some(200));
            assert_eq!(
                g.header("content-type"),
                "application/x-www-form-urlencoded"
            );
            let query: Vec<(String, String)> = form_urlencoded::parse(g.query.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(
                query,
                [
                    ("tenant".to_string(), "7".to_string()),
                    ("authkey".to_string(), "k3y+/=".to_string())
                ]
            );
            let ts = g.form_field("timestamp");
            let (secs, micros) = ts.split_once('.').unwrap();
            assert!(
                secs.len() >= 10 && secs.bytes().all(|b| b.is_ascii_digit()),
                "{ts}"
            );
            assert!(
                micros.len() == 6 && micros.bytes().all(|b| b.is_ascii_digit()),
                "{ts}"
            );
        }
        // The call's events, in order, with Enswitch's verbs.
        let call: Vec<String> = got
            .iter()
            .filter(|g| g.form_field("callid") == CALL)
            .map(|g| format!("{}.{}", g.form_field("class"), g.form_field("event")))
            .collect();
        assert_eq!(
            call,
            [
                "call.start",
                "call.route",
                "target.added",
                "target.ringing",
                "call.ringing",
                "call.answer",
                "target.ended",
                "call.end",
                // The call's one CDR comes after its end.
                "call.cdr",
            ]
        );
        let start = got
            .iter()
            .find(|g| g.form_field("event") == "start")
            .unwrap();
        for (k, v) in [
            ("class", "call"),
            ("host", "pbx1"),
            ("callid", CALL),
            ("uniqueid", CALL),
            ("call_id", CALL),
            ("from", "101"),
            ("to", "102"),
            ("from_name", "Alice 101"),
        ] {
            assert_eq!(
                start.form_field(k),
                v,
                "call.start field {k}: {:?}",
                start.form()
            );
        }
        // The same instant as the stdout sink printed, as "<unix>.<microseconds>".
        let printed = stdout
            .iter()
            .find(|l| common::daemon::name(l) == "call.started")
            .unwrap();
        let time: u64 = common::daemon::field(printed, "time")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            start.form_field("timestamp"),
            format!("{}.{:06}", time / 1_000_000, time % 1_000_000)
        );
        let end = got.iter().find(|g| g.form_field("event") == "end").unwrap();
        assert_eq!(end.form_field("cause_name"), "NORMAL_CLEARING");
        assert_eq!(end.form_field("answered"), "1");
        assert!(
            end.form_field("billsec").parse::<u32>().is_ok(),
            "{:?}",
            end.form()
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_json_is_signed_and_the_signature_verifies() {
    let server = Server::start(|_| Reply::Status(200)).await;
    let peer = peer(&["02-call-answered.ami"], None).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, "s3cret-for-hmac\n").unwrap();
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\ndialect = \"native\"\nsecret_file = \"{}\"\n",
            server.url("/hook?authkey=abc123"),
            secret_file.display()
        ),
        "",
        dir,
    );
    common::until("the call's end at the server", PATIENCE, async || {
        server.with(|got| {
            got.iter()
                .any(|g| common::daemon::name(&g.body) == "call.ended")
        })
    })
    .await;
    let (stdout, _) = pbxtap.stop(STOP).await;

    let verify = |secret: &[u8], ts: &str, body: &str, signature: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        let hex = signature.strip_prefix("sha256=").unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        mac.verify_slice(&bytes).is_ok()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    server.with(|got| {
        assert!(got.len() >= EVENTS_OF_02);
        for g in got {
            assert_eq!(g.query, "authkey=abc123");
            assert_eq!(g.header("content-type"), "application/json");
            assert!(g.body.starts_with("{\"v\":1,\"seq\":"), "{}", g.body);
            let ts = g.header("x-pbxtap-timestamp");
            let sig = g.header("x-pbxtap-signature");
            assert!(ts.parse::<u64>().unwrap().abs_diff(now) < 120, "{ts}");
            assert!(verify(b"s3cret-for-hmac", ts, &g.body, sig), "{g:?}");
            // A receiver with another secret, or a tampered body, rejects it.
            assert!(!verify(b"s3cret-for-hmaC", ts, &g.body, sig));
            assert!(!verify(
                b"s3cret-for-hmac",
                ts,
                &format!("{} ", g.body),
                sig
            ));
        }
        // Each event printed by the stdout sink, byte for byte.
        for line in &stdout {
            assert!(got.iter().any(|g| &g.body == line), "not posted: {line}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_500_gets_every_event_once_when_it_recovers() {
    const FAILURES: usize = 6;
    let server = Server::start(|n| Reply::Status(if n < FAILURES { 500 } else { 200 })).await;
    let peer = peer(&["02-call-answered.ami"], None).await;
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\ndialect = \"native\"\nretry_min_ms = 50\nretry_max_secs = 1\n",
            server.url("/")
        ),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until(
        "every event delivered after recovery",
        PATIENCE,
        async || {
            let stdout = pbxtap.stdout_lines();
            pbx_events(&stdout).len() == EVENTS_OF_02
                && stdout
                    .iter()
                    .any(|l| common::daemon::name(l) == "system.sink_up")
                && server.with(|got| seqs(&stdout).iter().all(|&s| answered(got, s, 200) == 1))
        },
    )
    .await;
    let (stdout, stderr) = pbxtap.stop(STOP).await;

    server.with(|got| {
        assert_each_delivered_once_in_call_order(&stdout, got);
        // The events that met a 500 were retried until delivered.
        for g in &got[..FAILURES] {
            assert_eq!(g.reply, Some(500));
            assert_eq!(answered(got, g.seq(), 200), 1);
        }
    });
    // Every other sink was told, in order: down, then up again.
    let down = stdout
        .iter()
        .position(|l| common::daemon::name(l) == "system.sink_down")
        .expect("system.sink_down printed");
    let up = stdout
        .iter()
        .position(|l| common::daemon::name(l) == "system.sink_up")
        .unwrap();
    assert!(down < up);
    assert_eq!(
        common::daemon::field(&stdout[down], "sink"),
        Some("webhook#0")
    );
    assert_eq!(
        common::daemon::field(&stdout[down], "reason"),
        Some("HTTP 500")
    );
    assert!(
        stderr.contains("webhook request failed; retrying"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_is_timed_out_and_the_event_retried() {
    let server = Server::start(|n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let peer = peer(&["02-call-answered.ami"], None).await;
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\ndialect = \"native\"\ntimeout_ms = 300\nretry_min_ms = 20\n",
            server.url("/")
        ),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until("every event delivered", PATIENCE, async || {
        let stdout = pbxtap.stdout_lines();
        pbx_events(&stdout).len() == EVENTS_OF_02
            && server.with(|got| seqs(&stdout).iter().all(|&s| answered(got, s, 200) == 1))
    })
    .await;
    let (stdout, stderr) = pbxtap.stop(STOP).await;

    server.with(|got| {
        assert_each_delivered_once_in_call_order(&stdout, got);
        let hung = &got[0];
        assert_eq!(hung.reply, None);
        let retried = got
            .iter()
            .find(|g| g.reply == Some(200) && g.seq() == hung.seq())
            .unwrap();
        let waited = retried.at - hung.at;
        assert!(
            waited >= Duration::from_millis(300),
            "retried after {waited:?}"
        );
        assert!(waited < Duration::from_secs(3), "retried after {waited:?}");
        eprintln!("hang: timeout_ms 300, retried after {waited:?}");
    });
    assert!(stderr.contains("no answer within 300ms"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_logged_once() {
    let server = Server::start(|_| Reply::Status(400)).await;
    let peer = peer(&["02-call-answered.ami"], None).await;
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\ndialect = \"native\"\nretry_min_ms = 20\n",
            server.url("/")
        ),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until("every event refused", PATIENCE, async || {
        let stdout = pbxtap.stdout_lines();
        pbx_events(&stdout).len() == EVENTS_OF_02
            && server.with(|got| seqs(&stdout).iter().all(|&s| answered(got, s, 400) >= 1))
    })
    .await;
    // Once pbxtap has exited, no retry can still come.
    let (stdout, stderr) = pbxtap.stop(STOP).await;

    server.with(|got| {
        assert_eq!(got.len(), stdout.len(), "one request per event, no retries");
        for seq in seqs(&stdout) {
            assert_eq!(answered(got, seq, 400), 1, "event seq {seq}");
        }
    });
    assert_eq!(
        stderr.matches("endpoint refused an event").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("status=400"), "{stderr}");
    // The endpoint answers: it is not down.
    assert!(!stdout
        .iter()
        .any(|l| common::daemon::name(l) == "system.sink_down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_and_a_hanging_endpoint_leave_the_other_sinks_output_complete() {
    // Three recorded sessions, paced as a live PBX would send them, to two webhooks: one
    // where nothing listens, one whose server never answers; both retrying (at least
    // once), so their rings fill. Every ring holds 32 events.
    // Events are given up after 1 s, so each webhook sink reads its ring again and
    // learns (and reports) what it dropped meanwhile.
    let recordings = [
        "02-call-answered.ami",
        "03-call-hold-unhold.ami",
        "11-queue-answered.ami",
    ];
    let expected = expected_events(&recordings);
    let hanging = Server::start(|_| Reply::Hang).await;
    let peer = peer(&recordings, Some(Duration::from_millis(2))).await;
    let dead = format!("http://127.0.0.1:{}/", common::free_port());
    let started = Instant::now();
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{dead}\"\ndelivery = \"at_least_once\"\nretry_min_ms = 100\nmax_age_secs = 1\n\
             [[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\ndelivery = \"at_least_once\"\n\
             timeout_ms = 500\nretry_min_ms = 100\nmax_age_secs = 1\n",
            hanging.url("/")
        ),
        "per_sink = 32",
        tempfile::tempdir().unwrap(),
    );
    common::until("the whole recording on stdout", PATIENCE, async || {
        pbx_events(&pbxtap.stdout_lines()).len() >= expected.len()
            && peer.stats.sent.load(Ordering::Relaxed) == peer.total
    })
    .await;
    let flowed = started.elapsed();
    let reported = |stdout: &[String], sink: &str| {
        stdout.iter().any(|l| {
            common::daemon::name(l) == "system.events_dropped"
                && common::daemon::field(l, "sink") == Some(sink)
        })
    };
    common::until("both webhooks' drops reported", PATIENCE, async || {
        let stdout = pbxtap.stdout_lines();
        reported(&stdout, "webhook#0") && reported(&stdout, "webhook#1")
    })
    .await;
    let peak_rss = std::fs::read_to_string(format!("/proc/{}/status", pbxtap.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let stop = Instant::now();
    let (stdout, stderr) = pbxtap.stop(STOP).await;
    let stopping = stop.elapsed();

    let printed: Vec<String> = pbx_events(&stdout)
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                common::daemon::name(l),
                common::daemon::field(l, "call_id").unwrap_or("")
            )
        })
        .collect();
    // A call's CDR goes out half a second after its end (normalize::calls::CDR_GRACE): on
    // pbxtap's clock, so its place among the other events is not the reference's. Every
    // other event in order, and every CDR once.
    let (printed_cdrs, printed): (Vec<String>, Vec<String>) = printed
        .into_iter()
        .partition(|l| l.starts_with("call.cdr "));
    let (expected_cdrs, expected): (Vec<String>, Vec<String>) = expected
        .into_iter()
        .partition(|l| l.starts_with("call.cdr "));
    assert_eq!(printed, expected, "the stdout sink lost or changed events");
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(printed_cdrs),
        sorted(expected_cdrs),
        "the stdout sink lost or changed CDRs"
    );
    assert!(
        !reported(&stdout, "stdout#2"),
        "the stdout sink dropped events"
    );
    for (sink, why) in [
        ("webhook#0", "Connection refused"),
        ("webhook#1", "no answer within 500ms"),
    ] {
        let down = stdout
            .iter()
            .find(|l| {
                common::daemon::name(l) == "system.sink_down"
                    && common::daemon::field(l, "sink") == Some(sink)
            })
            .unwrap_or_else(|| panic!("no system.sink_down for {sink}"));
        assert!(down.contains(why), "{down}");
        // Rate-limited: for many failed attempts, one `down` line and at most one line
        // per 10 s for each of `retrying` and `given up`.
        let lines = stderr
            .lines()
            .filter(|l| {
                l.contains("pbxtap::sink::webhook")
                    && l.contains(&format!("sink={sink}"))
                    && !l.contains(" INFO ")
            })
            .count();
        let periods = started.elapsed().as_secs() as usize / 10 + 1;
        assert!(
            lines <= 1 + 2 * periods,
            "{sink}: {lines} log lines:\n{stderr}"
        );
    }
    assert!(stderr.contains("event given up"), "{stderr}");
    // Shutdown gives up on the endpoints after drain_secs (2 s).
    assert!(
        stopping < Duration::from_secs(5),
        "stopping took {stopping:?}"
    );
    eprintln!(
        "dead and hanging endpoints: {} AMI messages paced 2 ms flowed to stdout in {flowed:?}; \
         peak RSS {peak_rss} KiB; stop took {stopping:?}",
        peer.total
    );
}

/// `class.event call_id` of every event the normalizer makes of `recordings`, played as
/// one stream, as the fake peer sends them.
fn expected_events(recordings: &[&str]) -> Vec<String> {
    use pbxtap::ami::frame::{Frame, Limits, Parser};
    use pbxtap::normalize::{NormalizeConfig, Normalizer};
    let mut parser = Parser::new(Limits::default());
    let mut norm = Normalizer::new(NormalizeConfig::default());
    let mut out = Vec::new();
    let now = pbxtap::event::now_micros();
    for r in recordings {
        parser.push(&fixture(r), &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                norm.handle(&m, now, &mut |b| {
                    let ev = pbxtap::event::Event::new(now, &pbxtap::event::text("h"), b);
                    out.push(format!(
                        "{}.{} {}",
                        ev.class().as_str(),
                        ev.name(),
                        ev.str_field("call_id")
                    ));
                })
            }
        });
    }
    // The daemon's ticks go on after the recording: the calls' CDRs go out.
    norm.tick(now + 10_000_000, &mut |b| {
        let ev = pbxtap::event::Event::new(now, &pbxtap::event::text("h"), b);
        out.push(format!(
            "{}.{} {}",
            ev.class().as_str(),
            ev.name(),
            ev.str_field("call_id")
        ));
    });
    out
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_server_of_a_private_ca_given_by_ca_file() {
    let certs = tempfile::tempdir().unwrap();
    let [ca, cert, key] = common::tls::private_ca(certs.path());
    let server = Server::start_with(|_| Reply::Status(200), Some(tls_acceptor(&cert, &key))).await;
    let url = format!("https://127.0.0.1:{}/hook", server.port);

    // Without the CA, the endpoint is not trusted: nothing is sent, and everyone is told.
    let peer1 = peer(&["02-call-answered.ami"], None).await;
    let untrusting = start_pbxtap(
        &peer1,
        &format!("url = \"{url}\"\ndialect = \"native\"\nretry_min_ms = 20\n"),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until(
        "the untrusted endpoint reported down",
        PATIENCE,
        async || {
            untrusting
                .stdout_lines()
                .iter()
                .any(|l| common::daemon::name(l) == "system.sink_down")
        },
    )
    .await;
    let (_, stderr) = untrusting.stop(STOP).await;
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert_eq!(server.with(|got| got.len()), 0);

    // With it, every event arrives.
    let peer2 = peer(&["02-call-answered.ami"], None).await;
    let trusting = start_pbxtap(
        &peer2,
        &format!(
            "url = \"{url}\"\ndialect = \"native\"\nca_file = \"{}\"\n",
            ca.display()
        ),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until("every event over https", PATIENCE, async || {
        let stdout = trusting.stdout_lines();
        pbx_events(&stdout).len() == EVENTS_OF_02
            && server.with(|got| seqs(&stdout).iter().all(|&s| answered(got, s, 200) == 1))
    })
    .await;
    let (stdout, _) = trusting.stop(STOP).await;
    server.with(|got| assert_each_delivered_once_in_call_order(&stdout, got));
}

#[test]
fn an_unreadable_ca_file_stops_pbxtap_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pbxtap.toml");
    std::fs::write(
        &path,
        "[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"https://127.0.0.1:1/\"\n\
         ca_file = \"/nonexistent/ca.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::pbxtap_bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sinks[0] (webhook)") && stderr.contains("/nonexistent/ca.pem"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_of_ten_calls_are_each_delivered_once_in_call_order() {
    use pbxtap::bus::Bus;
    use pbxtap::event::{text, Body, CallStarted, Event};
    use pbxtap::sink::webhook::{WebhookDialect, WebhookSink, WebhookSinkConfig};
    const N: u64 = 1000;
    let server = Server::start(|_| Reply::Status(200)).await;
    let bus = Bus::new(2048, text("pbx1")); // 1024 of normal priority, where call.started goes
    let cfg = WebhookSinkConfig {
        url: server.url("/"),
        dialect: WebhookDialect::Native,
        ..Default::default()
    };
    let sink = WebhookSink::new(&cfg, bus.publisher()).await.unwrap();
    let rx = bus.subscribe("webhook#0");
    let counters = rx.counters().clone();
    for i in 0..N {
        let body = Body::CallStarted(CallStarted {
            call_id: text(&format!("1.{}", i % 10)),
            ..Default::default()
        });
        bus.publish(Event::new(i, bus.host(), body));
    }
    drop(bus); // the sink drains its ring, then stops
    sink.run(rx).await;
    assert_eq!(counters.delivered.load(Ordering::Relaxed), N);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    server.with(|got| {
        assert_eq!(got.len() as u64, N);
        let mut seen: Vec<u64> = got.iter().map(Got::seq).collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=N).collect::<Vec<_>>());
        for call in 0..10 {
            let id = format!("1.{call}");
            let order: Vec<u64> = got
                .iter()
                .filter(|g| common::daemon::field(&g.body, "call_id") == Some(&id))
                .map(Got::seq)
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "call {id}: {order:?}"
            );
        }
    });
}

/// The script of the delivery tests: the first requests meet a 500, a server too slow
/// for the timeout, and a dropped connection; the rest 200.
fn troubled(n: usize) -> Reply {
    match n {
        0 => Reply::Status(500),
        1 => Reply::Hang,
        2 => Reply::Drop,
        _ => Reply::Status(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enswitch_delivery_is_one_attempt_per_event_whatever_the_answer() {
    let server = Server::start(troubled).await;
    let peer = peer(&["02-call-answered.ami"], Some(Duration::from_millis(2))).await;
    let pbxtap = start_pbxtap(
        &peer,
        &format!("url = \"{}\"\ntimeout_ms = 300\n", server.url("/")),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until("every event POSTed", PATIENCE, async || {
        let stdout = pbxtap.stdout_lines();
        pbx_events(&stdout).len() == EVENTS_OF_02
            && server.with(|got| got.len() >= seqs(&stdout).len())
    })
    .await;
    let (stdout, stderr) = pbxtap.stop(STOP).await;
    server.with(|got| {
        // One request per event, none resent: the 500, the slow and the dropped ones too.
        let mut ids: Vec<&str> = got.iter().map(|g| g.header(IDEMPOTENCY)).collect();
        assert_eq!(ids.len(), seqs(&stdout).len(), "{ids:?}");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), got.len(), "an event was sent twice");
        for g in got {
            assert_eq!(g.form_field("event_id"), g.header(IDEMPOTENCY));
            assert_eq!(g.form_field("machine"), "1");
        }
    });
    assert!(stderr.contains("its one attempt failed"), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_resends_with_the_same_key_until_answered() {
    let server = Server::start(troubled).await;
    let peer = peer(&["02-call-answered.ami"], Some(Duration::from_millis(2))).await;
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\ndelivery = \"at_least_once\"\nmachine = 7\ntimeout_ms = 300\nretry_min_ms = 20\n",
            server.url("/")
        ),
        "",
        tempfile::tempdir().unwrap(),
    );
    let answered_ok = |got: &[Got]| -> std::collections::BTreeSet<String> {
        got.iter()
            .filter(|g| g.reply == Some(200))
            .map(|g| g.header(IDEMPOTENCY).to_string())
            .collect()
    };
    common::until("every event answered 200", PATIENCE, async || {
        let stdout = pbxtap.stdout_lines();
        pbx_events(&stdout).len() == EVENTS_OF_02
            && server.with(|got| answered_ok(got).len() == seqs(&stdout).len())
    })
    .await;
    let (stdout, _) = pbxtap.stop(STOP).await;
    server.with(|got| {
        // A receiver that keeps the keys it saw has each event once.
        assert_eq!(answered_ok(got).len(), seqs(&stdout).len());
        // The three troubled requests were sent again, with the same key and event_id.
        for g in &got[..3] {
            let key = g.header(IDEMPOTENCY);
            let copies: Vec<&Got> = got
                .iter()
                .filter(|c| c.header(IDEMPOTENCY) == key)
                .collect();
            assert!(copies.len() >= 2, "{key} not resent");
            assert!(copies
                .iter()
                .all(|c| c.form_field("event_id") == key && c.body == g.body));
            assert_eq!(g.form_field("machine"), "7");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_customers_webhook_gets_only_its_calls_and_phones() {
    let (mine, theirs) = (
        Server::start(|_| Reply::Status(200)).await,
        Server::start(|_| Reply::Status(200)).await,
    );
    let peer = peer(
        &["01-register-unregister.ami", "02-call-answered.ami"],
        None,
    )
    .await;
    // Customer A has 101 (the caller); customer B has phones this recording never uses.
    let pbxtap = start_pbxtap(
        &peer,
        &format!(
            "url = \"{}\"\n[sinks.filter]\nextensions = [\"101\"]\n\
             [[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\n[sinks.filter]\nextensions = [\"201\", \"202\"]\n",
            mine.url("/a"),
            theirs.url("/b")
        ),
        "",
        tempfile::tempdir().unwrap(),
    );
    common::until("customer A's call and its CDR", PATIENCE, async || {
        mine.with(|got| got.iter().any(|g| g.form_field("event") == "cdr"))
            && pbx_events(&pbxtap.stdout_lines())
                .iter()
                .any(|l| common::daemon::name(l) == "call.cdr")
    })
    .await;
    let (stdout, _) = pbxtap.stop(STOP).await;
    mine.with(|got| {
        for g in got {
            let (callid, aor) = (g.form_field("callid"), g.form_field("aor"));
            let mine = callid == CALL || aor == "101" || g.form_field("extension") == "101";
            assert!(mine, "not customer A's: {}", g.body);
        }
        assert!(
            got.iter().any(|g| g.form_field("aor") == "101"),
            "A's phone"
        );
    });
    // Everything was published and read (stdout has the CDR), and nothing was B's.
    assert!(stdout.iter().any(|l| common::daemon::name(l) == "call.cdr"));
    theirs.with(|got| {
        assert!(
            got.is_empty(),
            "customer B got {:?}",
            got.iter().map(|g| &g.body).collect::<Vec<_>>()
        )
    });
}
