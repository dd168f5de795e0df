// Idle sessions for bench/relay.sh: opens SESSIONS @hyperswarm/dht-relay 0.4.3 clients (each a
// `ws` WebSocket to URL, its handshake done), then STREAMS streams through them (connects to the
// first peer that announces the core KEYHEX, looked up through the first session; at most 32
// streams per session, in batches of 16, each batch settled before the next), prints
// `ready SESSIONS OPENED` (OPENED: the streams that opened; a stream that failed is not retried)
// and holds them, idle, until killed (300 s at most).
//
//   node relay-sessions.js URL SESSIONS [STREAMS KEYHEX]
const DHTRelay = require('@hyperswarm/dht-relay')
const Stream = require('@hyperswarm/dht-relay/ws')
const { WebSocket } = require('ws')
const b4a = require('b4a')
const crypto = require('hypercore-crypto')

const [url, sessionsArg, streamsArg, keyHex] = process.argv.slice(2)
const sessions = Number(sessionsArg)
const streams = Number(streamsArg || 0)
setTimeout(() => process.exit(0), 300000).unref()

async function main () {
  const clients = []
  // In batches of 50, so that the relay's accept queue never overflows.
  for (let i = 0; i < sessions; i += 50) {
    const batch = []
    for (let j = i; j < Math.min(sessions, i + 50); j++) {
      const c = new DHTRelay(new Stream(true, new WebSocket(url)))
      clients.push(c)
      batch.push(c.ready())
    }
    await Promise.all(batch)
  }
  const open = []
  let opened = 0
  let peer = null
  if (streams > 0) {
    for await (const r of clients[0].lookup(crypto.discoveryKey(b4a.from(keyHex, 'hex')))) {
      if (r.peers.length) { peer = r.peers[0].publicKey; break }
    }
    if (!peer) throw new Error('nobody announces the core')
  }
  for (let i = 0; i < streams; i += 16) {
    const batch = []
    for (let j = i; j < Math.min(streams, i + 16); j++) {
      const s = clients[Math.floor(j / 32) % clients.length].connect(peer)
      s.on('error', (e) => console.error('relay-sessions: stream error', e.message))
      open.push(s)
      batch.push(new Promise((resolve, reject) => { s.once('open', resolve); s.once('close', () => reject(new Error('a stream closed before it opened'))) }))
    }
    for (const r of await Promise.allSettled(batch)) if (r.status === 'fulfilled') opened++
  }
  console.log(`ready ${clients.length} ${opened}`)
}

main().catch((err) => { console.error(err); process.exit(1) })
