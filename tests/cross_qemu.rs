//! The static aarch64 build as an appliance runs it: cross/build-here.sh builds pbxtap for
//! aarch64-unknown-linux-musl without Docker, and the binary, run under qemu-aarch64,
//! prints its version and replays the demo with the same events as the host build.
//!
//! Builds with [profile.qemu-test] into target/cross: a few minutes from scratch on two
//! cores, seconds when nothing changed.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use common::output_text as text;

/// The kinds of event (`class.event`) the demo printed. Their order and timing depend on
/// scheduling, so the builds are compared by what they report, not line by line.
fn demo_kinds(out: &Output) -> BTreeSet<String> {
    assert!(out.status.success(), "demo failed:\n{}", text(out));
    let field = |line: &str, key: &str| {
        line.split(&format!("\"{key}\":\""))
            .nth(1)?
            .split('"')
            .next()
            .map(String::from)
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            assert!(
                line.starts_with("{\"v\":1,"),
                "not a native JSON line: {line}"
            );
            format!(
                "{}.{}",
                field(line, "class").unwrap(),
                field(line, "event").unwrap()
            )
        })
        .collect()
}

#[test]
fn the_static_aarch64_build_runs_under_qemu() {
    let qemu = common::require("qemu-aarch64", "qemu-user");
    let file = common::require("file", "file");
    let bin = common::build_static("aarch64-unknown-linux-musl");

    let described = Command::new(file).arg(&bin).output().unwrap();
    let described = String::from_utf8_lossy(&described.stdout).to_string();
    assert!(described.contains("ARM aarch64"), "{described}");
    assert!(
        described.contains("statically linked") || described.contains("static-pie linked"),
        "not static: {described}"
    );

    let out = Command::new(&qemu)
        .arg(&bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pbxtap {}", env!("CARGO_PKG_VERSION"))
    );

    let arm = Command::new(&qemu)
        .arg(&bin)
        .args(["demo", "--fast"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let host = Command::new(common::pbxtap_bin())
        .args(["demo", "--fast"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let busy = String::from_utf8_lossy(&arm.stdout).lines().any(|l| {
        l.contains("\"event\":\"failed\"")
            && l.contains("\"sip_code\":486")
            && l.contains("\"cause\":17")
    });
    assert!(busy, "the aarch64 demo lost the busy call's cause");
    let (arm, host) = (demo_kinds(&arm), demo_kinds(&host));
    assert!(
        arm.contains("call.ended") && arm.contains("queue.caller_joined"),
        "{arm:?}"
    );
    assert_eq!(
        arm, host,
        "the aarch64 and host demos report different events"
    );
}
