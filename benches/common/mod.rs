//! What the benchmarks share: the recorded Asterisk sessions as one stream.

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
