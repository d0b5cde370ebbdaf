#!/usr/bin/env node
// node core-bench.js [--mib 256] [--small 100000] [--single 20000] [--no-replicate]
//
// The Node side of the hypercore benchmark: the same work the Rust benchmark does, timed in
// one run, on random-access-file storage in a temporary folder that is deleted at the end.
//   append-64k     --mib MiB as 64 KiB blocks, appended in batches of 16
//   append-1k      --small 1 KiB blocks, appended in batches of 64
//   append-single  --single 1 KiB blocks, one append call each
//   read-64k       every block of the append-64k feed, in order (feed.get)
//   read-1k        every block of the append-1k feed, in order
//   replicate-64k  a fresh clone on disk (random-access-file, same temporary folder) downloads
//                  the whole append-64k feed over two piped `feed.replicate()` streams (the
//                  verify-and-insert-from-proofs path, plus the protocol's own framing)
// Block j of a case holds u32be(j) followed by a fixed pseudo-random pattern.
// Prints one JSON line: {node, hypercore, cases: [{name, blocks, bytes, seconds, cpuSeconds,
// mibPerSec, blocksPerSec}]}; cpuSeconds is the CPU time of the whole process (all threads,
// including libuv's file I/O pool) during the case.
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const crypto = require('crypto')
const hypercore = require('hypercore')
const { parse, fail } = require('./args')

const { pos, opts } = parse(process.argv.slice(2), { mib: 'value', small: 'value', single: 'value', 'no-replicate': 'flag' })
if (pos.length) fail('usage: core-bench.js [--mib N] [--small N] [--single N] [--no-replicate]')
const MIB = Number(opts.mib || 256)
const SMALL = Number(opts.small || 100000)
const SINGLE = Number(opts.single || 20000)
for (const [k, v] of [['mib', MIB], ['small', SMALL], ['single', SINGLE]]) {
  if (!Number.isInteger(v) || v < 0) fail('--' + k + ' must be an integer >= 0')
}

const p = (fn) => new Promise((resolve, reject) => fn((err, v) => err ? reject(err) : resolve(v)))
const TEMPLATE = crypto.createHash('sha512').update('hypermount bench').digest()

function block (j, size) {
  const b = Buffer.allocUnsafe(size)
  for (let o = 0; o < size; o += TEMPLATE.length) TEMPLATE.copy(b, o, 0, Math.min(TEMPLATE.length, size - o))
  if (size >= 4) b.writeUInt32BE(j >>> 0, 0)
  return b
}

const cases = []
function cpuNow () {
  const u = process.cpuUsage()
  return u.user + u.system
}

function record (name, blocks, bytes, ns, cpuStart) {
  const seconds = Number(ns) / 1e9
  cases.push({
    name,
    blocks,
    bytes,
    seconds: +seconds.toFixed(4),
    cpuSeconds: +((cpuNow() - cpuStart) / 1e6).toFixed(4),
    mibPerSec: seconds > 0 ? +(bytes / 1048576 / seconds).toFixed(2) : null,
    blocksPerSec: seconds > 0 ? Math.round(blocks / seconds) : null
  })
}

async function open (dir) {
  const feed = hypercore(dir)
  await p(cb => feed.ready(cb))
  return feed
}

async function appendCase (name, feed, count, size, batch) {
  const c = cpuNow()
  const t = process.hrtime.bigint()
  for (let j = 0; j < count; j += batch) {
    const n = Math.min(batch, count - j)
    if (batch === 1) {
      await p(cb => feed.append(block(j, size), cb))
    } else {
      const data = []
      for (let k = 0; k < n; k++) data.push(block(j + k, size))
      await p(cb => feed.append(data, cb))
    }
  }
  record(name, count, count * size, process.hrtime.bigint() - t, c)
}

async function readCase (name, feed) {
  const c = cpuNow()
  const t = process.hrtime.bigint()
  let bytes = 0
  for (let i = 0; i < feed.length; i++) {
    const b = await p(cb => feed.get(i, { wait: false }, cb))
    bytes += b.length
  }
  record(name, feed.length, bytes, process.hrtime.bigint() - t, c)
}

async function replicateCase (name, feed, dir) {
  const clone = hypercore(dir, feed.key, { sparse: false })
  await p(cb => clone.ready(cb))
  const c = cpuNow()
  const t = process.hrtime.bigint()
  const a = feed.replicate(true, { live: false })
  const b = clone.replicate(false, { live: false })
  a.pipe(b).pipe(a)
  await p(cb => clone.update({ minLength: feed.length }, cb))
  await p(cb => clone.download({ start: 0, end: feed.length }, cb))
  record(name, clone.length, clone.byteLength, process.hrtime.bigint() - t, c)
  a.destroy()
  b.destroy()
  await p(cb => clone.close(cb))
}

async function main () {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hypermount-bench-'))
  try {
    const big = await open(path.join(tmp, 'big'))
    await appendCase('append-64k', big, MIB * 16, 65536, 16)
    const small = await open(path.join(tmp, 'small'))
    await appendCase('append-1k', small, SMALL, 1024, 64)
    const single = await open(path.join(tmp, 'single'))
    await appendCase('append-single', single, SINGLE, 1024, 1)
    await readCase('read-64k', big)
    await readCase('read-1k', small)
    if (!opts['no-replicate']) await replicateCase('replicate-64k', big, path.join(tmp, 'clone'))
    for (const f of [big, small, single]) await p(cb => f.close(cb))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  const version = require(require.resolve('hypercore/package.json')).version
  process.stdout.write(JSON.stringify({ node: process.version, hypercore: version, cases }) + '\n')
}

main().catch(err => { process.stderr.write((err && err.stack) || String(err)); process.stderr.write('\n'); process.exit(1) })
