#!/usr/bin/env bash
# The throwaway Debian root of tests/packaging.rs, made once and kept in the test cache:
# debootstrap of this machine's own release (minbase, plus adduser and systemd: the
# package's dependency and the unit's targets for `systemd-analyze verify`). Each test copies
# it and installs packages into the copy, offline: everything they need is in it.
# Usage: debian-root.sh CACHE_DIR   (prints the root's path). Needs root and debootstrap.
set -euo pipefail
CACHE="$1"
. /etc/os-release
ROOT="$CACHE/debian-root-$VERSION_CODENAME"
if [ -x "$ROOT/usr/bin/apt-get" ] && [ -x "$ROOT/usr/sbin/policy-rc.d" ]; then
    echo "$ROOT"
    exit 0
fi
MIRROR="${MXISD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
echo "services: debootstrap $VERSION_CODENAME into $ROOT (once, about 2 minutes)" >&2
rm -rf "$ROOT.new"
mkdir -p "$CACHE"
debootstrap --variant=minbase --include=adduser,systemd "$VERSION_CODENAME" "$ROOT.new" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
# As in any chroot: packages never start services (invoke-rc.d and deb-systemd-invoke ask this).
printf '#!/bin/sh\nexit 101\n' >"$ROOT.new/usr/sbin/policy-rc.d"
chmod 755 "$ROOT.new/usr/sbin/policy-rc.d"
# The downloaded packages: only copying them to each test's root would cost.
rm -f "$ROOT.new"/var/cache/apt/archives/*.deb
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
echo "$ROOT"
