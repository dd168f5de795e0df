// corestore 7.12.5 `watch` and hyperdrive 13.3.4 `monitor`, live, for
// tests/tests/store_features_interop.rs.
//
// Usage: node store-features-peer.js '<json config>'
//   mode: 'watch'          a store with `primaryKey` opens cores (the sequence is below) under
//                          two watchers; prints {event:'watched', first:[key hex], second:[key hex]}
//       | 'monitor-server' a drive (store with `primaryKey`) with files /small (100 bytes),
//                          /big (`bigLen`) and /after (1000), gen(len, seed 1/2/3); a monitor of
//                          /big; listens on 127.0.0.1 (prints {event:'listening', port}); when
//                          the stream closes prints {event:'stats', upload, download}
//       | 'monitor-client' reads the drive `key` from `port`: opens a monitor of /big, reads /big,
//                          prints {event:'stats', upload, download, bytes: hex of blake2b(/big)},
//                          ends the stream
//   streamSeed: hex 32; deadline: ms (exit 2 after)
// Then {event:'closed', error} and exit 0.
'use strict'

const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const SecretStream = require('@hyperswarm/secret-stream')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')

const { peer } = require('./peer-common.js')

const { cfg, hex, unhex, out, dir, cleanup, deadline } = peer('hp-storefeat-', 60000)

function gen (len, seed) {
  const b = b4a.allocUnsafe(len)
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 255
  return b
}

function stats (s) {
  const { blocks, monitoringBytes, totalBytes, targetBlocks, targetBytes, percentage, peers } = s
  return { blocks, monitoringBytes, totalBytes, targetBlocks, targetBytes, percentage, peers, started: s.startTime > 0 }
}

async function main () {
  const opts = cfg.primaryKey ? { primaryKey: unhex(cfg.primaryKey), unsafe: true } : {}
  const store = new Corestore(dir, opts)
  await store.ready()

  let finished = false
  function finish (error) {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed', error })
    store.close().catch(() => {}).finally(() => {
      cleanup()
      setTimeout(() => process.exit(0), 50)
    })
  }

  if (cfg.mode === 'watch') {
    // The same sequence as reports_each_core_opened_after_the_watch (watch.rs) and the Rust
    // half of the live test: named cores, a second session, a namespace, a core by key.
    const first = []
    const second = []
    const before = store.get({ name: 'before' })
    await before.ready()
    const fn1 = (core) => first.push(core)
    const fn2 = (core) => second.push(core)
    store.watch(fn1)
    const a = store.get({ name: 'a' })
    await a.ready()
    const a2 = store.get({ name: 'a' })
    await a2.ready()
    const a3 = a.session()
    await a3.ready()
    const before2 = store.get({ name: 'before' })
    await before2.ready()
    const ns = store.namespace('ns')
    const b = ns.get({ name: 'a' })
    await b.ready()
    ns.watch(fn2) // a namespace's watcher sees the whole store's opens too
    const r = store.get({ key: b4a.alloc(32, 9) })
    await r.ready()
    store.unwatch(fn1)
    const c = store.get({ name: 'c' })
    await c.ready()
    out({ event: 'watched', first: first.map((c) => hex(c.key)), second: second.map((c) => hex(c.key)) })
    return finish(null)
  }

  if (cfg.mode === 'monitor-server') {
    const drive = new Hyperdrive(store)
    await drive.ready()
    await drive.put('/small', gen(100, 1))
    await drive.put('/big', gen(cfg.bigLen, 2))
    await drive.put('/after', gen(1000, 3))
    const monitor = drive.monitor('/big')
    await monitor.ready()
    out({ event: 'ready', key: hex(drive.key) })
    const server = net.createServer((socket) => {
      const s = new SecretStream(false, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
      let error = null
      s.on('error', (err) => { error = err.message })
      s.on('close', () => {
        server.close()
        out({ event: 'stats', upload: stats(monitor.uploadStats), download: stats(monitor.downloadStats) })
        finish(error)
      })
      store.replicate(s)
    })
    server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
    return
  }

  // monitor-client
  const drive = new Hyperdrive(store, unhex(cfg.key))
  await drive.ready()
  const socket = net.connect(cfg.port, '127.0.0.1')
  const s = new SecretStream(true, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
  let error = null
  s.on('error', (err) => { error = err.message })
  s.on('close', () => finish(error))
  store.replicate(s)
  if (drive.core.peers.length === 0) await new Promise((resolve) => drive.core.once('peer-add', resolve))
  await drive.core.update({ wait: true })
  const monitor = drive.monitor('/big')
  await monitor.ready()
  let updates = 0
  monitor.on('update', () => { updates++ })
  const big = await drive.get('/big')
  out({
    event: 'stats',
    upload: stats(monitor.uploadStats),
    download: stats(monitor.downloadStats),
    updates,
    bytes: hex(hcrypto.data(big))
  })
  s.end()
}

main().catch((err) => {
  out({ event: 'failed', error: err.stack || String(err) })
  cleanup()
  process.exit(1)
})
