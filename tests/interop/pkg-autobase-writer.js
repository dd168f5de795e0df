// A JS autobase 7.28.1 writer of a base a page bootstraps, on hyperswarm 4.17.2, for the npm
// package's browser test (scripts/test-pkg.sh): the apply of pkg-autobase-peer.js (JSON values,
// `{ add: HEX }` adds a writer that is not an indexer, `{ text }` appends `text` to the view).
// It prints `writer KEY` (its local oplog key, which the page adds) once it joined TOPIC (a
// server) on a local DHT (BOOTSTRAP, never the public bootstrap nodes). A peer's first message
// on a connection is the base's key: it opens the base with it, replicates its store on the rest
// of the connection, appends `jsw0`..`jsw<COUNT-1>` once writable and updates until its view
// holds EXPECT values starting with `boot` and its own COUNT, every one indexed (by the page's
// acks), then prints `done VIEW` (the values joined by ','); it keeps replicating until SIGTERM
// or TIMEOUT_MS (default 240 s).
//
//   node pkg-autobase-writer.js BOOTSTRAP_HOST:PORT TOPIC EXPECT COUNT
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

const [bootstrap, topic, expect, count] = process.argv.slice(2)
const [host, port] = bootstrap.split(':')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-pkg-abwriter-'))
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
  const writerKey = await Autobase.getLocalKey(store)
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1', port: ANY_PORT, anyPort: true, ephemeral: true })
  await dht.fullyBootstrapped()
  const swarm = new Hyperswarm({ dht })
  let base = null
  const run = async (key) => {
    base = new Autobase(store, key, {
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
    console.log('opened', b4a.toString(base.key, 'hex'))
    let appended = 0
    let done = false
    for (;;) {
      await base.update()
      if (base.writable && appended < Number(count)) {
        await base.append({ text: `jsw${appended}` })
        appended++
        continue
      }
      if (!done) {
        const view = []
        for (let i = 0; i < base.view.length; i++) view.push(await base.view.get(i))
        const info = await base.system.getIndexedInfo(base.indexedLength)
        const indexed = info.views.length ? info.views[0].length : 0
        if (view.filter((v) => v.startsWith('boot')).length >= Number(expect) &&
            view.filter((v) => v.startsWith('jsw')).length >= Number(count) && indexed === view.length) {
          done = true
          console.log('done', view.join(','))
        }
      }
      await sleep(50)
    }
  }
  swarm.on('connection', (conn) => {
    conn.on('error', (err) => console.log('conn-error', err.message))
    conn.once('data', (key) => {
      store.replicate(conn)
      if (base !== null) return
      run(key).catch((err) => { console.log('error', err.stack || err.message); process.exit(1) })
    })
  })
  await swarm.join(b4a.from(topic, 'hex'), { server: true, client: false }).flushed()
  console.log('writer', b4a.toString(writerKey, 'hex'))
  const stop = async () => {
    await swarm.destroy()
    if (base !== null) await base.close()
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
