#!/usr/bin/env bash
# The hypercore benchmark: our `Feed` (hyperdrive/examples/bench_core.rs) and the Node
# reference (tests/js/core-bench.js, hypercore 9) doing the same work in the same run, on
# disk in temporary folders that both delete afterwards. Not part of the tests.
#
#   scripts/bench-core.sh [--mib N] [--small N] [--single N] [--no-replicate]
#
# Cases (defaults): append 256 MiB as 64 KiB blocks in batches of 16; append 100k 1 KiB
# blocks in batches of 64; append 20k single 1 KiB blocks; read every block of the first
# two feeds back in order; take the whole 64 KiB feed into a fresh feed from proofs (Rust:
# `Feed::proof` + `verify_and_put` block by block; Node: a clone over piped
# `feed.replicate()` streams). Prints MiB/s and blocks/s per case for both, the Rust/Node
# ratio, the load average, and one line per performance target.
#
# Works from a clean clone: installs the reference with scripts/install-reference.sh
# (or uses $HYPERMOUNT_REFERENCE) and builds the Rust side with --release.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ARGS=("$@")
for a in "${ARGS[@]}"; do
  case "$a" in
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  esac
done

if [ -n "${HYPERMOUNT_REFERENCE:-}" ]; then
  REF=$HYPERMOUNT_REFERENCE
else
  REF=$(scripts/install-reference.sh)
fi
[ -d "$REF/node_modules/hypercore" ] || { echo "bench-core: no hypercore in $REF/node_modules" >&2; exit 1; }

echo "bench-core: building the Rust side (release)" >&2
cargo build --release --quiet -p hyperdrive --example bench_core
BIN=$ROOT/target/release/examples/bench_core

# On this kind of VM the first write into page-cache memory that was never used before
# runs several times slower than later writes (the host backs the pages on first touch).
# Write and delete a scratch file first, so that neither side, whichever runs first,
# measures that instead of itself.
SCRATCH=$(mktemp "${TMPDIR:-/tmp}/hypermount-bench-warmup.XXXXXX")
trap 'rm -f "$SCRATCH"' EXIT
dd if=/dev/zero of="$SCRATCH" bs=1M count=768 status=none
rm -f "$SCRATCH"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-core: running Rust" >&2
RUST_JSON=$("$BIN" "${ARGS[@]}")
echo "bench-core: running Node" >&2
NODE_JSON=$(NODE_PATH="$REF/node_modules" node tests/js/core-bench.js "${ARGS[@]}")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

RUST_JSON=$RUST_JSON NODE_JSON=$NODE_JSON LOAD_BEFORE=$LOAD_BEFORE LOAD_AFTER=$LOAD_AFTER \
  CORES=$(nproc) node -e '
const rust = JSON.parse(process.env.RUST_JSON)
const node = JSON.parse(process.env.NODE_JSON)
const byName = (r) => Object.fromEntries(r.cases.map((c) => [c.name, c]))
const R = byName(rust)
const N = byName(node)
const fmt = (v, d) => v == null || !isFinite(v) ? "-" : v.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d })
const MiB = 1048576
// Rates over wall time, and over the CPU time the process actually got (other processes
// share the cores: "on-CPU" = CPU seconds / wall seconds; 100% = one core all the time).
const rate = (c, cpu) => {
  const s = cpu ? c.cpuSeconds : c.seconds
  return s > 0 ? { mib: c.bytes / MiB / s, blocks: c.blocks / s } : { mib: null, blocks: null }
}
const busy = (c) => c && c.seconds > 0 && c.cpuSeconds != null ? fmt(100 * c.cpuSeconds / c.seconds, 0) + "%" : "-"
function table (cpu) {
  const rows = [["case", "blocks", "Rust MiB/s", "Rust blocks/s", "on-CPU", "Node MiB/s", "Node blocks/s", "on-CPU", "Rust/Node"]]
  for (const name of Object.keys(R)) {
    const r = R[name]
    const n = N[name]
    const rr = rate(r, cpu)
    const nr = n ? rate(n, cpu) : null
    const ratio = nr && nr.blocks > 0 && rr.blocks > 0 ? (rr.blocks / nr.blocks).toFixed(2) + "x" : "-"
    rows.push([name, String(r.blocks), fmt(rr.mib, 1), fmt(rr.blocks, 0), busy(r),
      nr ? fmt(nr.mib, 1) : "-", nr ? fmt(nr.blocks, 0) : "-", busy(n), ratio])
  }
  if (cpu) for (const row of rows) row.splice(7, 1) && row.splice(4, 1)
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)))
  const line = (row) => row.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ")
  console.log(line(rows[0]))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const row of rows.slice(1)) console.log(line(row))
}
console.log(`hypermount core benchmark: Rust hyperdrive ${rust.rust} vs Node ${node.node} hypercore ${node.hypercore}, ${process.env.CORES} cores`)
console.log(`load average (1/5/15 min): ${process.env.LOAD_BEFORE} before, ${process.env.LOAD_AFTER} after`)
console.log("")
console.log("Wall-clock rates (on-CPU: share of one core the process got during the case)")
table(false)
console.log("")
console.log("Rates per CPU-second the process got (less sensitive to other load; includes kernel time)")
table(true)
console.log("")
const targets = [
  ["append-64k", "mib", 700, "MiB/s (64 KiB blocks, batches of 16)"],
  ["append-1k", "blocks", 500000, "blocks/s (1 KiB blocks, batches of 64)"],
  ["append-single", "blocks", 30000, "appends/s (single 1 KiB blocks)"]
]
for (const [name, key, goal, what] of targets) {
  const c = R[name]
  if (!c || c.blocks === 0) { console.log(`target ${name}: >= ${fmt(goal, 0)} ${what}: not run`); continue }
  const v = rate(c, false)[key]
  const vc = c.cpuSeconds > 0 ? rate(c, true)[key] : null
  console.log(`target ${name}: >= ${fmt(goal, 0)} ${what}: Rust ${fmt(v, 0)} wall-clock: ${v >= goal ? "MET" : "NOT MET"}` +
    (vc == null ? "" : ` (${fmt(vc, 0)} per CPU-second)`))
}
'
