#!/usr/bin/env bash
# The drive benchmark, Node reference vs Rust, in one run. Each side, as its own process
# (Rust: hyperdrive/examples/bench_drive.rs, Node: tests/js/bench-drive.js), on disk:
#   - writes FILES files of 1 KiB into DIRS directories (/dJ/fK), one file at a time
#     (Rust also: the same files with one Drive::write_files call, into a second drive);
#   - readdirs every directory, stats every file;
#   - writes then reads one 256 MiB file;
# then serves its corestore over loopback TCP, and a fresh in-memory replica (Rust and
# Node readers against both seeders) times a readdir of one 100-entry directory (with the
# metadata blocks it fetched) and reading all FILES files.
#
# Usage: scripts/bench-drive.sh [FILES [DIRS [BIG_BYTES]]]   (default 10000 100 268435456)
# Seeders live in a temp dir that is deleted at the end; every process started here is
# killed by pid on exit. Not part of CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FILES=${1:-10000}
DIRS=${2:-100}
BIG=${3:-268435456}
SIZE=1024

REF=$(scripts/install-reference.sh)
export NODE_PATH=$REF/node_modules
echo "building bench_drive (release)..." >&2
cargo build --release --quiet -p hyperdrive --example bench_drive
BIN=$ROOT/target/release/examples/bench_drive
NODE="node $ROOT/tests/js/bench-drive.js"
COMMON=(--files "$FILES" --dirs "$DIRS" --size "$SIZE")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-drive.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json() { node -e 'const v=JSON.parse(require("fs").readFileSync(0,"utf8").trim().split("\n").pop()); console.log(v[process.argv[1]])' "$1"; }

# start_seed NAME CMD...: runs a seeder (which first runs the local cases) in the
# background and waits for its JSON line.
start_seed() {
  local name=$1; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 6000); do
    if [ -s "$TMP/$name.out" ]; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.err" >&2; echo "$name seeder died" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$TMP/$name.out" ] || { echo "$name seeder did not start" >&2; exit 1; }
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "Node: local cases, then serving..." >&2
start_seed NODE $NODE serve --dir "$TMP/node-seed" "${COMMON[@]}" --big "$BIG" --listen 0
echo "Rust: local cases, then serving..." >&2
start_seed RUST "$BIN" serve --dir "$TMP/rust-seed" "${COMMON[@]}" --big "$BIG" --listen 0

# run_clone SEEDER READER -> the reader's JSON line
run_clone() {
  local out=$TMP/$1.out cmd
  if [ "$2" = NODE ]; then cmd=$NODE; else cmd=$BIN; fi
  timeout 600 $cmd clone --key "$(json key <"$out")" --connect "127.0.0.1:$(json port <"$out")" \
    --version "$(json version <"$out")" "${COMMON[@]}"
}

declare -A REM
for pair in "NODE NODE" "RUST RUST" "NODE RUST" "RUST NODE"; do
  set -- $pair
  echo "remote: $1 seeder -> fresh $2 replica..." >&2
  REM["$1 $2"]=$(run_clone "$1" "$2")
done

name() { [ "$1" = NODE ] && echo Node || echo Rust; }
echo
echo "Local drive operations ($FILES files of $SIZE B in $DIRS dirs, one $((BIG / 1048576)) MiB file), on disk"
printf '%-34s %12s %12s %9s\n' "case" "Node ms" "Rust ms" "speedup"
row() {
  local label=$1 key=$2 n r
  n=$(json "$key" <"$TMP/NODE.out"); r=$(json "$key" <"$TMP/RUST.out")
  awk -v l="$label" -v n="$n" -v r="$r" 'BEGIN{printf "%-34s %12.1f %12.1f %8.2fx\n", l, n, r, (r > 0 ? n / r : 0)}'
}
row "write $FILES files" writeMs
awk -v l="write $FILES files, one write_files" -v r="$(json writeBatchMs <"$TMP/RUST.out")" -v n="$(json writeMs <"$TMP/NODE.out")" \
  'BEGIN{printf "%-34s %12s %12.1f %8.2fx  (Rust batch API vs Node one by one)\n", l, "-", r, (r > 0 ? n / r : 0)}'
row "readdir all $DIRS dirs" readdirMs
row "stat all $FILES files" statMs
row "write $((BIG / 1048576)) MiB file" bigWriteMs
row "read $((BIG / 1048576)) MiB file" bigReadMs

echo
echo "Remote, fresh replica over loopback TCP (seeder -> reader)"
printf '%-12s %9s %12s %15s %13s %9s %16s\n' "pair" "open ms" "readdir ms" "readdir blocks" "read all ms" "vs Node" "content held"
base=$(json readAllMs <<<"${REM[NODE NODE]}")
for pair in "NODE NODE" "RUST RUST" "NODE RUST" "RUST NODE"; do
  set -- $pair
  v=${REM[$pair]}
  awk -v p="$(name "$1")->$(name "$2")" -v o="$(json openMs <<<"$v")" -v d="$(json readdirMs <<<"$v")" \
    -v b="$(json readdirBlocks <<<"$v")" -v a="$(json readAllMs <<<"$v")" -v base="$base" \
    -v ch="$(json contentHeld <<<"$v")/$(json contentLength <<<"$v")" \
    'BEGIN{printf "%-12s %9.1f %12.1f %15d %13.1f %8.2fx %16s\n", p, o, d, b, a, (a > 0 ? base / a : 0), ch}'
done

echo
target() {
  local label=$1 v=$2 goal=$3 unit=$4
  awk -v l="$label" -v v="$v" -v g="$goal" -v u="$unit" \
    'BEGIN{printf "target %s: <= %s %s: Rust %.1f %s: %s\n", l, g, u, v, u, (v <= g ? "MET" : "NOT MET")}'
}
target "write $FILES files (write_file each)" "$(json writeMs <"$TMP/RUST.out")" 500 ms
target "write $FILES files (one write_files)" "$(json writeBatchMs <"$TMP/RUST.out")" 500 ms
target "remote readdir (Rust->Rust)" "$(json readdirMs <<<"${REM[RUST RUST]}")" 15 ms
target "remote read of $FILES files (Rust->Rust)" "$(json readAllMs <<<"${REM[RUST RUST]}")" 1500 ms
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
