#!/usr/bin/env bash
# Builds the Debian package target/debian/contentdist_<version>-1_<arch>.deb and
# prints its path on the last line.
#
#   bash packaging/build-deb.sh             # release build, then the package
#   bash packaging/build-deb.sh --no-build  # package target/release/contentdist as is
#
# The manual pages and completions come from the binary itself (`contentdist
# generate`, see crates/contentdist-cli/src/generate.rs), written to
# packaging/generated/ (not in git) and packaged from there by cargo-deb, with the
# unit, the conffile and the maintainer scripts ([package.metadata.deb] in
# crates/contentdist-cli/Cargo.toml). Installs cargo-deb from crates.io if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

build=true
case "${1:-}" in
    "") ;;
    --no-build) build=false ;;
    *)
        echo "usage: bash packaging/build-deb.sh [--no-build]" >&2
        exit 2
        ;;
esac

# The version the package is checked against; --locked builds it with the
# dependencies it was released with.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb missing: cargo install cargo-deb --version $CARGO_DEB_VERSION --locked"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/release/contentdist
if [ "$build" = true ]; then
    cargo build --release -p contentdist-cli
elif [ ! -x "$bin" ]; then
    echo "--no-build: $bin does not exist; build it first (cargo build --release)" >&2
    exit 1
fi

# Generated afresh every time: a page left over from a removed subcommand must not
# be packaged.
generated=packaging/generated
rm -rf "$generated"
"$bin" generate man "$generated/man" >/dev/null
"$bin" generate completions "$generated/completions" >/dev/null

# --no-build: the binary was just built (above, or by the caller). cargo-deb strips
# it and gzips the manual pages; --fast (light compression) because the package is
# compressed again below, when the md5sums are added.
out=$(cargo deb -p contentdist-cli --no-build --fast)
deb=$(tail -n 1 <<<"$out")

# cargo-deb writes no md5sums. With them, `dpkg --verify contentdist` (and debsums)
# can tell whether an installed file was changed. Conffiles are left out, as
# dh_md5sums does: dpkg keeps their sums itself.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb --raw-extract "$deb" "$work/pkg"
(
    cd "$work/pkg"
    find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
        grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) |
        xargs -d '\n' md5sum >DEBIAN/md5sums
)
chmod 0644 "$work/pkg/DEBIAN/md5sums"
dpkg-deb --root-owner-group --build "$work/pkg" "$deb" >/dev/null
echo "$deb"
