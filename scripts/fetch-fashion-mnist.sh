#!/usr/bin/env bash
# Fetches the full Fashion-MNIST (60k train / 10k test, MIT, (c) 2017 Zalando SE) from the pinned Debian package
# and places the four gzip'd IDX files in a folder (default data/full/fashion-mnist). Checks the .deb's SHA-256 and
# each uncompressed file's SHA-256; any mismatch fails with a message and leaves the destination untouched.
# Needs apt-get and dpkg-deb (Debian/Ubuntu); no root needed for `apt-get download` once the lists are fresh.
set -euo pipefail

DEST="${1:-data/full/fashion-mnist}"
PKG="dataset-fashion-mnist"
VER="0.0~git20200523.55506a9-1"
DEB_SHA256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
declare -A FILE_SHA256=(
  [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

fail() { echo "fetch-fashion-mnist: $*" >&2; exit 1; }
for tool in apt-get dpkg-deb sha256sum gzip; do
  command -v "$tool" >/dev/null || fail "'$tool' is required but not installed"
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# apt's _apt sandbox user must be able to write the download folder.
chmod 777 "$WORK"

cd "$WORK"
if [ "$(id -u)" = 0 ]; then apt-get update -qq || fail "apt-get update failed"; fi
apt-get download "$PKG=$VER" >/dev/null || fail "could not download $PKG=$VER (run 'apt-get update' first?)"
DEB="$(ls ./*.deb)"
GOT="$(sha256sum "$DEB" | cut -d' ' -f1)"
[ "$GOT" = "$DEB_SHA256" ] || fail "SHA-256 mismatch for $DEB: got $GOT, expected $DEB_SHA256"
dpkg-deb -x "$DEB" out/ || fail "could not unpack $DEB"

SRC="out/usr/share/datasets/fashion-mnist"
for name in "${!FILE_SHA256[@]}"; do
  [ -f "$SRC/$name.gz" ] || fail "$DEB lacks $name.gz"
  GOT="$(gzip -dc "$SRC/$name.gz" | sha256sum | cut -d' ' -f1)"
  [ "$GOT" = "${FILE_SHA256[$name]}" ] || fail "SHA-256 mismatch for uncompressed $name: got $GOT, expected ${FILE_SHA256[$name]}"
done
cd - >/dev/null

mkdir -p "$DEST"
for name in "${!FILE_SHA256[@]}"; do
  cp "$WORK/$SRC/$name.gz" "$DEST/$name.gz.tmp" && mv "$DEST/$name.gz.tmp" "$DEST/$name.gz"
done
echo "Fashion-MNIST (MIT, (c) 2017 Zalando SE) written to $DEST"
