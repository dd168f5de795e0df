// The JS half of the autobase benchmark (bench/autobase.sh): autobase 7.28.1 on corestore's
// default storage (RocksDB), every member a Corestore of its own in a temporary folder, members
// replicated in one process over corestore.replicate streams (secret-stream on an in-memory
// duplex), each member connected to the room's creator (a star). The apply function is the one of
// `hyperpunch chat` (transport-native/src/cli/chat_cmd.rs and tests/interop/autobase-chat.js):
// JSON values {"type":"add","key"} add a writer (an indexer with "indexer": true, never here), {"type":"message","text"}
// append {"from","text"} to the view `messages`. The creator is the only indexer and acks
// (ackInterval 0, explicit `ack()` when `ackable`, as the hyperpunch chat does).
// The same work as bench_autobase.rs:
//   1. `writers W` (W = 1, 3, 10): the creator adds W-1 writers and waits until all are writable
//      (not timed); then every member appends APPENDS/W messages one at a time, concurrently; the
//      clock stops when every member's view holds all APPENDS messages as indexed.
//      Prints BENCH autobase_w<W>_appends_s (appends per second, linearized and indexed at every
//      member) and BENCH autobase_w<W>_cpu_appends_s (per CPU second of the process).
//   2. `catchup N`: the creator appends N messages in batches of 1000 (not timed); a new member
//      (a reader, never added) connects and the clock runs until its view holds the N messages as
//      indexed. Once with fast-forward (the default: the reader takes the indexer's signed system
//      and view) and once without (`fastForward: false`: it downloads every oplog and linearizes,
//      as hyperpunch does). Prints BENCH autobase_catchup_ff_s / autobase_catchup_s (seconds) and
//      autobase_catchup_ff_cpu_s / autobase_catchup_cpu_s (CPU seconds of the process).
//   3. `serve N` and `ffread PORT BOOTSTRAP N`: a new reader fast-forwards over TCP. `serve`: the
//      creator appends N messages in batches of 1000 until indexed (and signed: one indexer signs
//      its own entries), then serves its corestore on 127.0.0.1 (secret-stream +
//      corestore.replicate, any number of connections) and prints `SERVE <port> <bootstrap>`;
//      it runs until its stdin closes. `ffread`: a JS reader (fast-forward on, its default)
//      connects and the clock runs until its view holds the N messages as indexed; prints BENCH
//      autobase_ff_tcp_s and autobase_ff_tcp_cpu_s. bench_autobase `ffread` is the hyperpunch
//      reader of the same JS creator.
// Usage: NODE_PATH=tests/interop/node_modules node bench/js/autobase.js writers 3
//        NODE_PATH=tests/interop/node_modules node bench/js/autobase.js catchup 100000
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const Corestore = require('corestore')
const Autobase = require('autobase')
const b4a = require('b4a')

const APPENDS = Number(process.env.AUTOBASE_APPENDS || 1000)
const hex = (b) => b4a.toString(b, 'hex')
const dirs = []
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abbench-')); dirs.push(d); return d }
function cleanup () { for (const d of dirs) try { fs.rmSync(d, { recursive: true, force: true }) } catch {} }
const bench = (name, value) => console.log(`BENCH ${name} ${value.toFixed(3)}`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function open (store, key, fastForward) {
  return new Autobase(store, key, {
    valueEncoding: 'json',
    ackInterval: 0,
    fastForward,
    open: (s) => s.get('messages'),
    apply: async (nodes, view, host) => {
      for (const { value, from } of nodes) {
        if (value && value.type === 'add') { await host.addWriter(b4a.from(value.key, 'hex'), { indexer: value.indexer === true }); continue }
        if (value && value.type === 'message') await view.append(b4a.from(JSON.stringify({ from: hex(from.key), text: value.text })))
      }
    }
  })
}

const streams = []
function connect (a, b) {
  const s1 = a.replicate(true)
  const s2 = b.replicate(false)
  s1.pipe(s2).pipe(s1)
  s1.on('error', () => {}); s2.on('error', () => {})
  streams.push(s1, s2)
}

async function indexedViewLength (base) {
  const info = await base.system.getIndexedInfo(base.indexedLength)
  return info.views.length ? info.views[0].length : 0
}

// Update every member (the creator acks) until every member's indexed view has `n` entries.
async function until (bases, n) {
  for (;;) {
    let done = true
    for (const b of bases) {
      await b.update()
      if (b.ackable) await b.ack()
      if (await indexedViewLength(b) < n) done = false
    }
    if (done) return
    await sleep(1)
  }
}

function cpuSeconds (c) { const u = process.cpuUsage(c); return (u.user + u.system) / 1e6 }

async function writers (w) {
  const stores = []
  for (let i = 0; i < w; i++) stores.push(new Corestore(tmp()))
  const bases = [open(stores[0], null, false)]
  await bases[0].ready()
  for (let i = 1; i < w; i++) { bases.push(open(stores[i], bases[0].key, false)); await bases[i].ready() }
  for (let i = 1; i < w; i++) await bases[0].append({ type: 'add', key: hex(bases[i].local.key) })
  for (let i = 1; i < w; i++) connect(stores[0], stores[i])
  while (!bases.every((b) => b.writable)) {
    for (const b of bases) { await b.update(); if (b.ackable) await b.ack() }
    await sleep(5)
  }
  const per = Math.floor(APPENDS / w)
  const total = per * w
  const t = process.hrtime.bigint()
  const c = process.cpuUsage()
  let writing = w
  await Promise.all([
    ...bases.map(async (b, i) => {
      for (let k = 0; k < per; k++) await b.append({ type: 'message', text: `w${i} m${k}` })
      writing--
    }),
    (async () => {
      // the creator acks while the others write, as the hyperpunch chat's creator does
      while (writing > 0) { await bases[0].update(); if (bases[0].ackable) await bases[0].ack(); await sleep(1) }
    })()
  ])
  await until(bases, total)
  const wall = Number(process.hrtime.bigint() - t) / 1e9
  const cpu = cpuSeconds(c)
  bench(`autobase_w${w}_appends_s`, total / wall)
  bench(`autobase_w${w}_cpu_appends_s`, total / Math.max(0.01, cpu))
  for (const s of streams) s.destroy()
  for (const b of bases) await b.close()
  for (const s of stores) await s.close()
}

async function catchup (n) {
  const store = new Corestore(tmp())
  const creator = open(store, null, false)
  await creator.ready()
  for (let k = 0; k < n; k += 1000) {
    const batch = []
    for (let j = k; j < Math.min(n, k + 1000); j++) batch.push({ type: 'message', text: `m${j}` })
    await creator.append(batch)
  }
  await until([creator], n)
  for (const ff of [true, false]) {
    const rstore = new Corestore(tmp())
    const reader = open(rstore, creator.key, ff)
    await reader.ready()
    const t = process.hrtime.bigint()
    const c = process.cpuUsage()
    connect(store, rstore)
    for (;;) {
      await reader.update()
      if (await indexedViewLength(reader) >= n) break
      await sleep(1)
    }
    const wall = Number(process.hrtime.bigint() - t) / 1e9
    bench(ff ? 'autobase_catchup_ff_s' : 'autobase_catchup_s', wall)
    bench(ff ? 'autobase_catchup_ff_cpu_s' : 'autobase_catchup_cpu_s', cpuSeconds(c))
    for (const s of streams.splice(0)) s.destroy()
    await reader.close()
    await rstore.close()
  }
  await creator.close()
  await store.close()
}

async function serve (n) {
  const net = require('net')
  const SecretStream = require('@hyperswarm/secret-stream')
  const store = new Corestore(tmp())
  const creator = open(store, null, false)
  await creator.ready()
  for (let k = 0; k < n; k += 1000) {
    const batch = []
    for (let j = k; j < Math.min(n, k + 1000); j++) batch.push({ type: 'message', text: `m${j}` })
    await creator.append(batch)
  }
  await until([creator], n)
  while (creator.core.signedLength < creator.system.core.length) { await creator.update(); await sleep(10) }
  const server = net.createServer((socket) => {
    const s = new SecretStream(false, socket)
    s.on('error', () => {})
    store.replicate(s)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  console.log(`SERVE ${server.address().port} ${hex(creator.key)}`)
  await new Promise((resolve) => { process.stdin.on('end', resolve); process.stdin.on('close', resolve); process.stdin.resume() })
  server.close()
  await creator.close()
  await store.close()
}

async function ffread (port, bootstrap, n) {
  const net = require('net')
  const SecretStream = require('@hyperswarm/secret-stream')
  const rstore = new Corestore(tmp())
  const reader = open(rstore, b4a.from(bootstrap, 'hex'), true)
  await reader.ready()
  const t = process.hrtime.bigint()
  const c = process.cpuUsage()
  const socket = net.connect(port, '127.0.0.1')
  const s = new SecretStream(true, socket)
  s.on('error', () => {})
  rstore.replicate(s)
  for (;;) {
    await reader.update()
    if (await indexedViewLength(reader) >= n) break
    await sleep(1)
  }
  const wall = Number(process.hrtime.bigint() - t) / 1e9
  bench('autobase_ff_tcp_s', wall)
  bench('autobase_ff_tcp_cpu_s', cpuSeconds(c))
  s.destroy()
  await reader.close()
  await rstore.close()
}

async function main () {
  const [what, arg, arg2, arg3] = process.argv.slice(2)
  if (what === 'writers') await writers(Number(arg))
  else if (what === 'catchup') await catchup(Number(arg))
  else if (what === 'serve') await serve(Number(arg))
  else if (what === 'ffread') await ffread(Number(arg), arg2, Number(arg3))
  else throw new Error('usage: autobase.js writers W | catchup N | serve N | ffread PORT BOOTSTRAP N')
  cleanup()
}

main().catch((e) => { console.error(e); cleanup(); process.exit(1) })
