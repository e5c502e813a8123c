#!/usr/bin/env bash
# Starts the test services on loopback, idempotently: OpenLDAP slapd (with fixtures),
# PostgreSQL, dnsmasq (SRV records) and an aiosmtpd mail sink that stores each mail as a
# file; installs nginx and Chromium for the tests that start their own (a load balancer,
# a browser rendering mxisd's pages), Synapse from PyPI and matrix-js-sdk from npm (once, in
# a cache kept across runs), and for the Debian package's test cargo-deb and a Debian root
# made by debootstrap (once, in that cache). Installs missing Debian packages when run as root.
# Safe to run concurrently.
# Stop them with tests/services/down.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/config.sh"
D="$MXISD_TEST_DIR"
mkdir -p "$D"
# Daemons started below get `9>&-` so they do not inherit (and hold) the lock.
exec 9>"$D/.lock"
flock 9

log() { echo "services: $*" >&2; }

# --- packages ---------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
missing=()
command -v slapd >/dev/null || [ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapsearch >/dev/null || missing+=(ldap-utils)
[ -n "$(pg_bin)" ] || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v dig >/dev/null || missing+=(dnsutils)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)
command -v flock >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null || missing+=(chromium)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# tests/packaging.rs: a throwaway Debian root, lintian, systemd-analyze.
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v lintian >/dev/null || missing+=(lintian)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# tests/advisories.rs: requests into mxisd's own network namespace (unshare, nsenter: util-linux).
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
# tests/advisories.rs: what mxisd reads of a refused body (its read calls, traced).
command -v strace >/dev/null || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        log "missing packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}"
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
AS=(); [ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { # wait_for WHAT COMMAND...
    local what=$1; shift
    for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    log "$what did not come up"; return 1
}

# --- TLS: a test CA and a server certificate for the fake servers ------------------------
make_tls() {
    local T="$D/tls"
    rm -rf "$T"; mkdir -p "$T"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mxisd test CA" \
        -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=example.net" \
        -keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,DNS:example.net,DNS:*.example.net,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$T/ext.cnf"
    openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
        -days 3650 -extfile "$T/ext.cnf" -out "$T/server.pem" 2>/dev/null
    log "TLS test CA in $T/ca.pem"
}
[ -s "$D/tls/server.pem" ] || make_tls

# --- slapd ------------------------------------------------------------------------------
start_slapd() {
    pkill -f "slapd -f $D/ldap/slapd.conf" 2>/dev/null && sleep 0.3
    bash "$HERE/ldap/start.sh" "$D/ldap" "$LDAP_PORT"
    log "slapd on 127.0.0.1:$LDAP_PORT"
}
alive "$D/ldap/slapd.pid" || start_slapd

# --- PostgreSQL -------------------------------------------------------------------------
start_pg() {
    local P="$D/pg" bin; bin="$(pg_bin)"
    "${AS[@]}" "$bin/pg_ctl" -D "$P" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$P"; mkdir -p "$P"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$P"
    "${AS[@]}" "$bin/initdb" -D "$P" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    "${AS[@]}" "$bin/pg_ctl" -D "$P" -l "$P/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $P -c fsync=off" start >/dev/null 9>&-
    "${AS[@]}" "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
    log "PostgreSQL on 127.0.0.1:$PG_PORT"
}
alive "$D/pg/postmaster.pid" 2>/dev/null \
    || { [ -f "$D/pg/postmaster.pid" ] && kill -0 "$(head -n 1 "$D/pg/postmaster.pid")" 2>/dev/null; } \
    || start_pg

# --- dnsmasq ----------------------------------------------------------------------------
start_dns() {
    mkdir -p "$D/dns"
    pkill -f -- "--pid-file=$D/dns/dnsmasq.pid" 2>/dev/null && sleep 0.3
    local as_root=(); [ "$(id -u)" = 0 ] && as_root=(--user=root)
    dnsmasq --conf-file="$HERE/dnsmasq.conf" --no-resolv --no-hosts --no-poll \
        --listen-address=127.0.0.1 --bind-interfaces --port="$DNS_PORT" \
        --pid-file="$D/dns/dnsmasq.pid" --log-queries --log-facility="$D/dns/dnsmasq.log" "${as_root[@]}" 9>&- \
        || { log "dnsmasq did not start (is port $DNS_PORT taken?)"; exit 1; }
    wait_for dnsmasq dig +time=1 +tries=1 @127.0.0.1 -p "$DNS_PORT" SRV _matrix-identity._tcp.example.net
    log "dnsmasq on 127.0.0.1:$DNS_PORT"
}
alive "$D/dns/dnsmasq.pid" || start_dns

# --- SMTP sink --------------------------------------------------------------------------
start_smtp() {
    local S="$D/smtp"
    pkill -f "aiosmtpd -n -l 127.0.0.1:$SMTP_PORT" 2>/dev/null && sleep 0.3
    mkdir -p "$S"; rm -rf "$S/maildir"
    setsid /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
        -c aiosmtpd.handlers.Mailbox "$S/maildir" > "$S/aiosmtpd.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$S/aiosmtpd.pid"
    wait_for aiosmtpd /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $SMTP_PORT), 1).close()"
    log "SMTP sink on 127.0.0.1:$SMTP_PORT (mails in $S/maildir/new)"
}
alive "$D/smtp/aiosmtpd.pid" || start_smtp

# --- Synapse ----------------------------------------------------------------------------
install_synapse() {
    log "installing matrix-synapse from PyPI into $SYNAPSE_VENV (once)"
    rm -rf "$SYNAPSE_VENV"; mkdir -p "$(dirname "$SYNAPSE_VENV")"
    /usr/bin/python3 -m venv "$SYNAPSE_VENV"
    "$SYNAPSE_VENV/bin/pip" install -q --disable-pip-version-check matrix-synapse
}
# Synapse's config and our password-auth module as this checkout has them: a running
# Synapse started from others is restarted.
synapse_files() { # DIR
    mkdir -p "$1/modules"
    sed -e "s|@SERVER_NAME@|$SYNAPSE_SERVER_NAME|" -e "s|@DIR@|$D/synapse|g" -e "s|@TLS@|$D/tls|g" \
        -e "s|@FEDERATION_ADDR@|$SYNAPSE_FEDERATION_ADDR|" -e "s|@FEDERATION_PORT@|$SYNAPSE_FEDERATION_PORT|" \
        -e "s|@CLIENT_PORT@|$SYNAPSE_CLIENT_PORT|" -e "s|@SECRET@|$SYNAPSE_SHARED_SECRET|" \
        -e "s|@AUTH_PORT@|$SYNAPSE_AUTH_PORT|" -e "s|@AUTH_TIMEOUT@|$SYNAPSE_AUTH_TIMEOUT|" \
        "$HERE/synapse/homeserver.yaml" > "$1/homeserver.yaml"
    cp "$HERE/../../etc/synapse/mxisd_password_auth.py" "$1/modules/"
}
synapse_current() { # (called where set -e does not apply)
    local T same=0; T="$(mktemp -d)"; synapse_files "$T"
    cmp -s "$T/homeserver.yaml" "$D/synapse/homeserver.yaml" \
        && cmp -s "$T/modules/mxisd_password_auth.py" "$D/synapse/modules/mxisd_password_auth.py" \
        || same=1
    rm -rf "$T"; return $same
}
start_synapse() {
    local S="$D/synapse"
    pkill -f "synapse.app.homeserver -c $S/homeserver.yaml" 2>/dev/null && sleep 0.5
    rm -rf "$S"; mkdir -p "$S"
    synapse_files "$S"
    "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c "$S/homeserver.yaml" --generate-keys \
        > "$S/generate.log" 2>&1
    # Synapse trusts the test CA for its calls to identity servers (mxisd behind nginx).
    cat /etc/ssl/certs/ca-certificates.crt "$D/tls/ca.pem" > "$S/ca-bundle.pem" 2>/dev/null \
        || cp "$D/tls/ca.pem" "$S/ca-bundle.pem"
    SSL_CERT_FILE="$S/ca-bundle.pem" PYTHONPATH="$S/modules" setsid "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c "$S/homeserver.yaml" \
        > "$S/synapse.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$S/synapse.pid" # Synapse writes its pid_file only when it daemonizes
    for _ in $(seq 600); do
        /usr/bin/python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$SYNAPSE_CLIENT_PORT/health', timeout=1)" \
            >/dev/null 2>&1 && { log "Synapse $SYNAPSE_SERVER_NAME on $SYNAPSE_FEDERATION_ADDR:$SYNAPSE_FEDERATION_PORT (TLS), client API on 127.0.0.1:$SYNAPSE_CLIENT_PORT"; return 0; }
        sleep 0.1
    done
    log "Synapse did not come up; see $S/synapse.log"; tail -n 20 "$S/synapse.log" >&2; return 1
}
"$SYNAPSE_VENV/bin/python" -c 'import synapse' 2>/dev/null || install_synapse
{ alive "$D/synapse/synapse.pid" && synapse_current; } || start_synapse

# --- the Debian package ------------------------------------------------------------------
# tests/packaging.rs builds it with cargo-deb (pinned: its metadata keys and output are what
# the test checks) and installs it into a copy of a Debian root made once by debootstrap.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    log "installing cargo-deb $CARGO_DEB_VERSION (once, about 2 minutes)"
    cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
if [ "$(id -u)" = 0 ]; then
    bash "$HERE/../support/debian-root.sh" "$PACKAGING_CACHE" >/dev/null
fi

# --- matrix-js-sdk ----------------------------------------------------------------------
# The client library inside Element, from npm, the whole tree pinned by
# tests/services/element/package-lock.json; tests/element_sdk.rs drives mxisd with it. Needs
# node >= 20 (not installed here: Debian's may be older); without node that test fails.
install_js_sdk() {
    log "installing matrix-js-sdk from npm into $ELEMENT_SDK_DIR (once)"
    rm -rf "$ELEMENT_SDK_DIR" "$ELEMENT_SDK_DIR.new"; mkdir -p "$ELEMENT_SDK_DIR.new"
    cp "$HERE/element/package.json" "$HERE/element/package-lock.json" "$ELEMENT_SDK_DIR.new/"
    (cd "$ELEMENT_SDK_DIR.new" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    mv "$ELEMENT_SDK_DIR.new" "$ELEMENT_SDK_DIR"
}
if command -v node >/dev/null && command -v npm >/dev/null; then
    { cmp -s "$HERE/element/package-lock.json" "$ELEMENT_SDK_DIR/package-lock.json" \
        && [ -f "$ELEMENT_SDK_DIR/node_modules/matrix-js-sdk/package.json" ]; } || install_js_sdk
else
    log "no node/npm: tests/element_sdk.rs (matrix-js-sdk) will fail: install Node.js >= 20 and npm"
fi
