//! `pbxtap capture` and `pbxtap replay` round-trip a live call: a capture taken beside a
//! running `pbxtap run` while the lab's Asterisk places a call, replayed, gives the call
//! the same events as the live run. The same call is captured twice more: onto a full
//! disk (a 8 KiB tmpfs: a clear error, what was written kept) and to `--max-bytes`.
//!
//! Needs root (mount) and the lab (`PBXTAP_ASTERISK_PREFIX`, see tests/pbx/README.md).

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::live::{done, Tap, WAIT};
use common::pbx::Pbx;
use common::sequence::{call_from, of_call_all};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// A running `pbxtap capture`.
struct Capture {
    child: Child,
    output: PathBuf,
}

impl Capture {
    fn start(config: &Path, output: &Path, extra: &[&str]) -> Capture {
        let child = Command::new(common::pbxtap_bin())
            .arg("capture")
            .arg("--config")
            .arg(config)
            .args(extra)
            .arg(output)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pbxtap capture");
        Capture {
            child,
            output: output.to_path_buf(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.output).unwrap_or_default()).into_owned()
    }

    /// Waits for it to end; its exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let mut code = None;
        common::wait_until("pbxtap capture to end", WAIT, || {
            code = self.child.try_wait().unwrap().map(|s| s.code());
            code.is_some()
        });
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (code.flatten(), err)
    }

    fn interrupt(self) -> (Option<i32>, String) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).unwrap();
        self.finish()
    }
}

/// A tmpfs of `kib` KiB at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs (the full-disk capture needs root): {}",
            common::output_text(&out)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn replay(file: &Path) -> Vec<Value> {
    let out = Command::new(common::pbxtap_bin())
        .arg("replay")
        .arg(file)
        .output()
        .expect("run pbxtap replay");
    assert!(out.status.success(), "{}", common::output_text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_captured_live_call_replays_to_the_same_events() {
    let pbx = Pbx::start("a_captured_live_call_replays_to_the_same_events");
    let tap = Tap::start(&pbx);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pbxtap.toml");
    std::fs::write(
        &config,
        format!(
            "{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n",
            pbx.ami_toml()
        ),
    )
    .unwrap();
    let full_disk = Tmpfs::mount(&dir.path().join("small"), 8);
    let whole = Capture::start(
        &config,
        &dir.path().join("call.ami"),
        &["--redact", "Phone 102"],
    );
    let onto_full = Capture::start(&config, &full_disk.0.join("call.ami"), &[]);
    let limited = Capture::start(
        &config,
        &dir.path().join("limited.ami"),
        &["--max-bytes", "4000"],
    );
    for c in [&whole, &onto_full, &limited] {
        common::wait_until("the capture's header and banner", WAIT, || {
            c.text().contains("\r\nAsterisk Call Manager/")
        });
    }

    pbx.register(102, 120, "c102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "500"), ("talk_ms", "0")]);
    pbx.caller(101, "102", "uac_call", &[("talk_ms", "1500")])
        .passed();
    let _ = uas.wait();
    let live = done(&pbx, &tap, &[(102, "c102")]);
    let call = call_from(&live, "101");
    // Everything of the call is in the capture once the fence phone's last removal is.
    let fence = live
        .iter()
        .rev()
        .find(|e| e["event"] == "unregistered")
        .and_then(|e| e["contact"].as_str())
        .expect("the fence's unregistration")
        .to_string();
    common::wait_until("the capture to hold the fence", WAIT, || {
        whole.text().contains(&fence)
    });

    let (code, said) = whole.interrupt();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.starts_with("capture: ") && said.contains("stopped"),
        "{said}"
    );
    let text = std::fs::read_to_string(dir.path().join("call.ami")).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("# asterisk: "))
        .expect("the header names Asterisk's version");
    assert!(
        version.starts_with(|c: char| c.is_ascii_digit()),
        "{version}"
    );
    assert!(text.starts_with("# pbxtap capture 1\r\n"), "{text:.200}");
    assert!(text.contains("# redacted values: 1\r\n"));
    // What pbxtap sent to log in never reaches the file; the redacted name neither.
    for secret in ["tapsecret", "Username: tap", "Phone 102"] {
        assert!(!text.contains(secret), "{secret} in the capture");
    }
    assert!(text.contains("redacted-1"));

    let replayed = replay(&dir.path().join("call.ami"));
    let want = of_call_all(&live, &call);
    assert!(want.len() > 6, "{want:?}");
    assert_eq!(of_call_all(&replayed, &call), want);

    // Onto a full disk: a clear error, what was written kept.
    let (code, said) = onto_full.finish();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("the disk is full"), "{said}");
    let kept = std::fs::metadata(full_disk.0.join("call.ami"))
        .unwrap()
        .len();
    assert!(kept > 4000, "{kept}");
    // At --max-bytes: it stops there, and says why.
    let (code, said) = limited.finish();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("--max-bytes reached"), "{said}");
    let size = std::fs::metadata(dir.path().join("limited.ami"))
        .unwrap()
        .len();
    assert!((1000..=4000).contains(&size), "{size}");
    drop(full_disk);
}
