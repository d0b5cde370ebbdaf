#!/usr/bin/env node
'use strict'
// core-peer.js: one hypercore@9 peer over plain loopback TCP, for interop tests.
// Run with NODE_PATH=<reference>/node_modules.
//
//   serve --dir DIR [--create N --batch B --size S] (--listen PORT | --connect H:P)
//         [--append-every MS --append-count N]
//     Opens (or creates, appending N blocks) the hypercore in DIR and replicates it
//     live with every connection. Prints one JSON line {key, discoveryKey, length,
//     byteLength, port?} once serving; then, with --append-every, appends one block
//     every MS ms (N times) and prints {"appended": length} each time. Runs until
//     SIGTERM.
//   clone --key HEX[,HEX...] [--dir DIR] (--listen PORT | --connect H:P) [--blocks i,j,..]
//         [--all] [--wait-length N] [--timeout S] [--wrong-key]
//     Replicates sparsely: fetches exactly the listed blocks (negative = from the
//     end), or everything with --all, after waiting for length >= N. Prints one JSON
//     line {key, length, byteLength, blocks: [{index, sha256}], held, elapsedMs}.
//
// Block content: tests/js/blocks.js (shared with the Rust tests' `block_content`).
// Loopback only: every connect/listen host must be 127.x.

const net = require('net')
const crypto = require('crypto')
const path = require('path')
const fs = require('fs')

function die (msg, code = 1) { process.stderr.write('core-peer: ' + msg + '\n'); process.exit(code) }
function parse (argv) {
  const o = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) {
      const k = a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())
      const n = argv[i + 1]
      if (n === undefined || n.startsWith('--')) o[k] = true
      else { o[k] = n; i++ }
    } else o._.push(a)
  }
  return o
}
const OPTS = parse(process.argv.slice(2))
const LOOP = /^127\.\d+\.\d+\.\d+$/

const { blockContent, parseSize } = require('./blocks.js')
const block = (i, size) => blockContent(i, parseSize(String(size)))
const sha = b => crypto.createHash('sha256').update(b).digest('hex')
const p = fn => new Promise((resolve, reject) => fn((err, v) => err ? reject(err) : resolve(v)))

function openFeed (dir, key, opts) {
  const hypercore = require('hypercore')
  if (dir) fs.mkdirSync(dir, { recursive: true })
  const storage = dir || require('random-access-memory')
  return key ? hypercore(storage, key, opts) : hypercore(storage, opts)
}

function replicate (feed, socket, initiator) {
  const stream = feed.replicate(initiator, { live: true })
  socket.on('error', () => {})
  stream.on('error', err => process.stderr.write('core-peer: stream: ' + err.message + '\n'))
  socket.pipe(stream).pipe(socket)
  return stream
}

function connectOrListen (feed, onlisten) {
  if (OPTS.listen !== undefined) {
    const server = net.createServer(socket => replicate(feed, socket, false))
    server.listen(Number(OPTS.listen), '127.0.0.1', () => onlisten(server.address().port))
    return
  }
  if (!OPTS.connect) die('need --listen PORT or --connect HOST:PORT')
  const [host, port] = String(OPTS.connect).split(':')
  if (!LOOP.test(host)) die('refusing non-loopback host ' + host)
  const dial = () => {
    const socket = net.connect(Number(port), host)
    socket.on('error', () => setTimeout(dial, 300))
    socket.on('connect', () => replicate(feed, socket, true))
  }
  dial()
  onlisten(undefined)
}

async function serve () {
  const feed = openFeed(OPTS.dir, null, {})
  await p(cb => feed.ready(cb))
  const n = Number(OPTS.create || 0)
  const batch = Number(OPTS.batch || 1)
  for (let i = 0; i < n;) {
    const bs = []
    for (let k = 0; k < batch && i < n; k++, i++) bs.push(block(feed.length + bs.length, OPTS.size || 1024))
    await p(cb => feed.append(bs, cb))
  }
  connectOrListen(feed, port => {
    const out = { key: feed.key.toString('hex'), discoveryKey: feed.discoveryKey.toString('hex'), length: feed.length, byteLength: feed.byteLength }
    if (port !== undefined) out.port = port
    process.stdout.write(JSON.stringify(out) + '\n')
    if (OPTS.appendEvery) {
      let left = Number(OPTS.appendCount || 1)
      const t = setInterval(() => {
        if (left-- <= 0) return clearInterval(t)
        feed.append(block(feed.length, OPTS.size || 1024), err => {
          if (err) die(err.message)
          process.stdout.write(JSON.stringify({ appended: feed.length }) + '\n')
        })
      }, Number(OPTS.appendEvery))
    }
  })
  process.on('SIGTERM', () => feed.close(() => process.exit(0)))
}

async function clone () {
  if (!OPTS.key) die('need --key')
  const started = Date.now()
  const timeout = Number(OPTS.timeout || 60)
  setTimeout(() => die('timeout after ' + timeout + ' s', 2), timeout * 1000).unref()
  // Several comma-separated keys replicate over one stream, as corestore does it.
  const keys = String(OPTS.key).split(',').map(k => {
    const key = Buffer.from(k, 'hex')
    if (OPTS.wrongKey) key[0] ^= 1
    return key
  })
  const Corestore = require('corestore')
  const raf = require('random-access-file')
  const store = OPTS.dir
    ? new Corestore(name => raf(path.join(OPTS.dir, name)))
    : new Corestore(require('random-access-memory'))
  await p(cb => store.ready(cb))
  const feeds = keys.map(key => store.get({ key, sparse: true }))
  for (const feed of feeds) await p(cb => feed.ready(cb))
  const attach = (socket, initiator) => {
    const stream = store.replicate(initiator, { live: true })
    socket.on('error', () => {})
    stream.on('error', err => process.stderr.write('core-peer: stream: ' + err.message + '\n'))
    socket.pipe(stream).pipe(socket)
  }
  if (OPTS.listen !== undefined) {
    const server = net.createServer(socket => attach(socket, false))
    server.listen(Number(OPTS.listen), '127.0.0.1', () => process.stdout.write(JSON.stringify({ listening: server.address().port }) + '\n'))
  } else {
    const [host, port] = String(OPTS.connect).split(':')
    if (!LOOP.test(host)) die('refusing non-loopback host ' + host)
    const dial = () => {
      const socket = net.connect(Number(port), host)
      socket.on('error', () => setTimeout(dial, 300))
      socket.on('connect', () => attach(socket, true))
    }
    dial()
  }
  const want = Number(OPTS.waitLength || 1)
  const results = []
  for (const feed of feeds) {
    while (feed.length < want) await p(cb => feed.update({ minLength: want, ifAvailable: false }, cb)).catch(() => {})
    let indices = []
    if (OPTS.all) {
      await p(cb => feed.download({ start: 0, end: feed.length }, cb))
      for (let i = 0; i < feed.length; i++) indices.push(i)
    } else if (OPTS.blocks) {
      indices = String(OPTS.blocks).split(',').map(Number).map(i => i < 0 ? feed.length + i : i)
    }
    const blocks = []
    for (const i of indices) blocks.push({ index: i, sha256: sha(await p(cb => feed.get(i, cb))) })
    let held = 0
    for (let i = 0; i < feed.length; i++) if (feed.has(i)) held++
    results.push({ key: feed.key.toString('hex'), length: feed.length, byteLength: feed.byteLength, blocks, held })
  }
  const out = results.length === 1 ? results[0] : { feeds: results }
  out.elapsedMs = Date.now() - started
  // Exit only once stdout is flushed: a pipe takes large writes asynchronously.
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0))
}

const cmd = OPTS._[0]
if (cmd === 'serve') serve().catch(e => die(e.stack))
else if (cmd === 'clone') clone().catch(e => die(e.stack))
else die('usage: core-peer.js serve|clone ...')
