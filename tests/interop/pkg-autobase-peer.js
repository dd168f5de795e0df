// A JS autobase 7.28.1 bootstrap (the only indexer) on hyperswarm 4.17.2, for the npm package's
// browser test (scripts/test-pkg.sh): values are JSON, `{ add: HEX }` adds a writer (not an
// indexer), `{ text }` appends `text` to the view 'view' (utf-8). It appends `js0`, `js1`, joins
// its discovery key on a local DHT (BOOTSTRAP, never the public bootstrap nodes) and prints
// `autobase KEY`. A peer's first message on a connection is its writer key: it adds that
// writer, replicates its store on the rest of the connection, appends `js2`, `js3`, answers
// each value `pageN` of that writer it sees with a value `re:pageN` of its own (written while
// the page goes on appending: concurrent nodes, which both ends must order alike), and acks
// until its view holds EXPECT values of that writer and its EXPECT answers, every value
// indexed; then it prints `done VIEW` (the view's values joined by ','), and keeps serving (and
// acking) until SIGTERM or TIMEOUT_MS (default 240 s). It replicates with `base.replicate`
// (the store plus the base's protomux-wakeup channel, as a JS app does): it prints
// `wakeup-peer active` once its wakeup session holds a connection's peer as active (the page's
// wakeup channel opened with the base's capability), and `wakeup-hint KEY LENGTH` for each hint
// its base takes (announces from the page among them).
//
//   node pkg-autobase-peer.js BOOTSTRAP_HOST:PORT EXPECT
'use strict'
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const Corestore = require('corestore')
const Autobase = require('autobase')
const b4a = require('b4a')
const fs = require('fs')
const os = require('os')
const path = require('path')

const [bootstrap, expect] = process.argv.slice(2)
const [host, port] = bootstrap.split(':')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-pkg-autobase-'))
const cleanup = () => fs.rmSync(dir, { recursive: true, force: true })
const timeout = setTimeout(() => {
  console.log('timeout')
  cleanup()
  process.exit(2)
}, Number(process.env.TIMEOUT_MS || 240000))
timeout.unref()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main () {
  const store = new Corestore(dir)
  const base = new Autobase(store, null, {
    valueEncoding: 'json',
    ackInterval: 0,
    open: (s) => s.get('view', { valueEncoding: 'utf-8' }),
    apply: async (nodes, view, host) => {
      for (const { value } of nodes) {
        if (value.add) await host.addWriter(b4a.from(value.add, 'hex'), { indexer: false })
        else await view.append(value.text)
      }
    }
  })
  await base.ready()
  const hint = base.hintWakeup.bind(base)
  base.hintWakeup = (hints) => {
    for (const { key, length } of Array.isArray(hints) ? hints : [hints]) console.log('wakeup-hint', b4a.toString(key, 'hex'), length)
    return hint(hints)
  }
  let peerSeen = false
  const watchPeer = setInterval(() => {
    const peers = base.wakeupSession ? base.wakeupSession.peers : []
    if (!peerSeen && peers.some((p) => p.active)) {
      peerSeen = true
      console.log('wakeup-peer active')
      clearInterval(watchPeer)
    }
  }, 50)
  watchPeer.unref()
  await base.append({ text: 'js0' })
  await base.append({ text: 'js1' })
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1', port: ANY_PORT, anyPort: true, ephemeral: true })
  await dht.fullyBootstrapped()
  const swarm = new Hyperswarm({ dht })
  let writer = null
  swarm.on('connection', (conn) => {
    conn.on('error', (err) => console.log('conn-error', err.message))
    conn.once('data', (key) => {
      base.replicate(conn)
      if (writer !== null) return
      writer = b4a.toString(key, 'hex')
      console.log('writer', writer)
      run().catch((err) => { console.log('error', err.stack || err.message); process.exit(1) })
    })
  })
  const run = async () => {
    await base.append({ add: writer })
    await base.append({ text: 'js2' })
    await base.append({ text: 'js3' })
    let done = false
    const answered = new Set()
    for (;;) {
      await base.update()
      if (base.ackable) await base.ack()
      if (!done) {
        const view = []
        for (let i = 0; i < base.view.length; i++) view.push(await base.view.get(i))
        const fresh = view.filter((v) => v.startsWith('page') && !answered.has(v))
        if (fresh.length > 0) {
          for (const v of fresh) {
            answered.add(v)
            await base.append({ text: `re:${v}` })
          }
          continue
        }
        const info = await base.system.getIndexedInfo(base.indexedLength)
        const indexed = info.views.length ? info.views[0].length : 0
        if (view.filter((v) => v.startsWith('page')).length >= Number(expect) &&
            view.filter((v) => v.startsWith('re:')).length >= Number(expect) && indexed === view.length) {
          done = true
          console.log('done', view.join(','))
        }
      }
      await sleep(50)
    }
  }
  await swarm.join(base.discoveryKey, { server: true, client: true }).flushed()
  console.log('autobase', b4a.toString(base.key, 'hex'))
  const stop = async () => {
    await swarm.destroy()
    await base.close()
    await store.close()
    cleanup()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  console.log('error', err.stack || err.message)
  cleanup()
  process.exit(1)
})
