// A LAN peer speaking @hyperswarm/discovery 2's mDNS, on the reference's own multicast-dns
// and dns-packet (224.0.0.251:5353). Only for tests run inside a private network namespace
// that has nothing but loopback: multicast can't leave it.
//   node mdns-peer.js lookup NAME         ask for NAME every second; print {host, port} of
//                                         the first answer, then exit
//   node mdns-peer.js announce NAME PORT  answer questions for NAME as an announcing topic
//                                         does (SRV 0.0.0.0:PORT, TXT id, A referrer); print
//                                         "ready"; run until killed
'use strict'
const crypto = require('crypto')
const multicast = require('multicast-dns')

const [mode, name, portStr] = process.argv.slice(2)
const mdns = multicast()
const id = Buffer.concat([Buffer.from('id='), crypto.randomBytes(32)])
const limit = setTimeout(() => { console.error('mdns-peer: timed out'); process.exit(2) }, 60000)

if (mode === 'lookup') {
  const ask = () => mdns.query({ questions: [{ type: 'SRV', name }] })
  ask()
  const timer = setInterval(ask, 1000)
  mdns.on('response', (res, rinfo) => {
    for (const a of res.answers) {
      if (a.type !== 'SRV' || a.name !== name) continue
      const host = a.data.target === '0.0.0.0' ? rinfo.address : a.data.target
      const txt = res.answers.find(t => t.type === 'TXT' && t.name === name)
      const referrer = res.answers.find(t => t.type === 'A' && t.name === 'referrer.hyperswarm.local')
      console.log(JSON.stringify({
        host,
        port: a.data.port,
        id: txt ? txt.data[0].toString('hex') : null,
        referrer: referrer ? referrer.data : null
      }))
      clearInterval(timer)
      clearTimeout(limit)
      mdns.destroy()
      return
    }
  })
} else if (mode === 'announce') {
  clearTimeout(limit)
  const port = Number(portStr)
  const answers = () => [
    { type: 'SRV', name, data: { target: '0.0.0.0', port } },
    { type: 'TXT', name, data: [id] }
  ]
  mdns.on('query', (q, rinfo) => {
    if (!q.questions.some(x => x.type === 'SRV' && x.name === name)) return
    mdns.respond({ answers: answers().concat([{ type: 'A', name: 'referrer.hyperswarm.local', data: rinfo.address }]) })
  })
  mdns.on('ready', () => {
    mdns.respond({ answers: answers() })
    console.log('ready')
  })
} else {
  console.error('usage: mdns-peer.js lookup NAME | announce NAME PORT')
  process.exit(1)
}
