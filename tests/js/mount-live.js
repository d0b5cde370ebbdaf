#!/usr/bin/env node
// node mount-live.js DIR MASTERKEYHEX
// A live drive for mount tests: writes /hello.txt, serves the corestore over TCP on
// 127.0.0.1 (live replication; the Rust side dials), prints {key, version, port}. On each
// SIGUSR2 it writes /new-N.txt ("new N\n") and prints {written, version}. Runs until killed.
'use strict'
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const { parse, fail } = require('./args')

const { pos } = parse(process.argv.slice(2), {})
if (pos.length !== 2) fail('usage: mount-live.js DIR MASTERKEYHEX')

async function main () {
  const store = new Corestore(pos[0], { masterKey: Buffer.from(pos[1], 'hex') })
  await store.ready()
  const drive = new Hyperdrive(store, null)
  await drive.promises.ready()
  await drive.promises.writeFile('/hello.txt', 'hello from node\n')
  let n = 0
  let busy = Promise.resolve()
  process.on('SIGUSR2', () => {
    busy = busy.then(async () => {
      n++
      const p = `/new-${n}.txt`
      await drive.promises.writeFile(p, `new ${n}\n`)
      process.stdout.write(JSON.stringify({ written: p, version: drive.version }) + '\n')
    }).catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
  })
  const server = net.createServer(socket => {
    const stream = store.replicate(false, { live: true })
    stream.on('error', () => socket.destroy())
    socket.on('error', () => stream.destroy())
    socket.pipe(stream).pipe(socket)
  })
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({
      key: drive.key.toString('hex'),
      version: drive.version,
      port: server.address().port
    }) + '\n')
  })
}

process.on('SIGTERM', () => process.exit(0))
main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
