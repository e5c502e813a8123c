#!/usr/bin/env bash
# Benchmark of scale (run by hand, not in CI): the hash index of a large directory, its
# memory and its refreshes, and the cost of a v2 lookup against nginx's `return 200`.
#
# - 1,000,000 bindings (BENCH_BIG) in a Synapse-shaped SQLite database read by synapseSql:
#   how long after the listener opens the index is ready; RSS and VmHWM once it is, and
#   after two refreshes (`hashing.refreshInterval: 8`);
# - 100,000 bindings: RSS and VmHWM;
# - v2 lookups at 32 connections on two instances over the same 1M bindings, one idle (no
#   refresh during the run) and one refreshing every 8 s: p99 of each (the refresh's
#   effect on lookups), in alternating rounds (BENCH_ROUNDS, default 5; with
#   BENCH_BASELINE, that build's refreshing instance too), and the median ratio;
# - a directory of 100,000 LDAP entries in a slapd of the benchmark's own (the test
#   fixtures, tests/services/ldap/start.sh): time and CPU (mxisd's and slapd's) of one
#   build of the index, i.e. of one refresh;
# - v2 lookups against nginx `return 200 '{}'` at 8, 32 and 128 connections: req/s ratio
#   and CPU time per request (utime + stime of the processes, from /proc) ratio.
# BENCH_BASELINE=/path/to/another/mxisd runs the same memory rows for that build.
# Needs root for apt (wrk, nginx-light) and the test services (TLS CA, fake homeserver).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
BIG="${BENCH_BIG:-1000000}"
DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-8 32 128}"
PARTS="${BENCH_PARTS:-memory ldap refresh nginx}"   # e.g. BENCH_PARTS=memory
export PATH="$PATH:/usr/sbin"

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash tests/services/up.sh >/dev/null 2>&1
source tests/services/config.sh
cargo build --release -q
BIN="$ROOT/target/release/mxisd"

W="$(mktemp -d /tmp/mxisd-scale.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

seed() { # seed FILE COUNT
    [ -f "$1" ] && return
    /usr/bin/python3 - "$1" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE user_threepids (user_id TEXT, medium TEXT, address TEXT, validated_at BIGINT, added_at BIGINT)")
db.executemany("INSERT INTO user_threepids VALUES (?, 'email', ?, 0, 0)",
               ((f"@user{i}:example.org", f"user{i}@example.org") for i in range(int(sys.argv[2]))))
db.commit()
PY
}

ms() { date +%s%3N; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
cpu_ticks() { # utime + stime of every process whose pid is given
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}

start_mxisd() { # start_mxisd NAME DB REFRESH [BINARY] [STORE] -> sets PORT, PID, READY_MS
    local d="$W/$1" bin="${4:-$BIN}"; mkdir -p "$d"
    local store="${5:-synapseSql:
  enabled: true
  type: sqlite
  connection: '$2'}"
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
logging:
  app: info
hashing:
  refreshInterval: $3
$store
federation:
  resolver: '127.0.0.1:$DNS_PORT'
  ipRangeWhitelist: ['127.0.0.0/8']
  tls:
    caFile: '$MXISD_TEST_DIR/tls/ca.pem'
YAML
    setsid "$bin" -c "$d/mxisd.yaml" 2> "$d/log" & PID=$!; pids+=("$PID")
    local listening=""
    for _ in $(seq 3000); do
        if [ -z "$listening" ] && grep -q "listening on" "$d/log"; then listening="$(ms)"; fi
        grep -q "hash index ready" "$d/log" && break
        sleep 0.01
    done
    READY_MS=$(( $(ms) - listening ))
    PORT="$(grep -o 'listening on http://[0-9.:]*' "$d/log" | sed 's/.*://')"
}

# The fake homeserver vouches for the benchmark's accounts.
/usr/bin/python3 tests/fakes/homeserver.py --cert "$MXISD_TEST_DIR/tls/server.pem" \
    --key "$MXISD_TEST_DIR/tls/server.key" > "$W/hs.out" 2>/dev/null & pids+=($!)
for _ in $(seq 100); do grep -q listening "$W/hs.out" 2>/dev/null && break; sleep 0.1; done
HS="127.0.0.1:$(awk '{print $2}' "$W/hs.out")"

hash() { printf '%s' "$1" | openssl dgst -sha256 -binary | basenc --base64url | tr -d '='; }
prepare() { # prepare PORT -> sets URL, TOKEN, BODY (one hashed lookup of user4242)
    URL="http://127.0.0.1:$1"
    TOKEN="$(curl -sf -X POST "$URL/_matrix/identity/v2/account/register" \
        -d "{\"access_token\":\"user:@bench:$HS\",\"token_type\":\"Bearer\",\"matrix_server_name\":\"$HS\",\"expires_in\":3600}" \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
    local pepper
    pepper="$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/_matrix/identity/v2/hash_details" \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["lookup_pepper"])')"
    BODY="{\"algorithm\":\"sha256\",\"pepper\":\"$pepper\",\"addresses\":[\"$(hash "user4242@example.org email $pepper")\"]}"
    case "$(curl -sf -H "Authorization: Bearer $TOKEN" -d "$BODY" "$URL/_matrix/identity/v2/lookup")" in
        *'@user4242:example.org'*) ;; *) echo "lookup check failed on $1" >&2; exit 1 ;;
    esac
}

us() { # us 5.40ms -> 5400 (wrk's latency units: us, ms, s)
    awk -v t="$1" 'BEGIN { n = t + 0; if (t ~ /us$/) print n; else if (t ~ /ms$/) print n * 1000; else print n * 1e6 }'
}

wrk_run() { # wrk_run URL CONNECTIONS [TOKEN BODY] -> "req/s p50 p99 requests"
    BENCH_TOKEN="${3:-}" BENCH_BODY="${4:-}" \
    wrk -t2 -c"$2" -d"$DURATION" --latency -s tests/bench/lookup.lua "$1" 2>/dev/null | awk '
        /Requests\/sec/ {rps=$2} /requests in/ {n=$1}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        END {print rps, p50, p99, n}'
}

echo "seeding $BIG and 100,000 bindings..."
seed "$W/big.db" "$BIG"
seed "$W/100k.db" 100000

memory_rows() { # memory_rows LABEL BINARY
    start_mxisd "mem-$1" "$W/big.db" 8 "$2"; local pid="$PID" ready="$READY_MS"
    local rss hwm; rss="$(status_kb "$pid" VmRSS)"; hwm="$(status_kb "$pid" VmHWM)"
    # Measured once two refreshes have ended (8 s after the end of the one before; a refresh
    # rests as long as it works, so it takes longer than the first build), not in the middle
    # of the third. A build that does not log its refreshes: the time two took, and a margin.
    local log="$W/mem-$1/log" until=$(( $(ms) + 60000 )) fixed=$(( $(ms) + (17 + 2 * ready / 1000) * 1000 ))
    while [ "$(ms)" -lt "$until" ]; do
        [ "$(grep -c 'hash index refreshed' "$log" || true)" -ge 2 ] && break
        if ! grep -q 'hash index refreshed' "$log" && [ "$(ms)" -ge "$fixed" ]; then break; fi
        sleep 0.1
    done
    printf '%-28s %10s ms %12s %10s %14s %10s\n' "$1: $BIG bindings" "$ready" "$(mb "$rss")" "$(mb "$hwm")" \
        "$(mb "$(status_kb "$pid" VmRSS)")" "$(mb "$(status_kb "$pid" VmHWM)")"
    kill "$pid"
    start_mxisd "small-$1" "$W/100k.db" 86400 "$2"
    printf '%-28s %10s ms %12s %10s\n' "$1: 100,000 bindings" "$READY_MS" "$(mb "$(status_kb "$PID" VmRSS)")" "$(mb "$(status_kb "$PID" VmHWM)")"
    kill "$PID"
}
if [[ " $PARTS " == *" memory "* ]]; then
    printf '\n%-28s %13s %12s %10s %14s %10s\n' "hash index" "ready after" "RSS MB" "VmHWM MB" "RSS 2 refr." "VmHWM 2 r."
    memory_rows "this build" "$BIN"
    [ -z "${BENCH_BASELINE:-}" ] || memory_rows "baseline" "$BENCH_BASELINE"
fi
if [[ " $PARTS " == *" ldap "* ]]; then
    LDAP_BENCH_PORT=3899
    bash tests/services/ldap/start.sh "$W/slapd" "$LDAP_BENCH_PORT" 100000 >/dev/null
    SLAPD_PID="$(cat "$W/slapd/slapd.pid")"; pids+=("$SLAPD_PID")
    s0="$(cpu_ticks "$SLAPD_PID")"
    start_mxisd ldap - 86400 "$BIN" "ldap:
  enabled: true
  connection:
    host: '127.0.0.1'
    port: $LDAP_BENCH_PORT
    bindDn: '$LDAP_ADMIN_DN'
    bindPassword: '$LDAP_ADMIN_PASSWORD'
    baseDNs: ['ou=people,$LDAP_BASE']
  attribute:
    uid:
      value: uid
  identity:
    lookup: true"
    HZ="$(getconf CLK_TCK)"
    printf '\n%-40s %10s %14s %14s %10s\n' "index of an LDAP directory" "build" "mxisd CPU" "slapd CPU" "hashes"
    printf '%-40s %7s ms %11s ms %11s ms %10s\n' "100,000 entries (paged search)" "$READY_MS" \
        "$(( $(cpu_ticks "$PID") * 1000 / HZ ))" "$(( ($(cpu_ticks "$SLAPD_PID") - s0) * 1000 / HZ ))" \
        "$(grep -o 'hash index ready: [0-9]*' "$W/ldap/log" | grep -o '[0-9]*$')"
    kill "$PID" "$SLAPD_PID"
fi
[[ " $PARTS " == *" refresh "* || " $PARTS " == *" nginx "* ]] || exit 0

# p99 while the index is rebuilt, against an instance whose index stays put.
start_mxisd idle "$W/big.db" 86400; prepare "$PORT"; I_URL="$URL"; I_TOKEN="$TOKEN"; I_BODY="$BODY"
start_mxisd busy "$W/big.db" 8; prepare "$PORT"; R_URL="$URL"; R_TOKEN="$TOKEN"; R_BODY="$BODY"
if [[ " $PARTS " == *" refresh "* ]]; then
    # Rounds alternate: the idle instance measured while the busy one is stopped (its
    # refreshes must not take the idle one's CPU), then the busy one for 20 s (two or three
    # refreshes). The ratio of each round, and their median.
    BUSY_PID="$(pgrep -f "$W/busy/mxisd.yaml" | head -1)"
    BUSY=("this build|$BUSY_PID|$R_URL|$R_TOKEN|$R_BODY|$W/busy/log")
    if [ -n "${BENCH_BASELINE:-}" ]; then
        start_mxisd base-busy "$W/big.db" 8 "$BENCH_BASELINE"; prepare "$PORT"
        BUSY+=("baseline|$PID|$URL|$TOKEN|$BODY|$W/base-busy/log")
    fi
    printf '\n%-34s %10s %10s %11s %10s %8s  %s\n' "v2 lookup, 32 conns, $BIG bindings" "idle req/s" "idle p99" "refr. req/s" "refr. p99" "ratio" "refreshes done (s each)"
    declare -A ratios=()
    for round in $(seq "${BENCH_ROUNDS:-5}"); do
        for busy in "${BUSY[@]}"; do kill -STOP "$(cut -d"|" -f2 <<<"$busy")"; done
        read -r i_rps _ i_p99 _ <<<"$(wrk_run "$I_URL/_matrix/identity/v2/lookup" 32 "$I_TOKEN" "$I_BODY")"
        printf '%-34s %10s %10s\n' "round $round, index idle" "$i_rps" "$i_p99"
        for busy in "${BUSY[@]}"; do
            IFS='|' read -r label pid url token body log <<<"$busy"
            done_before="$(grep -c 'hash index refreshed' "$log" || true)"
            kill -CONT "$pid"
            read -r r_rps _ r_p99 _ <<<"$(DURATION=20s wrk_run "$url/_matrix/identity/v2/lookup" 32 "$token" "$body")"
            kill -STOP "$pid"
            ratio="$(awk -v a="$(us "$r_p99")" -v b="$(us "$i_p99")" 'BEGIN {printf "%.2f", a / b}')"
            ratios[$label]+="$ratio "
            # Rebuilds finished during the run and how long each took (a dash for a build
            # of mxisd that does not log them).
            refreshes="$({ grep 'hash index refreshed' "$log" || true; } | tail -n +"$((done_before + 1))" \
                | { grep -o 'in [0-9.]* s' || true; } | awk '{n++; t = t $2 " "} END {print n ? n " (" t ")" : "-"}')"
            printf '%-34s %21s %11s %10s %8s  %s\n' "  $label, refreshed every 8 s" "" "$r_rps" "$r_p99" "$ratio" "$refreshes"
        done
    done
    for busy in "${BUSY[@]}"; do
        label="${busy%%|*}"
        printf '%-34s %s\n' "median p99 ratio, $label" \
            "$(tr ' ' '\n' <<<"${ratios[$label]}" | grep . | sort -n | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}')"
        kill -CONT "$(cut -d'|' -f2 <<<"$busy")"
    done
fi
[[ " $PARTS " == *" nginx "* ]] || exit 0

# Against nginx: requests per second and CPU per request.
NGINX_PORT=18098
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
NGINX_MASTER="$(cat "$W/nginx.pid")"; pids+=("$NGINX_MASTER")
NGINX_PIDS=("$NGINX_MASTER" $(pgrep -P "$NGINX_MASTER"))
# The busy instance is not needed any more: its refreshes would take CPU from the others.
for busy in busy base-busy; do kill "$(pgrep -f "$W/$busy/mxisd.yaml" | head -1)" 2>/dev/null || true; done
MX_PID="$(pgrep -f "$W/idle/mxisd.yaml" | head -1)"
BUILDS=("this build|$MX_PID|$I_URL|$I_TOKEN|$I_BODY")
if [ -n "${BENCH_BASELINE:-}" ]; then
    start_mxisd base-idle "$W/big.db" 86400 "$BENCH_BASELINE"; prepare "$PORT"
    BUILDS+=("baseline|$PID|$URL|$TOKEN|$BODY")
fi
printf '\n%-26s %12s %12s %8s %16s %16s %8s\n' "v2 lookup" "mxisd req/s" "nginx req/s" "ratio" "mxisd CPU/req" "nginx CPU/req" "ratio"
HZ="$(getconf CLK_TCK)"
for c in $CONNECTIONS; do
    for build in "${BUILDS[@]}"; do
        IFS='|' read -r label pid url token body <<<"$build"
        t0="$(cpu_ticks "$pid")"
        read -r m_rps _ _ m_n <<<"$(wrk_run "$url/_matrix/identity/v2/lookup" "$c" "$token" "$body")"
        m_cpu=$(( $(cpu_ticks "$pid") - t0 ))
        t0="$(cpu_ticks "${NGINX_PIDS[@]}")"
        read -r n_rps _ _ n_n <<<"$(wrk_run "http://127.0.0.1:$NGINX_PORT/" "$c")"
        n_cpu=$(( $(cpu_ticks "${NGINX_PIDS[@]}") - t0 ))
        awk -v l="$c conns, $label" -v mr="$m_rps" -v nr="$n_rps" -v mc="$m_cpu" -v nc="$n_cpu" -v mn="$m_n" -v nn="$n_n" -v hz="$HZ" 'BEGIN {
            mu = mc / hz / mn * 1e6; nu = nc / hz / nn * 1e6;
            printf "%-26s %12.0f %12.0f %8.2f %13.1f µs %13.1f µs %8.2f\n", l, mr, nr, mr / nr, mu, nu, mu / nu }'
    done
done
printf '(wrk -t2, %s a run; CPU from /proc utime+stime)\nmachine: %s, %s cores\n' "$DURATION" "$(uname -sr)" "$(nproc)"
