//! The .deb as a Debian or Raspberry Pi OS user meets it, as far as this machine allows
//! (no systemd runs here): `deb/build.sh` packages the static amd64, arm64 and armhf
//! (ARMv6) builds;
//! lintian passes them (`--pedantic`, each override explained in deb/lintian-overrides);
//! in a fresh Debian 12 chroot (debootstrap minbase), `dpkg -i` installs and enables the
//! unit without starting it (no AMI secret yet) and says what to do; the default config
//! passes check-config through the unit's credential; the installed binary runs (the
//! arm64 one under qemu-aarch64, the armhf one under qemu-arm as a Pi Zero's ARM1176); `apt-get remove` keeps the config; `apt-get purge`
//! leaves the system as it was before, file for file (what piuparts checks).
//!
//! Needs root (chroot), debootstrap with a Debian mirror (deb.debian.org, or
//! PBXTAP_DEBIAN_MIRROR), lintian, dpkg-deb, qemu-user (scripts/install-test-deps.sh).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::output_text as text;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

fn build_deb(arch: &str, target: &str, out: &Path) -> PathBuf {
    let bin = common::build_static(target);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = run(Command::new(root.join("deb/build.sh"))
        .arg(arch)
        .arg(&bin)
        .arg(out));
    let stdout = String::from_utf8(built.stdout).unwrap();
    PathBuf::from(stdout.lines().last().unwrap().trim())
}

/// A fresh Debian 12 (minbase) to install into.
fn chroot_root(dir: &Path) -> PathBuf {
    let debootstrap = common::require("debootstrap", "debootstrap");
    let root = dir.join("root");
    let mirror = std::env::var("PBXTAP_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    run(Command::new(debootstrap)
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg(mirror));
    root
}

fn chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run chroot")
}

/// Every path under `root`, but dpkg's and apt's own bookkeeping and logs (what piuparts
/// leaves out of its comparison too).
fn files(root: &Path) -> BTreeSet<String> {
    let skip = [
        "/var/lib/dpkg",
        "/var/lib/apt",
        "/var/cache",
        "/var/log",
        "/tmp",
        "/pkg",
    ];
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            if skip.iter().any(|s| rel.starts_with(s)) {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            }
            out.insert(rel);
        }
    }
    out
}

fn require_root() {
    let id = run(Command::new("id").arg("-u"));
    assert_eq!(
        text(&id).trim(),
        "0",
        "this test installs into a chroot: run it as root (CI does)"
    );
}

#[test]
fn the_deb_installs_is_enabled_runs_and_purges_clean() {
    require_root();
    let lintian = common::require("lintian", "lintian");
    let qemu = common::require("qemu-aarch64", "qemu-user");
    let qemu_arm = common::require("qemu-arm", "qemu-user");
    let dir = tempfile::tempdir().unwrap();
    let debs = dir.path().join("debs");
    let amd64 = build_deb("amd64", "x86_64-unknown-linux-musl", &debs);
    let arm64 = build_deb("arm64", "aarch64-unknown-linux-musl", &debs);
    let armhf = build_deb("armhf", "arm-unknown-linux-musleabihf", &debs);
    for deb in [&amd64, &arm64, &armhf] {
        let out = Command::new(&lintian)
            .args(["--pedantic", "--fail-on", "error,warning,info,pedantic"])
            .arg(deb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lintian {}:\n{}",
            deb.display(),
            text(&out)
        );
        let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(deb)));
        for path in [
            "./usr/bin/pbxtap",
            "./usr/lib/systemd/system/pbxtap.service",
            "./etc/pbxtap/pbxtap.toml",
            "./usr/share/man/man1/pbxtap.1.gz",
        ] {
            assert!(contents.contains(path), "{} lacks {path}", deb.display());
        }
    }

    let root = chroot_root(dir.path());
    let before = files(&root);
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::copy(&amd64, root.join("pkg/pbxtap.deb")).unwrap();
    let out = chroot(&root, &["dpkg", "-i", "/pkg/pbxtap.deb"]);
    assert!(out.status.success(), "dpkg -i:\n{}", text(&out));
    assert!(
        text(&out).contains("not started: put the AMI user's secret in /etc/pbxtap/ami.secret"),
        "{}",
        text(&out)
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants/pbxtap.service");
    assert!(wants.is_symlink(), "the unit is not enabled");
    let version = run(Command::new("chroot")
        .arg(&root)
        .args(["pbxtap", "--version"]));
    assert!(text(&version).starts_with("pbxtap "), "{}", text(&version));

    // Configured as the README says: the unit's credential makes the default config valid.
    std::fs::write(root.join("etc/pbxtap/ami.secret"), "s3cret\n").unwrap();
    let check = chroot(
        &root,
        &[
            "env",
            "CREDENTIALS_DIRECTORY=/etc/pbxtap",
            "pbxtap",
            "check-config",
        ],
    );
    assert!(check.status.success(), "check-config:\n{}", text(&check));
    // Its main job, on the embedded default (no systemd here to start the unit).
    let demo = chroot(&root, &["pbxtap", "demo", "--fast"]);
    assert!(demo.status.success(), "{}", text(&demo));
    assert!(String::from_utf8_lossy(&demo.stdout).contains("\"event\":\"ended\""));

    // The ARM packages' binaries, each installed over it, run under qemu (the armhf one
    // as a Pi Zero's ARM1176).
    for (deb, emulator, cpu) in [(&arm64, &qemu, None), (&armhf, &qemu_arm, Some("arm1176"))] {
        let name = deb.file_name().unwrap().to_str().unwrap();
        std::fs::copy(deb, root.join("pkg").join(name)).unwrap();
        let pkg = format!("/pkg/{name}");
        let out = chroot(&root, &["dpkg", "-i", "--force-architecture", &pkg]);
        assert!(out.status.success(), "dpkg -i {name}:\n{}", text(&out));
        let mut cmd = Command::new(emulator);
        if let Some(cpu) = cpu {
            cmd.args(["-cpu", cpu]);
        }
        let v = run(cmd.arg(root.join("usr/bin/pbxtap")).arg("--version"));
        assert!(text(&v).starts_with("pbxtap "), "{name}: {}", text(&v));
    }
    let out = chroot(&root, &["dpkg", "-i", "/pkg/pbxtap.deb"]);
    assert!(out.status.success(), "back to amd64:\n{}", text(&out));

    // Removed: the program and unit go, the config stays (a conffile), the unit is masked
    // so a leftover enable link cannot start a program that is gone.
    let out = chroot(&root, &["apt-get", "remove", "-y", "pbxtap"]);
    assert!(out.status.success(), "apt-get remove:\n{}", text(&out));
    assert!(!root.join("usr/bin/pbxtap").exists());
    assert!(!root.join("usr/lib/systemd/system/pbxtap.service").exists());
    assert!(
        root.join("etc/pbxtap/pbxtap.toml").exists(),
        "remove keeps the config"
    );
    let status = chroot(&root, &["dpkg-query", "-W", "-f=${Status}", "pbxtap"]);
    assert_eq!(text(&status).trim(), "deinstall ok config-files");

    // Purged: nothing of it is left.
    let out = chroot(&root, &["apt-get", "purge", "-y", "pbxtap"]);
    assert!(out.status.success(), "apt-get purge:\n{}", text(&out));
    std::fs::remove_dir_all(root.join("pkg")).unwrap();
    let after = files(&root);
    let left: Vec<_> = after.difference(&before).collect();
    let gone: Vec<_> = before.difference(&after).collect();
    assert!(
        left.is_empty() && gone.is_empty(),
        "left behind {left:?}, removed {gone:?}"
    );
}
