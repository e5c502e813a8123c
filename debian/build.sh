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
cargo build --release --locked
mkdir -p target/man
sh debian/make-manpage.sh target/release/mxisd >target/man/mxisd.8
arch="$(dpkg --print-architecture)"
cargo deb --no-build --deb-version "$deb_version" --output "target/debian/mxisd_$version-1_$arch.deb" "$@"
