// JS autobase 7.28.1 peers that replicate with `base.replicate(stream)` (corestore replication
// plus the protomux-wakeup channel) on one TCP connection on 127.0.0.1, for
// tests/tests/wakeup_interop.rs.
//
// Usage: node autobase-wakeup-peer.js '<json config>'
//   mode 'writer': a bootstrap A (the indexer, never acks: ackInterval 0) adds a writer B; both
//     live here and replicate over an in-process pipe; B appends `values` values (`js <k>`,
//     not indexed: A does not ack) and serves the connection. B's wakeup writers (autobase
//     `_getWakeup`) are then [B at its length], which it announces when asked.
//     Prints {event:'ready', bootstrap, writer, writerLength} before listening.
//   mode 'optimistic': an optimistic bootstrap (apply acks the writer of a value starting with
//     `ok`) serves the connection; it learns of the hyperpunch non-writer only from the wakeup
//     protocol (nothing here opens its core or hints it). Prints {event:'ready', bootstrap},
//     {event:'hint', key, length} for every hint `hintWakeup` gets, and {event:'done', view:[text]}
//     once `expect` values starting with `ok hp` are in its view.
//   deadline: ms (default 60000)
// Both modes print {event:'listening', port}, {event:'wakeup-peer', active} once the served
// base's wakeup session has the connection's peer, {event:'stats', ...} (the protocol's wire
// counters) whenever they change, and {event:'closed'} when the connection ends.
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
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abwake-'))
const cleanup = () => { try { fs.rmSync(dir, { recursive: true, force: true }) } catch {} }
const deadline = setTimeout(() => { out({ event: 'deadline' }); cleanup(); process.exit(2) }, cfg.deadline || 60000)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function open (name, bootstrap, optimistic) {
  const store = new Corestore(path.join(dir, name))
  const base = new Autobase(store, bootstrap, {
    valueEncoding: 'binary',
    ackInterval: 0,
    fastForward: false,
    optimistic,
    open: (s) => s.get('view'),
    apply: async (nodes, view, host) => {
      for (const { value, from } of nodes) {
        if (value === null) continue
        const s = b4a.toString(value)
        if (optimistic && s.startsWith('ok')) await host.ackWriter(from.key)
        if (s.startsWith('add:')) { await host.addWriter(b4a.from(s.slice(4), 'hex'), { indexer: false }); continue }
        await view.append(value)
      }
    }
  })
  return { store, base }
}

async function main () {
  let served
  if (cfg.mode === 'writer') {
    const a = open('a', null, false)
    await a.base.ready()
    const b = open('b', a.base.key, false)
    await b.base.ready()
    const s1 = a.base.replicate(true)
    const s2 = b.base.replicate(false)
    s1.pipe(s2).pipe(s1)
    await a.base.append(b4a.from('add:' + hex(b.base.local.key)))
    while (!b.base.writable) { await b.base.update(); await sleep(20) }
    for (let k = 0; k < (cfg.values || 2); k++) await b.base.append(b4a.from(`js ${k}`))
    await b.base.update()
    out({ event: 'ready', bootstrap: hex(a.base.key), writer: hex(b.base.local.key), writerLength: b.base.local.length })
    served = b
  } else {
    const a = open('a', null, true)
    await a.base.ready()
    await a.base.append(b4a.from('js 0'))
    const hint = a.base.hintWakeup.bind(a.base)
    a.base.hintWakeup = (hints) => {
      for (const { key, length } of Array.isArray(hints) ? hints : [hints]) out({ event: 'hint', key: hex(key), length })
      return hint(hints)
    }
    out({ event: 'ready', bootstrap: hex(a.base.key) })
    served = a
  }
  const base = served.base

  let finished = false
  const finish = () => {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed' })
    base.close().then(() => served.store.close()).catch(() => {}).finally(() => { cleanup(); setTimeout(() => process.exit(0), 50) })
  }

  const server = net.createServer((socket) => {
    server.close()
    const s = new SecretStream(false, socket)
    s.on('error', () => {})
    s.on('close', finish)
    base.replicate(s)
    ;(async () => {
      let peerSeen = false
      let stats = ''
      let done = false
      while (!finished) {
        const peers = base.wakeupSession ? base.wakeupSession.peers : []
        if (!peerSeen && peers.length > 0) {
          peerSeen = true
          out({ event: 'wakeup-peer', active: peers[0].active, count: peers.length })
        }
        const st = JSON.stringify(base.wakeupProtocol.stats)
        if (st !== stats) { stats = st; out({ event: 'stats', ...base.wakeupProtocol.stats }) }
        if (cfg.mode !== 'writer' && !done) {
          await base.update()
          if (base.ackable) await base.ack()
          const view = []
          for (let i = 0; i < base.view.length; i++) view.push(b4a.toString(await base.view.get(i)))
          if (view.filter((v) => v.startsWith('ok hp')).length >= (cfg.expect || 1)) {
            done = true
            out({ event: 'done', view })
          }
        }
        await sleep(20)
      }
    })().catch((err) => { out({ event: 'failed', error: err.stack }); s.destroy(err) })
  })
  server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
}

main().catch((err) => { out({ event: 'failed', error: err.stack }); cleanup(); process.exit(1) })
