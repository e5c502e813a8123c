#!/bin/sh
# Writes the man page mxisd(8) to stdout from the help text of the mxisd binary given
# (`mxisd --help`), so the page says what the binary does: each command of the usage lines
# becomes an entry of COMMANDS, the other lines of the help text its NOTES; the sections
# around them (files, the service, where to read more) are this package's.
# Usage: debian/make-manpage.sh target/release/mxisd > target/man/mxisd.8
set -eu
BIN="$1"
VERSION="$("$BIN" --version | awk '{print $2}')"
HELP="$("$BIN" --help)"

# troff: a backslash is written \e, a line starting with . or ' is protected by \&, and a
# hyphen is \- (a minus, as in options).
escape() {
    sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

cat <<HEAD
.TH MXISD 8 "" "mxisd $VERSION" "System Administration"
.SH NAME
mxisd \\- federated Matrix identity server
.SH SYNOPSIS
HEAD
# The usage lines: "Usage: mxisd ARGS   what it does", then "       mxisd ARGS   ...".
printf '%s\n' "$HELP" | sed -n -e 's/^Usage: //p' -e 's/^       \(mxisd\)/\1/p' \
    | sed 's/  .*//' | escape | sed -e 's/^/.B /' -e 's/$/\n.br/'
cat <<'DESC'
.SH DESCRIPTION
.B mxisd
maps third\-party identifiers (e\-mail addresses, phone numbers) to Matrix IDs for
homeservers and clients, answering from local identity stores (LDAP, SQL, REST) before
other identity servers, and signs its answers with its ed25519 key.
.SH COMMANDS
DESC
printf '%s\n' "$HELP" | sed -n -e 's/^Usage: //p' -e 's/^       \(mxisd\)/\1/p' \
    | while IFS= read -r line; do
        command="$(printf '%s' "$line" | sed 's/  .*//')"
        what="$(printf '%s' "$line" | sed -n 's/^[^ ].*  *\(  [^ ].*\)$/\1/p' | sed 's/^ *//')"
        printf '.TP\n.B %s\n' "$(printf '%s' "$command" | escape)"
        if [ -n "$what" ]; then printf "%s\n" "$what" | escape; else echo "\\&"; fi
    done
echo ".SH NOTES"
printf '%s\n' "$HELP" | sed -e '/^Usage: /d' -e '/^       mxisd/d' -e '/^$/d' | escape \
    | sed 's/$/\n.br/'
cat <<'TAIL'
.SH FILES
.TP
.I /etc/mxisd/mxisd.yaml
The configuration, made from the sample when the package is installed without one.
.TP
.I /etc/mxisd/mxisd\-sample.yaml
The sample configuration; every key and its default:
.IR /usr/share/doc/mxisd/mxisd.example.yaml .
.TP
.I /var/lib/mxisd
The state directory: the signing keys and the SQLite database. Purging the package keeps it.
.TP
.I /etc/systemd/system/mxisd.service.d/50\-paths\-from\-config.conf
Written by the package when the key store or database is outside /var/lib/mxisd; rewritten by
.BR "dpkg\-reconfigure mxisd" .
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.I /usr/share/doc/mxisd/README.md
TAIL
