//! PortSIP conformance: the clients PortSIP's users run, unchanged, against the real
//! `pbxtap run` fed by a real Asterisk (the live suite's test PBX), over WSS with a
//! certificate the clients verify (`WEBSOCKET_CLIENT_CA_BUNDLE`, websocket-client's own
//! setting).
//!
//! - `tests/portsip/monitor_check.py`: a v16 Nagios check (ca4ti/scripts-portsip) kept
//!   line for line: auth, read the reply, subscribe to one extension, read the reply, wait
//!   up to 5 s for `extension_status` with `"online":true`.
//! - `tests/portsip/v22_client.py`: a client written from PortSIP's v22 pages: `/wsi`,
//!   replies with `command` and `id`, and every message's documented keys and types.
//!
//! Needs `PBXTAP_ASTERISK_PREFIX` (scripts/test.sh sets it), python3 and
//! python3-websocket (`scripts/install-test-deps.sh`).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::pbx::Pbx;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);
const DOMAIN: &str = "pbx.lab";

/// A certificate for `localhost` and its key, written to `dir`; the certificate is also
/// the clients' CA bundle.
fn certificate(dir: &Path) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert.to_str().unwrap().into(), key.to_str().unwrap().into())
}

fn daemon(pbx: &Pbx, version: &str, port: u16, cert: &str, key: &str) -> Daemon {
    let config = format!(
        "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"websocket\"\n\
         protocol = \"portsip\"\nversion = \"{version}\"\nlisten = \"127.0.0.1:{port}\"\n\
         tls_cert = \"{cert}\"\ntls_key = \"{key}\"\ndomain = \"{DOMAIN}\"\ntenant_id = \"7\"\n\
         [[sinks.users]]\nusername = \"Admin\"\ndomain = \"{DOMAIN}\"\npassword = \"1Passwords2\"\n\
         role = \"admin\"\n",
        pbx.ami_toml()
    );
    let d = Daemon::start(&config, &[], false);
    d.wait_stderr(WAIT, "AMI connected");
    d
}

fn python(script: &str, args: &[&str], ca: &str) -> Command {
    let python = common::require("python3", "python3");
    let mut c = Command::new(python);
    c.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/portsip")
            .join(script),
    )
    .args(args)
    .env("WEBSOCKET_CLIENT_CA_BUNDLE", ca)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Fails loudly when python3-websocket (websocket-client) is missing.
fn require_websocket_client() {
    let out = Command::new("python3")
        .args(["-c", "import websocket"])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3-websocket is missing (scripts/install-test-deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(port: u16, ca: &str) -> Output {
    python(
        "monitor_check.py",
        &[
            &format!("102@{DOMAIN}"),
            &format!("wss://localhost:{port}/"),
        ],
        ca,
    )
    .output()
    .expect("run the check")
}

#[test]
fn v16_monitoring_check_and_v22_client_against_a_live_pbx() {
    require_websocket_client();
    let pbx = Pbx::start("portsip_conformance");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (p16, p22) = (common::free_port(), common::free_port());
    let _v16 = daemon(&pbx, "v16", p16, &cert, &key);
    let _v22 = daemon(&pbx, "v22", p22, &cert, &key);

    // Phone 102 is not registered: the check reports it down, as it would for PortSIP.
    let out = check(p16, &cert);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Telefono OffLine"), "{said}");

    // The v22 client subscribes first, so it sees 102 come online.
    let mut client = python(
        "v22_client.py",
        &[
            &format!("wss://localhost:{p22}/wsi"),
            DOMAIN,
            "Admin",
            "1Passwords2",
            "102",
        ],
        &cert,
    )
    .spawn()
    .expect("run the v22 client");
    let rx = common::lines_of(client.stdout.take().unwrap());
    let deadline = Instant::now() + WAIT;
    let mut lines = Vec::new();
    let mut next = |what: &str| -> Value {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the v22 client printed no {what}; it printed {lines:?}"));
        lines.push(line.clone());
        assert!(
            !line.starts_with("FAIL") && !line.starts_with("TIMEOUT"),
            "{line}"
        );
        if line == "SUBSCRIBED" {
            return Value::Null;
        }
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    assert_eq!(next("subscribe"), Value::Null);
    let first = next("status after subscribe");
    assert_eq!(first["event_type"], "extension_status");
    assert_eq!(first["status"][0]["online"], false);
    assert_eq!(first["tenant_id"], "7");

    pbx.register(102, 120, "c102");
    loop {
        let v = next("status online");
        if v["event_type"] == "extension_status" && v["status"][0]["online"] == true {
            break;
        }
    }
    // The v16 daemon has seen the same registration once its own status says so; the
    // check is then run as Nagios runs it.
    let mut out = check(p16, &cert);
    let until = Instant::now() + WAIT;
    while out.status.code() != Some(0) && Instant::now() < until {
        // Only when the v16 feed was still behind the v22 one: run the check again.
        out = check(p16, &cert);
    }
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let status: Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(status["event_type"], "extension_status");
    assert_eq!(status["extension"], format!("sip:102@{DOMAIN}"));
    assert_eq!(status["online"], true);

    // A call 101 → 102 as the v22 client sees it: start, call status, one CDR.
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    let uac = pbx.caller(101, "102", "uac_call", &[("talk_ms", "1000")]);
    uac.passed();
    let _ = uas.wait();
    let mut seen = Vec::new();
    loop {
        let v = next("call_cdr");
        let done = v["event_type"] == "call_cdr";
        seen.push(v);
        if done {
            break;
        }
    }
    let kinds: Vec<&str> = seen
        .iter()
        .filter_map(|v| v["event_type"].as_str())
        .collect();
    let at = |k: &str| kinds.iter().position(|x| *x == k);
    assert!(at("call_start") < at("call_update_info"), "{kinds:?}");
    let call: Vec<&str> = seen
        .iter()
        .filter(|v| v["event_type"] == "extension_call")
        .filter_map(|v| v["call_status"].as_str())
        .collect();
    assert!(call.contains(&"ON_CALL"), "102 on the call: {call:?}");
    let cdr = seen.last().unwrap();
    assert_eq!(cdr["caller"], "101");
    assert_eq!(cdr["callee"], "102");
    assert_eq!(cdr["call_status"], "answered");
    assert_eq!(cdr["direction"], "ext");
    assert_eq!(cdr["status_code"], "0");
    assert_eq!(cdr["ended_reason"], "caller_disconnected");
    assert_eq!(cdr["callee_domain"], DOMAIN);
    let target = &cdr["call_targets"][0];
    assert_eq!(target["callee"], "102");
    assert_eq!(target["status"], "answered");
    assert!(
        target["destination"]
            .as_str()
            .unwrap()
            .starts_with("sip:102@127.0.0.1:"),
        "the registered contact: {target}"
    );
    assert!(cdr["talk_duration"].as_u64().unwrap() <= 3, "{cdr}");
    let status = client.wait().unwrap();
    assert!(status.success(), "v22 client: {status}");
}
