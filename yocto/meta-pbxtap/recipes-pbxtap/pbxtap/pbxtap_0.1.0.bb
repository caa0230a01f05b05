# nooelint: oelint.var.bbclassextend - an appliance daemon: no native or SDK use
SUMMARY = "Asterisk AMI event tap for PBX appliances"
DESCRIPTION = "pbxtap taps Asterisk's manager interface, normalizes its events and \
               forwards them through fixed-capacity buffers to NATS, MQTT, webhooks \
               and a WebSocket feed."
# nooelint: oelint.vars.homepageping - checked by hand; builds and tests run offline
HOMEPAGE = "https://github.com/pbxtap/pbxtap"
BUGTRACKER = "https://github.com/pbxtap/pbxtap/issues"
SECTION = "net"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=86b31c7756a1a7962f28b62856ed4f05"

SRC_URI = "git://github.com/pbxtap/pbxtap.git;protocol=https;branch=main"
SRCREV = "bd6f2ba20fdae15e053dbe2d76ef4092e4b3ce64"

require ${BPN}-crates.inc

S = "${WORKDIR}/git"

inherit cargo cargo-update-recipe-crates systemd

SYSTEMD_SERVICE:${PN} = "pbxtap.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/pbxtap.service ${D}${systemd_system_unitdir}/pbxtap.service
    install -d -m 0755 ${D}${sysconfdir}/pbxtap
    install -m 0644 ${S}/systemd/pbxtap.toml ${D}${sysconfdir}/pbxtap/pbxtap.toml
    install -d -m 0755 ${D}${datadir}/polkit-1/rules.d
    install -m 0644 ${S}/systemd/pbxtap-restart-asterisk.rules \
        ${D}${datadir}/polkit-1/rules.d/50-pbxtap-restart-asterisk.rules
}

FILES:${PN} += "${datadir}/polkit-1/rules.d"
CONFFILES:${PN} = "${sysconfdir}/pbxtap/pbxtap.toml"
CVE_PRODUCT = "pbxtap"
