#!/usr/bin/env node
// node store.js write DIR        make a corestore@5 folder: default core gets 3 blocks
//                                ("default-0".."default-2"), core named "x" gets 2 ("x-0", "x-1")
// node store.js read DIR [--append]
//                                open a corestore folder, report store.default() and
//                                store.get({name: 'x'}); with --append, append "x-node" to x
// Prints one JSON line: {default: CORE, x: CORE, xByKey: CORE} where
//   CORE = {key, discoveryKey, length, writable, blocks: [utf8 of each block]}
// (xByKey is store.get({key: x.key}) after x is open: the same core object in corestore.)
'use strict'
const Corestore = require('corestore')
const raf = require('random-access-file')
const { parse, fail } = require('./args')

const { pos, opts } = parse(process.argv.slice(2), { append: 'flag' })
if (pos.length !== 2 || !['write', 'read'].includes(pos[0])) fail('usage: store.js write|read DIR [--append]')
const [mode, dir] = pos

const p = (fn) => new Promise((resolve, reject) => fn((err, v) => err ? reject(err) : resolve(v)))

async function describe (core) {
  await p(cb => core.ready(cb))
  const blocks = []
  for (let i = 0; i < core.length; i++) {
    blocks.push((await p(cb => core.get(i, { wait: false }, cb))).toString('utf8'))
  }
  return {
    key: core.key.toString('hex'),
    discoveryKey: core.discoveryKey.toString('hex'),
    length: core.length,
    writable: core.writable,
    blocks
  }
}

async function main () {
  const store = new Corestore(name => raf(name, { directory: dir }))
  await store.ready()
  const def = store.default()
  const x = store.get({ name: 'x' })
  await p(cb => def.ready(cb))
  await p(cb => x.ready(cb))
  if (mode === 'write') {
    await p(cb => def.append([Buffer.from('default-0'), Buffer.from('default-1')], cb))
    await p(cb => def.append(Buffer.from('default-2'), cb))
    await p(cb => x.append([Buffer.from('x-0'), Buffer.from('x-1')], cb))
  } else if (opts.append) {
    await p(cb => x.append(Buffer.from('x-node'), cb))
  }
  const out = {
    default: await describe(def),
    x: await describe(x),
    xByKey: await describe(store.get({ key: x.key }))
  }
  await p(cb => store.close(cb))
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch(err => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1) })
