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

cat > "$W/mxisd.yaml" <<YAML
matrix:
  domain: example.org
server:
  port: 0
key:
  path: '$W/keys'
storage:
  provider:
    sqlite:
      database: '$W/mxisd.db'
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
YAML
cat >> "$W/mxisd.yaml" <<YAML
http:
  workers: ${BENCH_WORKERS:-16}
YAML
setsid "$BIN" -c "$W/mxisd.yaml" 2> "$W/log" & pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$W/log" && break; sleep 0.1; done
URL="http://$(grep -o 'listening on http://[0-9.:]*' "$W/log" | sed 's|.*http://||')"

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

printf '\n%-34s %12s %10s %10s\n' "e-mail requestToken, new session" "req/s" "p50" "p99"
: > "$W/rounds.txt"
for _ in $(seq "$ROUNDS"); do
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$W/request.lua" "$URL" 2>/dev/null | awk '
        /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
        END {print rps, p50, p99, bad+0}' >> "$W/rounds.txt"
done
read -r rps p50 p99 bad <<<"$(sort -k1,1 -g "$W/rounds.txt" | tail -n 1)"
printf '%-34s %12s %10s %10s\n' "$CONNECTIONS connections (best of $ROUNDS)" "$rps" "$p50" "$p99"
sleep 1
ok="$(grep -c 'requestToken 200' "$W/log" || true)"
counted="$(cat "$W/count" 2>/dev/null || echo 0)"
printf 'answered 200: %s, mails counted by the sink: %s, other answers: %s\n' "$ok" "$counted" "$(awk '{s+=$4} END {print s+0}' "$W/rounds.txt")"
printf 'machine: %s, %s cores\n' "$(uname -sr)" "$(nproc)"
[ "$ok" = "$counted" ] || { echo "MISMATCH: not every answered session had its mail delivered" >&2; exit 1; }
