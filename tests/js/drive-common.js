// Shared by drive-build.js and drive-read.js: the drive the interop test builds (the Rust
// test builds the same one) and the answers it compares (stat, lstat, readdir, reads,
// readlink, checkouts), printed as JSON with paths sorted so hash order does not matter.
'use strict'
const crypto = require('crypto')

const p = (fn) => new Promise((resolve, reject) => fn((err, v) => err ? reject(err) : resolve(v)))

function pattern (len, mul, add) {
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = (i * mul + add) & 0xff
  return b
}

const TIMES = { mtime: 1577836800000, ctime: 1577836801000 }
const BIG = 3 * 1048576 + 123

// Paths whose stat is compared; implicit directories are compared by mode only (the
// reference copies a descendant's fields into them).
const STAT_PATHS = ['/', '/empty', '/one', '/docs', '/docs/a-65535.bin', '/docs/b-65537.bin', '/big.bin',
  '/ünï cödé', '/ünï cödé/file with space.txt', '/deep/a', '/deep/a/b/c/d.txt', '/link-one', '/link-docs',
  '/link-dangling', '/over.txt', '/gone.txt', '/mnt', '/mnt/inner.txt', '/mnt/through.txt', '/mnt/sub', '/nothing']
const IMPLICIT = ['/ünï cödé', '/deep/a']
const DIRS = ['/', '/docs', '/ünï cödé', '/deep/a/b', '/mnt', '/link-docs', '/mnt/sub']
const FILES = ['/empty', '/one', '/docs/a-65535.bin', '/docs/b-65537.bin', '/big.bin', '/ünï cödé/file with space.txt',
  '/deep/a/b/c/d.txt', '/link-one', '/over.txt', '/mnt/inner.txt', '/mnt/through.txt']
// [path, start, length], all inside the file (the reference misbehaves past the end).
const RANGES = [['/big.bin', 0, 5], ['/big.bin', 524280, 20], ['/big.bin', 1048570, 100000], ['/big.bin', BIG - 10, 10],
  ['/docs/b-65537.bin', 65530, 7], ['/over.txt', 3, 4]]
const LINKS = ['/link-one', '/link-docs', '/link-dangling']

async function build (D, S, secondKey) {
  const versions = {}
  await D.mkdir('/docs', { ...TIMES })
  await D.writeFile('/empty', Buffer.alloc(0), { ...TIMES })
  await D.writeFile('/one', 'x', { ...TIMES })
  await D.writeFile('/docs/a-65535.bin', pattern(65535, 31, 7), { ...TIMES })
  await D.writeFile('/docs/b-65537.bin', pattern(65537, 17, 3), { ...TIMES, mode: 0o600, uid: 1000, gid: 100 })
  await D.writeFile('/big.bin', pattern(BIG, 13, 1), { ...TIMES })
  await D.writeFile('/ünï cödé/file with space.txt', 'unicode', { ...TIMES })
  await D.writeFile('/deep/a/b/c/d.txt', 'deep', { ...TIMES })
  await D.symlink('one', '/link-one')
  await D.symlink('/docs', '/link-docs')
  await D.symlink('/missing', '/link-dangling')
  await D.setMetadata('/one', 'user.k', Buffer.from('v'))
  await D.writeFile('/over.txt', 'v1', { ...TIMES })
  versions.v1 = null
  await D.writeFile('/over.txt', 'version two', { ...TIMES })
  await D.writeFile('/gone.txt', 'bye', { ...TIMES })
  await D.unlink('/gone.txt')
  await S.writeFile('/inner.txt', 'inside', { ...TIMES })
  await S.mkdir('/sub', { ...TIMES })
  await S.writeFile('/sub/s.txt', 's', { ...TIMES })
  await D.mount('/mnt', secondKey)
  await D.writeFile('/mnt/through.txt', 'through', { ...TIMES })
  return versions
}

function statJson (st) {
  const meta = {}
  if (st.metadata) for (const k of Object.keys(st.metadata)) meta[k] = st.metadata[k] ? st.metadata[k].toString('hex') : null
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    blocks: st.blocks,
    offset: st.offset,
    byteOffset: st.byteOffset,
    mtime: st.mtime.getTime(),
    ctime: st.ctime.getTime(),
    linkname: st.linkname || null,
    mount: st.mount ? st.mount.key.toString('hex') : null,
    metadata: meta
  }
}

async function settle (fn) {
  try { return { ok: await fn() } } catch (err) { return { error: err.code || String(err.errno || err.message) } }
}

function sha (buf) { return crypto.createHash('sha256').update(buf).digest('hex') }

async function describe (drive, checkoutVersions) {
  const D = drive.promises
  const out = { stat: {}, lstat: {}, readdir: {}, read: {}, ranges: [], readlink: {}, checkouts: [] }
  for (const n of STAT_PATHS) {
    for (const kind of ['stat', 'lstat']) {
      const r = await settle(() => D[kind](n))
      if (r.error) out[kind][n] = { error: r.error }
      else if (IMPLICIT.includes(n)) out[kind][n] = { mode: r.ok.mode }
      else out[kind][n] = statJson(r.ok)
    }
  }
  for (const n of DIRS) out.readdir[n] = (await D.readdir(n)).sort()
  for (const n of FILES) {
    const b = await D.readFile(n)
    out.read[n] = { length: b.length, sha256: sha(b) }
  }
  for (const [n, start, length] of RANGES) {
    const b = await new Promise((resolve, reject) => {
      const chunks = []
      drive.createReadStream(n, { start, length }).on('data', c => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject)
    })
    out.ranges.push({ path: n, start, length, hex: b.length <= 64 ? b.toString('hex') : sha(b) })
  }
  for (const n of LINKS) out.readlink[n] = await D.readlink(n)
  for (const v of checkoutVersions) {
    const co = drive.checkout(v)
    await co.promises.ready()
    const names = (await co.promises.readdir('/')).sort()
    const over = await settle(() => co.promises.readFile('/over.txt'))
    out.checkouts.push({ version: v, readdirRoot: names, overTxt: over.ok ? over.ok.toString('hex') : null })
  }
  return out
}

module.exports = { p, build, describe, pattern, TIMES, BIG }
