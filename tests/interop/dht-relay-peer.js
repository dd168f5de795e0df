// @hyperswarm/dht-relay 0.4.3 live, for tests/tests/dht_relay_interop.rs. JSON lines in on stdin,
// out on stdout, as dht-peer.js: { id, ok: true, result } or { id, ok: false, error }. Everything
// binds 127.0.0.1 with explicit bootstrap lists: never the public bootstrap nodes.
//
//   start { bootstrap, count } → [{ index, port }]: hyperdht nodes (a testnet)
//   client { url, seed?, custodial? } → { publicKey }: a dht-relay client over a WebSocket
//   connect { publicKey, message } → { echo, remotePublicKey }: through the relay, write, read
//       the echo, end
//   listen { seed } → { publicKey, host, port }: an echo server through the relay
//   lookup { topic } → { peers: [hex] }
//   announce { topic, seed } → {}
//   relay { bootstrap } → { url }: a JS relay (hyperdht node + WebSocketServer), as its bin.js
//   dhtListen { bootstrap, seed } → { publicKey }: an echo server on a plain hyperdht node
//   serverStats {} → { connections }
//   exit
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`), so concurrent JS nodes
// would take 49737, 49738, ... in turn; a port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const DHT = require('@hyperswarm/dht-relay')
const { relay } = require('@hyperswarm/dht-relay')
const Stream = require('@hyperswarm/dht-relay/ws')
const { WebSocket, WebSocketServer } = require('ws')
const b4a = require('b4a')
const readline = require('readline')

const cfg = JSON.parse(process.argv[2] || '{}')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
setTimeout(() => {
  out({ event: 'timeout' })
  process.exit(2)
}, cfg.timeoutMs || 120000).unref()

const nodes = []
const servers = []
let client = null
const hex = (b) => (b ? b4a.toString(b, 'hex') : null)
const buf = (h) => b4a.from(h, 'hex')
const stats = { connections: 0 }

function parse(list) {
  return list.map((s) => {
    const [host, port] = s.split(':')
    return { host, port: Number(port) }
  })
}

function withTimeout(p, ms, what) {
  return Promise.race([
    p,
    new Promise((resolve, reject) => setTimeout(() => reject(new Error(what + ' timed out')), ms))
  ])
}

const handlers = {
  async start({ bootstrap, count = 1 }) {
    const res = []
    for (let i = 0; i < count; i++) {
      // Persistent at once (on loopback the adaptive mode would wait): they store records.
      const dht = new HyperDHT({ bootstrap: parse(bootstrap || []), host: '127.0.0.1', port: ANY_PORT, anyPort: true, ephemeral: false })
      await dht.fullyBootstrapped()
      res.push({ index: nodes.push(dht) - 1, port: dht.address().port })
    }
    return res
  },
  async client({ url, seed = null, custodial = true }) {
    const socket = new WebSocket(url)
    const keyPair = seed ? DHT.keyPair(buf(seed)) : undefined
    client = new DHT(new Stream(true, socket), { keyPair, custodial })
    await withTimeout(client.ready(), 20000, 'the relay connection')
    return { publicKey: hex(client.defaultKeyPair.publicKey) }
  },
  async connect({ publicKey, message }) {
    const s = client.connect(buf(publicKey))
    const echo = await withTimeout(
      new Promise((resolve, reject) => {
        let got = ''
        s.on('error', reject)
        s.on('data', (d) => {
          got += b4a.toString(d)
          if (got.length >= message.length) resolve(got)
        })
        s.write(b4a.from(message))
      }),
      30000,
      'the echo'
    )
    const remotePublicKey = hex(s.remotePublicKey)
    s.end()
    return { echo, remotePublicKey }
  },
  async listen({ seed }) {
    const server = client.createServer((socket) => {
      stats.connections++
      socket.on('data', (d) => socket.write(d))
      socket.on('end', () => socket.end())
      socket.on('error', () => {})
    })
    const keyPair = DHT.keyPair(buf(seed))
    await withTimeout(server.listen(keyPair), 30000, 'listen')
    servers.push(server)
    const a = server.address()
    return { publicKey: hex(keyPair.publicKey), host: a.host, port: a.port }
  },
  async lookup({ topic }) {
    const peers = []
    for await (const r of client.lookup(buf(topic))) {
      for (const p of r.peers) peers.push(hex(p.publicKey))
    }
    return { peers }
  },
  async announce({ topic, seed }) {
    // A dht-relay query is a stream: it ends once read (hyperswarm reads it with for-await).
    let replies = 0
    await withTimeout(
      (async () => {
        for await (const r of client.announce(buf(topic), DHT.keyPair(buf(seed)))) if (r) replies++
      })(),
      30000,
      'announce'
    )
    return { replies }
  },
  async relay({ bootstrap }) {
    const dht = new HyperDHT({ bootstrap: parse(bootstrap || []), host: '127.0.0.1', port: ANY_PORT, anyPort: true })
    await dht.fullyBootstrapped()
    nodes.push(dht)
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise((resolve) => wss.once('listening', resolve))
    wss.on('connection', (socket) => relay(dht, new Stream(false, socket)))
    return { url: 'ws://127.0.0.1:' + wss.address().port }
  },
  async dhtListen({ bootstrap, seed }) {
    const dht = new HyperDHT({ bootstrap: parse(bootstrap || []), host: '127.0.0.1', port: ANY_PORT, anyPort: true })
    await dht.fullyBootstrapped()
    nodes.push(dht)
    const server = dht.createServer((socket) => {
      socket.on('data', (d) => socket.write(d))
      socket.on('end', () => socket.end())
      socket.on('error', () => {})
    })
    const keyPair = HyperDHT.keyPair(buf(seed))
    await withTimeout(server.listen(keyPair), 30000, 'listen')
    return { publicKey: hex(keyPair.publicKey) }
  },
  async serverStats() {
    return stats
  },
  async exit() {
    if (client) await client.destroy({ force: true }).catch(() => {})
    for (const n of nodes) await n.destroy({ force: true }).catch(() => {})
    setImmediate(() => process.exit(0))
    return {}
  }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    return
  }
  const h = handlers[msg.cmd]
  if (!h) return out({ id: msg.id, ok: false, error: 'unknown command ' + msg.cmd })
  try {
    out({ id: msg.id, ok: true, result: await h(msg) })
  } catch (err) {
    out({ id: msg.id, ok: false, error: (err && err.code) || String((err && err.stack) || err) })
  }
})
rl.on('close', () => process.exit(0))
out({ event: 'ready' })
