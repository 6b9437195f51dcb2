#!/usr/bin/env bash
# Fetches Jane Austen's six novels (public-domain text, packaged under MIT as the R package janeaustenr) from the
# pinned Debian package and copies its lazy-load database Rdata.rdb to a folder (default data/full/austen, which git
# ignores). Read it with dev.kiln.core.data.AustenCorpus; no R is needed. Checks the .deb's SHA-256; a mismatch fails
# and leaves the destination untouched. Needs apt-get and dpkg-deb (Debian/Ubuntu).
set -euo pipefail

DEST="${1:-data/full/austen}"
PKG="r-cran-janeaustenr"
VER="1.0.0-1"
DEB_SHA256="df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
RDB="usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"

fail() { echo "fetch-austen: $*" >&2; exit 1; }
for tool in apt-get dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || fail "'$tool' is required but not installed"
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# apt's _apt sandbox user must be able to write the download folder.
chmod 777 "$WORK"

HERE="$(pwd)"
cd "$WORK"
if [ "$(id -u)" = 0 ]; then apt-get update -qq || fail "apt-get update failed"; fi
apt-get download "$PKG=$VER" >/dev/null || fail "could not download $PKG=$VER (run 'apt-get update' first?)"
DEB="$(ls ./*.deb)"
GOT="$(sha256sum "$DEB" | cut -d' ' -f1)"
[ "$GOT" = "$DEB_SHA256" ] || fail "SHA-256 mismatch for $DEB: got $GOT, expected $DEB_SHA256"
dpkg-deb -x "$DEB" out/ || fail "could not unpack $DEB"
[ -f "out/$RDB" ] || fail "$DEB lacks $RDB"
cd "$HERE"

mkdir -p "$DEST"
cp "$WORK/out/$RDB" "$DEST/Rdata.rdb.tmp" && mv "$DEST/Rdata.rdb.tmp" "$DEST/Rdata.rdb"
echo "Jane Austen novels (janeaustenr $VER, MIT; text public domain) written to $DEST/Rdata.rdb"
