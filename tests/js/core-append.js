#!/usr/bin/env node
// node core-append.js DIR --blocks N [--batch B=1] [--size S=1024|var] [--seed HEX]
//
// Opens (or creates) a hypercore@9 in DIR with random-access-file storage, exactly as
// `hypercore(DIR)` does, appends N deterministic blocks (see blocks.js) in batches of B,
// and prints one JSON line: {key, discoveryKey, length, byteLength, appended}.
// Appending to an existing writable feed continues its numbering: the block index used for
// the content is the feed's index, so two runs of N give the same feed as one run of 2N.
'use strict'
const hypercore = require('hypercore')
const { parse, fail } = require('./args')
const { blockContent, parseSize } = require('./blocks')

const { pos, opts } = parse(process.argv.slice(2), { blocks: 'value', batch: 'value', size: 'value', seed: 'value' })
if (pos.length !== 1) fail('usage: core-append.js DIR --blocks N [--batch B] [--size S|var] [--seed HEX]')
const dir = pos[0]
const blocks = Number(opts.blocks)
const batch = Number(opts.batch || 1)
if (!Number.isInteger(blocks) || blocks < 0) fail('--blocks N is required (integer >= 0)')
if (!Number.isInteger(batch) || batch < 1) fail('--batch must be an integer >= 1')
let size, seed
try {
  size = parseSize(opts.size || '1024')
  seed = opts.seed ? Buffer.from(opts.seed, 'hex') : null
} catch (err) { fail(err.message) }
if (opts.seed && (!/^([0-9a-f]{2})*$/i.test(opts.seed))) fail('--seed must be hex')

const p = (fn) => new Promise((resolve, reject) => fn((err, v) => err ? reject(err) : resolve(v)))

async function main () {
  const feed = hypercore(dir)
  feed.on('error', () => {}) // the same error reaches ready()'s callback
  await p(cb => feed.ready(cb))
  if (!feed.writable) throw new Error('feed in ' + dir + ' is not writable')
  const start = feed.length
  for (let i = start; i < start + blocks; i += batch) {
    const n = Math.min(batch, start + blocks - i)
    const data = []
    for (let k = 0; k < n; k++) data.push(blockContent(i + k, size, seed))
    await p(cb => feed.append(data, cb))
  }
  const out = {
    key: feed.key.toString('hex'),
    discoveryKey: feed.discoveryKey.toString('hex'),
    length: feed.length,
    byteLength: feed.byteLength,
    appended: blocks
  }
  await p(cb => feed.close(cb))
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch(err => { process.stderr.write((err && err.stack) || String(err)); process.stderr.write('\n'); process.exit(1) })
