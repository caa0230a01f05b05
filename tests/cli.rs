//! The `pbxtap` command as a user runs it: demo, check-config, version.

mod common;

use std::process::Command;

fn pbxtap(args: &[&str]) -> std::process::Output {
    Command::new(common::pbxtap_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run pbxtap")
}

/// `text` as `pbxtap.toml` in `dir`.
fn config_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("pbxtap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), text);
    let out = pbxtap(&["check-config", path.to_str().unwrap()]);
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), msg)
}

#[test]
fn version_names_the_program() {
    let out = pbxtap(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pbxtap {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn demo_shows_every_kind_of_call_and_registration() {
    let out = pbxtap(&["demo", "--fast"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in stdout.lines() {
        assert!(
            line.starts_with("{\"v\":1,") && line.ends_with('}'),
            "not a native JSON line: {line}"
        );
        let class = line
            .split("\"class\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let event = line
            .split("\"event\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        seen.insert(format!("{class}.{event}"));
    }
    for needed in [
        "endpoint.registered",
        "endpoint.unregistered",
        "call.started",
        "call.answered",
        "call.ended",
        "call.failed",
        "call.held",
        "call.unheld",
        "call.noanswer",
        "queue.caller_joined",
        "queue.caller_left",
    ] {
        assert!(seen.contains(needed), "demo printed no {needed}: {seen:?}");
    }
    // The busy call: cause 17, SIP 486.
    assert!(stdout.lines().any(|l| l.contains("\"event\":\"failed\"")
        && l.contains("\"sip_code\":486")
        && l.contains("\"cause\":17")));
}

/// Stdout is written without blocking when it is a pipe or a socket, and through a
/// blocking thread when it is a file: the lines are the same either way (`time` and `id`
/// aside, which are the run's), none lost or torn.
#[test]
fn the_demo_writes_the_same_lines_to_a_pipe_a_socket_and_a_file() {
    let shape = |out: &[u8]| -> Vec<String> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                let o = v.as_object_mut().unwrap();
                // The demo's fake Asterisk listens on a port of its own each run.
                for k in ["time", "id", "seq", "address", "reason"] {
                    o.remove(k);
                }
                v.to_string()
            })
            .collect()
    };
    let piped = pbxtap(&["demo", "--fast"]);
    assert!(piped.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    let status = Command::new(common::pbxtap_bin())
        .args(["demo", "--fast"])
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut child = Command::new(common::pbxtap_bin())
        .args(["demo", "--fast"])
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut socket = Vec::new();
    std::io::Read::read_to_end(&mut &ours, &mut socket).unwrap();
    assert!(child.wait().unwrap().success());
    let lines = shape(&piped.stdout);
    assert!(lines.len() > 50, "{}", lines.len());
    for (what, got) in [
        ("a file", shape(&std::fs::read(&file).unwrap())),
        ("a socket", shape(&socket)),
    ] {
        let differ = got.iter().zip(&lines).position(|(a, b)| a != b);
        assert!(
            got.len() == lines.len() && differ.is_none(),
            "{what}: {} lines against {}, first different at {differ:?}",
            got.len(),
            lines.len()
        );
    }
}

#[test]
fn a_valid_config_passes() {
    let (ok, msg) =
        check_config("host = \"pbx1\"\n[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"stdout\"\n");
    assert!(ok, "{msg}");
    assert!(msg.contains("valid (1 sink: stdout)"), "{msg}");
}

#[test]
fn the_readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\nhost = ")
        .expect("the README's full config example")
        + 8;
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    // Its secrets are files read from systemd's credentials directory.
    let dir = tempfile::tempdir().unwrap();
    for name in ["ami.secret", "webhook.key", "ws.key"] {
        std::fs::write(dir.path().join(name), "s3cret-0123456789\n").unwrap();
    }
    let path = config_file(dir.path(), example);
    let out = Command::new(common::pbxtap_bin())
        .args(["check-config", path.to_str().unwrap()])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .unwrap();
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("5 sinks: stdout, nats, mqtt, webhook, websocket"),
        "{msg}"
    );
}

#[test]
fn an_unknown_sink_type_is_named() {
    let (ok, msg) = check_config("[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"kafka\"\n");
    assert!(!ok);
    assert!(
        msg.contains("sinks[0].type") && msg.contains("kafka"),
        "{msg}"
    );
}

#[test]
fn a_bad_address_is_named() {
    let (ok, msg) = check_config("[ami]\nsecret = \"s\"\naddress = \"pbx.local\"\n");
    assert!(!ok);
    assert!(
        msg.contains("ami.address") && msg.contains("pbx.local"),
        "{msg}"
    );
}

#[test]
fn a_missing_secret_is_named() {
    let (ok, msg) = check_config("[ami]\nusername = \"tap\"\n");
    assert!(!ok);
    assert!(msg.contains("ami.secret: missing"), "{msg}");
}

#[test]
fn a_missing_file_and_bad_arguments_are_clear() {
    let out = pbxtap(&["check-config", "/nonexistent/pbxtap.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pbxtap.toml: cannot read"));
    let out = pbxtap(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command `frobnicate`"));
}

/// Runs pbxtap with `args`, killing it after 10 s: (exit code, stdout and stderr).
fn pbxtap_within_10s(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(common::pbxtap_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pbxtap");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("pbxtap {args:?} still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), msg)
}

#[test]
fn a_secret_file_that_never_ends_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "[ami]\nsecret_file = \"/dev/zero\"\n");
    let (code, msg) = pbxtap_within_10s(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{msg}");
    assert!(
        msg.contains("ami.secret_file: cannot read /dev/zero: it is larger than 4096 bytes"),
        "{msg}"
    );
}

#[test]
fn a_port_in_use_is_said_once_and_check_config_says_what_it_did_not_try() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &format!(
            "[ami]\nsecret = \"s\"\n[watchdog]\nenabled = false\n[[sinks]]\ntype = \"websocket\"\n\
             listen = \"{address}\"\nauthkey = \"0123456789abcdef\"\n"
        ),
    );
    let file = path.to_str().unwrap();
    let (code, msg) = pbxtap_within_10s(&["run", "--config", file]);
    assert_eq!(code, Some(1), "{msg}");
    let line = msg
        .lines()
        .find(|l| l.starts_with("pbxtap: "))
        .unwrap_or_else(|| panic!("no error line: {msg}"));
    assert_eq!(line.matches("Address already in use").count(), 1, "{line}");
    assert!(
        line.contains(&format!("sinks[0] (websocket): cannot listen on {address}")),
        "{line}"
    );
    // check-config does not bind unless asked, and says so.
    let (code, msg) = pbxtap_within_10s(&["check-config", file]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(
        msg.contains(&format!(
            "listening on {address} not tried (--bind tries it)"
        )),
        "{msg}"
    );
    let (code, msg) = pbxtap_within_10s(&["check-config", "--bind", file]);
    assert_eq!(code, Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "sinks[0].listen: cannot listen on {address}: Address already in use"
        )),
        "{msg}"
    );
    drop(taken);
    let (code, msg) = pbxtap_within_10s(&["check-config", "--bind", file]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(
        msg.contains(&format!("listening on {address} works")),
        "{msg}"
    );
}

/// Every command answers `--help` and `-h` with its own usage on stdout, exit 0; the
/// others' synopses are not in it.
#[test]
fn every_command_answers_help_with_its_own_usage() {
    let commands = [
        "run",
        "check-config",
        "status",
        "demo",
        "capture",
        "replay",
        "--version",
    ];
    for command in commands {
        for flag in ["--help", "-h"] {
            let out = pbxtap(&[command, flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{command} {flag}: {}",
                common::output_text(&out)
            );
            assert!(
                stdout.starts_with(&format!("usage: pbxtap {command}")),
                "{command} {flag}: {stdout}"
            );
            for other in commands.iter().filter(|c| **c != command) {
                assert!(
                    !stdout.contains(&format!("pbxtap {other}")),
                    "{command} {flag} shows {other}'s usage too: {stdout}"
                );
            }
        }
    }
    // Alone, --help shows them all.
    let out = pbxtap(&["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for command in commands {
        assert!(stdout.contains(&format!("pbxtap {command}")), "{stdout}");
    }
}

/// An unknown flag names itself, with the command's usage, and exits 2.
#[test]
fn an_unknown_flag_names_itself_and_exits_2() {
    for args in [
        &["run", "--bogus"][..],
        &["check-config", "--bogus"],
        &["status", "--bogus"],
        &["demo", "--bogus"],
        &["capture", "--bogus"],
        &["replay", "--bogus"],
        &["--version", "--bogus"],
    ] {
        let out = pbxtap(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("`--bogus`"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("usage: pbxtap {}", args[0])),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// A capture never overwrites a file: it says so before it reaches for Asterisk, and the
/// file is left as it was.
#[test]
fn capture_refuses_to_overwrite_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[ami]\naddress = \"127.0.0.1:9\"\nusername = \"u\"\nsecret = \"s\"\n[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n",
    );
    let output = dir.path().join("old.ami");
    std::fs::write(&output, "kept").unwrap();
    let out = pbxtap(&[
        "capture",
        "--config",
        config.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("old.ami exists") && stderr.contains("never overwrites"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "kept");
    // One that cannot reach Asterisk says where, and leaves no empty file behind.
    let new = dir.path().join("new.ami");
    let out = pbxtap(&[
        "capture",
        "--config",
        config.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach Asterisk's AMI at 127.0.0.1:9"),
        "{stderr}"
    );
    assert!(!new.exists());
    // A value to redact that is empty is refused, naming the flag.
    let out = pbxtap(&[
        "capture",
        "--config",
        config.to_str().unwrap(),
        "--redact",
        "",
        dir.path().join("new.ami").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redact value 1"));
    // Without an output file, or with a bad limit: usage errors.
    for args in [
        &["capture"][..],
        &["capture", "--duration", "0", "x.ami"],
        &["capture", "--max-bytes", "lots", "x.ami"],
        &["replay"],
    ] {
        let out = pbxtap(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// Replay plays a recording through the pipeline to stdout, and names the line of a file
/// that is not AMI.
#[test]
fn replay_plays_a_recording_and_names_the_line_of_one_that_is_not() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ami/02-call-answered.ami"
    );
    let out = pbxtap(&["replay", fixture]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for needed in [
        "\"event\":\"started\"",
        "\"event\":\"answered\"",
        "\"event\":\"ended\"",
        "\"event\":\"cdr\"",
    ] {
        assert!(stdout.contains(needed), "no {needed} in {stdout}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ami");
    std::fs::write(
        &bad,
        "Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\nnot a header\r\n\r\n",
    )
    .unwrap();
    let out = pbxtap(&["replay", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.ami: line 3: not an AMI line"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// With `--config`, replay takes that config's sinks and settings (its `host` here), and
/// `--paced` plays at the recorded pace: the recording's 4 s of call take about as long.
#[test]
fn replay_uses_the_configs_sinks_and_can_play_at_the_recorded_pace() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "host = \"mybox\"\n[ami]\nsecret = \"unused\"\n[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n",
    );
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ami/02-call-answered.ami"
    );
    let started = std::time::Instant::now();
    let out = pbxtap(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--paced",
        fixture,
    ]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", common::output_text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("\"event\":\"ended\""), "{stdout}");
    assert!(
        stdout.lines().all(|l| l.contains("\"host\":\"mybox\"")),
        "{stdout}"
    );
    assert!(took >= std::time::Duration::from_secs(3), "{took:?}");
}
