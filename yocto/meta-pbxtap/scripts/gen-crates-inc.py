#!/usr/bin/env python3
"""Writes the crate list of the pbxtap recipe (pbxtap-crates.inc) from Cargo.lock.

One `crate://crates.io/NAME/VERSION` SRC_URI entry and one sha256sum per locked crate,
in the form poky's cargo class and `bitbake -c update_crates` use. The checksums are
Cargo.lock's own, so the crate list can never disagree with the lock file.

usage: gen-crates-inc.py [Cargo.lock] > recipes-pbxtap/pbxtap/pbxtap-crates.inc
"""

import sys
import tomllib

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"


def crates_inc(lock_text: str) -> str:
    lock = tomllib.loads(lock_text)
    entries = []
    for package in lock.get("package", []):
        source = package.get("source")
        if source is None:
            continue  # a workspace member: built from the recipe's own source
        name, version = package["name"], package["version"]
        if source != CRATES_IO or "checksum" not in package:
            raise SystemExit(
                f"{name} {version}: source {source} is not crates.io; the recipe only "
                "fetches crates.io crates (add it to SRC_URI by hand, e.g. a git:// entry)"
            )
        entries.append((name, version, package["checksum"]))
    entries.sort()
    out = [
        "# Generated from Cargo.lock by scripts/gen-crates-inc.py: do not edit by hand.",
        "# Regenerate: python3 yocto/meta-pbxtap/scripts/gen-crates-inc.py Cargo.lock \\",
        "#   > yocto/meta-pbxtap/recipes-pbxtap/pbxtap/pbxtap-crates.inc",
        "",
    ]
    uris = [f"crate://crates.io/{n}/{v}" for n, v, _ in entries]
    out.append(f'SRC_URI += "{uris[0]} \\')
    out += [f"            {u} \\" for u in uris[1:-1]]
    out += [f'            {uris[-1]}"', ""]
    out += [f'SRC_URI[{n}-{v}.sha256sum] = "{c}"' for n, v, c in entries]
    return "\n".join(out) + "\n"


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "Cargo.lock"
    with open(path, encoding="utf-8") as f:
        sys.stdout.write(crates_inc(f.read()))


if __name__ == "__main__":
    main()
