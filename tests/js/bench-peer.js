#!/usr/bin/env node
'use strict'
// bench-peer.js: the Node reader side of scripts/bench-replicate.sh (the seeder is
// core-peer.js serve). Run with NODE_PATH=<reference>/node_modules.
//
//   clone --key HEX --connect 127.0.0.1:P --dir DIR --length N (--all | --block I)
//     Dials the seeder and downloads blocks 0..N (--all) or the one block I (--block).
//     Prints {elapsedMs, cpuMs, bytes, held}: elapsed from before the dial to the last
//     block stored, and this process's CPU time (user + system) over the same window.

const net = require('net')
const fs = require('fs')

function die (msg) { process.stderr.write('bench-peer: ' + msg + '\n'); process.exit(1) }
const OPTS = {}
const argv = process.argv.slice(2)
if (argv[0] !== 'clone') die('usage: bench-peer.js clone ...')
for (let i = 1; i < argv.length; i++) {
  const k = argv[i].replace(/^--/, '')
  const n = argv[i + 1]
  if (n === undefined || n.startsWith('--')) OPTS[k] = true
  else { OPTS[k] = n; i++ }
}
for (const k of ['key', 'connect', 'dir', 'length']) if (OPTS[k] === undefined) die('need --' + k)
const [host, port] = String(OPTS.connect).split(':')
if (!/^127\.\d+\.\d+\.\d+$/.test(host)) die('refusing non-loopback host ' + host)
const length = Number(OPTS.length)

const hypercore = require('hypercore')
fs.mkdirSync(OPTS.dir, { recursive: true })
const feed = hypercore(OPTS.dir, Buffer.from(OPTS.key, 'hex'), { sparse: true })
feed.on('error', e => die(e.message))
feed.ready(err => {
  if (err) die(err.message)
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const socket = net.connect(Number(port), host)
  socket.on('error', e => die('socket: ' + e.message))
  const stream = feed.replicate(true, { live: true })
  stream.on('error', () => {})
  socket.pipe(stream).pipe(socket)
  const done = (bytes) => {
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6
    const c = process.cpuUsage(cpu0)
    let held = 0
    for (let i = 0; i < feed.length; i++) if (feed.has(i)) held++
    const out = { elapsedMs, cpuMs: Math.round((c.user + c.system) / 1000), bytes, held, length: feed.length }
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0))
  }
  if (OPTS.all) {
    feed.download({ start: 0, end: length }, err => {
      if (err) die(err.message)
      done(feed.byteLength)
    })
  } else {
    feed.get(Number(OPTS.block), (err, v) => {
      if (err) die(err.message)
      done(v.length)
    })
  }
})
