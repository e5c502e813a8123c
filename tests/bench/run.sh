#!/usr/bin/env bash
# Benchmark of hashed v2 lookups (run by hand, not in CI): prints a table.
#
# - seeds N (10,000) bindings into a Synapse-shaped SQLite database read by synapseSql, so the
#   hash index is built from a real store;
# - single hashed POST /_matrix/identity/v2/lookup with wrk at 8, 32 and 128 connections
#   (10 s each), and the same wrk settings against nginx answering `return 200 '{}'` on
#   loopback: the machine's ceiling, since machines are noisy;
# - one bulk lookup of 10,000 hashes, timed by curl on loopback;
# - mxisd's RSS with 0, 10,000 and 100,000 bindings.
# - the same lookups with mxisd's own state on the test PostgreSQL (storage.backend:
#   postgresql, default poolSize) instead of SQLite, alternating with the others
#   (BENCH_PG=0 skips it);
# BENCH_BASELINE=/path/to/another/mxisd also runs that build on the same data, alternating
# with this one and nginx, and prints the ratio of the two builds.
# Needs root for apt (wrk, nginx-light) and the test services (for the TLS test CA and the
# fake homeserver that vouches for the benchmark's account).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
DURATION="${BENCH_DURATION:-5s}"
CONNECTIONS="${BENCH_CONNECTIONS:-8 32 128}"   # e.g. BENCH_CONNECTIONS=32 for a quick run
BIG="${BENCH_BIG:-100000}"                      # 0 skips the RSS run with many bindings
WORKERS="${BENCH_WORKERS:-16}"                  # http.workers (16 is the default)
export PATH="$PATH:/usr/sbin"

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash tests/services/up.sh >/dev/null 2>&1
source tests/services/config.sh
cargo build --release -q
BIN="$ROOT/target/release/mxisd"

W="$(mktemp -d /tmp/mxisd-bench.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"
    psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "DROP DATABASE IF EXISTS bench_state_$$" >/dev/null 2>&1 || true
}
trap cleanup EXIT

seed() { # seed FILE COUNT
    /usr/bin/python3 - "$1" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE user_threepids (user_id TEXT, medium TEXT, address TEXT, validated_at BIGINT, added_at BIGINT)")
db.executemany("INSERT INTO user_threepids VALUES (?, 'email', ?, 0, 0)",
               ((f"@user{i}:example.org", f"user{i}@example.org") for i in range(int(sys.argv[2]))))
db.commit()
PY
}

PG_STATE_DB="bench_state_$$"
start_mxisd() { # start_mxisd NAME COUNT [BINARY] [postgresql] -> sets PORT, PID
    local d="$W/$1" bin="${3:-$BIN}" storage; mkdir -p "$d"
    seed "$d/synapse.db" "$2"
    if [ "${4:-}" = postgresql ]; then
        psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $PG_STATE_DB" >/dev/null
        storage="  backend: postgresql
  provider:
    postgresql:
      connection: 'host=127.0.0.1 port=$PG_PORT user=$PG_USER dbname=$PG_STATE_DB'"
    else
        storage="  provider:
    sqlite:
      database: '$d/mxisd.db'"
    fi
    cat > "$d/mxisd.yaml" <<YAML
matrix:
  domain: example.org
server:
  port: 0
key:
  path: '$d/keys'
storage:
$storage
logging:
  app: info
http:
  workers: $WORKERS
synapseSql:
  enabled: true
  type: sqlite
  connection: '$d/synapse.db'
federation:
  resolver: '127.0.0.1:$DNS_PORT'
  ipRangeWhitelist: ['127.0.0.0/8']
  tls:
    caFile: '$MXISD_TEST_DIR/tls/ca.pem'
YAML
    # In its own session, as nginx is once it daemonises (and as a service is): the kernel's
    # autogroup then shares the CPU between client and server equally whatever their thread
    # counts. In wrk's session, mxisd's threads would compete with wrk's one by one.
    setsid "$bin" -c "$d/mxisd.yaml" 2> "$d/log" & PID=$!; pids+=("$PID")
    # The hash index is built once mxisd listens (before, ahead of it).
    for _ in $(seq 300); do grep -q "listening on" "$d/log" && grep -q "hash index" "$d/log" && break; sleep 0.1; done
    PORT="$(grep -o 'listening on http://[0-9.:]*' "$d/log" | sed 's/.*://')"
}

rss_kb() { grep VmRSS "/proc/$1/status" | awk '{print $2}'; }

# The fake homeserver vouches for the benchmark's account.
/usr/bin/python3 tests/fakes/homeserver.py --cert "$MXISD_TEST_DIR/tls/server.pem" \
    --key "$MXISD_TEST_DIR/tls/server.key" > "$W/hs.out" 2>/dev/null & pids+=($!)
for _ in $(seq 100); do grep -q listening "$W/hs.out" 2>/dev/null && break; sleep 0.1; done
HS="127.0.0.1:$(awk '{print $2}' "$W/hs.out")"

hash() { printf '%s' "$1" | openssl dgst -sha256 -binary | basenc --base64url | tr -d '='; }
prepare() { # prepare PORT -> sets URL, TOKEN, PEPPER, BODY (one hashed lookup of user4242)
    URL="http://127.0.0.1:$1"
    TOKEN="$(curl -sf -X POST "$URL/_matrix/identity/v2/account/register" \
        -d "{\"access_token\":\"user:@bench:$HS\",\"token_type\":\"Bearer\",\"matrix_server_name\":\"$HS\",\"expires_in\":3600}" \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
    PEPPER="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/_matrix/identity/v2/hash_details" \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["lookup_pepper"])')"
    BODY="{\"algorithm\":\"sha256\",\"pepper\":\"$PEPPER\",\"addresses\":[\"$(hash "user4242@example.org email $PEPPER")\"]}"
    local check
    check="$(curl -sf -H "Authorization: Bearer $TOKEN" -d "$BODY" "$URL/_matrix/identity/v2/lookup")"
    case "$check" in *'@user4242:example.org'*) ;; *) echo "lookup check failed: $check" >&2; exit 1 ;; esac
}

start_mxisd empty 0; RSS0="$(rss_kb "$PID")"
if [ -n "${BENCH_BASELINE:-}" ]; then
    start_mxisd baseline 10000 "$BENCH_BASELINE"
    prepare "$PORT"; B_URL="$URL"; B_TOKEN="$TOKEN"; B_BODY="$BODY"
fi
if [ "${BENCH_PG:-1}" != 0 ]; then
    start_mxisd pgstate 10000 "$BIN" postgresql
    prepare "$PORT"; P_URL="$URL"; P_TOKEN="$TOKEN"; P_BODY="$BODY"
fi
start_mxisd main 10000; MAIN_PID="$PID"; RSS10K="$(rss_kb "$PID")"
prepare "$PORT"

# nginx on loopback, the same wrk settings: the machine's ceiling.
NGINX_PORT=18099
cat > "$W/nginx.conf" <<CONF
worker_processes auto;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$NGINX_PORT; location / { default_type application/json; return 200 '{}'; } }
}
CONF
nginx -c "$W/nginx.conf" -p "$W"
pids+=("$(cat "$W/nginx.pid")")

wrk_run() { # wrk_run URL CONNECTIONS [TOKEN BODY] -> "req/s p50 p99"
    BENCH_TOKEN="${3:-}" BENCH_BODY="${4:-}" \
    wrk -t2 -c"$2" -d"$DURATION" --latency -s tests/bench/lookup.lua "$1" 2>/dev/null | tee -a "$W/wrk.log" | awk '
        /Requests\/sec/ {rps=$2}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        END {print rps, p50, p99}'
}

printf '\n%-26s %12s %10s %10s %14s %10s %10s %8s\n' "single hashed lookup" "mxisd req/s" "p50" "p99" "nginx req/s" "p50" "p99" "ratio"
# mxisd and nginx (and the baseline build) alternate, ROUNDS times each; the best run of
# each is compared, so that a noisy neighbour slowing one run does not decide the ratio.
ROUNDS="${BENCH_ROUNDS:-3}"
best_of() { sort -k1,1 -g | tail -n 1; }
for c in $CONNECTIONS; do
    : > "$W/m.txt"; : > "$W/n.txt"; : > "$W/b.txt"; : > "$W/p.txt"
    for _ in $(seq "$ROUNDS"); do
        wrk_run "$URL/_matrix/identity/v2/lookup" "$c" "$TOKEN" "$BODY" >> "$W/m.txt"
        if [ -n "${P_URL:-}" ]; then
            wrk_run "$P_URL/_matrix/identity/v2/lookup" "$c" "$P_TOKEN" "$P_BODY" >> "$W/p.txt"
        fi
        if [ -n "${BENCH_BASELINE:-}" ]; then
            wrk_run "$B_URL/_matrix/identity/v2/lookup" "$c" "$B_TOKEN" "$B_BODY" >> "$W/b.txt"
        fi
        wrk_run "http://127.0.0.1:$NGINX_PORT/" "$c" >> "$W/n.txt"
    done
    read -r m_rps m_p50 m_p99 <<<"$(best_of < "$W/m.txt")"
    read -r n_rps n_p50 n_p99 <<<"$(best_of < "$W/n.txt")"
    ratio="$(awk -v a="$m_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a / b}')"
    printf '%-26s %12s %10s %10s %14s %10s %10s %8s\n' "$c connections" "$m_rps" "$m_p50" "$m_p99" "$n_rps" "$n_p50" "$n_p99" "$ratio"
    if [ -n "${P_URL:-}" ]; then
        read -r p_rps p_p50 p_p99 <<<"$(best_of < "$W/p.txt")"
        printf '%-26s %12s %10s %10s %14s %10s %10s %8s\n' "  state on PostgreSQL" "$p_rps" "$p_p50" "$p_p99" "" "" "" \
            "$(awk -v a="$p_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a / b}')"
        printf '%-26s %12s\n' "  PostgreSQL / SQLite" "$(awk -v a="$p_rps" -v b="$m_rps" 'BEGIN {printf "%.3f", a / b}')"
    fi
    if [ -n "${BENCH_BASELINE:-}" ]; then
        read -r b_rps b_p50 b_p99 <<<"$(best_of < "$W/b.txt")"
        printf '%-26s %12s %10s %10s %14s %10s %10s %8s\n' "  baseline build" "$b_rps" "$b_p50" "$b_p99" "" "" "" \
            "$(awk -v a="$b_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a / b}')"
        printf '%-26s %12s\n' "  this build / baseline" "$(awk -v a="$m_rps" -v b="$b_rps" 'BEGIN {printf "%.3f", a / b}')"
    fi
done
printf '(best of %s alternating %s runs each, wrk -t2)\n' "$ROUNDS" "$DURATION"

# One bulk lookup of 10,000 hashes (the first request warms nothing that matters: the index
# is built at start); the best of 5, as timed by curl.
/usr/bin/python3 - "$PEPPER" > "$W/bulk.json" <<'PY'
import base64, hashlib, json, sys
p = sys.argv[1]
h = lambda s: base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest()).decode().rstrip("=")
print(json.dumps({"algorithm": "sha256", "pepper": p, "addresses": [h(f"user{i}@example.org email {p}") for i in range(10000)]}))
PY
best=""
for _ in 1 2 3 4 5; do
    out="$(curl -s -o "$W/bulk.out" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data-binary "@$W/bulk.json" "$URL/_matrix/identity/v2/lookup")"
    best="$(awk -v a="$out" -v b="${best:-999}" 'BEGIN {print (a < b) ? a : b}')"
done
found="$(/usr/bin/python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["mappings"]))' "$W/bulk.out")"
printf '\nbulk lookup of 10,000 hashes: %.1f ms (best of 5, curl on loopback), %s found\n' "$(awk -v t="$best" 'BEGIN {print t * 1000}')" "$found"

printf 'RSS: %.1f MB with no bindings, %.1f MB with 10,000' \
    "$(awk -v k="$RSS0" 'BEGIN {print k / 1024}')" "$(awk -v k="$RSS10K" 'BEGIN {print k / 1024}')"
if [ "$BIG" -gt 0 ]; then
    start_mxisd big "$BIG"
    printf ', %.1f MB with %s' "$(awk -v k="$(rss_kb "$PID")" 'BEGIN {print k / 1024}')" "$BIG"
fi
printf '\n'
printf 'machine: %s, %s cores\n' "$(uname -sr)" "$(nproc)"
[ -z "${BENCH_RAW:-}" ] || cat "$W/wrk.log"
