#!/usr/bin/env node
// node core-read.js DIR [--hashes auto|list|rolling]
//
// Opens the existing hypercore@9 in DIR (key read from DIR/key), reads every block and
// checks it the way a strict reader would:
//   * each block's leaf hash (hypercore-crypto `data`) equals the tree node 2*i on disk;
//   * every stored signature verifies (`feed.verify`) against the roots at its index.
// Prints one JSON line:
//   {key, discoveryKey, length, byteLength, writable, leavesVerified, signaturesVerified,
//    blocks?: [sha256 hex of each block], digest: sha256 hex}
// `digest` is sha256 over, for each block in order, u64be(block length) ‖ block bytes.
// `blocks` is included with --hashes list, or with auto (the default) when length <= 10000.
// Exits 1 with a message on stderr if any block is missing or any check fails.
'use strict'
const path = require('path')
const nodeCrypto = require('crypto')
const hypercore = require('hypercore')
const { parse, fail } = require('./args')

// The hypercore-crypto that hypercore itself uses (there may be several versions installed).
const hcrypto = require(require.resolve('hypercore-crypto', { paths: [path.dirname(require.resolve('hypercore'))] }))

const { pos, opts } = parse(process.argv.slice(2), { hashes: 'value' })
if (pos.length !== 1) fail('usage: core-read.js DIR [--hashes auto|list|rolling]')
const mode = opts.hashes || 'auto'
if (!['auto', 'list', 'rolling'].includes(mode)) fail('--hashes must be auto, list or rolling')

const p = (fn) => new Promise((resolve, reject) => fn((err, v) => err ? reject(err) : resolve(v)))

async function main () {
  const feed = hypercore(pos[0], { createIfMissing: false, sparse: true })
  feed.on('error', () => {}) // the same error reaches ready()'s callback
  await p(cb => feed.ready(cb))
  const list = mode === 'list' || (mode === 'auto' && feed.length <= 10000)
  const blocks = list ? [] : undefined
  const digest = nodeCrypto.createHash('sha256')
  let leavesVerified = 0
  let signaturesVerified = 0
  let nextSigned = 0 // first index whose signature has not been checked yet
  let byteLength = 0
  for (let i = 0; i < feed.length; i++) {
    if (!feed.has(i)) throw new Error('block ' + i + ' is missing')
    const data = await p(cb => feed.get(i, { wait: false, valueEncoding: 'binary' }, cb))
    const node = await p(cb => feed._storage.getNode(2 * i, cb))
    if (node.size !== data.length || !hcrypto.data(data).equals(node.hash)) {
      throw new Error('block ' + i + ' does not match its tree node')
    }
    leavesVerified++
    if (i >= nextSigned) {
      // The next stored signature at or after i (a feed written in batches signs only the
      // last block of each batch; one replicated sparsely may lack some).
      const sig = await p(cb => feed.signature(i, cb)).catch(() => null)
      if (sig) {
        await p(cb => feed.verify(sig.index, sig.signature, cb))
        signaturesVerified++
        nextSigned = sig.index + 1
      } else {
        nextSigned = feed.length
      }
    }
    const len = Buffer.alloc(8)
    len.writeBigUInt64BE(BigInt(data.length))
    digest.update(len)
    digest.update(data)
    if (blocks) blocks.push(nodeCrypto.createHash('sha256').update(data).digest('hex'))
    byteLength += data.length
  }
  if (byteLength !== feed.byteLength) throw new Error('byteLength ' + feed.byteLength + ' but blocks sum to ' + byteLength)
  const out = {
    key: feed.key.toString('hex'),
    discoveryKey: feed.discoveryKey.toString('hex'),
    length: feed.length,
    byteLength: feed.byteLength,
    writable: feed.writable,
    leavesVerified,
    signaturesVerified,
    blocks,
    digest: digest.digest('hex')
  }
  await p(cb => feed.close(cb))
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch(err => { process.stderr.write((err && err.stack) || String(err)); process.stderr.write('\n'); process.exit(1) })
