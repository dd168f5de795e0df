// A JS autobase 7.28.1 bootstrap (the only indexer) serving its corestore on one TCP connection
// (secret-stream + corestore.replicate) on 127.0.0.1, for tests/tests/autobase_interop.rs: it
// adds the hyperpunch writer `writer` (not an indexer), appends `values` of its own, then
// updates and acks until its view holds `expect` values written by the hyperpunch writer and
// every value is indexed.
//
// Usage: node autobase-peer.js '<json config>'
//   writer: hex key of the hyperpunch writer's local core
//   indexer: add it as an indexer (default: a writer)
//   values: number of values the bootstrap appends (`js <k>`), half before and half after the
//           hyperpunch writer connects
//   expect: values from the hyperpunch writer to wait for
//   deadline: ms (default 60000)
// Prints: {event:'ready', bootstrap}, {event:'listening', port}, {event:'done', view:[hex],
// viewIndexedLength, writerLength, indexedLength, systemKey, viewKey, systemBlocks:[hex],
// indexers:[hex], localSigner, localNamespace}, {event:'closed', error}; the apply is the one of
// autobase-scenario.js (add:/rm: values, the rest appended to the view).
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
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abpeer-'))
const cleanup = () => { try { fs.rmSync(dir, { recursive: true, force: true }) } catch {} }
const deadline = setTimeout(() => { out({ event: 'deadline' }); cleanup(); process.exit(2) }, cfg.deadline || 60000)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main () {
  const store = new Corestore(dir)
  const base = new Autobase(store, null, {
    valueEncoding: 'binary',
    ackInterval: 0,
    fastForward: false,
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
  await base.ready()
  const half = Math.floor((cfg.values || 0) / 2)
  for (let k = 0; k < half; k++) await base.append(b4a.from(`js ${k}`))
  await base.append(b4a.from(`add:${cfg.writer}:${cfg.indexer ? 1 : 0}`))
  out({ event: 'ready', bootstrap: hex(base.key) })

  let finished = false
  const finish = (error) => {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed', error })
    base.close().then(() => store.close()).catch(() => {}).finally(() => { cleanup(); setTimeout(() => process.exit(0), 50) })
  }

  const server = net.createServer((socket) => {
    server.close()
    const s = new SecretStream(false, socket)
    let error = null
    s.on('error', (err) => { error = err.message })
    s.on('close', () => finish(error))
    store.replicate(s)
    ;(async () => {
      for (let k = half; k < (cfg.values || 0); k++) await base.append(b4a.from(`js ${k}`))
      const writer = b4a.from(cfg.writer, 'hex')
      for (;;) {
        await base.update()
        if (base.ackable) await base.ack()
        const view = []
        for (let i = 0; i < base.view.length; i++) view.push(await base.view.get(i))
        const fromRust = view.filter((v) => b4a.toString(v).startsWith('hp ')).length
        const info = await base.system.getIndexedInfo(base.indexedLength)
        const indexed = info.views.length ? info.views[0].length : 0
        if (fromRust >= cfg.expect && indexed === view.length) {
          const member = await base.system.get(writer)
          const sys = base.system.core.session({ valueEncoding: 'binary' })
          await sys.ready()
          const systemBlocks = []
          for (let i = 0; i < sys.length; i++) systemBlocks.push(hex(await sys.get(i)))
          await sys.close()
          const signer = base.local.manifest.signers[0]
          out({
            event: 'done',
            view: view.map(hex),
            viewIndexedLength: indexed,
            writerLength: member ? member.length : 0,
            indexedLength: base.indexedLength,
            systemKey: hex(base.system.core.key),
            viewKey: hex(base.view.key),
            systemBlocks,
            indexers: base.system.indexers.map((i) => hex(i.key)),
            localSigner: hex(signer.publicKey),
            localNamespace: hex(signer.namespace)
          })
          // let the peer read our last acks, then end
          await sleep(2000)
          s.end()
          return
        }
        await sleep(20)
      }
    })().catch((err) => { out({ event: 'failed', error: err.stack }); s.destroy(err) })
  })
  server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
}

main().catch((err) => { out({ event: 'failed', error: err.stack }); cleanup(); process.exit(1) })
