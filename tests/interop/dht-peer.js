// A live hyperdht 6.34.0 (dht-rpc 6.27.0) peer for the DHT interop tests
// (tests/tests/dht_interop.rs) and benchmarks (bench/).
//
// Commands arrive as JSON lines on stdin, answers leave as JSON lines on stdout:
// { id, ok: true, result } or { id, ok: false, error }. Every node binds 127.0.0.1 only, and
// every node is given an explicit bootstrap list (an empty list for a first node): a JS
// HyperDHT falls back to the public bootstrap nodes when `bootstrap` is falsy, never here.
//
//   start { bootstrap: ["127.0.0.1:P", ...], count, ephemeral?, firewalled?, port? }
//       count JS nodes (hyperdht testnet style: ephemeral false, firewalled false unless
//       told otherwise); result: [{ index, port, id, ephemeral, firewalled }]
//   bootstrapper { port? } → a DHT.bootstrapper(port, '127.0.0.1') node (no port: a free one); result { index, port }
//   info { node } → { port, id, ephemeral, firewalled, host, natPort, table, records }
//   announce { node, topic, seed, relays? } / unannounce { node, topic, seed }
//   lookup { node, topic } → { peers: [hex public keys], replies }
//   mutablePut { node, seed, value, seq } / mutableGet { node, publicKey, seq? }
//   immutablePut { node, value } → { hash } / immutableGet { node, hash } → { value }
//   listen { node, seed } → a server echoing every connection; result { publicKey }
//   connect { node, publicKey, message } → connects, writes message, returns the echo
//   lookups { node, topic, count, concurrency } → runs count lookups, returns { ms }
//   destroy { node } / exit
// The process exits by itself after timeoutMs (argv[2] JSON, default 120 s).
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`), so concurrent JS nodes
// would take 49737, 49738, ... in turn; a port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
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

function parse(list) {
  return list.map((s) => {
    const [host, port] = s.split(':')
    return { host, port: Number(port) }
  })
}

function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const sock = require('dgram').createSocket('udp4')
    sock.once('error', reject)
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address()
      sock.close(() => resolve(port))
    })
  })
}

function info(dht) {
  const p = dht._persistent
  return {
    port: dht.address().port,
    id: hex(dht.id),
    ephemeral: dht.ephemeral,
    firewalled: dht.firewalled,
    host: dht.host,
    natPort: dht.port,
    table: dht.table.toArray().length,
    records: p ? p.records.size : 0
  }
}

const handlers = {
  async start({ bootstrap, count = 1, ephemeral = false, firewalled = false, port = 0 }) {
    const res = []
    for (let i = 0; i < count; i++) {
      const dht = new HyperDHT({
        bootstrap: parse(bootstrap || []),
        host: '127.0.0.1',
        port: count === 1 && port ? port : ANY_PORT,
        anyPort: true,
        ephemeral,
        firewalled
      })
      await dht.fullyBootstrapped()
      const index = nodes.push(dht) - 1
      res.push({ index, ...info(dht) })
    }
    return res
  },
  async bootstrapper({ port }) {
    // Without a port, a free one: the OS picks it for a probe socket, which is closed before the
    // node binds it, so another process may take it in between: then try another (bounded).
    for (let attempt = 0; ; attempt++) {
      const p = port || await freeUdpPort()
      const dht = HyperDHT.bootstrapper(p, '127.0.0.1', { host: '127.0.0.1' })
      try {
        await dht.fullyBootstrapped()
      } catch (err) {
        dht.destroy().catch(() => {}) // not awaited: a node that never bound may not settle
        if (port || attempt >= 9) throw err
        continue
      }
      const index = nodes.push(dht) - 1
      return { index, ...info(dht) }
    }
  },
  async info({ node }) {
    return info(nodes[node])
  },
  async announce({ node, topic, seed, relays = [] }) {
    const q = nodes[node].announce(buf(topic), kp(seed), parse(relays))
    await q.finished()
    return { closest: q.closestNodes.length }
  },
  async unannounce({ node, topic, seed }) {
    await nodes[node].unannounce(buf(topic), kp(seed))
    return {}
  },
  async lookup({ node, topic }) {
    const peers = new Set()
    let replies = 0
    for await (const r of nodes[node].lookup(buf(topic))) {
      replies++
      for (const p of r.peers) peers.add(hex(p.publicKey))
    }
    return { peers: [...peers], replies }
  },
  async lookups({ node, topic, count, concurrency = 1 }) {
    const start = Date.now()
    let left = count
    async function worker() {
      while (left-- > 0) {
        // eslint-disable-next-line no-unused-vars
        for await (const r of nodes[node].lookup(buf(topic))) {
        }
      }
    }
    const ws = []
    for (let i = 0; i < concurrency; i++) ws.push(worker())
    await Promise.all(ws)
    return { ms: Date.now() - start }
  },
  async mutablePut({ node, seed, value, seq = 0 }) {
    const r = await nodes[node].mutablePut(kp(seed), b4a.from(value), { seq })
    return { publicKey: hex(r.publicKey), seq: r.seq, closest: r.closestNodes.length }
  },
  async mutableGet({ node, publicKey, seq = 0 }) {
    const r = await nodes[node].mutableGet(buf(publicKey), { seq })
    return r ? { seq: r.seq, value: b4a.toString(r.value) } : null
  },
  async immutablePut({ node, value }) {
    const r = await nodes[node].immutablePut(b4a.from(value))
    return { hash: hex(r.hash), closest: r.closestNodes.length }
  },
  async immutableGet({ node, hash }) {
    const r = await nodes[node].immutableGet(buf(hash))
    return r ? { value: b4a.toString(r.value) } : null
  },
  async listen({ node, seed }) {
    const server = nodes[node].createServer((socket) => {
      socket.on('data', (d) => socket.write(d))
      socket.on('error', () => {})
    })
    await server.listen(kp(seed))
    return { publicKey: hex(server.publicKey) }
  },
  async connect({ node, publicKey, message }) {
    const socket = nodes[node].connect(buf(publicKey))
    socket.on('error', () => {})
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
      socket.once('close', () => reject(new Error('closed before open')))
    })
    socket.write(b4a.from(message))
    const echo = await new Promise((resolve) => socket.once('data', resolve))
    socket.destroy()
    return { echo: b4a.toString(echo) }
  },
  async destroy({ node }) {
    await nodes[node].destroy()
    return {}
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
    out({ id: msg.id, ok: false, error: String((err && err.stack) || err) })
  }
})
rl.on('close', () => process.exit(0))
out({ event: 'ready' })
