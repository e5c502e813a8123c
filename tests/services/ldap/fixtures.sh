#!/usr/bin/env bash
# Prints the LDIF of the test directory: the base, ou=people and the fixture users.
# Each user <uid> has the password "<uid>pw".
set -euo pipefail
source "$(dirname "$0")/../config.sh"
user() { # uid phone
    printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: Example\ndisplayName: %s Example\nmail: %s@example.org\ntelephoneNumber: %s\nuserPassword: %s\n\n' \
        "$1" "$LDAP_BASE" "$1" "$1" "${1^}" "$1" "$2" "$(slappasswd -s "${1}pw")"
}
printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n' "$LDAP_BASE"
printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$LDAP_BASE"
user alice '+44 20 7946 0001'
user bob '+1 555 123 4567'
