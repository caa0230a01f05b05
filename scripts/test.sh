#!/usr/bin/env bash
# Runs every test: installs the real brokers and tools the tests use, then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --all-targets
