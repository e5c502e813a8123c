#!/usr/bin/env bash
# Prints the LDIF of the test directory: the base, ou=people, the named users, an AD-style
# user and USERS generated ones (default 2,000: more than slapd's 500-entry search limit, so
# listing must page). Named users have the password "<uid>pw", generated ones "userpw".
set -euo pipefail
source "$(dirname "$0")/../config.sh"
count="${1:-2000}"
user() { # uid phone password-hash [extra object class] [extra attribute lines]
    printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\n' "$1" "$LDAP_BASE"
    if [ -n "${4:-}" ]; then printf 'objectClass: %s\n' "$4"; fi
    printf 'uid: %s\ncn: %s\nsn: Example\ndisplayName: %s Example\nmail: %s@example.org\ntelephoneNumber: %s\nuserPassword: %s\n' \
        "$1" "$1" "${1^}" "$1" "$2" "$3"
    if [ -n "${5:-}" ]; then printf '%s\n' "$5"; fi
    printf '\n'
}
printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n' "$LDAP_BASE"
printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$LDAP_BASE"
user alice '+44 20 7946 0001' "$(slappasswd -s alicepw)"
user bob '+1 555 123 4567' "$(slappasswd -s bobpw)"
user dave '+33 1 23 45 67 89' "$(slappasswd -s davepw)" adUser \
    "$(printf 'sAMAccountName: dave\nuserPrincipalName: Dave@corp.example')"
hash="$(slappasswd -s userpw)"
for i in $(seq 0 $((count - 1))); do
    user "$(printf 'user%04d' "$i")" "$(printf '+1 212 555 %04d' "$i")" "$hash"
done
