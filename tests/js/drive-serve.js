#!/usr/bin/env node
// node drive-serve.js DIR MASTERKEYHEX
// Builds the interop drive (drive-common.js) with the reference, prints
// {key, version, checkoutVersions, expect, port} and serves its corestore over TCP on
// 127.0.0.1 (live replication) until killed.
'use strict'
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const { parse, fail } = require('./args')
const { build, describe } = require('./drive-common')

const { pos } = parse(process.argv.slice(2), {})
if (pos.length !== 2) fail('usage: drive-serve.js DIR MASTERKEYHEX')

async function main () {
  const store = new Corestore(pos[0], { masterKey: Buffer.from(pos[1], 'hex') })
  await store.ready()
  const drive = new Hyperdrive(store, null)
  await drive.promises.ready()
  const second = new Hyperdrive(store, null, { namespace: 'second' })
  await second.promises.ready()
  await build(drive.promises, second.promises, second.key)
  const checkoutVersions = [2, 14, drive.version]
  const expect = await describe(drive, checkoutVersions)
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
      checkoutVersions,
      expect,
      port: server.address().port
    }) + '\n')
  })
}

main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
