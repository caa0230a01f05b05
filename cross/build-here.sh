#!/usr/bin/env bash
# Builds a static pbxtap for an ARM appliance without Docker, from Debian packages and
# PyPI: Debian's rustc-web builds the Rust standard library for the target from its own
# source (rust-web-src, `-Zbuild-std`), and zig (PyPI `ziglang`) compiles ring's C code and
# links against zig's bundled musl and libunwind. Nothing is linked dynamically.
#
# usage: cross/build-here.sh [TARGET] [PROFILE]
#   TARGET   aarch64-unknown-linux-musl (default; Pi 3/4/5, 64-bit)
#            armv7-unknown-linux-musleabihf (Pi 2/3, 32-bit)
#            arm-unknown-linux-musleabihf (Pi Zero/1)
#            x86_64-unknown-linux-musl (amd64 hosts and the .deb's amd64 build)
#   PROFILE  release (default; what you ship) or qemu-test (quick, for tests)
# The binary lands in target/cross/TARGET/PROFILE/pbxtap (CARGO_TARGET_DIR overrides
# target/cross); its path is the last line printed.
# Needs: apt-get install rustc-web cargo-web rust-web-src python3-pip;
#        pip install ziglang (scripts/install-test-deps.sh installs all of it).
set -euo pipefail

target="${1:-aarch64-unknown-linux-musl}"
profile="${2:-release}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

case "$target" in
  aarch64-unknown-linux-musl)     zig_target=aarch64-linux-musl;     zig_cpu="" ;;
  armv7-unknown-linux-musleabihf) zig_target=arm-linux-musleabihf;   zig_cpu="-mcpu=generic+v7a+vfp3d16+thumb2-neon" ;;
  arm-unknown-linux-musleabihf)   zig_target=arm-linux-musleabihf;   zig_cpu="-mcpu=arm1176jzf_s" ;;
  x86_64-unknown-linux-musl)      zig_target=x86_64-linux-musl;      zig_cpu="" ;;
  *) echo "build-here.sh: unsupported target \`$target\` (aarch64-unknown-linux-musl, armv7-unknown-linux-musleabihf, arm-unknown-linux-musleabihf or x86_64-unknown-linux-musl)" >&2; exit 2 ;;
esac
case "$profile" in
  release|qemu-test) ;;
  *) echo "build-here.sh: unknown profile \`$profile\` (release or qemu-test)" >&2; exit 2 ;;
esac

missing() { echo "build-here.sh: $1 is missing: $2" >&2; exit 1; }
[ -x /usr/bin/rustc ] || missing "Debian's rustc (/usr/bin/rustc)" "apt-get install -y rustc-web"
[ -x /usr/bin/cargo ] || missing "Debian's cargo (/usr/bin/cargo)" "apt-get install -y cargo-web"
sysroot="$(/usr/bin/rustc --print sysroot)"
[ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] \
  || missing "the Rust standard library source" "apt-get install -y rust-web-src"
python3 -m ziglang version >/dev/null 2>&1 || missing "zig" "pip install ziglang"

env_target="$(echo "$target" | tr 'a-z-' 'A-Z_')"
cc_target="$(echo "$target" | tr '-' '_')"
target_dir="${CARGO_TARGET_DIR:-$root/target/cross}"

cd "$root"
# A clean environment: what cargo test or a rustup proxy exports (CARGO_*, RUSTUP_*,
# RUSTFLAGS...) would otherwise change build fingerprints and rebuild everything.
# -Zbuild-std is unstable; RUSTC_BOOTSTRAP=1 lets Debian's stable rustc-web use it.
# zig supplies crt1.o, musl and libunwind, so rustc's self-contained copies are not used.
env -i PATH="$PATH" HOME="$HOME" \
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  PBXTAP_ZIG_TARGET="$zig_target" PBXTAP_ZIG_CPU="$zig_cpu" \
  "CARGO_TARGET_${env_target}_LINKER=$here/zig-cc" \
  "CARGO_TARGET_${env_target}_RUSTFLAGS=-C link-self-contained=no" \
  "CC_${cc_target}=$here/zig-cc" "AR_${cc_target}=$here/zig-ar" \
  /usr/bin/cargo build --locked --bin pbxtap \
  -Zbuild-std=std,panic_abort \
  --target "$target" --profile "$profile" --target-dir "$target_dir" >&2
echo "$target_dir/$target/$profile/pbxtap"
