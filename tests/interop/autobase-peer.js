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
//   optimistic: the base is optimistic (JS `optimistic: true`) and the hyperpunch writer is never
//           added: it appends optimistically, the apply acks the writer of a value starting with
//           `ok` (`host.ackWriter`); `expect` then counts values starting with `ok hp`, and the
//           bootstrap learns of the writer's core by opening it by key and hinting its length
//           (`hintWakeup`, what the wakeup protocol does when a peer announces a writer)
//   encryptionKey: 64 hex chars: the base is encrypted with it (JS `encryptionKey`); `done` then
//           also prints `writerBlock0`, the hyperpunch writer's first oplog block as JS stores it
// Prints: {event:'ready', bootstrap}, {event:'listening', port}, {event:'done', view:[hex],
// viewIndexedLength, writerLength, indexedLength, systemKey, viewKey, systemBlocks:[hex],
// indexers:[hex], localSigner, localNamespace, stallAcks}, {event:'closed', error}; the apply is the one of
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
// HP_AB_DEBUG=1: every second, the linearizer's state on stderr (for a stalled run)
const DEBUG = !!process.env.HP_AB_DEBUG
const ref = (n) => n ? hex(n.writer.core.key).slice(0, 4) + ':' + n.length + (n.value === null ? '' : '*') : '-'
function debugState (base, tag) {
  const lin = base.linearizer
  const ws = []
  for (const w of base.activeWriters) {
    ws.push(`${hex(w.core.key).slice(0, 4)} core ${w.core.length}/${w.core.contiguousLength} len ${w.length} avail ${w.available} idx ${w.indexed} act ${w.isActiveIndexer} rm ${w.isRemoved}`)
  }
  const lw = base.localWriter
  process.stderr.write(`[js ${tag}] view ${base.view.length} indexedLength ${base.indexedLength} local ${base.local.length} ` +
    `indexers ${lin.indexers.map((w) => hex(w.core.key).slice(0, 4))} sysIndexers ${base.system.indexers.map((i) => hex(i.key).slice(0, 4) + ':' + i.length)} ` +
    `pending ${base.system.pendingIndexers.map((k) => hex(k).slice(0, 4))} heads ${[...lin.heads].map(ref)} tails ${[...lin.tails].map(ref)} ` +
    `tip ${lin.tip.tip.map(ref)} shouldAck ${lw ? lin.shouldAck(lw, base.system.indexers.length > lin.indexers.length) : '-'} ` +
    `removed ${[...lin.consensus.removed].map(([k, l]) => k.slice(0, 4) + ':' + l)} | ${ws.join(' | ')}\n`)
}

async function main () {
  const store = new Corestore(dir)
  const base = new Autobase(store, null, {
    valueEncoding: 'binary',
    ackInterval: 0,
    fastForward: false,
    encryptionKey: cfg.encryptionKey ? b4a.from(cfg.encryptionKey, 'hex') : undefined,
    optimistic: !!cfg.optimistic,
    open: (s) => s.get('view'),
    apply: async (nodes, view, host) => {
      for (const { value, from } of nodes) {
        const s = b4a.toString(value)
        if (cfg.optimistic && s.startsWith('ok')) await host.ackWriter(from.key)
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
  if (!cfg.optimistic) await base.append(b4a.from(`add:${cfg.writer}:${cfg.indexer ? 1 : 0}`))
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
      const writerCore = cfg.optimistic ? store.get({ key: writer }) : null
      let hinted = 0
      let updating = false
      let lastDebug = 0
      let lastProgress = ''
      let idle = 0
      let stallAcks = 0
      for (;;) {
        if (writerCore !== null && !updating) {
          // ask the peer for the writer's new length (one request at a time)
          updating = true
          writerCore.update().catch(() => {}).finally(() => { updating = false })
        }
        if (writerCore !== null && writerCore.length > hinted) {
          hinted = writerCore.length
          base.hintWakeup([{ key: writer, length: hinted }])
        }
        await base.update()
        if (DEBUG && Date.now() - lastDebug > 1000) { lastDebug = Date.now(); debugState(base, 'loop') }
        if (base.ackable) await base.ack()
        const view = []
        for (let i = 0; i < base.view.length; i++) view.push(await base.view.get(i))
        const fromRust = view.filter((v) => b4a.toString(v).startsWith(cfg.optimistic ? 'ok hp' : 'hp ')).length
        const info = await base.system.getIndexedInfo(base.indexedLength)
        const indexed = info.views.length ? info.views[0].length : 0
        // Two indexers whose acks crossed can stall with values unindexed while `shouldAck`
        // says no to both (JS to JS too: autobase-crossing.js); JS's own tests break that with
        // forced acks in turn (`append(null)`). Here: when nothing moved for 25 rounds and
        // every head of the DAG is the other indexer's node (an ack of ours sees it; the
        // hyperpunch indexer's stall acks come only while some head is a node of ours, so the
        // two never stall-ack at once and cross again), ack.
        const progress = `${base.view.length}/${indexed}/${base.indexedLength}/${base.local.length}`
        if (progress !== lastProgress) { lastProgress = progress; idle = 0 } else idle++
        const lin = base.linearizer
        if (idle >= 25 && base.ackable && indexed < view.length && lin.heads.size > 0 &&
            [...lin.heads].every((h) => h.writer !== base.localWriter)) {
          idle = 0
          stallAcks++
          if (DEBUG) debugState(base, 'stall ack')
          await base.append(null)
        }
        if (fromRust >= cfg.expect && indexed === view.length) {
          const member = await base.system.get(writer)
          const sys = base.system.core.session({ valueEncoding: 'binary' })
          await sys.ready()
          const systemBlocks = []
          for (let i = 0; i < sys.length; i++) systemBlocks.push(hex(await sys.get(i)))
          await sys.close()
          const signer = base.local.manifest.signers[0]
          let writerBlock0 = null
          if (cfg.encryptionKey) {
            const w = store.get({ key: writer, active: false })
            await w.ready()
            writerBlock0 = hex(await w.get(0, { raw: true }))
            await w.close()
          }
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
            localNamespace: hex(signer.namespace),
            stallAcks,
            encrypted: base.encrypted,
            writerBlock0,
            writerIsRemoved: member ? member.isRemoved : null,
            members: base.system.members,
            systemLength: base.system.core.length
          })
          // keep serving until the peer, once it has read our last acks, closes the connection
          // ('close' -> finish); bounded by the deadline
          return
        }
        await sleep(20)
      }
    })().catch((err) => { out({ event: 'failed', error: err.stack }); s.destroy(err) })
  })
  server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
}

main().catch((err) => { out({ event: 'failed', error: err.stack }); cleanup(); process.exit(1) })
