#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests against
# real services (slapd, PostgreSQL, dnsmasq, an SMTP sink) started on loopback.
# Installs what it needs with apt when run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/services/up.sh
trap 'bash tests/services/down.sh' EXIT

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# The vendored tiny_http's own tests: its request parser, chunked decoder and deadlines.
cargo test -p tiny_http
