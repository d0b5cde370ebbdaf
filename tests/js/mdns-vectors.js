// mDNS packets of @hyperswarm/discovery 2, encoded by the reference's own dns-packet the way
// multicast-dns sends them (query: flags 0; response: AUTHORITATIVE_ANSWER; id 0), so the
// Rust mDNS code can be checked byte for byte. No sockets.
// Usage: node mdns-vectors.js TOPIC_HEX ID_HEX PORT QUERIER_IP
// Output: {"name", "query", "announce", "reply"} (hex), and "decoded": the reply read back.
'use strict'
const packet = require('dns-packet')

const [topicHex, idHex, portStr, querier] = process.argv.slice(2)
const name = Buffer.from(topicHex, 'hex').slice(0, 20).toString('hex') + '.hyperswarm.local'
const id = Buffer.from(idHex, 'hex')
const port = Number(portStr)

const srv = { type: 'SRV', name, data: { target: '0.0.0.0', port } }
const txt = { type: 'TXT', name, data: [id] }
const response = (answers) => packet.encode({ type: 'response', flags: packet.AUTHORITATIVE_ANSWER, answers })

const query = packet.encode({ type: 'query', questions: [{ type: 'SRV', name }] })
const announce = response([srv, txt])
const reply = response([srv, txt, { type: 'A', name: 'referrer.hyperswarm.local', data: querier }])
const decoded = packet.decode(reply)

console.log(JSON.stringify({
  name,
  query: query.toString('hex'),
  announce: announce.toString('hex'),
  reply: reply.toString('hex'),
  decoded: decoded.answers.map(a => ({
    type: a.type,
    name: a.name,
    data: a.type === 'TXT' ? a.data.map(d => d.toString('hex')) : a.data
  }))
}))
