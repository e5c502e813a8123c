#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests against
# real services (slapd, PostgreSQL, dnsmasq, an SMTP sink, Synapse) started on loopback,
# with the tests that need them and root (#[ignore]d for a plain `cargo test`); then a check
# that no process the tests started is left running.
# Installs what it needs with apt when run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/services/up.sh
# Every process the tests start inherits this (tests/leftovers.sh finds them by it); the
# services above, started before it, do not.
export MXISD_TEST_RUN="run-$$-$(date +%s%N)"
finish() {
    local status=$?
    env -u MXISD_TEST_RUN bash tests/leftovers.sh "$MXISD_TEST_RUN" || status=1
    bash tests/services/down.sh
    exit $status
}
trap finish EXIT

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets -- --include-ignored
# The vendored tiny_http's own tests: its request parser, chunked decoder and deadlines.
cargo test -p tiny_http
