//! The Asterisk watchdog end to end: a real child process stands in for Asterisk (its pid
//! in a pidfile), the real pbxtap binary watches it next to a replaying AMI peer, and
//! its `system.asterisk_*` events are read from the stdout sink.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::daemon::{field, name, Daemon, Peer};

/// A stand-in Asterisk: `sleep`, long enough for any test.
fn fake_asterisk() -> Child {
    Command::new(common::require("sleep", "coreutils"))
        .arg("300")
        .spawn()
        .unwrap()
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn config(peer: &Peer, watchdog: &str) -> String {
    format!(
        "host = \"pbx1\"\n{}[[sinks]]\ntype = \"stdout\"\n[watchdog]\nprocess_name = \"\"\ncheck_interval_secs = 1\nping_interval_secs = 1\n{watchdog}",
        peer.ami_toml()
    )
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn killed_asterisk_is_reported_down_restarted_once_and_up_again() {
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("asterisk.pid");
    let runs = dir.path().join("runs");
    let mut asterisk = fake_asterisk();
    std::fs::write(&pidfile, format!("{}\n", asterisk.id())).unwrap();
    // The restart command starts a new stand-in and writes its pid, as an init script would.
    let restart = format!(
        "echo run >> {runs}; {sleep} 300 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}",
        runs = runs.display(),
        sleep = common::require("sleep", "coreutils").display(),
        pidfile = pidfile.display()
    );
    let cfg = config(
        &peer,
        &format!(
            "pidfile = \"{}\"\nrestart_command = \"{}\"\nrestart_after = 2\nmin_restart_interval_secs = 60\n",
            pidfile.display(),
            restart.replace('"', "\\\"")
        ),
    );
    let d = Daemon::start_in(dir, &cfg, &[], true);

    let up = d.wait_line(WAIT, |l| name(l) == "system.asterisk_up");
    assert_eq!(
        field(&up, "pid"),
        Some(asterisk.id().to_string().as_str()),
        "{up}"
    );
    assert_eq!(field(&up, "ami_connected"), Some("true"), "{up}");
    assert_eq!(field(&up, "threads"), Some("1"), "{up}");
    assert_ne!(field(&up, "rss_kib"), Some("0"), "{up}");

    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    asterisk.kill().unwrap();
    asterisk.wait().unwrap();
    let down = d.wait_line(WAIT, |l| name(l).starts_with("system.asterisk_"));
    let t = |l: &str| field(l, "time").unwrap().parse::<u64>().unwrap();
    eprintln!(
        "figure: system.asterisk_down {} ms after the kill (check_interval_secs = 1)",
        (t(&down) - killed_at) / 1000
    );
    assert!(t(&down) - killed_at < 2_500_000, "down seen late");
    assert_eq!(name(&down), "system.asterisk_down", "{down}");
    assert_eq!(field(&down, "pid"), Some("0"));
    assert!(
        field(&down, "reason").unwrap().contains("is not running"),
        "{down}"
    );

    let restarted = d.wait_line(WAIT, |l| name(l).starts_with("system.asterisk_"));
    assert_eq!(name(&restarted), "system.asterisk_restarted", "{restarted}");
    assert!(
        field(&restarted, "reason")
            .unwrap()
            .starts_with("restart command exit 0: echo run"),
        "{restarted}"
    );
    // Not before the second down check: a check interval after the first.
    assert!(
        t(&restarted) - t(&down) >= 900_000,
        "restarted {} µs after down",
        t(&restarted) - t(&down)
    );

    let up_again = d.wait_line(WAIT, |l| name(l).starts_with("system.asterisk_"));
    assert_eq!(name(&up_again), "system.asterisk_up", "{up_again}");
    let new_pid: u32 = std::fs::read_to_string(d.dir.path().join("asterisk.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(field(&up_again, "pid"), Some(new_pid.to_string().as_str()));
    kill(new_pid);
    let runs = std::fs::read_to_string(d.dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "the command ran once: {runs:?}");
}

#[test]
fn the_restart_command_runs_after_n_checks_and_not_more_often_than_allowed() {
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("asterisk.pid");
    let runs = dir.path().join("runs");
    // An Asterisk that is already gone, and a restart command that fails.
    let mut gone = fake_asterisk();
    std::fs::write(&pidfile, format!("{}\n", gone.id())).unwrap();
    gone.kill().unwrap();
    gone.wait().unwrap();
    let cfg = config(
        &peer,
        &format!(
            "pidfile = \"{}\"\nrestart_command = \"date +%s.%N >> {}; exit 3\"\nrestart_after = 3\nmin_restart_interval_secs = 2\n",
            pidfile.display(),
            runs.display()
        ),
    );
    let d = Daemon::start_in(dir, &cfg, &[], true);
    let started = std::time::Instant::now();
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| name(l) == "system.asterisk_restarted")
        .count()
        < 3
    {
        assert!(started.elapsed() < Duration::from_secs(20), "{lines:?}");
        lines.extend(d.lines_for(Duration::from_millis(200)));
    }
    let states: Vec<String> = lines
        .iter()
        .map(|l| name(l))
        .filter(|n| n.starts_with("system.asterisk_"))
        .collect();
    assert_eq!(
        states,
        [
            "system.asterisk_down",
            "system.asterisk_restarted",
            "system.asterisk_restarted",
            "system.asterisk_restarted"
        ],
        "one down event, however many checks"
    );
    let down = lines
        .iter()
        .find(|l| name(l) == "system.asterisk_down")
        .unwrap();
    let t = |l: &str| field(l, "time").unwrap().parse::<u64>().unwrap();
    let first = lines
        .iter()
        .find(|l| name(l) == "system.asterisk_restarted")
        .unwrap();
    // The third down check comes two intervals after the first.
    assert!(t(first) - t(down) >= 1_900_000, "{down}\n{first}");
    assert!(
        field(first, "reason")
            .unwrap()
            .starts_with("restart command failed (exit status: 3): date"),
        "{first}"
    );
    let times: Vec<f64> = std::fs::read_to_string(d.dir.path().join("runs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(times.len() >= 3, "{times:?}");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1.9,
            "restarts {:.3} s apart, allowed every 2 s: {times:?}",
            pair[1] - pair[0]
        );
    }
}

#[test]
fn too_many_open_files_is_degraded_with_the_reason() {
    let peer = Peer::start(&["01-register-unregister.ami"], 1, None);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("asterisk.pid");
    let mut asterisk = fake_asterisk();
    std::fs::write(&pidfile, format!("{}\n", asterisk.id())).unwrap();
    // `sleep` holds stdin, stdout and stderr open at least: above a limit of two.
    let cfg = config(
        &peer,
        &format!("pidfile = \"{}\"\nmax_fds = 2\n", pidfile.display()),
    );
    let d = Daemon::start_in(dir, &cfg, &[], true);
    let degraded = d.wait_line(WAIT, |l| name(l).starts_with("system.asterisk_"));
    asterisk.kill().unwrap();
    asterisk.wait().unwrap();
    assert_eq!(name(&degraded), "system.asterisk_degraded", "{degraded}");
    // At least stdin, stdout and stderr (more when the test runner passes its own on).
    let fds: u32 = field(&degraded, "fds").unwrap().parse().unwrap();
    assert!(fds >= 3, "{degraded}");
    assert_eq!(
        field(&degraded, "reason"),
        Some(format!("{fds} open files, above 2").as_str()),
        "{degraded}"
    );
}
