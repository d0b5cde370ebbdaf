// Deterministic block contents shared by the interop scripts. The Rust side recomputes the
// same bytes (tests/common/mod.rs: `block_len`, `block_content`), so keep the two in step.
//
// Block i of a feed made with size spec S and seed bytes s (default: none):
//   length  = S                                   when S is a number
//           = 1 + ((i * 7919) % 4096)             when S is "var"  (1..=4096 bytes)
//   byte[j] = (i * 31 + j * 7 + (s.length ? s[(i + j) % s.length] : 0)) % 256
'use strict'

function blockLen (i, size) {
  if (size === 'var') return 1 + ((i * 7919) % 4096)
  return size
}

function blockContent (i, size, seed) {
  const len = blockLen(i, size)
  const buf = Buffer.allocUnsafe(len)
  const base = (i * 31) % 256
  if (!seed || seed.length === 0) {
    for (let j = 0; j < len; j++) buf[j] = (base + j * 7) % 256
  } else {
    for (let j = 0; j < len; j++) buf[j] = (base + j * 7 + seed[(i + j) % seed.length]) % 256
  }
  return buf
}

function parseSize (s) {
  if (s === 'var') return 'var'
  const n = Number(s)
  if (!Number.isInteger(n) || n < 0 || n > 8 * 1024 * 1024) throw new Error('--size must be var or an integer 0..8388608, got ' + s)
  return n
}

module.exports = { blockLen, blockContent, parseSize }
