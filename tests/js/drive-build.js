#!/usr/bin/env node
// node drive-build.js DIR MASTERKEYHEX
// Builds the interop drive (drive-common.js) with the reference in a corestore folder and
// prints {key, secondKey, contentKey, version, checkoutVersions, expect}.
'use strict'
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const { parse, fail } = require('./args')
const { p, build, describe } = require('./drive-common')

const { pos } = parse(process.argv.slice(2), {})
if (pos.length !== 2) fail('usage: drive-build.js DIR MASTERKEYHEX')

async function main () {
  const store = new Corestore(pos[0], { masterKey: Buffer.from(pos[1], 'hex') })
  await store.ready()
  const drive = new Hyperdrive(store, null)
  await drive.promises.ready()
  const second = new Hyperdrive(store, null, { namespace: 'second' })
  await second.promises.ready()
  await build(drive.promises, second.promises, second.key)
  // Versions: after the first over.txt write, and before the mount.
  const checkoutVersions = [2, 14, drive.version]
  const expect = await describe(drive, checkoutVersions)
  const content = await p(cb => drive.getContent(cb))
  process.stdout.write(JSON.stringify({
    key: drive.key.toString('hex'),
    secondKey: second.key.toString('hex'),
    contentKey: content.key.toString('hex'),
    version: drive.version,
    checkoutVersions,
    expect
  }) + '\n')
  await p(cb => store.close(cb))
}

main().catch(err => { process.stderr.write(String(err && err.stack) + '\n'); process.exit(1) })
