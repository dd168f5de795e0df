// A live hyperdht 6.34.0 peer for the connect / holepunch / blind-relay interop tests
// (tests/tests/dht_connect_interop.rs). JSON lines in on stdin, out on stdout, as dht-peer.js:
// { id, ok: true, result } or { id, ok: false, error }. Every node binds 127.0.0.1 and gets an
// explicit bootstrap list (empty for a first node): never the public bootstrap nodes.
//
//   start { bootstrap, count, ephemeral?, firewalled?, quickFirewall? } → [{ index, port }]
//       (ephemeral + firewalled + quickFirewall: false keeps a node firewalled on loopback, so
//       that connections to it are holepunched)
//   listen { node, seed, relayThrough?, holepunch?, deny?, shareLocalAddress? } → an echo server
//       relayThrough: hex key of a blind relay; holepunch: false answers every punch with abort
//       (JS `holepunch: () => false`); deny: hex client keys the firewall refuses
//   connect { node, publicKey, message, relayThrough?, holepunch?, fastOpen?, localConnection? }
//       → { echo, relayed } (relayed: the raw stream goes to a blind relay's stream), or an
//       error with the JS error code
//   relay { node, seed } → a blind-relay server on that node; { publicKey }
//   relayStats {} → the relay server's pairing counters
//   serverStats {} → { connections, firewallCalls, relaying }
//   exit
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`), so concurrent JS nodes
// would take 49737, 49738, ... in turn; a port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const BlindRelay = require('blind-relay')
const b4a = require('b4a')
const readline = require('readline')

const cfg = JSON.parse(process.argv[2] || '{}')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
setTimeout(() => {
  out({ event: 'timeout' })
  process.exit(2)
}, cfg.timeoutMs || 120000).unref()

const nodes = []
const hex = (b) => (b ? b4a.toString(b, 'hex') : null)
const buf = (h) => b4a.from(h, 'hex')
const kp = (seed) => HyperDHT.keyPair(buf(seed))
let relayServer = null
const serverStats = { connections: 0, firewallCalls: 0, dht: null, last: null }

function parse(list) {
  return list.map((s) => {
    const [host, port] = s.split(':')
    return { host, port: Number(port) }
  })
}

const handlers = {
  async start({ bootstrap, count = 1, ephemeral = false, firewalled = false, quickFirewall = true }) {
    const res = []
    for (let i = 0; i < count; i++) {
      const dht = new HyperDHT({
        bootstrap: parse(bootstrap || []),
        host: '127.0.0.1',
        port: ANY_PORT,
        anyPort: true,
        ephemeral,
        firewalled,
        quickFirewall
      })
      await dht.fullyBootstrapped()
      const index = nodes.push(dht) - 1
      res.push({ index, port: dht.address().port })
    }
    return res
  },
  async listen({ node, seed, relayThrough = null, holepunch = true, deny = [], shareLocalAddress = true }) {
    const dht = nodes[node]
    serverStats.dht = dht
    const opts = {
      relayThrough: relayThrough ? buf(relayThrough) : null,
      shareLocalAddress,
      firewall(remotePublicKey) {
        serverStats.firewallCalls++
        return deny.includes(hex(remotePublicKey))
      }
    }
    if (!holepunch) opts.holepunch = () => false
    const server = dht.createServer(opts, (socket) => {
      serverStats.connections++
      serverStats.last = { remoteId: socket.rawStream.remoteId, remote: socket.rawStream.remoteHost + ':' + socket.rawStream.remotePort }
      socket.on('data', (d) => socket.write(d))
      socket.on('end', () => socket.end())
      socket.on('error', () => {})
    })
    await server.listen(kp(seed))
    return { publicKey: hex(server.publicKey) }
  },
  async connect({ node, publicKey, message, relayThrough = null, holepunch = true, fastOpen = true, localConnection = true }) {
    const opts = { relayThrough: relayThrough ? buf(relayThrough) : null, fastOpen, localConnection }
    if (!holepunch) opts.holepunch = () => false
    const socket = nodes[node].connect(buf(publicKey), opts)
    const dht = nodes[node]
    let failure = null
    socket.on('error', (e) => {
      failure = e
    })
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('close', () => reject(failure || new Error('closed before open')))
    })
    const rs = socket.rawStream
    const relayed = !!(relayServer && relayServer.relayIds.has(rs.remoteId))
    socket.write(b4a.from(message))
    const echo = await new Promise((resolve) => socket.once('data', resolve))
    socket.end()
    return { echo: b4a.toString(echo), relayed, punches: dht.stats.punches, firewalled: dht.firewalled, remoteId: rs.remoteId, id: rs.id, remote: rs.remoteHost + ':' + rs.remotePort, local: rs.socket.address().port }
  },
  async relay({ node, seed }) {
    const dht = nodes[node]
    const relayIds = new Set()
    const server = new BlindRelay.Server({
      createStream(opts) {
        const s = dht.createRawStream({ ...opts, framed: true })
        relayIds.add(s.id)
        return s
      }
    })
    server.relayIds = relayIds
    relayServer = server
    const srv = dht.createServer((socket) => {
      const session = server.accept(socket, { id: socket.remotePublicKey })
      session.on('error', () => {})
      socket.on('error', () => {})
    })
    await srv.listen(kp(seed))
    return { publicKey: hex(srv.publicKey) }
  },
  async relayStats() {
    const p = relayServer.stats.pairings
    return { matched: p.matched, requested: p.requested, streams: relayServer.stats.streams.opened }
  },
  async serverStats() {
    return {
      connections: serverStats.connections,
      firewallCalls: serverStats.firewallCalls,
      relaying: serverStats.dht ? serverStats.dht.stats.relaying : null,
      punches: serverStats.dht ? serverStats.dht.stats.punches : null,
      last: serverStats.last
    }
  },
  async exit() {
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
