//! The appliance packaging as its tools see it: the systemd unit passes
//! `systemd-analyze verify` and `security`, the default config passes `check-config`
//! through the unit's credential, and the Yocto layer's crate list matches Cargo.lock
//! and lints clean with oelint-adv.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

use common::output_text as text;

/// A program installed with pip (scripts/install-test-deps.sh): on PATH or in the user's
/// `~/.local/bin`. Panics, naming the pip package, when it is missing.
fn require_pip(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/bin"));
    for dir in std::env::split_paths(&path).chain(home) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs `{program}`, which is not installed: `pip install {package}` \
         (scripts/install-test-deps.sh installs everything the tests need)"
    );
}

/// A root directory holding the host's systemd units, the unit under test at its
/// install path and the pbxtap binary at /usr/bin/pbxtap, for `systemd-analyze --root`.
fn unit_root(unit: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for entry in std::fs::read_dir("/usr/lib/systemd/system").expect("host systemd units") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), units.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(units.join("pbxtap.service"), unit).unwrap();
    let bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(common::pbxtap_bin(), bin.join("pbxtap")).unwrap();
    root
}

fn analyze(root: &Path, args: &[&str]) -> Output {
    Command::new(common::require("systemd-analyze", "systemd"))
        .args(args)
        .arg(format!("--root={}", root.display()))
        .arg("pbxtap.service")
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze")
}

fn unit() -> String {
    std::fs::read_to_string(repo("systemd/pbxtap.service")).unwrap()
}

#[test]
fn the_unit_verifies_without_a_warning() {
    let root = unit_root(&unit());
    let out = analyze(root.path(), &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "", "systemd-analyze verify warned");
}

#[test]
fn verify_catches_a_broken_unit() {
    // The check above can fail: a typo'd key and a bad time span are reported.
    let broken = unit()
        .replace("Type=notify", "Tpye=notify")
        .replace("WatchdogSec=30s", "WatchdogSec=half a minute");
    let root = unit_root(&broken);
    let out = analyze(root.path(), &["verify"]);
    let msg = text(&out);
    assert!(msg.contains("Unknown key 'Tpye'"), "{msg}");
    assert!(msg.contains("Failed to parse sec value"), "{msg}");
}

#[test]
fn the_unit_is_hardened_and_systemd_rates_it_ok() {
    let unit = unit();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "LoadCredential=ami.secret:/etc/pbxtap/ami.secret",
        "ExecStart=/usr/bin/pbxtap run --config /etc/pbxtap/pbxtap.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks `{line}`");
    }
    for key in ["WatchdogSec=", "MemoryMax="] {
        assert!(
            unit.lines().any(|l| l.starts_with(key)),
            "the unit lacks {key}"
        );
    }
    // systemd's own exposure score (0 = locked down, 10 = unprotected): "OK" is below 2.
    let root = unit_root(&unit);
    let out = analyze(
        root.path(),
        &["security", "--offline=yes", "--threshold=20"],
    );
    assert!(out.status.success(), "exposure above 2.0:\n{}", text(&out));
    assert!(text(&out).contains("Overall exposure level for pbxtap.service: 1."));
}

#[test]
fn the_polkit_rule_allows_restarting_asterisk_only() {
    let rule = std::fs::read_to_string(repo("systemd/pbxtap-restart-asterisk.rules")).unwrap();
    assert!(rule.contains(r#"action.id == "org.freedesktop.systemd1.manage-units""#));
    assert!(rule.contains(r#"action.lookup("unit") == "asterisk.service""#));
    assert!(rule.contains(r#"subject.user == "pbxtap""#));
    assert!(unit().contains("User=pbxtap"));
}

fn check_config(credentials: Option<&Path>) -> Output {
    let mut cmd = Command::new(common::pbxtap_bin());
    cmd.arg("check-config")
        .arg(repo("systemd/pbxtap.toml"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("PBXTAP_AMI_SECRET");
    if let Some(dir) = credentials {
        cmd.env("CREDENTIALS_DIRECTORY", dir);
    }
    cmd.output().expect("run pbxtap")
}

#[test]
fn the_default_config_is_valid_with_the_units_credential() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("ami.secret"), "s3cret\n").unwrap();
    let out = check_config(Some(creds.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("valid (1 sink: stdout)"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_default_config_without_the_credential_names_the_key() {
    let empty = tempfile::tempdir().unwrap();
    let out = check_config(Some(empty.path()));
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(
        msg.contains("ami.secret_file") && msg.contains("ami.secret"),
        "{msg}"
    );
}

const LAYER: &str = "yocto/meta-pbxtap";
const CRATES_INC: &str = "yocto/meta-pbxtap/recipes-pbxtap/pbxtap/pbxtap-crates.inc";

fn generate_crates_inc(lock: &Path) -> Output {
    Command::new(common::require("python3", "python3"))
        .arg(repo(&format!("{LAYER}/scripts/gen-crates-inc.py")))
        .arg(lock)
        .output()
        .expect("run gen-crates-inc.py")
}

#[test]
fn the_crate_list_is_generated_from_cargo_lock() {
    let out = generate_crates_inc(&repo("Cargo.lock"));
    assert!(out.status.success(), "{}", text(&out));
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(repo(CRATES_INC)).unwrap();
    assert!(
        generated == committed,
        "{CRATES_INC} is stale: regenerate it with\n  python3 {LAYER}/scripts/gen-crates-inc.py \
         Cargo.lock > {CRATES_INC}"
    );
    // Every locked crates.io package is in it, with Cargo.lock's checksum.
    let lock = std::fs::read_to_string(repo("Cargo.lock")).unwrap();
    let mut packages = 0;
    for block in lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (Some(name), Some(version), Some(sum)) =
            (field("name"), field("version"), field("checksum"))
        else {
            continue;
        };
        packages += 1;
        assert!(
            committed.contains(&format!("crate://crates.io/{name}/{version} "))
                || committed.contains(&format!("crate://crates.io/{name}/{version}\"")),
            "{name} {version} missing"
        );
        assert!(committed.contains(&format!("SRC_URI[{name}-{version}.sha256sum] = \"{sum}\"")));
    }
    assert!(
        packages > 100,
        "only {packages} packages found in Cargo.lock"
    );
}

#[test]
fn a_git_dependency_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("Cargo.lock");
    std::fs::write(
        &lock,
        "version = 4\n\n[[package]]\nname = \"forked\"\nversion = \"0.1.0\"\n\
         source = \"git+https://example.org/forked.git#0123abcd\"\n",
    )
    .unwrap();
    let out = generate_crates_inc(&lock);
    assert!(!out.status.success());
    assert!(text(&out).contains("forked 0.1.0"), "{}", text(&out));
}

fn oelint(files: &[PathBuf]) -> Output {
    Command::new(require_pip("oelint-adv", "oelint-adv"))
        .args(["--quiet", "--release", "scarthgap", "--mode", "all"])
        .args(files)
        .output()
        .expect("run oelint-adv")
}

#[test]
fn the_yocto_layer_lints_clean() {
    let files = [
        repo(&format!("{LAYER}/conf/layer.conf")),
        repo(&format!("{LAYER}/recipes-pbxtap/pbxtap/pbxtap_0.1.0.bb")),
    ];
    let out = oelint(&files);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "", "oelint-adv found issues");

    // And the linter does find issues: the same recipe without its SUMMARY.
    let dir = tempfile::tempdir().unwrap();
    let recipe = std::fs::read_to_string(&files[1])
        .unwrap()
        .replace("SUMMARY = ", "# SUMMARY = ");
    let bad = dir.path().join("pbxtap_0.1.0.bb");
    std::fs::write(&bad, recipe).unwrap();
    std::fs::copy(repo(CRATES_INC), dir.path().join("pbxtap-crates.inc")).unwrap();
    let out = oelint(&[bad]);
    assert!(!out.status.success());
    assert!(text(&out).contains("SUMMARY"), "{}", text(&out));
}
