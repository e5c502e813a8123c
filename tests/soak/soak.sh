#!/usr/bin/env bash
# The soak (issue 25; not in CI, run by hand as root): SOAK_MINUTES (30) of mixed load on two
# mxisd instances sharing one PostgreSQL state — lookups, 3PID sessions, binds and unbinds,
# invites and their onbind calls, logins against LDAP — with a fault every SOAK_FAULT_EVERY
# seconds (240), in turn: the SMTP sink stopped, slapd frozen (SIGSTOP), PostgreSQL
# restarted, one instance killed -9 and started again. tests/soak/driver.py makes the load,
# the faults and the report; this script starts and stops what it drives.
#
# Everything is the soak's own, on ports of its own on loopback, so the shared test
# services (tests/services/) are never touched: a PostgreSQL cluster (initdb), a slapd
# (tests/services/ldap/start.sh), an aiosmtpd sink writing a Maildir, the fake homeserver
# (tests/fakes/homeserver.py: v2 account tokens, onbind calls recorded) and the two mxisd
# processes. Needs the packages tests/services/up.sh installs, and its test CA
# (/tmp/mxisd-test/tls: run up.sh once first).
#
#   sudo SOAK_MINUTES=3 SOAK_FAULT_EVERY=40 bash tests/soak/soak.sh   # a short run
#
# Other knobs: SOAK_DIR (/tmp/mxisd-soak: logs and report, left after the run),
# SOAK_THREADS (6 load threads), SOAK_UNBIND_SHARE (0.25 of binds unbound right after),
# MXISD_BIN (target/release/mxisd if built, else debug),
# SOAK_PORT_BASE (15500: PostgreSQL +0, slapd +1, SMTP +2, homeserver +3, mxisd +4 and +5).
# Exit status: the driver's (non-zero when a check failed, see the report).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
source "$ROOT/tests/services/config.sh"
export PATH="$PATH:/usr/sbin"

[ "$(id -u)" = 0 ] || { echo "soak: run as root (PostgreSQL runs as postgres, slapd as root)" >&2; exit 2; }
TLS="$MXISD_TEST_DIR/tls"
[ -s "$TLS/server.pem" ] || { echo "soak: no test CA in $TLS: run tests/services/up.sh once" >&2; exit 2; }

D="${SOAK_DIR:-/tmp/mxisd-soak}"
BASE="${SOAK_PORT_BASE:-15500}"
PG_P=$BASE LDAP_P=$((BASE + 1)) SMTP_P=$((BASE + 2)) HS_P=$((BASE + 3))
A_P=$((BASE + 4)) B_P=$((BASE + 5))
if [ -z "${MXISD_BIN:-}" ]; then
    MXISD_BIN="$ROOT/target/release/mxisd"
    [ -x "$MXISD_BIN" ] || MXISD_BIN="$ROOT/target/debug/mxisd"
fi
[ -x "$MXISD_BIN" ] || { echo "soak: no mxisd binary ($MXISD_BIN): cargo build first" >&2; exit 2; }
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
PY=/usr/bin/python3

for p in $PG_P $LDAP_P $SMTP_P $HS_P $A_P $B_P; do
    if $PY -c "import socket,sys; socket.create_connection(('127.0.0.1', $p), 0.5)" 2>/dev/null; then
        echo "soak: port $p is taken (another soak running? SOAK_PORT_BASE moves them)" >&2
        exit 2
    fi
done

# A soak's leftovers from an earlier run in the same directory are stopped first (by their
# pid files: nothing else is touched), then the directory is made anew.
stop_pidfile() { [ -f "$1" ] && kill "${2:--TERM}" "$(head -n 1 "$1")" 2>/dev/null || true; }
if [ -d "$D" ]; then
    for f in "$D"/mxisd-*.pid "$D/smtp.pid" "$D/hs.pid" "$D/ldap/slapd.pid"; do
        stop_pidfile "$f" -CONT; stop_pidfile "$f"
    done
    [ -f "$D/pg/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$D/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$D"
fi
mkdir -p "$D"
log() { echo "soak: $*" >&2; }

cleanup() {
    set +e
    for f in "$D"/mxisd-*.pid "$D/smtp.pid" "$D/hs.pid"; do stop_pidfile "$f"; done
    stop_pidfile "$D/ldap/slapd.pid" -CONT; stop_pidfile "$D/ldap/slapd.pid"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$D/pg" -m fast stop >/dev/null 2>&1
}
trap cleanup EXIT

# --- PostgreSQL: a cluster of the soak's own -------------------------------------------
mkdir -p "$D/pg"; chown postgres:postgres "$D/pg"
runuser -u postgres -- "$PG_BIN/initdb" -D "$D/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$D/pg" -l "$D/pg/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_P -k $D/pg -c fsync=off" start >/dev/null
runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_P" -U postgres mxisd
log "PostgreSQL on 127.0.0.1:$PG_P"

# --- slapd: the test fixtures (users user0000… with password userpw) -------------------
bash "$ROOT/tests/services/ldap/start.sh" "$D/ldap" "$LDAP_P" 500
log "slapd on 127.0.0.1:$LDAP_P"

# --- the SMTP sink, the fake homeserver --------------------------------------------------
cat > "$D/ctl.sh" <<CTL
#!/usr/bin/env bash
# The soak's controls, called by the driver: ctl.sh smtp-start|smtp-stop|slapd-stop|
# slapd-cont|pg-restart|mxisd-start NAME|mxisd-kill NAME.
set -euo pipefail
D='$D'
case "\$1" in
smtp-start)
    setsid $PY -m aiosmtpd -n -l 127.0.0.1:$SMTP_P -c aiosmtpd.handlers.Mailbox "\$D/maildir" \\
        >> "\$D/smtp.log" 2>&1 < /dev/null &
    echo \$! > "\$D/smtp.pid"
    for _ in \$(seq 100); do
        $PY -c "import socket; socket.create_connection(('127.0.0.1', $SMTP_P), 1).close()" 2>/dev/null && exit 0
        sleep 0.1
    done
    echo "SMTP sink did not start" >&2; exit 1 ;;
smtp-stop)
    pid=\$(cat "\$D/smtp.pid"); kill "\$pid"
    for _ in \$(seq 100); do kill -0 "\$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "\$pid" ;;
slapd-stop) kill -STOP "\$(cat "\$D/ldap/slapd.pid")" ;;
slapd-cont) kill -CONT "\$(cat "\$D/ldap/slapd.pid")" ;;
pg-restart)
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "\$D/pg" -l "\$D/pg/server.log" -w -t 60 restart -m fast >/dev/null ;;
mxisd-start)
    setsid "$MXISD_BIN" -c "\$D/mxisd-\$2.yaml" >> "\$D/mxisd-\$2.log" 2>&1 < /dev/null &
    echo \$! > "\$D/mxisd-\$2.pid"
    port=\$(sed -n 's/^  port: //p' "\$D/mxisd-\$2.yaml")
    for _ in \$(seq 300); do
        $PY -c "import socket; socket.create_connection(('127.0.0.1', \$port), 1).close()" 2>/dev/null && exit 0
        kill -0 "\$(cat "\$D/mxisd-\$2.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "mxisd \$2 did not start; see \$D/mxisd-\$2.log" >&2; exit 1 ;;
mxisd-kill) kill -9 "\$(cat "\$D/mxisd-\$2.pid")" ;;
*) echo "ctl.sh: unknown command \$1" >&2; exit 2 ;;
esac
CTL
# (aiosmtpd makes the Maildir: on an existing directory it would not make tmp/ and new/)
bash "$D/ctl.sh" smtp-start
log "SMTP sink on 127.0.0.1:$SMTP_P (mails in $D/maildir/new)"

setsid $PY "$ROOT/tests/fakes/homeserver.py" --bind 127.0.0.1 --port "$HS_P" \
    --cert "$TLS/server.pem" --key "$TLS/server.key" > "$D/hs.out" 2> "$D/hs.log" < /dev/null &
echo $! > "$D/hs.pid"
for _ in $(seq 100); do grep -q listening "$D/hs.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$D/hs.out" || { log "the fake homeserver did not start"; exit 1; }
log "fake homeserver on https://127.0.0.1:$HS_P"

# --- two mxisd instances on one state, one signing key -----------------------------------
# Rate limits are raised: every request comes from 127.0.0.1, and the soak is about faults
# and leaks, not about the limits (tests/session_limits.rs and others prove those).
for name in a b; do
    port=$A_P; [ "$name" = b ] && port=$B_P
    cat > "$D/mxisd-$name.yaml" <<YAML
matrix:
  domain: example.org
server:
  port: $port
key:
  path: '$D/keys'
storage:
  backend: postgresql
  provider:
    postgresql:
      connection: 'host=127.0.0.1 port=$PG_P user=postgres dbname=mxisd'
      timeout: 3
ldap:
  enabled: true
  connection:
    host: '127.0.0.1'
    port: $LDAP_P
    bindDn: '$LDAP_ADMIN_DN'
    bindPassword: '$LDAP_ADMIN_PASSWORD'
    baseDNs: ['ou=people,$LDAP_BASE']
    timeout: 2
  attribute:
    uid:
      value: uid
binds:
  local:
    enabled: true
lookup:
  recursive:
    enabled: false
internal:
  rateLimit: 100000
session:
  rateLimit:
    perAddress: {burst: 1000, perMinute: 1000}
    perClient: {burst: 1000000, perMinute: 1000000}
    perUser: {burst: 1000000, perMinute: 1000000}
invite:
  rateLimit:
    perSender: {burst: 1000000, perMinute: 1000000}
    perAddress: {burst: 1000, perMinute: 1000}
  retry:
    first: 5
    max: 20
threepid:
  medium:
    email:
      connectors:
        smtp:
          host: 127.0.0.1
          port: $SMTP_P
          tls: 0
          timeout: 5
federation:
  connectTimeout: 2
  timeout: 5
  ipRangeWhitelist: ['127.0.0.0/8']
  tls:
    caFile: '$TLS/ca.pem'
YAML
done
bash "$D/ctl.sh" mxisd-start a # first: it makes the signing key and migrates the schema
bash "$D/ctl.sh" mxisd-start b
log "mxisd a on 127.0.0.1:$A_P, b on 127.0.0.1:$B_P ($MXISD_BIN)"

set +e
SOAK_DIR="$D" SOAK_A="127.0.0.1:$A_P" SOAK_B="127.0.0.1:$B_P" SOAK_HS_PORT="$HS_P" \
    SOAK_PG="host=127.0.0.1 port=$PG_P user=postgres dbname=mxisd" SOAK_BIN="$MXISD_BIN" SOAK_CA="$TLS/ca.pem" \
    $PY "$HERE/driver.py"
status=$?
set -e
log "report in $D/report.txt, logs in $D"
exit $status
