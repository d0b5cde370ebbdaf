#!/usr/bin/env node
// node drive-clone.js DIR KEYHEX PORT V1,V2,...
// Replicates the drive KEYHEX from a peer on 127.0.0.1:PORT into a fresh corestore in DIR
// (sparse, live), then prints {version, contentKey, expect} from drive-common.js.
// DIR is accepted for symmetry but the clone lives in memory: the reference's
// random-access-file fails with ENOENT when a fresh sparse clone reads a zero-length
// block before any byte of the content feed was stored.
'use strict'
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const ram = require('random-access-memory')
const { parse, fail } = require('./args')
const { p, describe } = require('./drive-common')

const { pos } = parse(process.argv.slice(2), {})
if (pos.length !== 4) fail('usage: drive-clone.js DIR KEYHEX PORT VERSIONS')

async function main () {
  const store = new Corestore(ram)
  await store.ready()
  const socket = net.connect(Number(pos[2]), '127.0.0.1')
  const stream = store.replicate(true, { live: true })
  socket.pipe(stream).pipe(socket)
  const drive = new Hyperdrive(store, Buffer.from(pos[1], 'hex'))
  await drive.promises.ready()
  const versions = pos[3].split(',').map(Number)
  const want = versions[versions.length - 1]
  while (drive.version < want) await new Promise(resolve => drive.metadata.update({ ifAvailable: false, minLength: want }, () => resolve()))
  const expect = await describe(drive, versions)
  const content = await p(cb => drive.getContent(cb))
  process.stdout.write(JSON.stringify({ version: drive.version, contentKey: content.key.toString('hex'), expect }) + '\n')
  socket.destroy()
  process.exit(0)
}

main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
