#!/usr/bin/env bash
# Benchmark of federated lookups (run by hand, not in CI): one run, one table.
#
# Two mxisd on loopback (release build): B knows carol@example.org; A knows alice@example.org
# and forwards to B (forward.servers, plain http on loopback, lookup.recursive.cacheTime one
# hour). v1 single lookups with wrk -t2 at 8 connections against A:
# - a local hit (alice: A's own store);
# - a cached remote hit (carol: asked of B once, then answered from A's cache, re-signed);
# - a forwarded miss (a new address every request: A asks B each time, B answers {}).
# Addresses are at A's own domain, so no DNS discovery is involved: the remote step is the
# forwarder's HTTP call. Each is printed with its ratio to the local hit; best of
# BENCH_ROUNDS (3) alternating runs of BENCH_DURATION (5s).
# Needs wrk (installed as root if missing) and the test services (for their dnsmasq).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
DURATION="${BENCH_DURATION:-5s}"
ROUNDS="${BENCH_ROUNDS:-3}"
C="${BENCH_CONNECTIONS:-8}"
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
bash tests/services/up.sh >/dev/null 2>&1
source tests/services/config.sh
cargo build --release -q
BIN="$ROOT/target/release/mxisd"

W="$(mktemp -d /tmp/mxisd-bench-remote.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

start() { # start NAME USER EXTRA -> sets PORT
    local d="$W/$1"; mkdir -p "$d"
    cat > "$d/mxisd.yaml" <<YAML
matrix:
  domain: example.org
  identity:
    servers:
      b: ['http://127.0.0.1:${B_PORT:-1}']
server:
  port: 0
key:
  path: '$d/keys'
storage:
  provider:
    sqlite:
      database: '$d/mxisd.db'
logging:
  app: info
memory:
  enabled: true
  identities:
    - username: $2
      threepids:
        - medium: email
          address: $2@example.org
federation:
  resolver: '127.0.0.1:$DNS_PORT'
  ipRangeWhitelist: ['127.0.0.0/8']
$3
YAML
    setsid "$BIN" -c "$d/mxisd.yaml" 2> "$d/log" & pids+=($!)
    for _ in $(seq 300); do grep -q "listening on" "$d/log" && break; sleep 0.1; done
    PORT="$(grep -o 'listening on http://[0-9.:]*' "$d/log" | sed 's/.*://')"
}

start b carol ""; B_PORT="$PORT"
start a alice "forward:
  servers: ['b']
lookup:
  recursive:
    cacheTime: 3600"
A="http://127.0.0.1:$PORT"
V1="/_matrix/identity/api/v1/lookup?medium=email&address="
for who in alice carol; do
    curl -sf "$A${V1}$who%40example.org" | grep -q "@$who:example.org" \
        || { echo "lookup check of $who failed" >&2; exit 1; }
done
curl -sf "$A${V1}nobody%40example.org" | grep -qx '{}' || { echo "miss check failed" >&2; exit 1; }

wrk_run() { # wrk_run PATH MISS_PREFIX -> "req/s p50 p99"
    BENCH_PATH="$1" BENCH_MISS="$2" \
    wrk -t2 -c"$C" -d"$DURATION" --latency -s tests/bench/remote.lua "$A" 2>/dev/null | awk '
        /Requests\/sec/ {rps=$2}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        END {print rps, p50, p99}'
}
best_of() { sort -k1,1 -g | tail -n 1; }
: > "$W/local"; : > "$W/hit"; : > "$W/miss"
for _ in $(seq "$ROUNDS"); do
    wrk_run "${V1}alice%40example.org" "" >> "$W/local"
    wrk_run "${V1}carol%40example.org" "" >> "$W/hit"
    wrk_run "" "$V1" >> "$W/miss"
done
read -r l_rps l_p50 l_p99 <<<"$(best_of < "$W/local")"
printf '\n%-24s %12s %10s %10s %8s\n' "v1 single lookup" "req/s" "p50" "p99" "ratio"
printf '%-24s %12s %10s %10s %8s\n' "local hit" "$l_rps" "$l_p50" "$l_p99" "1.00"
for kind in hit miss; do
    read -r rps p50 p99 <<<"$(best_of < "$W/$kind")"
    label="cached remote hit"; [ "$kind" = miss ] && label="forwarded miss"
    printf '%-24s %12s %10s %10s %8s\n' "$label" "$rps" "$p50" "$p99" \
        "$(awk -v a="$rps" -v b="$l_rps" 'BEGIN {printf "%.2f", a / b}')"
done
printf '(%s connections, wrk -t2, best of %s alternating runs of %s each)\n' "$C" "$ROUNDS" "$DURATION"
