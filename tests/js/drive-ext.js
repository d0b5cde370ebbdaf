#!/usr/bin/env node
// node drive-ext.js KEYHEX PORT VERSION DIR FILE
// Sparse-reads the drive KEYHEX from a peer on 127.0.0.1:PORT (in memory): once the
// metadata feed reaches VERSION, prints {entries: readdir(DIR) sorted, content:
// readFile(FILE) as utf8}. The reference's hypertrie sends `hypertrie` extension
// requests for the blocks it has to wait for.
'use strict'
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const ram = require('random-access-memory')
const { parse, fail } = require('./args')

const { pos } = parse(process.argv.slice(2), {})
if (pos.length !== 5) fail('usage: drive-ext.js KEYHEX PORT VERSION DIR FILE')

async function main () {
  const store = new Corestore(ram)
  await store.ready()
  const socket = net.connect(Number(pos[1]), '127.0.0.1')
  const stream = store.replicate(true, { live: true })
  socket.pipe(stream).pipe(socket)
  const drive = new Hyperdrive(store, Buffer.from(pos[0], 'hex'))
  await drive.promises.ready()
  const want = Number(pos[2])
  while (drive.version < want) await new Promise(resolve => drive.metadata.update({ ifAvailable: false, minLength: want }, () => resolve()))
  const before = drive.metadata.downloaded()
  const entries = (await drive.promises.readdir(pos[3])).sort()
  const content = (await drive.promises.readFile(pos[4])).toString('utf8')
  const downloaded = drive.metadata.downloaded() - before
  process.stdout.write(JSON.stringify({ entries, content, downloaded, length: drive.metadata.length }) + '\n')
  socket.destroy()
  process.exit(0)
}

main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
