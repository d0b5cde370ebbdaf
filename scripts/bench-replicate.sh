#!/usr/bin/env bash
# Replication throughput over loopback TCP, Node reference vs Rust, in one run:
#   - full replication of a 256 MiB feed (64 KiB blocks): Node→Node, Node→Rust,
#     Rust→Node, Rust→Rust (seeder→reader), with MiB/s and CPU % of each side;
#   - time to first byte: a fresh reader asks for one block in the middle of the
#     not-yet-replicated feed (median of 3).
# Each side is its own process (Rust: hyperdrive/examples/bench_replicate.rs, Node:
# tests/js/core-peer.js serve + tests/js/bench-peer.js clone), so CPU is attributable:
# readers report their own CPU time over the transfer, seeders are sampled from
# /proc/<pid>/stat before and after each transfer.
#
# Usage: scripts/bench-replicate.sh [BLOCKS [BLOCK_SIZE]]   (default 4096 x 65536)
# Feeds live in a temp dir that is deleted at the end; every process started here is
# killed by pid on exit. Not part of CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BLOCKS=${1:-4096}
SIZE=${2:-65536}
MIDDLE=$((BLOCKS / 2))
TTFB_RUNS=3

REF=$(scripts/install-reference.sh)
export NODE_PATH=$REF/node_modules
echo "building bench_replicate (release)..." >&2
cargo build --release --quiet -p hyperdrive --example bench_replicate
BIN=$ROOT/target/release/examples/bench_replicate
NODE_SEED="node $ROOT/tests/js/core-peer.js"
NODE_CLONE="node $ROOT/tests/js/bench-peer.js"
HZ=$(getconf CLK_TCK)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-replicate.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json() { node -e 'const v=JSON.parse(require("fs").readFileSync(0,"utf8").trim().split("\n").pop()); console.log(v[process.argv[1]])' "$1"; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# start_seed NAME CMD...: runs a seeder in the background, waits for its JSON line.
start_seed() {
  local name=$1; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 1200); do
    if [ -s "$TMP/$name.out" ]; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.err" >&2; echo "$name seeder died" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$TMP/$name.out" ] || { echo "$name seeder did not start" >&2; exit 1; }
  eval "${name}_PID=$pid"
  eval "${name}_KEY=$(json key <"$TMP/$name.out")"
  eval "${name}_PORT=$(json port <"$TMP/$name.out")"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "creating seeders: $BLOCKS blocks of $SIZE bytes each..." >&2
t=$(date +%s.%N)
start_seed NODE $NODE_SEED serve --dir "$TMP/node-seed" --create "$BLOCKS" --batch 64 --size "$SIZE" --listen 0
echo "  node seeder ready ($(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)" >&2
t=$(date +%s.%N)
start_seed RUST "$BIN" serve --dir "$TMP/rust-seed" --create "$BLOCKS" --batch 64 --size "$SIZE" --listen 0
echo "  rust seeder ready ($(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)" >&2

# run_clone SEEDER READER MODE... -> prints "elapsedMs cpuMs bytes held seederTicks"
run_clone() {
  local seeder=$1 reader=$2; shift 2
  local pid key port dir cmd
  eval "pid=\$${seeder}_PID key=\$${seeder}_KEY port=\$${seeder}_PORT"
  dir="$TMP/clone-$seeder-$reader"
  rm -rf "$dir"
  if [ "$reader" = NODE ]; then cmd=$NODE_CLONE; else cmd=$BIN; fi
  local c0 c1 out
  c0=$(cpu_ticks "$pid")
  out=$(timeout 600 $cmd clone --key "$key" --connect "127.0.0.1:$port" --dir "$dir" --length "$BLOCKS" "$@")
  c1=$(cpu_ticks "$pid")
  rm -rf "$dir"
  local held
  held=$(json held <<<"$out")
  echo "$(json elapsedMs <<<"$out") $(json cpuMs <<<"$out") $(json bytes <<<"$out") $held $((c1 - c0))"
}

declare -A RES
for pair in "NODE NODE" "NODE RUST" "RUST NODE" "RUST RUST"; do
  set -- $pair
  echo "full replication $1 -> $2..." >&2
  read -r ms cpu bytes held ticks < <(run_clone "$1" "$2" --all)
  [ "$held" = "$BLOCKS" ] || { echo "$1 -> $2: reader holds $held of $BLOCKS blocks" >&2; exit 1; }
  RES["$1 $2"]="$ms $cpu $bytes $ticks"
done

declare -A TTFB TTFB_ALL
for pair in "RUST RUST" "NODE RUST" "RUST NODE" "NODE NODE"; do
  set -- $pair
  echo "first byte of block $MIDDLE, $1 seeder -> $2 reader..." >&2
  vals=()
  for _ in $(seq 1 $TTFB_RUNS); do
    read -r ms cpu bytes held ticks < <(run_clone "$1" "$2" --block "$MIDDLE")
    [ "$bytes" = "$SIZE" ] || { echo "$1 -> $2: got $bytes bytes for block $MIDDLE" >&2; exit 1; }
    vals+=("$ms")
  done
  TTFB["$1 $2"]=$(printf '%s\n' "${vals[@]}" | sort -g | awk '{a[NR]=$1} END{printf "%.1f", a[int((NR+1)/2)]}')
  TTFB_ALL["$1 $2"]="${vals[*]}"
done

name() { [ "$1" = NODE ] && echo Node || echo Rust; }
read -r base_ms _ base_bytes _ <<<"${RES[NODE NODE]}"
base=$(awk -v b="$base_bytes" -v m="$base_ms" 'BEGIN{print b/1048576/(m/1000)}')
echo
echo "Full replication: $BLOCKS x $SIZE B ($((BLOCKS * SIZE / 1048576)) MiB) over loopback TCP, seeder -> reader"
printf '%-14s %9s %9s %13s %13s %10s\n' "pair" "seconds" "MiB/s" "seeder CPU%" "reader CPU%" "vs Node"
for pair in "NODE NODE" "NODE RUST" "RUST NODE" "RUST RUST"; do
  read -r ms cpu bytes ticks <<<"${RES[$pair]}"
  set -- $pair
  awk -v p="$(name "$1")->$(name "$2")" -v ms="$ms" -v cpu="$cpu" -v b="$bytes" -v t="$ticks" -v hz="$HZ" -v base="$base" 'BEGIN{
    mibs = b/1048576/(ms/1000)
    printf "%-14s %9.2f %9.1f %13.0f %13.0f %9.2fx\n", p, ms/1000, mibs, t*1000/hz/ms*100, cpu/ms*100, mibs/base }'
done
echo
echo "Time to first byte: block $MIDDLE of a fresh reader (dial + handshake + request), median of $TTFB_RUNS"
printf '%-14s %9s   %s\n' "pair" "ms" "runs (ms)"
for pair in "RUST RUST" "NODE RUST" "RUST NODE" "NODE NODE"; do
  set -- $pair
  printf '%-14s %9s   %s\n' "$(name "$1")->$(name "$2")" "${TTFB[$pair]}" "${TTFB_ALL[$pair]}"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
