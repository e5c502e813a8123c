#!/usr/bin/env bash
# Starts a throwaway slapd with the test fixtures: start.sh DIR PORT [USERS].
# The directory is made anew; stop it with: kill "$(cat DIR/slapd.pid)". Restarting on an
# existing DIR with --keep keeps its data (for tests that stop and restart the server).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../config.sh"
L="$1"; PORT="$2"; USERS="${3:-2000}"; KEEP="${4:-}"
# LDAPS on a second port (main instance only), with the test CA's server certificate; the
# plain port offers StartTLS with the same certificate.
TLS="$MXISD_TEST_DIR/tls"
LISTEN="ldap://127.0.0.1:$PORT/"
[ "$PORT" = "$LDAP_PORT" ] && LISTEN="$LISTEN ldaps://127.0.0.1:$LDAPS_PORT/"
export PATH="$PATH:/usr/sbin"
if [ "$KEEP" != "--keep" ]; then
    rm -rf "$L"; mkdir -p "$L/db"
    cat > "$L/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include $HERE/ad.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $L/slapd.pid
argsfile $L/slapd.args
database mdb
maxsize 1073741824
suffix "$LDAP_BASE"
rootdn "$LDAP_ADMIN_DN"
rootpw $(slappasswd -s "$LDAP_ADMIN_PASSWORD")
directory $L/db
index objectClass,uid,mail,telephoneNumber eq
TLSCertificateFile $TLS/server.pem
TLSCertificateKeyFile $TLS/server.key
TLSCACertificateFile $TLS/ca.pem
CONF
    slaptest -f "$L/slapd.conf" -u >/dev/null 2>&1
    bash "$HERE/fixtures.sh" "$USERS" > "$L/fixtures.ldif"
    slapadd -q -f "$L/slapd.conf" -l "$L/fixtures.ldif"
fi
slapd -f "$L/slapd.conf" -h "$LISTEN" 9>&- \
    || { echo "slapd did not start (is port $PORT taken?)" >&2; exit 1; }
for _ in $(seq 100); do
    ldapsearch -x -H "ldap://127.0.0.1:$PORT" -b "" -s base >/dev/null 2>&1 && exit 0
    sleep 0.1
done
echo "slapd on port $PORT did not answer" >&2
exit 1
