// A real JS corestore 7.12.5 replicating over @hyperswarm/secret-stream on one TCP socket on
// 127.0.0.1 (corestore.replicate: one protomux, every core on it), driven by
// tests/tests/corestore_interop.rs.
//
// Usage: node corestore-peer.js '<json config>'
//   mode: 'server' (listen on an ephemeral port) | 'client' (connect to `port`)
//   streamSeed: hex 32, the secret-stream static key pair seed
//   primaryKey: hex 32 (optional; the store's primary key, `unsafe: true`)
//   write: [{ name, count }]   named cores created and filled before connecting
//   read: [{ key, count }]     cores opened by key, downloaded up to `count` blocks
//   stored: [{ key, count }]   cores created by key in a first store, closed with it; the store
//                              is opened again, so they are in the storage but not open, and
//                              only the remote's open makes corestore open them ('done' waits
//                              until that happened and they reached `count` blocks)
//   unknown: [key]             cores opened by key that the remote is expected not to have
//   deadline: ms after which the process gives up (exit 2)
// Block k of the core named N: `${N} block ${k} ` and (k * 37) % 3000 bytes equal to k & 255.
// Prints one JSON object per line: {event:'ready', cores:[{name, key, discoveryKey, length}]},
// {event:'listening', port}, {event:'connected'}, {event:'done', cores:[{key, length,
// blocks:[hex]}], unknown:[{key, peers}], stored:[{key, length}]} (once every `read`
// core is downloaded and every `stored` core was opened for the remote and reached its count;
// then the stream is ended), {event:'closed', error} when the stream closed, and exits 0.
'use strict'

const net = require('net')
const Corestore = require('corestore')
const SecretStream = require('@hyperswarm/secret-stream')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')

const { peer } = require('./peer-common.js')

const { cfg, hex, unhex, out, dir, cleanup, deadline } = peer('hp-corestore-', 60000)

function block (name, k) {
  return b4a.concat([b4a.from(`${name} block ${k} `), b4a.alloc((k * 37) % 3000, k & 255)])
}

async function main () {
  const opts = cfg.primaryKey ? { primaryKey: unhex(cfg.primaryKey), unsafe: true } : {}
  if (cfg.stored && cfg.stored.length) {
    const first = new Corestore(dir, opts)
    for (const { key } of cfg.stored) {
      const core = first.get({ key: unhex(key) })
      await core.ready()
      await core.close()
    }
    await first.close()
  }
  const store = new Corestore(dir, opts)
  await store.ready()

  const written = []
  for (const w of cfg.write || []) {
    const core = store.get({ name: w.name })
    await core.ready()
    const blocks = []
    for (let k = 0; k < w.count; k++) blocks.push(block(w.name, k))
    if (blocks.length) await core.append(blocks)
    written.push({ name: w.name, key: hex(core.key), discoveryKey: hex(core.discoveryKey), length: core.length })
  }
  const reading = []
  for (const r of cfg.read || []) {
    const core = store.get({ key: unhex(r.key) })
    await core.ready()
    reading.push({ core, count: r.count })
  }
  const unknown = []
  for (const key of cfg.unknown || []) {
    const core = store.get({ key: unhex(key) })
    await core.ready()
    unknown.push(core)
  }
  out({ event: 'ready', cores: written })

  let finished = false
  async function finish (error) {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed', error })
    store.close().catch(() => {}).finally(() => {
      cleanup()
      setTimeout(() => process.exit(0), 50)
    })
  }

  function run (socket, isInitiator) {
    const s = new SecretStream(isInitiator, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
    let error = null
    s.on('error', (err) => { error = err.message })
    s.on('close', () => finish(error))
    s.on('connect', () => out({ event: 'connected' }))
    // Cores corestore opens for the remote (and any other it opens from now on).
    const opened = new Set()
    store.watch((core) => { if (core.discoveryKey) opened.add(hex(core.discoveryKey)) })
    store.replicate(s)

    if (reading.length || (cfg.stored && cfg.stored.length)) {
      (async () => {
        const stored = []
        for (const { key, count } of cfg.stored || []) {
          const dk = hex(hcrypto.discoveryKey(unhex(key)))
          while (!opened.has(dk)) await new Promise((resolve) => setTimeout(resolve, 10))
          const core = store.get({ key: unhex(key) })
          await core.ready()
          while (core.length < count) await new Promise((resolve) => setTimeout(resolve, 10))
          stored.push({ key, length: core.length })
        }
        const cores = []
        for (const { core, count } of reading) {
          // update() resolves at once when no peer can upgrade us yet: yield to I/O between tries.
          while (core.length < count) {
            await core.update({ wait: true })
            if (core.length < count) await new Promise((resolve) => setTimeout(resolve, 10))
          }
          await core.download({ start: 0, end: count }).done()
          const blocks = []
          for (let k = 0; k < count; k++) blocks.push(hex(await core.get(k)))
          cores.push({ key: hex(core.key), length: core.length, blocks })
        }
        out({ event: 'done', cores, stored, unknown: unknown.map((c) => ({ key: hex(c.key), peers: c.peers.length })) })
        s.end()
      })().catch((err) => {
        out({ event: 'failed', error: err.message })
        s.destroy(err)
      })
    }
  }

  if (cfg.mode === 'server') {
    const server = net.createServer((socket) => {
      server.close()
      run(socket, false)
    })
    server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
  } else {
    run(net.connect(cfg.port, '127.0.0.1'), true)
  }
}

main().catch((err) => {
  out({ event: 'failed', error: err.stack })
  cleanup()
  process.exit(1)
})
