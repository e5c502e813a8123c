#!/bin/sh
# Builds the Debian package: target/debian/mxisd_<version>-1_<arch>.deb.
#   sh debian/build.sh [cargo deb options]
# The release binary, the man page mxisd(8) made from its help text, then `cargo deb`
# (cargo install cargo-deb) with the package version 1:<Cargo version>-1. The epoch sorts
# it after every release of mxisd 1.x's Java package, which it replaces (README, "Debian
# package"); it must match debian/changelog's first entry.
set -eu
cd "$(dirname "$0")/.."
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
deb_version="1:$version-1"
changelog_version="$(sed -n '1s/^mxisd (\(.*\)).*/\1/p' debian/changelog)"
if [ "$changelog_version" != "$deb_version" ]; then
    echo "debian/changelog's first entry is $changelog_version, the package $deb_version: add an entry" >&2
    exit 1
fi
# MXISD_PACKAGE_PROFILE=dev packs the debug binary that `cargo test` has already built
# instead (tests/packaging.rs: it spares the suite a release build of about 4 minutes; the
# package's files, scripts and unit are the same). cargo-deb warns that it is for releases.
profile="${MXISD_PACKAGE_PROFILE:-release}"
case "$profile" in
    release) dir=release ;;
    dev) dir=debug ;;
    *) echo "MXISD_PACKAGE_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
cargo build --profile "$profile" --locked
mkdir -p target/man
sh debian/make-manpage.sh "target/$dir/mxisd" >target/man/mxisd.8
arch="$(dpkg --print-architecture)"
cargo deb --no-build --profile "$profile" --deb-version "$deb_version" \
    --output "target/debian/mxisd_$version-1_$arch.deb" "$@"
