//! A real Asterisk and real SIPp phones for the live suite (`tests/live_asterisk.rs`).
//!
//! The project owns its test PBX: the configs in `tests/pbx/etc/` (templates: `@RUN@`,
//! `@PREFIX@`, `@AMI_PORT@`, `@SIP_PORT@`, `@RTP_START@`, `@RTP_END@`, `@CARRIER_PORT@`,
//! `@CHAN_SIP_PORT@`) and the SIPp
//! scenarios in `tests/pbx/sipp/`. Only the binaries come from outside, from the prefix
//! named by [`PREFIX_VAR`]: `sbin/asterisk`, `lib/asterisk/modules`, `var/lib/asterisk`
//! (sounds) and `bin/sipp` (else `sipp` on PATH), with `lib/` on `LD_LIBRARY_PATH`.
//! `.ci/run` points it at the lab bundle (`../shared/lab/bin/lab.sh prefix`).
//!
//! Each [`Pbx`] is a non-system Asterisk in its own run dir on its own block of ports, so
//! tests run in parallel. A missing prefix, binary or library, or an Asterisk that does
//! not boot, panics with the reason: the suite never skips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming the Asterisk + SIPp prefix.
pub const PREFIX_VAR: &str = "PBXTAP_ASTERISK_PREFIX";
/// Longest an Asterisk may take to boot (the lab's boots in about 1.3 s).
pub const BOOT: Duration = Duration::from_secs(30);
/// Longest one SIPp phone may run before it counts as hung.
pub const PHONE_RUN: Duration = Duration::from_secs(60);
/// The phone number whose SIPp port is the trunk `carrier`'s far end (pjsip.conf): a
/// `callee(CARRIER, ...)` answers what the PBX sends out through the trunk.
pub const CARRIER: u16 = 106;
/// Ports each instance takes: SIP, phones, Asterisk's RTP (200) and the phones' RTP.
const PORT_BLOCK: u16 = 500;
/// Blocks of ports from 20,000 that instances take.
const BLOCKS: u16 = 80;
/// The next block to try; offset by the process id so that suites running side by side
/// (scripts/test.sh runs the Asterisk 20/18 scenarios beside the main suites) start apart.
static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// Claims a block of ports that no other test PBX holds, in this process or another: a
/// TCP listener on the block's first port (its SIP port, which Asterisk binds for UDP
/// only) is the claim, held as long as the PBX runs.
fn claim_block() -> (u16, TcpListener) {
    let start = (std::process::id() as u16 % 8) * 10 + NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
    for i in 0..BLOCKS {
        let base = 20_000 + ((start + i) % BLOCKS) * PORT_BLOCK;
        if let Ok(claim) = TcpListener::bind(("127.0.0.1", base)) {
            return (base, claim);
        }
    }
    panic!("no free block of {PORT_BLOCK} ports from 20000 for a test PBX");
}

/// The prefix holding Asterisk and SIPp, checked.
pub fn prefix() -> PathBuf {
    let Some(p) = std::env::var_os(PREFIX_VAR) else {
        panic!(
            "the live suite needs a real Asterisk: set {PREFIX_VAR} to a prefix with \
             sbin/asterisk, lib/asterisk/modules and bin/sipp (the lab's: \
             `export {PREFIX_VAR}=$(../shared/lab/bin/lab.sh prefix)` after \
             `../shared/lab/bin/lab.sh deps`; scripts/test-live.sh does both)"
        )
    };
    let p = PathBuf::from(p);
    for need in ["sbin/asterisk", "lib/asterisk/modules"] {
        assert!(
            p.join(need).exists(),
            "{PREFIX_VAR}={} has no {need}: not an Asterisk prefix",
            p.display()
        );
    }
    p
}

fn sipp_bin(prefix: &Path) -> PathBuf {
    let bundled = prefix.join("bin/sipp");
    if bundled.exists() {
        return bundled;
    }
    super::require("sipp", "sip-tester")
}

fn library_path(prefix: &Path) -> String {
    let lib = prefix.join("lib").display().to_string();
    match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{lib}:{old}"),
        _ => lib,
    }
}

/// Where each test's whole AMI stream is recorded (`<test>.ami`): `PBXTAP_LIVE_AMI_DIR`, else
/// `target/tmp/live-ami`.
pub fn capture_dir() -> PathBuf {
    std::env::var_os("PBXTAP_LIVE_AMI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-ami"))
}

/// The files of the test PBX, in the repository.
fn pbx_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pbx")
}

/// A running Asterisk.
pub struct Pbx {
    pub prefix: PathBuf,
    pub run: tempfile::TempDir,
    pub ami_port: u16,
    pub sip_port: u16,
    /// SIPp phone N (101..105) listens on `phone_base + N - 100`.
    phone_base: u16,
    /// SIPp phone N sends media from `rtp_base + (N - 100) * 20`.
    rtp_base: u16,
    child: Child,
    /// This PBX's claim on its block of ports.
    _block: TcpListener,
}

impl Pbx {
    /// Boots the test PBX as it is in `tests/pbx/etc`. `name` names the recording of its
    /// whole AMI stream, kept in [`capture_dir`] for a look after the test (and for new
    /// replay fixtures).
    pub fn start(name: &str) -> Pbx {
        Pbx::start_with(name, |_| {})
    }

    /// Asterisk's CPU time so far (user + system), from /proc.
    pub fn cpu_time(&self) -> Duration {
        super::bench::proc_cpu(self.child.id())
    }

    /// Boots the test PBX with `from` replaced by `to` in its rendered config `file`.
    pub fn start_replacing(name: &str, file: &str, from: &str, to: &str) -> Pbx {
        Pbx::start_with(name, |etc| {
            let path = etc.join(file);
            let conf = std::fs::read_to_string(&path).unwrap();
            assert!(conf.contains(from), "{file} has no `{from}`");
            std::fs::write(&path, conf.replace(from, to)).unwrap();
        })
    }

    /// Boots the test PBX after `edit` has changed its rendered configs (in the run dir's
    /// `etc/`), e.g. a longer `systemname` or another AMI user.
    pub fn start_with(name: &str, edit: impl FnOnce(&Path)) -> Pbx {
        let pbx = Pbx::start_unrecorded(edit);
        pbx.record(name);
        pbx
    }

    /// As [`Pbx::start_with`], without the recording session: no AMI client is attached
    /// unless the caller attaches one (`benches/asterisk_cost.rs` measures what one costs).
    pub fn start_unrecorded(edit: impl FnOnce(&Path)) -> Pbx {
        let prefix = prefix();
        let (base, block) = claim_block();
        let (sip_port, phone_base) = (base, base + 10);
        let (rtp_start, rtp_base) = (base + 100, base + 300);
        let ami_port = super::free_port();
        let run = tempfile::Builder::new()
            .prefix("pbxtap-pbx.")
            .tempdir()
            .unwrap();
        let etc = run.path().join("etc");
        for d in ["etc", "log", "run", "db", "varlib", "spool", "cache"] {
            std::fs::create_dir_all(run.path().join(d)).unwrap();
        }
        for entry in std::fs::read_dir(pbx_dir().join("etc")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text
                .replace("@RUN@", &run.path().display().to_string())
                .replace("@PREFIX@", &prefix.display().to_string())
                .replace("@AMI_PORT@", &ami_port.to_string())
                .replace("@SIP_PORT@", &sip_port.to_string())
                .replace("@RTP_START@", &rtp_start.to_string())
                .replace("@RTP_END@", &(rtp_start + 199).to_string())
                .replace("@CARRIER_PORT@", &(phone_base + CARRIER - 100).to_string())
                .replace("@CHAN_SIP_PORT@", &(sip_port + 1).to_string());
            std::fs::write(etc.join(path.file_name().unwrap()), text).unwrap();
        }
        edit(&etc);
        let console = std::fs::File::create(run.path().join("log/console.log")).unwrap();
        let child = Command::new(prefix.join("sbin/asterisk"))
            .arg("-C")
            .arg(etc.join("asterisk.conf"))
            .args(["-f", "-n"])
            .env("LD_LIBRARY_PATH", library_path(&prefix))
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}/sbin/asterisk: {e}", prefix.display()));
        let mut pbx = Pbx {
            prefix,
            run,
            ami_port,
            sip_port,
            phone_base,
            rtp_base,
            child,
            _block: block,
        };
        pbx.wait_booted();
        pbx
    }

    /// Records every byte of an AMI session (all events) into `capture_dir()/name.ami`
    /// until Asterisk closes it.
    fn record(&self, name: &str) {
        let dir = capture_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = std::fs::File::create(dir.join(format!("{name}.ami"))).unwrap();
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.ami_port)).expect("AMI for the recording");
        stream
            .write_all(b"Action: Login\r\nUsername: tap\r\nSecret: tapsecret\r\nEvents: on\r\n\r\n")
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }

    /// After `core restart now`: waits until Asterisk is up again (it re-executes itself
    /// under the same process id).
    pub fn wait_booted_again(&mut self) {
        self.wait_booted();
    }

    /// Waits for `FullyBooted` on a login of our own, or panics with the console's tail.
    fn wait_booted(&mut self) {
        let deadline = Instant::now() + BOOT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "Asterisk exited during boot ({status}); a missing runtime library? \
                     (`../shared/lab/bin/lab.sh deps` installs them)\n{}",
                    self.console_tail()
                );
            }
            if let Ok(mut ami) = RawAmi::login(self.ami_port, "tap", "tapsecret") {
                if ami.read_until("Event: FullyBooted", deadline).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Asterisk did not boot within {BOOT:?}\n{}",
                self.console_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn console_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.run.path().join("log/console.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `asterisk -rx command`: the CLI's answer.
    pub fn cli(&self, command: &str) -> String {
        let out = Command::new(self.prefix.join("sbin/asterisk"))
            .arg("-C")
            .arg(self.run.path().join("etc/asterisk.conf"))
            .args(["-rx", command])
            .env("LD_LIBRARY_PATH", library_path(&self.prefix))
            .output()
            .expect("asterisk -rx");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until two channels have been in one bridge for at least a second (`bridge
    /// show all`), the point at which a person could press transfer.
    pub fn wait_bridged(&self) {
        super::wait_until("two channels bridged for a second", BOOT, || {
            self.cli("bridge show all").lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() >= 5 && cols[cols.len() - 4] == "2" && cols[cols.len() - 1] != "00:00:00"
            })
        });
    }

    /// The `[ami]` table of a pbxtap config for this PBX's `tap` user.
    pub fn ami_toml(&self) -> String {
        format!(
            "[ami]\naddress = \"127.0.0.1:{}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n\
             reconnect_min_ms = 100\nreconnect_max_secs = 1\n",
            self.ami_port
        )
    }

    /// The port phone `ext` listens on (its contact's).
    pub fn phone_port(&self, ext: u16) -> u16 {
        self.phone_base + ext - 100
    }

    /// A SIPp phone `ext` running `scenario` (a file of `tests/pbx/sipp`), in the
    /// background; `args` follow the common ones.
    pub fn phone(&self, ext: u16, scenario: &str, args: &[String]) -> Phone {
        let mut all = vec![
            "-timeout".to_string(),
            "50s".into(),
            "-timeout_error".into(),
        ];
        all.extend(["-trace_msg".to_string(), "-message_file".into()]);
        let label = format!("{scenario}-{ext}-{}", self.run_count());
        let logs = self.run.path().join("sipp");
        all.push(logs.join(format!("{label}.msg")).display().to_string());
        all.extend_from_slice(args);
        self.sipp(ext, scenario, &label, &all)
    }

    /// A SIPp phone `ext` for a load: no message trace, no time limit (it ends with its
    /// `-m` calls, or when dropped).
    pub fn load_phone(&self, ext: u16, scenario: &str, args: &[String]) -> Phone {
        let label = format!("{scenario}-{ext}-{}", self.run_count());
        self.sipp(ext, scenario, &label, args)
    }

    /// SIPp running `scenario` as phone `ext`, errors logged under `label`.
    fn sipp(&self, ext: u16, scenario: &str, label: &str, args: &[String]) -> Phone {
        let label = label.to_string();
        let logs = self.run.path().join("sipp");
        std::fs::create_dir_all(&logs).unwrap();
        let rtp = self.rtp_base + (ext - 100) * 20;
        let mut cmd = Command::new(sipp_bin(&self.prefix));
        cmd.arg("-sf")
            .arg(pbx_dir().join("sipp").join(format!("{scenario}.xml")))
            .args(["-i", "127.0.0.1", "-p", &self.phone_port(ext).to_string()])
            .args(["-min_rtp_port", &rtp.to_string()])
            .args(["-max_rtp_port", &(rtp + 19).to_string()])
            .arg("-nostdin")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(logs.join(format!("{label}.err")))
            .args(args)
            .env("LD_LIBRARY_PATH", library_path(&self.prefix))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start sipp");
        Phone { child, label, logs }
    }

    fn run_count(&self) -> u64 {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// Phone `ext` tries to register with a wrong password, and is refused (a second 401).
    pub fn register_wrong(&self, ext: u16, tag: &str) {
        let args = self.register_args(ext, "not-the-password", 60, tag);
        let status = self.phone(ext, "register_wrong", &args).wait();
        assert!(status.success(), "phone {ext} was not refused ({status})");
    }

    /// Phone `ext` registers (digest auth) with `expires` seconds under the contact tag
    /// `tag` (a new tag is a new contact), and answers Asterisk's qualify. Waits for it.
    pub fn register(&self, ext: u16, expires: u32, tag: &str) {
        self.register_at(self.sip_port, ext, expires, tag);
    }

    /// chan_sip's port (sip.conf; Asterisk 20 and 18 load it): the PBX's SIP port + 1.
    pub fn chan_sip_port(&self) -> u16 {
        self.sip_port + 1
    }

    /// As [`Pbx::register`], to the SIP stack on `port` (PJSIP's or chan_sip's).
    pub fn register_at(&self, port: u16, ext: u16, expires: u32, tag: &str) {
        let mut args = self.register_args(ext, &format!("{ext}pw"), expires, tag);
        args[0] = format!("127.0.0.1:{port}");
        args.push("-aa".into());
        let status = self.phone(ext, "register", &args).wait();
        assert!(
            status.success(),
            "phone {ext} could not register ({status})"
        );
    }

    /// SIPp's arguments for a REGISTER of `ext` with `password` (register.xml's keys).
    pub fn register_args(&self, ext: u16, password: &str, expires: u32, tag: &str) -> Vec<String> {
        let mut args = vec![
            format!("127.0.0.1:{}", self.sip_port),
            "-m".into(),
            "1".into(),
            "-au".into(),
            ext.to_string(),
            "-ap".into(),
            password.into(),
        ];
        args.extend(key_args(&[
            ("user", &ext.to_string()),
            ("expires", &expires.to_string()),
            ("cport", &self.phone_port(ext).to_string()),
            ("nonce", tag),
        ]));
        args
    }

    /// Phone `ext` answers calls by `scenario` (`uas_answer`, `uas_busy`, `uas_ring`,
    /// `uas_reject`, ...), with `-key name value` pairs.
    pub fn callee(&self, ext: u16, scenario: &str, keys: &[(&str, &str)]) -> Phone {
        self.phone(ext, scenario, &key_args(keys))
    }

    /// Phone `ext` answers a call after `ring_ms`, and `talk_ms` later transfers it blind
    /// (REFER) to `refer_to` (`uas_refer`): a transfer key, or parking when `refer_to` is
    /// the lot (70).
    pub fn referrer(&self, ext: u16, ring_ms: &str, talk_ms: &str, refer_to: &str) -> Phone {
        let me = ext.to_string();
        let pbx = format!("127.0.0.1:{}", self.sip_port);
        self.callee(
            ext,
            "uas_refer",
            &[
                ("ring_ms", ring_ms),
                ("talk_ms", talk_ms),
                ("refer_to", refer_to),
                ("me", &me),
                ("pbx", &pbx),
            ],
        )
    }

    /// Phone `ext` calls `target` by `scenario` (`uac_call`, `uac_cancel`, `uac_hold`).
    pub fn caller(&self, ext: u16, target: &str, scenario: &str, keys: &[(&str, &str)]) -> Phone {
        self.caller_at(self.sip_port, ext, target, scenario, keys)
    }

    /// As [`Pbx::caller`], through the SIP stack on `port` (PJSIP's or chan_sip's).
    pub fn caller_at(
        &self,
        port: u16,
        ext: u16,
        target: &str,
        scenario: &str,
        keys: &[(&str, &str)],
    ) -> Phone {
        let mut args = vec![
            format!("127.0.0.1:{port}"),
            "-m".into(),
            "1".into(),
            "-aa".into(),
            "-s".into(),
            target.into(),
            "-au".into(),
            ext.to_string(),
            "-ap".into(),
            format!("{ext}pw"),
            "-key".into(),
            "caller".into(),
            ext.to_string(),
        ];
        args.extend(key_args(keys));
        self.phone(ext, scenario, &args)
    }
}

impl Pbx {
    /// Click-to-dial, as a CRM does it: an async AMI `Originate` that rings `channel`
    /// (`PJSIP/102`, `Local/102@fpbx-ext`) and then sends it to `exten@context`, with the
    /// caller ID `Click2Call <102>`.
    pub fn originate(&self, channel: &str, context: &str, exten: &str) {
        let mut ami = RawAmi::login(self.ami_port, "tap", "tapsecret").unwrap();
        ami.send(&[
            ("Action", "Originate"),
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Priority", "1"),
            ("CallerID", "Click2Call <102>"),
            ("Async", "true"),
        ])
        .unwrap();
    }
}

fn key_args(keys: &[(&str, &str)]) -> Vec<String> {
    keys.iter()
        .flat_map(|(k, v)| ["-key".to_string(), k.to_string(), v.to_string()])
        .collect()
}

impl Drop for Pbx {
    fn drop(&mut self) {
        let _ = self.cli("core stop now");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp process.
pub struct Phone {
    child: Child,
    label: String,
    logs: PathBuf,
}

impl Phone {
    /// Waits for SIPp to finish its scenario (at most [`PHONE_RUN`]).
    pub fn wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + PHONE_RUN;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "SIPp {} still running after {PHONE_RUN:?}",
                self.label
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits and asserts SIPp completed its scenario, else panics with its error log.
    pub fn passed(self) {
        let (label, logs) = (self.label.clone(), self.logs.clone());
        let status = self.wait();
        let errors = std::fs::read_to_string(logs.join(format!("{label}.err"))).unwrap_or_default();
        assert!(
            status.success(),
            "SIPp {label} failed ({status}):\n{errors}"
        );
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare AMI connection for the suite's own actions (Originate, boot waits).
pub struct RawAmi {
    stream: TcpStream,
    buf: String,
}

impl RawAmi {
    /// Connects and logs in (plain), waiting for the answer.
    pub fn login(port: u16, user: &str, secret: &str) -> std::io::Result<RawAmi> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut ami = RawAmi {
            stream,
            buf: String::new(),
        };
        ami.send(&[
            ("Action", "Login"),
            ("Username", user),
            ("Secret", secret),
            ("Events", "system"),
        ])?;
        ami.read_until("Response: Success", Instant::now() + Duration::from_secs(5))?;
        Ok(ami)
    }

    /// Logs in with `secret` and expects Asterisk to refuse it.
    pub fn login_refused(port: u16, user: &str, secret: &str) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut ami = RawAmi {
            stream,
            buf: String::new(),
        };
        ami.send(&[("Action", "Login"), ("Username", user), ("Secret", secret)])
            .unwrap();
        ami.read_until(
            "Authentication failed",
            Instant::now() + Duration::from_secs(5),
        )
        .expect("Asterisk refuses the login");
    }

    /// Sends one action.
    pub fn send(&mut self, headers: &[(&str, &str)]) -> std::io::Result<()> {
        let mut text = String::new();
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        self.stream.write_all(text.as_bytes())
    }

    /// Reads until `needle` has arrived (returning what came up to it), or fails at
    /// `deadline` or when the connection closes.
    pub fn read_until(&mut self, needle: &str, deadline: Instant) -> std::io::Result<String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = self.buf.find(needle) {
                let upto = self.buf[..i + needle.len()].to_string();
                self.buf.drain(..i + needle.len());
                return Ok(upto);
            }
            if Instant::now() >= deadline {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
