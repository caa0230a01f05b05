//! The one test-support module, for every integration test and bench (benches include
//! it with `#[path = "../tests/common/mod.rs"]`): real external programs, free ports,
//! waiting with a deadline, the real daemon, brokers, certificates and recordings.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The path of an external program the test needs. Panics, naming the program and the
/// Debian package that provides it, when it is not installed: a missing dependency fails
/// the test loudly, it never skips it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs `{program}`, which is not installed: `apt-get install -y {package}` \
         (scripts/install-test-deps.sh installs everything the tests need)"
    );
}

/// The number under `key` in a native JSON event (its first `"key":`, which in native
/// JSON is the top-level field: a quote inside a string value is escaped), if any. A scan,
/// not a parse: the benches read a million payloads with it.
pub fn json_u64(payload: &[u8], key: &str) -> Option<u64> {
    let pattern = format!("\"{key}\":");
    let at = memchr::memmem::find(payload, pattern.as_bytes())? + pattern.len();
    let digits = &payload[at..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// How often the waits below look again.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits until `cond` holds, looking every [`POLL`], or panics naming `what` after
/// `within`. For tests without a runtime: it blocks the thread between looks.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Waits until `cond` holds, looking every [`POLL`], or panics naming `what` after
/// `within`. Sleeps on the runtime between looks, so servers on it keep running.
pub async fn until(what: &str, within: Duration, cond: impl AsyncFnMut() -> bool) {
    until_every(what, within, POLL, cond).await
}

/// [`until`], looking every `every` (benches that time what they wait for look often).
pub async fn until_every(
    what: &str,
    within: Duration,
    every: Duration,
    mut cond: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, or panics.
pub fn wait_for_port(port: u16, within: Duration) {
    wait_until(&format!("a listener on 127.0.0.1:{port}"), within, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// The pbxtap binary built for this test run.
pub fn pbxtap_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pbxtap"))
}

pub mod ami;
pub mod bench;
pub mod daemon;
pub mod fleet;
pub mod fonoster;
pub mod live;
pub mod mqtt;
pub mod nats;
pub mod pbx;
pub mod scenarios;
pub mod sequence;
pub mod site_link;
pub mod tls;

/// The lines a child process writes to `stdout`, as they come, read by a thread of their own
/// (so a test can wait for one with a deadline).
pub fn lines_of(stdout: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A static pbxtap for `target` (`aarch64-unknown-linux-musl`, `x86_64-unknown-linux-musl`,
/// ...), built by `cross/build-here.sh` with [profile.qemu-test] into target/cross: minutes
/// from scratch, seconds when nothing changed. Panics with the script's output on failure.
pub fn build_static(target: &str) -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("cross/build-here.sh"))
        .args([target, "qemu-test"])
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cross/build-here.sh");
    assert!(
        out.status.success(),
        "build-here.sh {target} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let bin = PathBuf::from(stdout.lines().last().expect("the binary's path").trim());
    assert!(bin.is_file(), "no binary at {}", bin.display());
    bin
}

/// A finished command's stdout then stderr, as text (for assertion messages).
pub fn output_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}
