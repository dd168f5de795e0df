// A live hyperswarm 4.17.2 peer for the swarm interop tests (tests/tests/swarm_interop.rs,
// transport-native/tests/swarm_cli.rs). JSON lines in on stdin, out on stdout, as
// dht-peer.js: { id, ok: true, result } or { id, ok: false, error }. Every DHT node binds
// 127.0.0.1 and gets an explicit bootstrap list (empty for a first node): never the public
// bootstrap nodes.
//
//   start { bootstrap, count } → [{ index, port }]   persistent DHT nodes (a testnet)
//   swarm { bootstrap, seed } → { index, publicKey }  a Hyperswarm on an ephemeral node; its
//       connections echo nothing, record what they receive and replicate the swarm's cores
//   join { swarm, topic, server?, client? } → true once the topic's refresh finished
//   flush { swarm } → swarm.flush()
//   connections { swarm } → { open: [{ remotePublicKey, isInitiator, client }], opened, closed,
//       received: [utf-8 strings] }
//   send { swarm, message } → writes to every open connection
//   createCore { swarm, dir, blocks } → a writable core with `blocks` blocks ("block i"),
//       replicated on the swarm's connections; { key, discoveryKey }
//   openCore { swarm, dir, key } → a reader core, replicated on the swarm's connections;
//       { discoveryKey }
//   download { swarm, length } → waits until the reader core has `length` blocks, every one
//       downloaded; { length, blocks }
//   createDrive { swarm, dir, files } → a Corestore in dir with its Hyperdrive (hyperdrive
//       13.3.4) holding `files` files (/f/<i>.txt = "file <i>\n", and /big.bin of 300 KiB
//       gen(i) = i * 7 & 255), the store replicated on the swarm's connections;
//       { key, discoveryKey }
//   openDrive { swarm, dir, key } → a Corestore in dir with the reader Hyperdrive of `key`,
//       replicated on the swarm's connections; { discoveryKey }
//   downloadDrive { swarm, files } → waits until the drive lists `files` files, downloads
//       them all; { list: [path], contents: { path: utf-8 (small) or blake2b hex (/big.bin) } }
//   exit
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`), so concurrent JS nodes
// would take 49737, 49738, ... in turn; a port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const Hypercore = require('hypercore')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')
const readline = require('readline')

const cfg = JSON.parse(process.argv[2] || '{}')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
setTimeout(() => {
  out({ event: 'timeout' })
  process.exit(2)
}, cfg.timeoutMs || 120000).unref()

const nodes = []
const swarms = []
const hex = (b) => (b ? b4a.toString(b, 'hex') : null)
const buf = (h) => b4a.from(h, 'hex')

function parse(list) {
  return list.map((s) => {
    const [host, port] = s.split(':')
    return { host, port: Number(port) }
  })
}

const handlers = {
  async start({ bootstrap, count = 1 }) {
    const res = []
    for (let i = 0; i < count; i++) {
      const dht = new HyperDHT({
        bootstrap: parse(bootstrap || []),
        host: '127.0.0.1',
        port: ANY_PORT,
        anyPort: true,
        ephemeral: false,
        firewalled: false
      })
      await dht.fullyBootstrapped()
      const index = nodes.push(dht) - 1
      res.push({ index, port: dht.address().port })
    }
    return res
  },
  async swarm({ bootstrap, seed }) {
    const dht = new HyperDHT({
      bootstrap: parse(bootstrap),
      host: '127.0.0.1',
      port: ANY_PORT,
      anyPort: true,
      ephemeral: true
    })
    await dht.fullyBootstrapped()
    const swarm = new Hyperswarm({ dht, keyPair: HyperDHT.keyPair(buf(seed)) })
    const s = { swarm, dht, open: new Set(), opened: 0, closed: 0, received: [], core: null }
    swarm.on('connection', (conn, info) => {
      s.opened++
      conn.info = info
      s.open.add(conn)
      conn.on('error', () => {})
      conn.on('close', () => {
        s.closed++
        s.open.delete(conn)
      })
      if (s.store) s.store.replicate(conn)
      else if (s.core) s.core.replicate(conn)
      else conn.on('data', (d) => s.received.push(b4a.toString(d)))
    })
    const index = swarms.push(s) - 1
    return { index, publicKey: hex(swarm.keyPair.publicKey) }
  },
  async join({ swarm, topic, server = true, client = true }) {
    const d = swarms[swarm].swarm.join(buf(topic), { server, client })
    await d.flushed()
    return true
  },
  async flush({ swarm }) {
    await swarms[swarm].swarm.flush()
    return true
  },
  async connections({ swarm }) {
    const s = swarms[swarm]
    return {
      open: [...s.open].map((c) => ({
        remotePublicKey: hex(c.remotePublicKey),
        isInitiator: c.isInitiator,
        client: c.info.client
      })),
      opened: s.opened,
      closed: s.closed,
      received: s.received
    }
  },
  async send({ swarm, message }) {
    for (const c of swarms[swarm].open) c.write(b4a.from(message))
    return swarms[swarm].open.size
  },
  async createCore({ swarm, dir, blocks }) {
    const s = swarms[swarm]
    const core = new Hypercore(dir)
    await core.ready()
    const batch = []
    for (let i = 0; i < blocks; i++) batch.push(b4a.from('block ' + i))
    await core.append(batch)
    s.core = core
    for (const c of s.open) core.replicate(c)
    return { key: hex(core.key), discoveryKey: hex(core.discoveryKey) }
  },
  async openCore({ swarm, dir, key }) {
    const s = swarms[swarm]
    const core = new Hypercore(dir, buf(key))
    await core.ready()
    s.core = core
    for (const c of s.open) core.replicate(c)
    return { discoveryKey: hex(core.discoveryKey) }
  },
  async download({ swarm, length }) {
    const core = swarms[swarm].core
    while (core.length < length) {
      await core.update({ wait: true })
      if (core.length < length) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await core.download({ start: 0, end: length }).done()
    const blocks = []
    for (let i = 0; i < length; i++) blocks.push(b4a.toString(await core.get(i)))
    return { length: core.length, blocks }
  },
  async createDrive({ swarm, dir, files }) {
    const s = swarms[swarm]
    const store = new Corestore(dir)
    const drive = new Hyperdrive(store)
    await drive.ready()
    for (let i = 0; i < files; i++) await drive.put('/f/' + i + '.txt', b4a.from('file ' + i + '\n'))
    const big = b4a.alloc(300 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255
    await drive.put('/big.bin', big)
    s.store = store
    s.drive = drive
    for (const c of s.open) store.replicate(c)
    return { key: hex(drive.key), discoveryKey: hex(drive.discoveryKey) }
  },
  async openDrive({ swarm, dir, key }) {
    const s = swarms[swarm]
    const store = new Corestore(dir)
    const drive = new Hyperdrive(store, buf(key))
    await drive.ready()
    s.store = store
    s.drive = drive
    for (const c of s.open) store.replicate(c)
    return { discoveryKey: hex(drive.discoveryKey) }
  },
  async downloadDrive({ swarm, files }) {
    const drive = swarms[swarm].drive
    let list = []
    for (;;) {
      await drive.core.update({ wait: true })
      list = []
      for await (const e of drive.list('/')) list.push(e.key)
      if (list.length >= files) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await drive.download('/')
    const contents = {}
    for (const k of list) {
      const b = await drive.get(k)
      contents[k] = k === '/big.bin' ? hex(hcrypto.hash(b)) : b4a.toString(b)
    }
    return { list, contents }
  },
  async exit() {
    for (const s of swarms) {
      await s.swarm.destroy().catch(() => {})
      if (s.core) await s.core.close().catch(() => {})
      if (s.drive) await s.drive.close().catch(() => {})
      if (s.store) await s.store.close().catch(() => {})
    }
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
