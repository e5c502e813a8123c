#!/usr/bin/env bash
# Fails, listing them, if processes the tests started are still running: tests/run.sh runs
# it after the tests, before the services stop. A test's process is one that carries
# MXISD_TEST_RUN=MARKER (run.sh exports it for the tests; every child inherits it), or,
# for those that write their process title over their environment (nginx, PostgreSQL,
# Chromium), whose command line or open files name a directory of this run (the tests name
# theirs with the marker: support::TempDir, a PostgreSQL cluster of a test's own). The
# shared services of tests/services/, started before the marker, are not the tests'.
# Waits about 5 s for processes that are on their way out.
# Usage: bash tests/leftovers.sh MARKER
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/services/config.sh
marker=${1:?usage: tests/leftovers.sh MARKER}
patterns=("${TMPDIR:-/tmp}/mxisd-it-$marker-" "$MXISD_TEST_DIR/pg-own-$marker-")

# Whether process $1 is the tests' (bash matching only: a grep would name the patterns).
ours() {
    local p=/proc/$1 text
    text="$(tr '\0' '\n' 2>/dev/null < "$p/environ")" || text=
    [[ $'\n'$text$'\n' == *$'\n'"MXISD_TEST_RUN=$marker"$'\n'* ]] && return 0
    text="$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") $(readlink "$p"/fd/* 2>/dev/null | tr '\n' ' ')"
    for pattern in "${patterns[@]}"; do
        [[ $text == *"$pattern"* ]] && return 0
    done
    return 1
}

leftovers() {
    local dir pid
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [ "$pid" = $$ ] && continue
        ours "$pid" && echo "$pid"
    done
    return 0
}

for _ in $(seq 5); do
    left=($(leftovers))
    [ ${#left[@]} -eq 0 ] && exit 0
    sleep 1
done
echo "leftovers: ${#left[@]} process(es) the tests started are still running:" >&2
ps -o pid,ppid,etime,args -p "$(IFS=,; echo "${left[*]}")" >&2 || true
exit 1
