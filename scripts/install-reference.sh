#!/usr/bin/env bash
# Install the pinned Node.js reference (hypercore 9, hyperdrive 10, hyperswarm 2, ...) into
# target/reference so interop tests can run it. The source folder (../shared/reference, or
# $HYPERMOUNT_SHARED/reference) may be read-only: we only read package.json, package-lock.json
# and swarm-peer.js from it.
#
# Re-installs only when target/reference/node_modules is missing or the lock file changed.
# Installs into a temporary folder and renames it into place, under a lock, so concurrent
# callers (parallel test binaries) and interrupted runs never see a half-made install.
#
# Prints the absolute path of the installed reference on stdout (diagnostics go to stderr).
set -euo pipefail

die() { echo "install-reference: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${HYPERMOUNT_SHARED:-$ROOT/../shared}
SRC=$SHARED/reference
DEST_PARENT=$ROOT/target
DEST=$DEST_PARENT/reference
FILES=(package.json package-lock.json swarm-peer.js)

command -v node >/dev/null 2>&1 || die "node is not installed (need Node.js >= 18 with npm; e.g. apt-get install -y nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (need Node.js >= 18 with npm; e.g. apt-get install -y npm)"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 18 ] || die "Node.js $(node --version) is too old: need >= 18"

for f in "${FILES[@]}"; do
  [ -f "$SRC/$f" ] || die "missing $SRC/$f (put the shared folder beside the repo as ../shared, or set HYPERMOUNT_SHARED)"
done

mkdir -p "$DEST_PARENT"

up_to_date() {
  [ -d "$DEST/node_modules" ] || return 1
  for f in "${FILES[@]}"; do
    cmp -s "$SRC/$f" "$DEST/$f" || return 1
  done
  # Written last by a successful install; absent after an interrupted one.
  [ -f "$DEST/.installed" ]
}

if up_to_date; then
  echo "$DEST"
  exit 0
fi

exec 9>"$DEST_PARENT/.reference.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

# Another caller may have finished the install while we waited for the lock.
if up_to_date; then
  echo "$DEST"
  exit 0
fi

# Only swarm-peer.js changed: no need to reinstall node_modules.
if [ -d "$DEST/node_modules" ] && [ -f "$DEST/.installed" ] \
  && cmp -s "$SRC/package.json" "$DEST/package.json" \
  && cmp -s "$SRC/package-lock.json" "$DEST/package-lock.json"; then
  cp "$SRC/swarm-peer.js" "$DEST/swarm-peer.js.tmp"
  mv "$DEST/swarm-peer.js.tmp" "$DEST/swarm-peer.js"
  echo "$DEST"
  exit 0
fi

TMP=$(mktemp -d "$DEST_PARENT/.reference.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
for f in "${FILES[@]}"; do
  cp "$SRC/$f" "$TMP/$f"
  chmod u+w "$TMP/$f"
done
echo "install-reference: npm ci in $DEST (Node $(node --version), npm $(npm --version))" >&2
(cd "$TMP" && npm ci --no-audit --no-fund --loglevel=error >&2) \
  || die "npm ci failed (is the npm registry reachable?)"
(cd "$TMP" && node -e 'for (const m of ["hypercore","hyperdrive","corestore","hyperswarm","random-access-memory"]) require(m)' >&2) \
  || die "the installed reference does not load"
touch "$TMP/.installed"
rm -rf "$DEST"
mv "$TMP" "$DEST"
trap - EXIT
echo "$DEST"
