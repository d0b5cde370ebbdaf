#!/usr/bin/env bash
# Every check and every test: formatting, clippy (warnings are errors), then the whole
# workspace's tests with the Node reference available for the interop tests.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh node_harness    # extra arguments go to `cargo test --workspace`
#
# Environment: HYPERMOUNT_SHARED (folder holding reference/ and vectors/, default ../shared),
# HYPERMOUNT_VECTORS (default $HYPERMOUNT_SHARED/vectors),
# HYPERMOUNT_REFERENCE (an existing install to use instead of target/reference),
# HYPERMOUNT_SKIP_LINT=1 (skip fmt and clippy, for quick local runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }

if [ "${HYPERMOUNT_SKIP_LINT:-0}" != 1 ]; then
  step "cargo fmt --all --check"
  cargo fmt --all --check
  step "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
fi

# Tests find the spec vectors through these (several conventions are in use).
SHARED=${HYPERMOUNT_SHARED:-$ROOT/../shared}
if [ -d "$SHARED/vectors" ]; then
  export HYPERMOUNT_SHARED=$(cd "$SHARED" && pwd)
  export HYPERMOUNT_VECTORS=${HYPERMOUNT_VECTORS:-$HYPERMOUNT_SHARED/vectors}
else
  echo "warning: no vectors at $SHARED/vectors (set HYPERMOUNT_SHARED)" >&2
fi

if [ -n "${HYPERMOUNT_REFERENCE:-}" ] && [ -d "$HYPERMOUNT_REFERENCE/node_modules" ]; then
  REF=$(cd "$HYPERMOUNT_REFERENCE" && pwd)
else
  step "scripts/install-reference.sh"
  REF=$("$ROOT/scripts/install-reference.sh")
fi
export HYPERMOUNT_REFERENCE=$REF
export NODE_PATH=$REF/node_modules${NODE_PATH:+:$NODE_PATH}
echo "reference: $HYPERMOUNT_REFERENCE" >&2

# Safety net: tests unmount what they mount (Drop guards), but a test killed mid-way
# could leave one. Report any FUSE mount left under a temp dir and detach it lazily,
# so a machine is never left with a dead mount.
leftover_mounts() {
  awk '$3 ~ /^fuse/ && $2 ~ /^\/tmp\// {print $2}' /proc/mounts 2>/dev/null
}
before=$(leftover_mounts)
cleanup_mounts() {
  local m
  for m in $(leftover_mounts); do
    if ! grep -qxF "$m" <<<"$before"; then
      echo "warning: a test left a FUSE mount at $m; detaching it" >&2
      umount -l "$m" 2>/dev/null || true
    fi
  done
}
trap cleanup_mounts EXIT

step "cargo test --workspace $*"
cargo test --workspace "$@"
