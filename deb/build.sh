#!/usr/bin/env bash
# Builds pbxtap's .deb for one Debian architecture from a static binary, with dpkg-deb:
# the binary, the hardened unit (systemd/pbxtap.service), the default config
# (systemd/pbxtap.toml, a conffile), the maintainer scripts beside this file, a man page,
# the copyright and changelog. The unit runs as a DynamicUser: no account is created.
#
# usage: deb/build.sh ARCH BINARY [OUTDIR]
#   ARCH    amd64 (x86_64-unknown-linux-musl), arm64 (aarch64-unknown-linux-musl) or
#           armhf (arm-unknown-linux-musleabihf: ARMv6, so it runs on every Raspberry Pi
#           that Raspberry Pi OS's armhf runs on)
#   BINARY  the static pbxtap for ARCH (cross/build-here.sh TARGET prints its path)
#   OUTDIR  where the .deb goes (default target/deb); its path is the last line printed
set -euo pipefail

arch="${1:?usage: deb/build.sh ARCH BINARY [OUTDIR]}"
bin="${2:?usage: deb/build.sh ARCH BINARY [OUTDIR]}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${3:-$root/target/deb}"
case "$arch" in
  amd64|arm64|armhf) ;;
  *) echo "deb/build.sh: unknown architecture \`$arch\` (amd64, arm64 or armhf)" >&2; exit 2 ;;
esac
[ -f "$bin" ] || { echo "deb/build.sh: no binary at $bin" >&2; exit 1; }
if file -b "$bin" | grep -q "dynamically linked"; then
  echo "deb/build.sh: $bin is dynamically linked; the package ships static binaries only" >&2
  exit 1
fi
command -v dpkg-deb >/dev/null || { echo "deb/build.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }

# Who answers for the package (an organisation packaging it sets its own).
maintainer="${DEB_MAINTAINER:-pbxtap maintainers <maintainers@pbxtap.example.org>}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)-1"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pbxtap"
install -D -m 0755 "$bin" "$pkg/usr/bin/pbxtap"
install -D -m 0644 "$root/systemd/pbxtap.service" "$pkg/usr/lib/systemd/system/pbxtap.service"
install -D -m 0644 "$root/systemd/pbxtap.toml" "$pkg/etc/pbxtap/pbxtap.toml"
install -D -m 0644 "$root/systemd/pbxtap-restart-asterisk.rules" \
  "$pkg/usr/share/doc/pbxtap/examples/50-pbxtap-restart-asterisk.rules"
install -D -m 0644 "$here/copyright" "$pkg/usr/share/doc/pbxtap/copyright"
gzip -9n < "$here/changelog" > "$stage/changelog.Debian.gz"
install -m 0644 "$stage/changelog.Debian.gz" "$pkg/usr/share/doc/pbxtap/changelog.Debian.gz"
gzip -9n < "$root/README.md" > "$stage/README.md.gz"
install -m 0644 "$stage/README.md.gz" "$pkg/usr/share/doc/pbxtap/README.md.gz"
install -D -m 0644 "$here/lintian-overrides" "$pkg/usr/share/lintian/overrides/pbxtap"
install -d -m 0755 "$pkg/usr/share/man/man1"
gzip -9n < "$here/pbxtap.1" > "$pkg/usr/share/man/man1/pbxtap.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/pbxtap.1.gz"
install -d -m 0755 "$pkg/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$pkg/DEBIAN/$s"; done
echo /etc/pbxtap/pbxtap.toml > "$pkg/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: pbxtap
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Section: net
Priority: optional
Description: Asterisk AMI event tap for PBX appliances
 pbxtap taps Asterisk's manager interface (AMI), turns what it hears into one
 event model and forwards every event through fixed-capacity buffers to NATS,
 MQTT, HTTP webhooks, a WebSocket feed and stdout, in the wire formats of Routr,
 Enswitch/ASTPP and PortSIP consumers. A static binary with a hardened systemd
 unit; memory is fixed at start-up.
CONTROL
mkdir -p "$out"
deb="$out/pbxtap_${version}_${arch}.deb"
# Root-owned files without needing root: --root-owner-group.
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$deb"
