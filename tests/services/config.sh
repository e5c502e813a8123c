# Where the test services listen: the one place tests and scripts read these from
# (tests/support/services.rs parses this file). Loopback only, fixed ports.
MXISD_TEST_DIR=/tmp/mxisd-test
LDAP_PORT=3890
LDAP_BASE=dc=example,dc=org
LDAP_ADMIN_DN=cn=admin,dc=example,dc=org
LDAP_ADMIN_PASSWORD=secret
PG_PORT=5433
PG_USER=postgres
PG_DB=idtest
DNS_PORT=5354
SMTP_PORT=2526
# Synapse (from PyPI, in a virtualenv kept across runs): federation over TLS for the server
# name (explicit port), and a plain client listener on loopback for the tests.
SYNAPSE_VENV=/tmp/mxisd-test-cache/synapse-venv
SYNAPSE_SERVER_NAME=synapse.example.net:18449
SYNAPSE_FEDERATION_ADDR=127.0.0.5
SYNAPSE_FEDERATION_PORT=18449
SYNAPSE_CLIENT_PORT=18008
SYNAPSE_SHARED_SECRET=mxisd-test-registration-secret
# matrix-js-sdk (the client library inside Element) from npm, kept across runs; its version
# is pinned by tests/services/element/package-lock.json.
ELEMENT_SDK_DIR=/tmp/mxisd-test-cache/matrix-js-sdk
# Synapse checks passwords with our module (etc/synapse/) against the mxisd on this port,
# which only the Synapse login test runs (nothing there: the module refuses at once and
# Synapse falls back to its own passwords).
SYNAPSE_AUTH_PORT=18090
SYNAPSE_AUTH_TIMEOUT=3
LDAPS_PORT=6360
# tests/packaging.rs: cargo-deb's package is installed into a copy of a Debian root made once
# by debootstrap (tests/support/debian-root.sh) and kept here.
PACKAGING_CACHE=/tmp/mxisd-test-cache
