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
