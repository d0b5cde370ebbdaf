#!/usr/bin/env node
'use strict'
// bench-drive.js: the Node side of scripts/bench-drive.sh (hyperdrive/examples/bench_drive.rs
// is the Rust side, same workload, same file names and contents). NODE_PATH=<reference>.
//
//   serve --dir D --files N --dirs M --size S --big B --listen PORT
//     Writes N files of S bytes into M directories (/dJ/fK) of a drive in corestore D,
//     readdirs every directory, stats every file, writes then reads one file of B bytes,
//     prints {key, port, version, writeMs, readdirMs, statMs, bigWriteMs, bigReadMs} and
//     serves the corestore on 127.0.0.1:PORT until killed.
//   clone --key HEX --connect 127.0.0.1:P --files N --dirs M --size S --version V
//     A fresh in-memory replica: readdir of /d0 (time, metadata blocks fetched), then
//     reads all N files. Prints {openMs, readdirMs, readdirBlocks, readdirEntries,
//     readAllMs, readAllBytes, metadataHeld, metadataLength, contentHeld, contentLength}.

const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const ram = require('random-access-memory')

function die (msg) { process.stderr.write('bench-drive: ' + msg + '\n'); process.exit(1) }
const argv = process.argv.slice(2)
const mode = argv[0]
const O = {}
for (let i = 1; i < argv.length; i++) {
  const k = argv[i].replace(/^--/, '')
  const n = argv[i + 1]
  if (n === undefined || n.startsWith('--')) O[k] = true
  else { O[k] = n; i++ }
}
const need = (k) => { if (O[k] === undefined) die('need --' + k); return O[k] }

const files = Number(need('files'))
const dirs = Math.max(1, Number(need('dirs')))
const perDir = Math.max(1, Math.ceil(files / dirs))
const size = Number(need('size'))

function filePath (i) { return '/d' + Math.floor(i / perDir) + '/f' + (i % perDir) }
function fileContent (i, len) {
  const b = Buffer.alloc(len)
  // (i*31 + j*7) % 251, as bench_drive.rs; kept in safe-integer range by reducing i first.
  const base = (i * 31) % 251
  for (let j = 0; j < len; j++) b[j] = (base + (j * 7) % 251) % 251
  return b
}
const now = () => process.hrtime.bigint()
const msSince = (t) => Number(process.hrtime.bigint() - t) / 1e6

async function serve () {
  const big = Number(need('big'))
  const store = new Corestore(need('dir'))
  await store.ready()
  const drive = new Hyperdrive(store, null)
  const D = drive.promises
  await D.ready()
  const contents = []
  for (let i = 0; i < files; i++) contents.push(fileContent(i, size))

  let t = now()
  for (let i = 0; i < files; i++) await D.writeFile(filePath(i), contents[i])
  const writeMs = msSince(t)

  t = now()
  let entries = 0
  for (let j = 0; j < Math.ceil(files / perDir); j++) entries += (await D.readdir('/d' + j)).length
  const readdirMs = msSince(t)
  if (entries !== files) die('readdir saw ' + entries + ' of ' + files)

  t = now()
  for (let i = 0; i < files; i++) {
    const st = await D.stat(filePath(i))
    if (st.size !== size) die('stat: wrong size')
  }
  const statMs = msSince(t)

  const data = fileContent(7, big)
  t = now()
  await D.writeFile('/big.bin', data)
  const bigWriteMs = msSince(t)
  t = now()
  const back = await D.readFile('/big.bin')
  const bigReadMs = msSince(t)
  if (!back.equals(data)) die('big file read back differs')

  const server = net.createServer(socket => {
    const stream = store.replicate(false, { live: true })
    stream.on('error', () => socket.destroy())
    socket.on('error', () => stream.destroy())
    socket.pipe(stream).pipe(socket)
  })
  server.listen(Number(need('listen')), '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({
      key: drive.key.toString('hex'),
      port: server.address().port,
      version: drive.version,
      writeMs,
      readdirMs,
      statMs,
      bigWriteMs,
      bigReadMs
    }) + '\n')
  })
}

function countHeld (feed) {
  let n = 0
  for (let i = 0; i < feed.length; i++) if (feed.has(i)) n++
  return n
}

async function clone () {
  const [host, port] = String(need('connect')).split(':')
  if (!/^127\.\d+\.\d+\.\d+$/.test(host)) die('refusing non-loopback host ' + host)
  const version = Number(need('version'))
  const store = new Corestore(ram)
  await store.ready()
  const t0 = now()
  const socket = net.connect(Number(port), host)
  socket.on('error', e => die('socket: ' + e.message))
  const stream = store.replicate(true, { live: true })
  stream.on('error', () => {})
  socket.pipe(stream).pipe(socket)
  const drive = new Hyperdrive(store, Buffer.from(need('key'), 'hex'))
  const D = drive.promises
  await D.ready()
  while (drive.version < version) {
    await new Promise(resolve => drive.metadata.update({ ifAvailable: false, minLength: version }, () => resolve()))
  }
  const openMs = msSince(t0)

  const before = countHeld(drive.metadata)
  let t = now()
  const list = await D.readdir('/d0')
  const readdirMs = msSince(t)
  const readdirBlocks = countHeld(drive.metadata) - before
  if (list.length !== Math.min(perDir, files)) die('remote readdir listed ' + list.length)

  t = now()
  let bytes = 0
  for (let i = 0; i < files; i++) {
    const b = await D.readFile(filePath(i))
    if (!b.equals(fileContent(i, size))) die('file ' + i + ' differs')
    bytes += b.length
  }
  const readAllMs = msSince(t)
  const content = await new Promise((resolve, reject) => drive.getContent((e, c) => e ? reject(e) : resolve(c)))
  process.stdout.write(JSON.stringify({
    openMs,
    readdirMs,
    readdirBlocks,
    readdirEntries: list.length,
    readAllMs,
    readAllBytes: bytes,
    metadataHeld: countHeld(drive.metadata),
    metadataLength: drive.metadata.length,
    contentHeld: countHeld(content),
    contentLength: content.length
  }) + '\n', () => process.exit(0))
}

if (mode === 'serve') serve().catch(e => die(String(e && e.stack)))
else if (mode === 'clone') clone().catch(e => die(String(e && e.stack)))
else die('usage: bench-drive.js serve|clone ...')
