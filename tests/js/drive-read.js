#!/usr/bin/env node
// node drive-read.js DIR MASTERKEYHEX KEYHEX V1,V2,...
// Opens the drive KEYHEX (built by Rust) in a corestore folder with the reference and
// prints {version, contentKey, expect} computed by drive-common.js `describe`.
'use strict'
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const { parse, fail } = require('./args')
const { p, describe } = require('./drive-common')

const { pos } = parse(process.argv.slice(2), {})
if (pos.length !== 4) fail('usage: drive-read.js DIR MASTERKEYHEX KEYHEX VERSIONS')

async function main () {
  const store = new Corestore(pos[0], { masterKey: Buffer.from(pos[1], 'hex') })
  await store.ready()
  const drive = new Hyperdrive(store, Buffer.from(pos[2], 'hex'))
  await drive.promises.ready()
  const versions = pos[3].split(',').map(Number)
  const expect = await describe(drive, versions)
  const content = await p(cb => drive.getContent(cb))
  process.stdout.write(JSON.stringify({ version: drive.version, contentKey: content.key.toString('hex'), expect }) + '\n')
  await p(cb => store.close(cb))
}

main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
