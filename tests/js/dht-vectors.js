// Encodes sample dht-rpc / @hyperswarm/dht messages with the reference's own encoders and
// prints them as JSON, so the Rust wire code can be checked byte for byte.
// Output: {"messages":[{fields, hex}], "holepunch":[…], "peersInput":[…], "peersOutput":[…],
//          "token":{secret, host, hex}}
'use strict'
const { Message, Holepunch } = require('dht-rpc/lib/messages')
const dhtMessages = require('@hyperswarm/dht/messages')
const blake2b = require('blake2b-universal')

const h = (s) => Buffer.from(s, 'hex')
const fill = (b, n) => Buffer.alloc(n, b)

const messages = [
  { type: 1, rid: 2, command: '_ping', version: 1 },
  { version: 1, type: 3, rid: 2, to: h('7f0000011388'), id: fill(0xaa, 32), roundtripToken: fill(0xbb, 32), value: h('7f000001c350') },
  { version: 1, type: 1, rid: 65535, to: h('0a000001ffff'), target: fill(0x11, 32), command: 'peers', value: Buffer.alloc(0) },
  { version: 1, type: 2, rid: 300, to: h('7f0000010050'), id: fill(0x01, 32), target: fill(0x22, 32), roundtripToken: fill(0x33, 32), command: 'peers', value: h('0800') },
  { version: 1, type: 3, rid: 1234567, id: fill(0x44, 32), closerNodes: Buffer.concat([fill(0x55, 32), h('7f0000021f90'), fill(0x66, 32), h('7f000003abcd')]), error: 'Unsupported command', value: Buffer.alloc(0) },
  { version: 1, type: 3, rid: 9, closerNodes: Buffer.alloc(0), roundtripToken: fill(0x77, 32), value: h('0a06c0a80001d431') },
  { type: 1, rid: 0 }
]

function hexify (o) {
  const out = {}
  for (const [k, v] of Object.entries(o)) out[k] = Buffer.isBuffer(v) ? v.toString('hex') : v
  return out
}

const holepunch = [{}, { from: h('7f0000011388') }, { to: h('7f0000021389') }, { from: h('01020304ffff'), to: h('0506070800ff') }]
const peersInput = [{}, { port: 0 }, { port: 0, unannounce: true }, { port: 4242, localAddress: h('c0a8010a1092') }, { port: 70000 }]
const peersOutput = [{}, { peers: h('7f0000011388') }, { peers: h('7f0000011388'), localPeers: h('010a1092') }, { localPeers: h('0102abcd0304ef01') }]

const secret = fill(0x5a, 32)
const token = Buffer.alloc(32)
blake2b.batch(token, [secret, Buffer.from('127.0.0.1')])

console.log(JSON.stringify({
  messages: messages.map(m => ({ fields: hexify(m), hex: Message.encode(m).toString('hex') })),
  holepunch: holepunch.map(m => ({ fields: hexify(m), hex: Holepunch.encode(m).toString('hex') })),
  peersInput: peersInput.map(m => ({ fields: hexify(m), hex: dhtMessages.PeersInput.encode(m).toString('hex') })),
  peersOutput: peersOutput.map(m => ({ fields: hexify(m), hex: dhtMessages.PeersOutput.encode(m).toString('hex') })),
  token: { secret: secret.toString('hex'), host: '127.0.0.1', hex: token.toString('hex') }
}))
