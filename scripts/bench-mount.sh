#!/usr/bin/env bash
# FUSE mount benchmark, in one run:
#   - `cat` of a 256 MiB file through the mount: local drive cold (page cache dropped)
#     and warm (second cat), remote drive over loopback TCP cold (a second storage
#     mounting the seeded drive);
#   - `ls -lR`, `find`, `grep -r` over 10,000 small files (100 dirs x 100 files of
#     ~1 KiB): local warm, remote cold (a fresh storage per operation);
#   - the same operations on the source folder (local disk) for comparison;
#   - Node FUSE (hyperdrive-fuse, as in hyperdrive-daemon 1.14) if it can be installed
#     and mounted here; otherwise the numbers the issue quotes.
# Prints a table with ratios against ext4 and Node, and a PASS/MISS line per target.
#
# Rust side: examples/bench_mount.rs (create / seed / mount), built in release.
# Needs root (mount(2), drop_caches). Everything lives in a temp dir deleted at the end;
# every process started here is killed by pid and every mount unmounted (lazily if
# needed) on exit. Not part of CI.
#
# Usage: scripts/bench-mount.sh [BIG_MIB [DIRS [FILES_PER_DIR]]]   (default 256 100 100)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIG_MIB=${1:-256}
DIRS=${2:-100}
PER_DIR=${3:-100}
NFILES=$((DIRS * PER_DIR))
NODE_FUSE_VERSION=1.2.16

[ "$(id -u)" = 0 ] || { echo "bench-mount: needs root (mount and drop_caches)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench-mount: /dev/fuse is missing" >&2; exit 1; }

echo "building bench_mount (release)..." >&2
CARGO_INCREMENTAL=0 cargo build --release --quiet --example bench_mount
BIN=$ROOT/target/release/examples/bench_mount

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-mount.XXXXXX")
PIDS=()
MOUNTS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for m in "${MOUNTS[@]}"; do
    if grep -qs " $m " /proc/mounts; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now_ns() { date +%s%N; }
# secs CMD...: runs CMD with output discarded, prints elapsed seconds.
secs() {
  local s e
  s=$(now_ns)
  "$@" >/dev/null 2>&1 || true
  e=$(now_ns)
  awk -v d=$((e - s)) 'BEGIN { printf "%.4f", d / 1e9 }'
}
mibps() { awk -v mib="$BIG_MIB" -v s="$1" 'BEGIN { printf "%.1f", mib / s }'; }

# wait_line FILE PID WHAT: waits (60 s) for a first line in FILE from process PID.
wait_line() {
  for _ in $(seq 1 600); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { cat "${1%.out}.err" >&2; echo "$3 died" >&2; exit 1; }
    sleep 0.1
  done
  echo "$3 did not start" >&2
  exit 1
}

# start_mount NAME STORAGE [--connect ADDR --min-version N]: mounts the drive at
# $TMP/NAME, sets MPID.
start_mount() {
  local name=$1 storage=$2; shift 2
  mkdir -p "$TMP/$name"
  MOUNTS+=("$TMP/$name")
  "$BIN" mount --storage "$storage" --key "$KEY" --at "$TMP/$name" "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  MPID=$!
  PIDS+=("$MPID")
  wait_line "$TMP/$name.out" "$MPID" "mount $name"
}

# stop_mount NAME PID: SIGTERM (clean unmount), lazy unmount as a fallback.
stop_mount() {
  local m=$TMP/$1 pid=$2
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  if grep -qs " $m " /proc/mounts; then umount "$m" 2>/dev/null || umount -l "$m"; fi
}

ls_lr() { ls -lR "$1/small"; }
find_all() { find "$1/small"; }
grep_r() { grep -r "needle-$((DIRS / 2))-$((PER_DIR / 2))\$" "$1/small"; }

# ---- source folder ----
echo "making the source folder: ${BIG_MIB} MiB file + $NFILES small files..." >&2
SRC=$TMP/src
mkdir -p "$SRC"
head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom >"$SRC/big.bin"
perl -e '
  my ($root, $dirs, $per) = @ARGV;
  mkdir "$root/small" or die;
  for my $d (0 .. $dirs - 1) {
    my $dir = sprintf("%s/small/d%03d", $root, $d);
    mkdir $dir or die;
    for my $f (0 .. $per - 1) {
      open(my $fh, ">", sprintf("%s/f%03d.txt", $dir, $f)) or die;
      my $line = "file $d/$f: lorem ipsum dolor sit amet, consectetur adipiscing elit\n";
      print $fh $line x 14, "needle-$d-$f\n";
      close $fh;
    }
  }' "$SRC" "$DIRS" "$PER_DIR"
SRC_FS=$(df -T "$SRC" | awk 'NR == 2 { print $2 }')

echo "importing into a drive..." >&2
read -r KEY VERSION < <("$BIN" create --storage "$TMP/store-a" --import "$SRC")
echo "drive $KEY version $VERSION" >&2

declare -A R
# ---- ext4 (the source folder) ----
echo "measuring $SRC_FS..." >&2
drop_caches; R[ext_cat_cold]=$(mibps "$(secs cat "$SRC/big.bin")")
R[ext_cat_warm]=$(mibps "$(secs cat "$SRC/big.bin")")
for op in ls_lr find_all grep_r; do
  drop_caches; R[ext_${op}_cold]=$(secs $op "$SRC")
  R[ext_${op}_warm]=$(secs $op "$SRC")
done

# ---- local mount ----
echo "measuring the local mount..." >&2
start_mount local "$TMP/store-a"
LOCAL_PID=$MPID
M=$TMP/local
cmp -s "$M/big.bin" "$SRC/big.bin" || { echo "local mount: big.bin differs" >&2; exit 1; }
[ "$(find "$M/small" -type f | wc -l)" = "$NFILES" ] || { echo "local mount: wrong file count" >&2; exit 1; }
drop_caches; R[loc_cat_cold]=$(mibps "$(secs cat "$M/big.bin")")
R[loc_cat_warm]=$(mibps "$(secs cat "$M/big.bin")")
for op in ls_lr find_all grep_r; do
  $op "$M" >/dev/null 2>&1 || true
  R[loc_${op}_warm]=$(secs $op "$M")
done
stop_mount local "$LOCAL_PID"
# A checkout (fixed version): long TTLs, so warm walks are answered by the kernel.
start_mount checkout "$TMP/store-a" --checkout "$VERSION"
CHECKOUT_PID=$MPID
M=$TMP/checkout
cat "$M/big.bin" >/dev/null
R[chk_cat_warm]=$(mibps "$(secs cat "$M/big.bin")")
for op in ls_lr find_all grep_r; do
  $op "$M" >/dev/null 2>&1 || true
  R[chk_${op}_warm]=$(secs $op "$M")
done
stop_mount checkout "$CHECKOUT_PID"

# ---- remote over loopback ----
echo "measuring remote mounts over loopback..." >&2
"$BIN" seed --storage "$TMP/store-a" --key "$KEY" --listen 127.0.0.1:0 \
  >"$TMP/seed.out" 2>"$TMP/seed.err" &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_line "$TMP/seed.out" "$SEED_PID" "seeder"
PORT=$(head -n1 "$TMP/seed.out")
# remote_cold NAME CMD [MOUNT FLAGS]: fresh storage, mount, drop caches, time CMD on the mount; sets T
# (not run in a subshell, so the exit trap knows the mount and its process).
remote_cold() {
  local name=$1 cmd=$2
  shift 2
  start_mount "$name" "$TMP/store-$name" --connect "127.0.0.1:$PORT" --min-version "$VERSION" "$@"
  local pid=$MPID
  drop_caches
  T=$(secs "$cmd" "$TMP/$name")
  if [ "$cmd" = cat_big ]; then
    cmp -s "$TMP/$name/big.bin" "$SRC/big.bin" || { echo "remote mount: big.bin differs" >&2; exit 1; }
  fi
  stop_mount "$name" "$pid"
  rm -rf "${TMP:?}/store-$name"
}
cat_big() { cat "$1/big.bin"; }
remote_cold rcat cat_big
R[rem_cat_cold]=$(mibps "$T")
for op in ls_lr find_all grep_r; do
  remote_cold "r$op" $op
  R[rem_${op}_cold]=$T
done
# The same with the whole metadata feed selected for download by bench_mount itself (the
# drive adapter does this for every remote drive by default now; kept as a cross-check).
for op in ls_lr grep_r; do
  remote_cold "e$op" $op --eager-metadata 1
  R[eager_${op}_cold]=$T
done
kill -TERM "$SEED_PID" 2>/dev/null || true
wait "$SEED_PID" 2>/dev/null || true

# ---- Node FUSE ----
# hyperdrive-fuse (what hyperdrive-daemon 1.14 mounts with) over the reference's
# hyperdrive 10, same drive, same operations. Installed into the temp dir.
echo "checking Node FUSE (hyperdrive-fuse $NODE_FUSE_VERSION)..." >&2
NF=$TMP/nodefuse
# node_fuse_setup: installs and loads fuse-native; prints why not on failure.
node_fuse_setup() {
  command -v npm >/dev/null 2>&1 || { echo "npm is not installed"; return 1; }
  REF=$(scripts/install-reference.sh 2>"$TMP/ref.log") || { echo "the Node reference does not install"; return 1; }
  mkdir -p "$NF/lib"
  if ! (cd "$NF" && timeout 300 npm install --no-audit --no-fund --silent \
      "hyperdrive-fuse@$NODE_FUSE_VERSION" >"$TMP/npm.log" 2>&1); then
    echo "npm install hyperdrive-fuse failed: $(tail -n1 "$TMP/npm.log")"
    return 1
  fi
  # fuse-native's prebuilt addon links libfuse.so.2, which it ships as libfuse.so.
  cp "$NF/node_modules/fuse-native/prebuilds/linux-x64/libfuse.so" "$NF/lib/libfuse.so.2" \
    2>/dev/null || { echo "no linux-x64 prebuild of fuse-native"; return 1; }
  NODE_ENV_VARS=(LD_LIBRARY_PATH="$NF/lib" NODE_PATH="$NF/node_modules:$REF/node_modules")
  if ! env "${NODE_ENV_VARS[@]}" node -e 'require("fuse-native")' >"$TMP/node-load.log" 2>&1; then
    echo "fuse-native does not load: $(grep -m1 -i error "$TMP/node-load.log")"
    return 1
  fi
  cat >"$NF/mount.js" <<'JS'
// node mount.js STORAGE KEY MOUNTPOINT PORT|- MIN_VERSION: mounts with hyperdrive-fuse,
// prints "mounted", unmounts on SIGTERM. With a port, a fresh in-memory corestore
// replicates from 127.0.0.1:PORT (the reference's random-access-file cannot hold a
// fresh sparse clone; see tests/js/drive-clone.js).
'use strict'
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const ram = require('random-access-memory')
const { HyperdriveFuse } = require('hyperdrive-fuse')
const [storage, key, mnt, port, minVersion] = process.argv.slice(2)
async function main () {
  const store = port === '-' ? new Corestore(storage) : new Corestore(ram)
  await store.ready()
  if (port !== '-') {
    const socket = net.connect(Number(port), '127.0.0.1')
    const stream = store.replicate(true, { live: true })
    socket.pipe(stream).pipe(socket)
  }
  const drive = new Hyperdrive(store, Buffer.from(key, 'hex'))
  await drive.promises.ready()
  const want = Number(minVersion)
  while (drive.version < want) {
    await new Promise(resolve => drive.metadata.update({ ifAvailable: false, minLength: want }, () => resolve()))
  }
  const fuse = new HyperdriveFuse(drive, mnt)
  await fuse.mount()
  process.stdout.write('mounted\n')
  const stop = () => { Promise.resolve(fuse.unmount()).finally(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
JS
}
# node_mount NAME STORAGE PORT|-: like start_mount, for hyperdrive-fuse; fails softly.
node_mount() {
  local name=$1
  mkdir -p "$TMP/$name"
  MOUNTS+=("$TMP/$name")
  env "${NODE_ENV_VARS[@]}" node "$NF/mount.js" "$2" "$KEY" "$TMP/$name" "$3" "$VERSION" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  MPID=$!
  PIDS+=("$MPID")
  for _ in $(seq 1 1200); do
    grep -qs mounted "$TMP/$name.out" && return 0
    kill -0 "$MPID" 2>/dev/null || break
    sleep 0.1
  done
  NODE_FAIL="hyperdrive-fuse mount failed: $(grep -m1 -i error "$TMP/$name.err" || echo timeout)"
  stop_mount "$name" "$MPID"
  return 1
}
NODE_NOTE=""
if node_fuse_setup >"$TMP/why"; then
  NODE_FAIL=""
  if node_mount nlocal "$TMP/store-a" -; then
    NPID=$MPID
    M=$TMP/nlocal
    cmp -s "$M/big.bin" "$SRC/big.bin" || echo "warning: hyperdrive-fuse read a different big.bin" >&2
    drop_caches; R[node_loc_cat_cold]=$(mibps "$(secs cat "$M/big.bin")")
    R[node_loc_cat_warm]=$(mibps "$(secs cat "$M/big.bin")")
    for op in ls_lr find_all grep_r; do
      $op "$M" >/dev/null 2>&1 || true
      R[node_loc_${op}_warm]=$(secs $op "$M")
    done
    stop_mount nlocal "$NPID"
    "$BIN" seed --storage "$TMP/store-a" --key "$KEY" --listen 127.0.0.1:0 \
      >"$TMP/seed2.out" 2>"$TMP/seed2.err" &
    SEED_PID=$!
    PIDS+=("$SEED_PID")
    wait_line "$TMP/seed2.out" "$SEED_PID" "seeder"
    PORT=$(head -n1 "$TMP/seed2.out")
    for op in cat_big ls_lr find_all grep_r; do
      node_mount "n$op" - "$PORT" || break
      NPID=$MPID
      drop_caches
      R[node_rem_${op}_cold]=$(secs $op "$TMP/n$op")
      stop_mount "n$op" "$NPID"
    done
    [ -n "${R[node_rem_cat_big_cold]:-}" ] && R[node_rem_cat_cold]=$(mibps "${R[node_rem_cat_big_cold]}")
    kill -TERM "$SEED_PID" 2>/dev/null || true
    wait "$SEED_PID" 2>/dev/null || true
  fi
  if [ -n "$NODE_FAIL" ]; then
    NODE_NOTE="Node FUSE: $NODE_FAIL; the Node column falls back to the numbers the issue quotes"
  else
    NODE_NOTE="Node FUSE: hyperdrive-fuse $NODE_FUSE_VERSION measured in this run (same drive, same operations)"
  fi
else
  NODE_NOTE="Node FUSE: not installable here ($(cat "$TMP/why")); the Node column shows the numbers the issue quotes"
fi

# ---- report ----
# Quoted in the issue (hyperdrive-daemon 1.14 / hyperdrive-fuse).
declare -A NODE=(
  [loc_cat_cold]=178 [rem_cat_cold]=88
  [loc_ls_lr_warm]=4.6 [rem_ls_lr_cold]=6.8 [rem_grep_r_cold]=19.3
)
declare -A QEXT=([cat_cold]=406 [ls_lr]=0.04)

# speed A B unit: how many times faster A is than B (MiB/s: A/B, seconds: B/A).
speed() {
  [ -n "$2" ] || { echo "-"; return; }
  awk -v a="$1" -v b="$2" -v u="$3" 'BEGIN {
    r = (u == "MiB/s") ? a / b : b / a; printf (r >= 10 ? "%.0fx" : "%.2fx"), r }'
}
row() { # label key ext_key unit
  local label=$1 key=$2 ext=${R[$3]:-} unit=$4 node=${R[node_$2]:-} quoted=${NODE[$2]:-}
  printf "%-32s %10s %-5s %9s %7s %9s %7s %7s %7s\n" "$label" "${R[$key]}" "$unit" "${ext:--}" \
    "$(speed "${R[$key]}" "$ext" "$unit")" "${node:--}" "$(speed "${R[$key]}" "$node" "$unit")" \
    "${quoted:--}" "$(speed "${R[$key]}" "$quoted" "$unit")"
}
echo
echo "hypermount FUSE benchmark: ${BIG_MIB} MiB file, $NFILES files of ~1 KiB in $DIRS dirs"
echo "kernel $(uname -r), $(nproc) cores, source folder on $SRC_FS, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "x columns: how many times faster hypermount is (>1: faster, <1: slower)"
echo
printf "%-32s %10s %-5s %9s %7s %9s %7s %7s %7s\n" "operation" "hypermount" "unit" "$SRC_FS" "x $SRC_FS" \
  "Node run" "x Node" "Node*" "x Node*"
row "cat, local, cold" loc_cat_cold ext_cat_cold MiB/s
row "cat, local, warm" loc_cat_warm ext_cat_warm MiB/s
row "cat, remote, cold" rem_cat_cold ext_cat_cold MiB/s
row "ls -lR, local, warm" loc_ls_lr_warm ext_ls_lr_warm s
row "find, local, warm" loc_find_all_warm ext_find_all_warm s
row "grep -r, local, warm" loc_grep_r_warm ext_grep_r_warm s
row "cat, local checkout, warm" chk_cat_warm ext_cat_warm MiB/s
row "ls -lR, local checkout, warm" chk_ls_lr_warm ext_ls_lr_warm s
row "find, local checkout, warm" chk_find_all_warm ext_find_all_warm s
row "grep -r, local checkout, warm" chk_grep_r_warm ext_grep_r_warm s
row "ls -lR, remote, cold" rem_ls_lr_cold ext_ls_lr_cold s
row "find, remote, cold" rem_find_all_cold ext_find_all_cold s
row "grep -r, remote, cold" rem_grep_r_cold ext_grep_r_cold s
row "ls -lR, remote, cold, eager md" eager_ls_lr_cold ext_ls_lr_cold s
row "grep -r, remote, cold, eager md" eager_grep_r_cold ext_grep_r_cold s
echo "($SRC_FS: same operation on the source folder, cold rows after drop_caches, warm rows"
echo " after a first pass. Node run: hyperdrive-fuse in this run. Node*: quoted in the issue,"
echo " which also quotes ext4 cat ${QEXT[cat_cold]} MiB/s cold and ls -lR ${QEXT[ls_lr]} s."
echo " checkout: the drive mounted at its version (immutable: long TTLs, cached dirs)."
echo " eager md: bench_mount --eager-metadata selects the whole metadata feed for download;"
echo " remote mounts now do that by default, so these rows should match the ones above)"
echo "$NODE_NOTE"
echo
target() { # label value op limit unit
  local verdict
  verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= l : v <= l; print ok ? "PASS" : "MISS" }')
  printf "target %-26s %s %-6s : %10s %-5s %s\n" "$1" "$3" "$4" "$2" "$5" "$verdict"
}
target "local cold cat" "${R[loc_cat_cold]}" ">=" 350 MiB/s
target "remote cold cat" "${R[rem_cat_cold]}" ">=" 300 MiB/s
target "warm cat" "${R[loc_cat_warm]}" ">=" 4096 MiB/s
target "local ls -lR" "${R[loc_ls_lr_warm]}" "<=" 0.15 s
target "remote cold ls -lR" "${R[rem_ls_lr_cold]}" "<=" 1 s
target "remote cold grep -r" "${R[rem_grep_r_cold]}" "<=" 2 s
