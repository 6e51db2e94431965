#!/usr/bin/env bash
# Vendors axe-core (the accessibility engine the browser tests inject into every dashboard page)
# from the npm registry: one pinned version, checked against its SHA-256, unpacked into
# .cache/ (git-ignored). Never fetched at run time: the tests read the file this leaves.
set -euo pipefail

VERSION=4.14.1
SHA256=e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
DEST=.cache/axe-core-$VERSION

if [ -f "$DEST/axe.min.js" ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "vendor-axe: npm is missing (make system-deps)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "axe-core@$VERSION" >/dev/null)
tarball="$work/axe-core-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet
tar -xzf "$tarball" -C "$work" package/axe.min.js package/LICENSE
mkdir -p "$DEST"
mv "$work/package/axe.min.js" "$work/package/LICENSE" "$DEST/"
echo "vendor-axe: axe-core $VERSION in $DEST"
