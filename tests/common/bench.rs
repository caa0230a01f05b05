//! What the benchmarks (and tests/alloc_free.rs) read: the recorded Asterisk sessions,
//! a process's resident memory and CPU time, and a bench binary's command line.

/// Every recording in `tests/fixtures/ami`, back to back, in name order.
pub fn recordings() -> Vec<u8> {
    recording_files().concat()
}

/// Every recording in `tests/fixtures/ami`, one by one, in name order.
pub fn recording_files() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ami");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/fixtures/ami")
        .map(|e| e.expect("a fixture").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "recordings missing from {dir}");
    names
        .iter()
        .map(|p| std::fs::read(p).expect("a readable fixture"))
        .collect()
}

/// Resident and peak resident memory of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    proc_rss_kib("self")
}

/// Resident and peak resident memory (VmRSS, VmHWM) of process `pid` ("self" for this one),
/// in KiB.
pub fn proc_rss_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of process `pid` so far, as the watchdog reads it
/// (`watchdog::asterisk::sample`): threads that have ended included.
pub fn proc_cpu(pid: u32) -> std::time::Duration {
    use pbxtap::watchdog::asterisk::{sample, USER_HZ};
    let s = sample(std::path::Path::new("/proc"), pid)
        .unwrap_or_else(|e| panic!("the CPU time of process {pid}: {e}"));
    std::time::Duration::from_millis(s.cpu_ticks * 1000 / USER_HZ)
}

/// A bench binary's command line: `--bench` when cargo runs it as a benchmark (not under
/// `cargo test`), and the parts named on it.
pub struct Args {
    pub bench: bool,
    parts: Vec<String>,
}

impl Args {
    pub fn from_env() -> Args {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Args {
            bench: args.iter().any(|a| a == "--bench"),
            parts: args.into_iter().filter(|a| !a.starts_with('-')).collect(),
        }
    }

    /// Whether `part` is to run: it was named, or no part was.
    pub fn run(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| p == part)
    }
}
