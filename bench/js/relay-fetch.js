// The JS side of bench/relay.sh: a JS hypercore 11 (the pinned reference, on its own storage in
// DIR: hypercore-storage/RocksDB) fetching BLOCKS blocks of the core KEYHEX from whoever
// announces it, in node.
//
//   node relay-fetch.js relay  URL       KEYHEX BLOCKS DIR TAG   through a dht-relay: the pinned
//        @hyperswarm/dht-relay 0.4.3 client (custodial, its default) over a `ws` WebSocket to
//        URL (`hyperpunch relay --ws` or the JS relay), lookup of the discovery key, connect
//        to the first peer found, core.replicate on that stream
//   node relay-fetch.js direct HOST:PORT KEYHEX BLOCKS DIR TAG   the same over a direct hyperdht
//        6.34 connection (UDX on loopback) from a node of its own bootstrapped from HOST:PORT
//
// Timed in the process from the WebSocket (or DHT node) creation to the last block stored
// (lookup, connect, handshake, download with every block verified and stored). Prints
// `BENCH TAG_mb_s X`, `BENCH TAG_s SECONDS`, `BENCH TAG_connect_s SECONDS` (to the open stream)
// and `BENCH TAG_cpu_s X` (this process, user + system). Exits by itself within 300 s.
const DHTRelay = require('@hyperswarm/dht-relay')
const Stream = require('@hyperswarm/dht-relay/ws')
const HyperDHT = require('hyperdht')
const Hypercore = require('hypercore')
const crypto = require('hypercore-crypto')
const { WebSocket } = require('ws')
const b4a = require('b4a')

const [mode, where, keyHex, blocksArg, dir, tag] = process.argv.slice(2)
const blocks = Number(blocksArg)
setTimeout(() => { console.error('relay-fetch: timed out after 300 s'); process.exit(3) }, 300000).unref()
const cpuSeconds = (since) => { const u = process.cpuUsage(since); return (u.user + u.system) / 1e6 }

async function main () {
  const key = b4a.from(keyHex, 'hex')
  const core = new Hypercore(dir, key)
  await core.ready()
  const cpu = process.cpuUsage()
  const t = process.hrtime.bigint()
  let dht
  if (mode === 'relay') {
    dht = new DHTRelay(new Stream(true, new WebSocket(where)))
  } else if (mode === 'direct') {
    const [host, port] = where.split(':')
    dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1' })
  } else {
    throw new Error('mode must be relay or direct')
  }
  await dht.ready()
  let peer = null
  for await (const r of dht.lookup(crypto.discoveryKey(key))) {
    if (r.peers.length) { peer = r.peers[0].publicKey; break }
  }
  if (!peer) throw new Error('nobody announces the core')
  const s = dht.connect(peer)
  s.on('error', (e) => console.error('relay-fetch: stream error', e.message))
  await new Promise((resolve, reject) => { s.once('open', resolve); s.once('close', () => reject(new Error('closed before open'))) })
  const open = Number(process.hrtime.bigint() - t) / 1e9
  core.replicate(s)
  // update() resolves at once when no peer can upgrade us yet: yield to I/O between tries.
  while (core.length < blocks) {
    await core.update({ wait: true })
    if (core.length < blocks) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await core.download({ start: 0, end: blocks }).done()
  const secs = Number(process.hrtime.bigint() - t) / 1e9
  const used = cpuSeconds(cpu)
  const bytes = core.byteLength
  console.log(`fetched ${blocks} blocks, ${bytes} bytes (${mode}): ${(secs * 1000).toFixed(0)} ms, ${(bytes / secs / 1e6).toFixed(1)} MB/s, ${used.toFixed(2)} CPU s`)
  console.log(`BENCH ${tag}_mb_s ${(bytes / secs / 1e6).toFixed(3)}`)
  console.log(`BENCH ${tag}_s ${secs.toFixed(3)}`)
  console.log(`BENCH ${tag}_connect_s ${open.toFixed(3)}`)
  console.log(`BENCH ${tag}_cpu_s ${used.toFixed(3)}`)
  s.destroy()
  await core.close()
  await dht.destroy({ force: true }).catch(() => {})
  process.exit(0)
}

main().catch((err) => { console.error(err); process.exit(1) })
