//! What the benchmarks share: the recorded Asterisk sessions as one stream, and the
//! process's resident memory.
#![allow(dead_code)] // each bench uses its own subset

/// Every recording in `tests/fixtures/ami`, back to back, in name order.
pub fn recordings() -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ami");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/fixtures/ami")
        .map(|e| e.expect("a fixture").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| std::fs::read(p).expect("a readable fixture"))
        .collect()
}

/// Resident and peak resident memory of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
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
