// A JS autobase 7.28.1 with thousands of indexed entries, served on one TCP connection
// (secret-stream + corestore.replicate) on 127.0.0.1, for the fast-forward test in
// tests/tests/autobase_interop.rs: a new hyperpunch reader replicates this corestore, reads the
// system core at its signed length and the view from there, and linearizes only the oplog
// entries after that point.
//
// Usage: node autobase-ff.js '<json config>'
//   entries: values the bootstrap (the only indexer) appends, in batches of `batch` (default 100)
//   tail: values a second JS writer (not an indexer) appends last, one by one (default 5): the
//         bootstrap sees them but does not ack, so they stay on the tip past the signed point
//         and the reader has to linearize them from that writer's oplog
//   indexers: JS indexers (default 1: the bootstrap); more are added by the bootstrap as
//         indexers (in-process members) and ack until the entries are indexed and signed by a
//         quorum of them
//   deadline: ms (default 60000)
//   encryptionKey: 64 hex chars: an encrypted base (every member opens it with this key, JS
//         `encryptionKey`); `ready` then also prints `encrypted`, the system core's manifest
//         version and its first stored (encrypted) block, `systemBlock0`
// Prints: {event:'ready', bootstrap, writer, systemKey, signedLength, systemLength, oplogLength,
//   viewKey, viewSignedLength, view:[hex] (indexed and tip), viewIndexedLength}, {event:'listening', port}, {event:'closed', error}.
// The apply is the one of autobase-scenario.js (add:/rm: values, the rest appended to 'view').
'use strict'

const net = require('net')
const fs = require('fs')
const os = require('os')
const path = require('path')
const Corestore = require('corestore')
const Autobase = require('autobase')
const SecretStream = require('@hyperswarm/secret-stream')
const b4a = require('b4a')

const cfg = JSON.parse(process.argv[2] || '{}')
const hex = (b) => b4a.toString(b, 'hex')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abff-'))
const cleanup = () => { try { fs.rmSync(dir, { recursive: true, force: true }) } catch {} }
const deadline = setTimeout(() => { out({ event: 'deadline' }); cleanup(); process.exit(2) }, cfg.deadline || 60000)

function open (store, key) {
  return new Autobase(store, key, {
    valueEncoding: 'binary',
    ackInterval: 0,
    fastForward: false,
    encryptionKey: cfg.encryptionKey ? b4a.from(cfg.encryptionKey, 'hex') : undefined,
    open: (s) => s.get('view'),
    apply: async (nodes, view, host) => {
      for (const { value } of nodes) {
        const s = b4a.toString(value)
        if (s.startsWith('add:')) {
          const [, k, idx] = s.split(':')
          await host.addWriter(b4a.from(k, 'hex'), { indexer: idx === '1' })
          continue
        }
        if (s.startsWith('rm:')) { await host.removeWriter(b4a.from(s.slice(3), 'hex')); continue }
        await view.append(value)
      }
    }
  })
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main () {
  const store = new Corestore(dir)
  const base = open(store, null)
  await base.ready()
  const store2 = new Corestore(path.join(dir, 'writer'))
  const writer = open(store2, base.key)
  await writer.ready()
  const a = store.replicate(true)
  const b = store2.replicate(false)
  a.pipe(b).pipe(a)
  a.on('error', () => {}); b.on('error', () => {})
  await base.append(b4a.from(`add:${hex(writer.local.key)}:0`))
  const indexers = [base]
  const stores = [store, store2]
  for (let i = 1; i < (cfg.indexers || 1); i++) {
    const st = new Corestore(path.join(dir, `indexer${i}`))
    const b = open(st, base.key)
    await b.ready()
    for (const other of stores) {
      const x = other.replicate(true)
      const y = st.replicate(false)
      x.pipe(y).pipe(x)
      x.on('error', () => {}); y.on('error', () => {})
    }
    stores.push(st)
    indexers.push(b)
    await base.append(b4a.from(`add:${hex(b.local.key)}:1`))
  }
  const settle = async (done) => {
    for (let t = 0; t < 3000; t++) {
      for (const b of indexers) { await b.update(); if (b.ackable) await b.ack() }
      if (await done()) return
      await sleep(10)
    }
    throw new Error('the indexers did not settle')
  }
  if (indexers.length > 1) await settle(async () => base.system.indexers.length === indexers.length && indexers.every((b) => b.writable))
  const entries = cfg.entries || 2000
  const batch = cfg.batch || 100
  for (let k = 0; k < entries; k += batch) {
    const values = []
    for (let i = k; i < Math.min(entries, k + batch); i++) values.push(b4a.from(`e ${i}`))
    await base.append(values)
  }
  if (indexers.length > 1) await settle(async () => base.view.signedLength >= entries && indexers.every((b) => b.view.signedLength >= entries))
  const tail = cfg.tail === undefined ? 5 : cfg.tail
  for (let t = 0; t < 2000 && !(writer.writable && writer.view.length === base.view.length); t++) {
    await writer.update()
    await sleep(10)
  }
  if (!writer.writable) throw new Error('the writer was not added')
  for (let k = 0; k < tail; k++) await writer.append(b4a.from(`t ${k}`))
  for (let t = 0; t < 2000 && base.view.length < entries + tail; t++) {
    await base.update()
    await sleep(10)
  }
  if (base.view.length !== entries + tail) throw new Error('the tail did not arrive')
  const view = []
  for (let i = 0; i < base.view.length; i++) view.push(hex(await base.view.get(i)))
  const info = await base.system.getIndexedInfo(base.indexedLength)
  out({
    event: 'ready',
    bootstrap: hex(base.key),
    writer: hex(writer.local.key),
    indexers: base.system.indexers.map((i) => hex(i.key)),
    systemKey: hex(base.core.key),
    signedLength: base.core.signedLength,
    systemLength: base.system.core.length,
    oplogLength: base.local.length,
    viewKey: hex(base.view.key),
    viewSignedLength: base.view.signedLength,
    view,
    viewIndexedLength: info.views.length ? info.views[0].length : 0,
    encrypted: base.encrypted,
    systemManifestVersion: base.core.manifest.version,
    systemBlock0: cfg.encryptionKey ? hex(await base.core.get(0, { raw: true })) : null
  })

  let finished = false
  const finish = (error) => {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed', error })
    a.destroy(); b.destroy()
    Promise.all(indexers.slice(1).map((b) => b.close())).then(() => writer.close()).then(() => base.close()).then(() => Promise.all(stores.map((st) => st.close()))).catch(() => {}).finally(() => { cleanup(); setTimeout(() => process.exit(0), 50) })
  }

  const server = net.createServer((socket) => {
    server.close()
    const s = new SecretStream(false, socket)
    let error = null
    s.on('error', (err) => { error = err.message })
    s.on('close', () => finish(error))
    store.replicate(s)
  })
  server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
}

main().catch((err) => { out({ event: 'failed', error: err.stack }); cleanup(); process.exit(1) })
