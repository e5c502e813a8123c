#!/usr/bin/env bash
# Benchmark of 3PID sessions (run by hand, not in CI): e-mail requestTokens per second, each a
# new session whose mail is delivered to an SMTP sink before the answer, and counted there.
#
# - mxisd (release build, BENCH_WORKERS (16, the default) workers, state on SQLite) sends through its SMTP
#   connector to aiosmtpd on loopback, with a handler that counts the mails carrying a
#   validation link (tests/bench/count_sink.py);
# - wrk POSTs /_matrix/identity/api/v1/validate/email/requestToken, a new address each time,
#   at BENCH_CONNECTIONS (32) connections for BENCH_DURATION (10 s), BENCH_ROUNDS (3) times;
# - prints requests/s, p50 and p99 of the best round, and the mails counted by the sink
#   against the 200s mxisd answered (they must be equal).
# The per-client rate limit is raised for the benchmark (one client sends everything).
# BENCH_BASELINE=/path/to/another/mxisd runs that build too, alternating rounds, and prints
# the ratio of the two builds.
# Needs root for apt (wrk) and the test services (aiosmtpd).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
ROUNDS="${BENCH_ROUNDS:-3}"
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
bash tests/services/up.sh >/dev/null 2>&1
cargo build --release -q
BIN="$ROOT/target/release/mxisd"

W="$(mktemp -d /tmp/mxisd-bench-sessions.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SMTP_PORT="$(free_port)"
PYTHONPATH="$ROOT/tests/bench" setsid /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
    -c count_sink.Counter "$W/count" > "$W/smtp.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $SMTP_PORT), 1)" 2>/dev/null && break; sleep 0.1; done

# start_mxisd NAME BINARY EXTRA_HTTP_YAML -> sets URL
start_mxisd() {
    local d="$W/$1"; mkdir -p "$d"
    cat > "$d/mxisd.yaml" <<YAML
matrix:
  domain: example.org
server:
  port: 0
key:
  path: '$d/keys'
storage:
  provider:
    sqlite:
      database: '$d/mxisd.db'
threepid:
  medium:
    email:
      identity:
        from: 'identity@example.org'
      connectors:
        smtp:
          host: 127.0.0.1
          port: $SMTP_PORT
          tls: 0
session:
  rateLimit:
    perClient:
      burst: 100000000
      perMinute: 100000000
http:
  workers: ${BENCH_WORKERS:-16}
$3
YAML
    setsid "$2" -c "$d/mxisd.yaml" 2> "$d/log" & pids+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$d/log" && break; sleep 0.1; done
    URL="http://$(grep -o 'listening on http://[0-9.:]*' "$d/log" | sed 's|.*http://||')"
}
# BENCH_CONNECTOR_WORKERS sets http.connectorWorkers on this build only (a baseline that
# predates the key would refuse it): the same number of senders for both builds.
this_extra=""
[ -n "${BENCH_CONNECTOR_WORKERS:-}" ] && this_extra="  connectorWorkers: $BENCH_CONNECTOR_WORKERS"
start_mxisd this "$BIN" "$this_extra"; URL_THIS="$URL"
BUILDS=(this)
if [ -n "${BENCH_BASELINE:-}" ]; then
    start_mxisd baseline "$BENCH_BASELINE" ""; URL_BASELINE="$URL"; BUILDS+=(baseline)
fi

cat > "$W/request.lua" <<'LUA'
-- `id` is each thread's own (set by setup in the thread's Lua state): addresses never
-- repeat across threads, or the repeat would be an idempotent retry with nothing sent.
local n, threads = 0, 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
request = function()
  n = n + 1
  local body = string.format('{"client_secret":"bench","email":"r%d-%d-%d@example.org","send_attempt":1}', os.time(), id, n)
  return wrk.format("POST", "/_matrix/identity/api/v1/validate/email/requestToken",
    {["Content-Type"] = "application/json"}, body)
end
LUA

# One round: wrk against BUILD; appends "ok/s p50 p99 non-2xx" to its rounds file, where
# ok/s counts the 200s only (past the connector share, requestToken answers 503 at once).
round() {
    local url; [ "$1" = this ] && url="$URL_THIS" || url="$URL_BASELINE"
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$W/request.lua" "$url" 2>/dev/null | awk '
        / requests in / {n=$1; t=$4; sub(/s,?$/, "", t)} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
        END {printf "%.0f %s %s %d\n", (n-bad)/t, p50, p99, bad+0}' >> "$W/rounds-$1.txt"
}
printf '\n%-44s %12s %10s %10s %10s\n' "e-mail requestToken, new session" "200s/s" "p50" "p99" "non-2xx"
for b in "${BUILDS[@]}"; do : > "$W/rounds-$b.txt"; done
for _ in $(seq "$ROUNDS"); do for b in "${BUILDS[@]}"; do round "$b"; done; done
declare -A best
for b in "${BUILDS[@]}"; do
    read -r rps p50 p99 bad <<<"$(sort -k1,1 -g "$W/rounds-$b.txt" | tail -n 1)"
    best[$b]="$rps"
    printf '%-44s %12s %10s %10s %10s\n' "$b: $CONNECTIONS connections (best of $ROUNDS)" "$rps" "$p50" "$p99" "$bad"
done
[ -n "${BENCH_BASELINE:-}" ] && awk -v a="${best[this]}" -v b="${best[baseline]}" 'BEGIN {printf "ratio this/baseline: %.2f\n", a/b}'
sleep 1
ok=0; for b in "${BUILDS[@]}"; do ok=$((ok + $(grep -c 'requestToken 200' "$W/$b/log" || true))); done
counted="$(cat "$W/count" 2>/dev/null || echo 0)"
printf 'answered 200: %s, mails counted by the sink: %s, other answers: %s\n' "$ok" "$counted" "$(cat "$W"/rounds-*.txt | awk '{s+=$4} END {print s+0}')"
printf 'machine: %s, %s cores\n' "$(uname -sr)" "$(nproc)"
[ "$ok" = "$counted" ] || { echo "MISMATCH: not every answered session had its mail delivered" >&2; exit 1; }
