//! What tapping costs the PBX: Asterisk's own CPU while it carries a SIPp load, with
//! nothing attached to AMI, with pbxtap attached, and with a reference client that takes
//! every event (`benches/asterisk_cost/reference_client.py`, a plain Python socket reader:
//! the cheapest forwarder a script can be). The configurations alternate within a run, so
//! the machine's drift falls on all of them alike (every other round in the reverse order); each gets the same load on the same
//! Asterisk (the lab's: `PBXTAP_ASTERISK_PREFIX`, as the live suite finds it, or when unset
//! the lab beside the checkout, `../shared/lab`).
//!
//! The load (`Load`): phone 101 calls 102 at `rate` calls/s (102 rings 1 s, the caller
//! hangs up after 1 s of talk); phone 105 calls the queue 8002 once a second (its one
//! agent, 104, rings 1 s and talks 1 s); phone 103 registers once a second.
//!
//! Per round and configuration: Asterisk's CPU (`utime + stime` of its process, from the
//! start of the load to the end of the last call), the client's CPU over the same window,
//! the AMI bytes and messages the client read, and pbxtap's events (its `call.ended` must
//! count every call placed: a run that lost calls is reported, not taken as faster).
//!
//! Run: `cargo bench --bench asterisk_cost` (5 rounds of 300 calls at 15/s);
//! `PBXTAP_COST_ROUNDS`, `PBXTAP_COST_CALLS` change them. Configurations can be named
//! (`cargo bench --bench asterisk_cost -- nothing pbxtap silent`): `nothing`, `pbxtap`,
//! `reference`; `silent` (the reference client logged in with `Events: off`, sent
//! nothing); `pbxtap-unfiltered` (`ami.filter_at_source = false`), `pbxtap-nolists`
//! (`ami.contacts_poll_secs = 0`), `baseline` (the binary `PBXTAP_COST_BASELINE` names,
//! e.g. the tree before a change). Under `cargo test --all-targets`, one small round of
//! nothing, pbxtap and reference.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::bench::Args;
use common::daemon::Daemon;
use common::pbx::{Pbx, Phone};

/// Longest a client takes to log in, and a round's calls to end after the load.
const WAIT: Duration = Duration::from_secs(60);

/// The SIPp load of one round.
#[derive(Clone, Copy)]
struct Load {
    /// Calls 101 → 102, and how many are placed a second.
    calls: u32,
    rate: u32,
    /// Queue calls 105 → 8002 and registrations of 103, one a second each.
    queue_calls: u32,
    registrations: u32,
}

impl Load {
    fn describe(&self) -> String {
        format!(
            "{} calls 101 → 102 at {}/s (1 s ringing, 1 s talk), {} queue calls 105 → 8002 \
             at 1/s (1 s ringing, 1 s talk), {} registrations of 103 at 1/s",
            self.calls, self.rate, self.queue_calls, self.registrations
        )
    }
}

/// Who is attached to AMI during a round.
#[derive(Clone)]
enum Client {
    Nothing,
    /// `pbxtap run` with its defaults and a stdout sink, plus `ami` keys.
    Pbxtap {
        name: &'static str,
        ami: &'static str,
    },
    /// The reference client, logged in with `Events: on`, or (`silent`) `off`: a session
    /// that is sent nothing, what merely having an AMI client costs.
    Reference {
        events: &'static str,
    },
}

impl Client {
    fn named(name: &str) -> Client {
        match name {
            "nothing" => Client::Nothing,
            "reference" => Client::Reference { events: "on" },
            "silent" => Client::Reference { events: "off" },
            "pbxtap" => Client::Pbxtap { name: "pbxtap", ami: "" },
            // Candidates for what Asterisk spends on pbxtap (docs/performance.md).
            "pbxtap-unfiltered" => Client::Pbxtap {
                name: "pbxtap-unfiltered",
                ami: "filter_at_source = false\n",
            },
            "pbxtap-nolists" => Client::Pbxtap {
                name: "pbxtap-nolists",
                ami: "contacts_poll_secs = 0\n",
            },
            // Another build of pbxtap (`PBXTAP_COST_BASELINE`: its binary), with defaults:
            // a change measured against the tree before it, in the same run.
            "baseline" => Client::Pbxtap {
                name: "baseline",
                ami: "",
            },
            other => panic!(
                "no configuration `{other}`: nothing, pbxtap, reference, silent, pbxtap-unfiltered, pbxtap-nolists, baseline"
            ),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Client::Nothing => "nothing",
            Client::Pbxtap { name, .. } => name,
            Client::Reference { events: "on" } => "reference",
            Client::Reference { .. } => "silent",
        }
    }
}

/// One round of one configuration.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// CPU milliseconds of Asterisk, and of the client, over the load.
    asterisk_ms: u64,
    client_ms: u64,
    /// What the client read over the load.
    ami_bytes: u64,
    ami_messages: u64,
    /// pbxtap's events over the load, and its `call.ended` among them.
    events: u64,
    ended: u64,
}

/// CPU milliseconds (user + system) of process `pid`.
fn cpu_ms(pid: u32) -> u64 {
    common::bench::proc_cpu(pid).as_millis() as u64
}

/// A client attached for one round.
enum Attached {
    Nothing,
    Pbxtap { daemon: Daemon, metrics: String },
    Reference(Child, std::sync::mpsc::Receiver<String>),
}

impl Attached {
    fn start(pbx: &Pbx, client: &Client) -> Attached {
        match client {
            Client::Nothing => Attached::Nothing,
            Client::Pbxtap { ami, name } => {
                let metrics = format!("127.0.0.1:{}", common::free_port());
                let config = format!(
                    "host = \"lab\"\n{}{ami}[watchdog]\nenabled = false\n\
                     [metrics]\nenabled = true\nlisten = \"{metrics}\"\n\
                     [[sinks]]\ntype = \"stdout\"\n",
                    pbx.ami_toml()
                );
                let daemon = if *name == "baseline" {
                    let bin = std::env::var("PBXTAP_COST_BASELINE")
                        .expect("PBXTAP_COST_BASELINE: the pbxtap binary to compare with");
                    // The wrapper drops this build's path and runs the other binary with
                    // the same arguments.
                    let wrapper = format!("shift; exec {bin} \"$@\"");
                    let args: [&std::ffi::OsStr; 4] = [
                        "sh".as_ref(),
                        "-c".as_ref(),
                        wrapper.as_ref(),
                        "sh".as_ref(),
                    ];
                    Daemon::start_wrapped(tempfile::tempdir().unwrap(), &config, &[], true, &args)
                } else {
                    Daemon::start(&config, &[], true)
                };
                daemon.wait_stderr(WAIT, "AMI connected");
                Attached::Pbxtap { daemon, metrics }
            }
            Client::Reference { events } => {
                let script = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/benches/asterisk_cost/reference_client.py"
                );
                let mut child = Command::new(common::require("python3", "python3"))
                    .args([
                        script,
                        &pbx.ami_port.to_string(),
                        "tap",
                        "tapsecret",
                        events,
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("run the reference client");
                let lines = common::lines_of(child.stdout.take().unwrap());
                let first = lines
                    .recv_timeout(WAIT)
                    .expect("the reference client logs in");
                assert_eq!(first, "connected");
                Attached::Reference(child, lines)
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Attached::Nothing => None,
            Attached::Pbxtap { daemon, .. } => Some(daemon.child.id()),
            Attached::Reference(child, _) => Some(child.id()),
        }
    }

    /// (AMI bytes, AMI messages, events) so far.
    fn counts(&self) -> (u64, u64, u64) {
        match self {
            Attached::Pbxtap { metrics, .. } => {
                let page = pbxtap::metrics::fetch(metrics, Duration::from_secs(5)).unwrap();
                let get = |k: &str| page.get(k).unwrap_or_else(|| panic!("no {k}")) as u64;
                (
                    get("pbxtap_ami_bytes_total"),
                    get("pbxtap_ami_messages_total"),
                    get("pbxtap_events_published_total"),
                )
            }
            _ => (0, 0, 0),
        }
    }

    /// Waits until pbxtap has told `calls` calls ended (its stdout lines); the count.
    fn wait_ended(&self, calls: u64) -> u64 {
        let Attached::Pbxtap { daemon, .. } = self else {
            return 0;
        };
        let ended = || {
            daemon
                .stdout_lines()
                .iter()
                .filter(|l| l.contains("\"event\":\"ended\"") && l.contains("\"class\":\"call\""))
                .count() as u64
        };
        common::wait_until("pbxtap to tell every call's end", WAIT, || ended() >= calls);
        ended()
    }

    /// Detaches; the reference client's (bytes, messages).
    fn stop(self) -> (u64, u64) {
        match self {
            Attached::Reference(child, lines) => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .unwrap();
                let last = lines
                    .recv_timeout(WAIT)
                    .expect("the reference client's counts");
                let mut child = child;
                let _ = child.wait();
                let num = |k: &str| {
                    last.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("no {k} in `{last}`"))
                };
                (num("bytes="), num("messages="))
            }
            _ => (0, 0),
        }
    }
}

/// With `PBXTAP_ASTERISK_PREFIX` unset, the lab beside the checkout (`../shared/lab`): its
/// `lab.sh prefix` unpacks Asterisk and SIPp and says where, so that one command runs the
/// bench on a fresh clone.
fn use_the_lab_beside() {
    if std::env::var_os(common::pbx::PREFIX_VAR).is_some() {
        return;
    }
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/lab/bin/lab.sh");
    let out = Command::new(lab)
        .arg("prefix")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} is unset and {lab} cannot run: {e}",
                common::pbx::PREFIX_VAR
            )
        });
    assert!(
        out.status.success(),
        "{lab} prefix: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = String::from_utf8(out.stdout).unwrap();
    std::env::set_var(common::pbx::PREFIX_VAR, prefix.trim());
}

/// The test PBX's config plus the load's queue: 8002, one agent (104), which may take
/// several calls at once.
fn add_queue(etc: &std::path::Path) {
    let edit = |file: &str, f: &dyn Fn(String) -> String| {
        let path = etc.join(file);
        std::fs::write(&path, f(std::fs::read_to_string(&path).unwrap())).unwrap();
    };
    edit("queues.conf", &|conf| {
        conf + "\n[load-queue]\nstrategy = ringall\ntimeout = 15\nwrapuptime = 0\n\
                 joinempty = yes\nringinuse = yes\nannounce-frequency = 0\n\
                 periodic-announce-frequency = 0\nmusicclass = default\n\
                 member => PJSIP/104,0,Agent 104,PJSIP/104\n"
    });
    edit("extensions.conf", &|conf| {
        assert!(
            conf.contains("\n[lab]\n"),
            "the test PBX has a [lab] context"
        );
        conf.replacen(
            "\n[lab]\n",
            "\n[lab]\nexten => 8002,1,Answer()\n same => n,Queue(load-queue,tT,,,60)\n same => n,Hangup()\n",
            1,
        )
    });
}

/// The phones answering during the whole run: 102 (direct calls) and 104 (the queue's
/// agent), registered first on their own ports.
fn answering_phones(pbx: &Pbx) -> Vec<Phone> {
    let mut phones = Vec::new();
    for ext in [102, 104] {
        pbx.register(ext, 3600, &format!("load{ext}"));
        let keys = ["-key", "ring_ms", "1000", "-key", "talk_ms", "0"];
        phones.push(pbx.load_phone(ext, "uas_load", &keys.map(String::from)));
    }
    phones
}

/// Phone `ext` calling `target` `calls` times at `rate` a second, each hanging up after
/// 1 s of talk.
fn caller(pbx: &Pbx, ext: u16, target: &str, calls: u32, rate: u32) -> Phone {
    let args: Vec<String> = [
        &format!("127.0.0.1:{}", pbx.sip_port),
        "-m",
        &calls.to_string(),
        "-r",
        &rate.to_string(),
        "-aa",
        "-s",
        target,
        "-au",
        &ext.to_string(),
        "-ap",
        &format!("{ext}pw"),
        "-key",
        "caller",
        &ext.to_string(),
        "-key",
        "talk_ms",
        "1000",
    ]
    .map(String::from)
    .into();
    pbx.load_phone(ext, "uac_call", &args)
}

/// The load, placed; returns when its last call has ended.
fn place(pbx: &Pbx, load: Load) {
    let direct = caller(pbx, 101, "102", load.calls, load.rate);
    let queue = caller(pbx, 105, "8002", load.queue_calls, 1);
    let mut args = pbx.register_args(103, "103pw", 60, "loadreg");
    let m = args.iter().position(|a| a == "-m").unwrap();
    args[m + 1] = load.registrations.to_string();
    args.extend(["-r".into(), "1".into()]);
    let registrar = pbx.load_phone(103, "register", &args);
    for phone in [direct, queue, registrar] {
        phone.passed();
    }
}

fn round(pbx: &Pbx, client: &Client, load: Load) -> Sample {
    let attached = Attached::start(pbx, client);
    let (bytes0, messages0, events0) = attached.counts();
    let (asterisk0, client0) = (pbx_cpu_ms(pbx), attached.pid().map_or(0, cpu_ms));
    place(pbx, load);
    let (asterisk1, client1) = (pbx_cpu_ms(pbx), attached.pid().map_or(0, cpu_ms));
    let ended = attached.wait_ended(u64::from(load.calls + load.queue_calls));
    let (bytes1, messages1, events1) = attached.counts();
    let (ref_bytes, ref_messages) = attached.stop();
    Sample {
        asterisk_ms: asterisk1 - asterisk0,
        client_ms: client1 - client0,
        ami_bytes: bytes1 - bytes0 + ref_bytes,
        ami_messages: messages1 - messages0 + ref_messages,
        events: events1 - events0,
        ended,
    }
}

fn pbx_cpu_ms(pbx: &Pbx) -> u64 {
    pbx.cpu_time().as_millis() as u64
}

/// Median (of the middle two, for an even count) and range of `f` over `samples`.
fn stats(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> (u64, u64, u64) {
    let mut v: Vec<u64> = samples.iter().map(f).collect();
    v.sort_unstable();
    let n = v.len();
    ((v[(n - 1) / 2] + v[n / 2]) / 2, v[0], v[n - 1])
}

/// Median of the per-round differences `ours - base` (Asterisk's CPU, ms): the machine's
/// drift from one round to the next falls on both.
fn paired(ours: &[Sample], base: &[Sample]) -> i64 {
    let mut d: Vec<i64> = ours
        .iter()
        .zip(base)
        .map(|(o, b)| o.asterisk_ms as i64 - b.asterisk_ms as i64)
        .collect();
    d.sort_unstable();
    let n = d.len();
    (d[(n - 1) / 2] + d[n / 2]) / 2
}

fn main() {
    let args = Args::from_env();
    let env = |k: &str, default: u32| {
        std::env::var(k)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{k}={v}: a number")))
            .unwrap_or(default)
    };
    let (rounds, calls) = if args.bench {
        (env("PBXTAP_COST_ROUNDS", 5), env("PBXTAP_COST_CALLS", 300))
    } else {
        (1, 10)
    };
    let rate = 15.min(calls);
    let load = Load {
        calls,
        rate,
        queue_calls: calls / rate,
        registrations: calls / rate,
    };
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let clients: Vec<Client> = if named.is_empty() {
        ["nothing", "pbxtap", "reference"].map(Client::named).into()
    } else {
        named.iter().map(|n| Client::named(n)).collect()
    };
    use_the_lab_beside();
    let pbx = Pbx::start_unrecorded(add_queue);
    let _phones = answering_phones(&pbx);
    println!(
        "load: {}; {rounds} rounds, configurations alternated",
        load.describe()
    );
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); clients.len()];
    for r in 0..rounds {
        // Every other round in the reverse order: a drift of the machine within a round
        // then falls on the first and the last configurations alike.
        let mut order: Vec<usize> = (0..clients.len()).collect();
        if r % 2 == 1 {
            order.reverse();
        }
        for c in order {
            let client = &clients[c];
            let s = round(&pbx, client, load);
            println!(
                "round {} {:<18} asterisk {:>5} ms  client {:>5} ms  ami {:>9} B {:>6} msgs  events {:>6}  calls ended {}",
                r + 1,
                client.name(),
                s.asterisk_ms,
                s.client_ms,
                s.ami_bytes,
                s.ami_messages,
                s.events,
                s.ended
            );
            if let Client::Pbxtap { .. } = client {
                assert_eq!(
                    s.ended,
                    u64::from(load.calls + load.queue_calls),
                    "pbxtap did not tell every call's end"
                );
            }
            samples[c].push(s);
        }
    }
    let base = clients.iter().position(|c| matches!(c, Client::Nothing));
    println!(
        "\n| attached to AMI | Asterisk CPU ms, median (range) | Asterisk's extra: median of per-round differences | client CPU ms, median (range) | total cost: extra + client, over Asterisk's own | AMI bytes | AMI messages | events |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (c, client) in clients.iter().enumerate() {
        let s = &samples[c];
        let (a, a0, a1) = stats(s, |s| s.asterisk_ms);
        let (k, k0, k1) = stats(s, |s| s.client_ms);
        let (extra, cost) = match (base, client) {
            (Some(_), Client::Nothing) | (None, _) => ("–".to_string(), "–".to_string()),
            (Some(b), _) => {
                let own = stats(&samples[b], |s| s.asterisk_ms).0.max(1) as f64;
                let extra = paired(s, &samples[b]);
                (
                    format!("{extra:+} ms ({:+.1} %)", extra as f64 * 100.0 / own),
                    format!("{:+.1} %", (extra as f64 + k as f64) * 100.0 / own),
                )
            }
        };
        let (bytes, _, _) = stats(s, |s| s.ami_bytes);
        let (msgs, _, _) = stats(s, |s| s.ami_messages);
        let (events, _, _) = stats(s, |s| s.events);
        println!(
            "| {} | {a} ({a0}–{a1}) | {extra} | {k} ({k0}–{k1}) | {cost} | {bytes} | {msgs} | {events} |",
            client.name()
        );
    }
}
