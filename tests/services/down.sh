#!/usr/bin/env bash
# Stops what tests/services/up.sh started and removes its state.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/config.sh"
D="$MXISD_TEST_DIR"
[ -d "$D" ] || exit 0
stop() { [ -f "$1" ] && kill "$(head -n 1 "$1")" 2>/dev/null; rm -f "$1"; }
stop "$D/ldap/slapd.pid"
stop "$D/dns/dnsmasq.pid"
stop "$D/smtp/aiosmtpd.pid"
stop "$D/synapse/synapse.pid"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -n "$bin" ] && [ -f "$D/pg/postmaster.pid" ]; then
    AS=(); [ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
    "${AS[@]}" "$bin/pg_ctl" -D "$D/pg" -m fast stop >/dev/null 2>&1
fi
# Instances whose pid file is gone (an interrupted run) are found by their command line.
pkill -f "slapd -f $D/ldap/slapd.conf" 2>/dev/null
pkill -f -- "--pid-file=$D/dns/dnsmasq.pid" 2>/dev/null
pkill -f "aiosmtpd -n -l 127.0.0.1:$SMTP_PORT" 2>/dev/null
pkill -f "synapse.app.homeserver -c $D/synapse/homeserver.yaml" 2>/dev/null
sleep 0.2
rm -rf "$D"
