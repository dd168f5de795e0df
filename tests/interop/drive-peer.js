// A real JS hyperdrive 13.3.4 in a corestore 7.12.5, replicating over @hyperswarm/secret-stream
// on one TCP socket on 127.0.0.1 (corestore.replicate: db and blobs over one protomux), driven
// by tests/tests/drive_interop.rs.
//
// Usage: node drive-peer.js '<json config>'
//   mode: 'server' (write `ops` into the store's drive, listen on an ephemeral port, serve)
//       | 'client' (read the drive `key` from the server at `port`, download it all, dump it)
//       | 'local'  (write `ops`, dump, exit: no network)
//   primaryKey: hex 32 (optional; the store's primary key, `unsafe: true`)
//   streamSeed: hex 32, the secret-stream static key pair seed
//   ops: [{ op: 'put', path, len, seed, executable?, metadata? }   drive.put of gen(len, seed)
//         { op: 'write', path, len, seed, chunk, executable? }     createWriteStream, `chunk`-byte writes
//         { op: 'symlink', path, target } | { op: 'del', path }
//         { op: 'truncate', version, blobs? }]                     drive.truncate(version, { blobs })
//   ranges: [{ path, start?, end?, length? }]   createReadStream ranges to hash in the dump
//   folders: [folder]                          readdir of each in the dump
//   follow: { version, dbFork, blobsLength, blobsFork } (client: after the first dump, wait for the
//           live drive to reach this state, download it again and dump again)
//   deadline: ms after which the process gives up (exit 2)
// gen(len, seed)[i] = (i * 31 + seed * 7 + (i >> 8)) & 255.
// Prints one JSON object per line: {event:'ready', key, contentKey} (server/local, after the
// ops, then a dump), {event:'listening', port}, {event:'connected'}, {event:'dump', key, contentKey, version,
// dbBlocks:[hex], blobsLength, blobsByteLength, blobsTreeHash, dbTreeHash, dbFork, blobsFork, list:[{key, value}], files:{path: blake2b hex},
// readdir:{folder:[names]}, ranges:[blake2b hex], dbHas, blobsHas}, {event:'closed', error}.
'use strict'

const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const SecretStream = require('@hyperswarm/secret-stream')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')

const { peer } = require('./peer-common.js')

const { cfg, hex, unhex, out, dir, cleanup, deadline } = peer('hp-drive-', 60000)

function gen (len, seed) {
  const b = b4a.allocUnsafe(len)
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 255
  return b
}

async function applyOps (drive, ops) {
  for (const o of ops || []) {
    if (o.op === 'put') {
      await drive.put(o.path, gen(o.len, o.seed), { executable: !!o.executable, metadata: o.metadata === undefined ? null : o.metadata })
    } else if (o.op === 'write') {
      const data = gen(o.len, o.seed)
      const ws = drive.createWriteStream(o.path, { executable: !!o.executable })
      await new Promise((resolve, reject) => {
        ws.on('error', reject)
        ws.on('close', resolve)
        for (let i = 0; i < data.length; i += o.chunk) ws.write(data.subarray(i, i + o.chunk))
        ws.end()
      })
    } else if (o.op === 'symlink') {
      await drive.symlink(o.path, o.target)
    } else if (o.op === 'del') {
      await drive.del(o.path)
    } else if (o.op === 'truncate') {
      await drive.truncate(o.version, o.blobs === undefined ? {} : { blobs: o.blobs })
    } else {
      throw new Error('unknown op ' + o.op)
    }
  }
}

async function readAll (stream) {
  const chunks = []
  for await (const c of stream) chunks.push(c)
  return b4a.concat(chunks)
}

async function dump (drive) {
  const db = drive.core
  const blobs = (await drive.getBlobs()).core
  const dbBlocks = []
  for (let i = 0; i < db.length; i++) dbBlocks.push(hex(await db.get(i)))
  const list = []
  const files = {}
  for await (const e of drive.list('/')) {
    list.push({ key: e.key, value: JSON.stringify(e.value) })
    if (e.value.blob) files[e.key] = hex(hcrypto.hash(await drive.get(e.key)))
  }
  const readdir = {}
  for (const f of cfg.folders || []) {
    const names = []
    for await (const n of drive.readdir(f)) names.push(n)
    readdir[f] = names
  }
  const ranges = []
  for (const r of cfg.ranges || []) {
    const opts = {}
    if (r.start !== undefined) opts.start = r.start
    if (r.end !== undefined) opts.end = r.end
    if (r.length !== undefined) opts.length = r.length
    ranges.push(hex(hcrypto.hash(await readAll(drive.createReadStream(r.path, opts)))))
  }
  let blobsHas = 0
  for (let i = 0; i < blobs.length; i++) if (await blobs.has(i)) blobsHas++
  return {
    event: 'dump',
    key: hex(drive.key),
    contentKey: hex(blobs.key),
    version: drive.version,
    dbBlocks,
    blobsLength: blobs.length,
    blobsByteLength: blobs.byteLength,
    blobsTreeHash: hex(await blobs.treeHash()),
    dbTreeHash: hex(await db.treeHash()),
    dbFork: db.fork,
    blobsFork: blobs.fork,
    list,
    files,
    readdir,
    ranges,
    blobsHas
  }
}

async function main () {
  const opts = cfg.primaryKey ? { primaryKey: unhex(cfg.primaryKey), unsafe: true } : {}
  const store = new Corestore(dir, opts)
  await store.ready()

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

  if (cfg.mode === 'local' || cfg.mode === 'server') {
    const drive = new Hyperdrive(store)
    await drive.ready()
    await applyOps(drive, cfg.ops)
    out({ event: 'ready', key: hex(drive.key), contentKey: hex(drive.contentKey) })
    out(await dump(drive))
    if (cfg.mode === 'local') return finish(null)
    const server = net.createServer((socket) => {
      const s = new SecretStream(false, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
      let error = null
      s.on('error', (err) => { error = err.message })
      s.on('close', () => { server.close(); finish(error) })
      s.on('connect', () => out({ event: 'connected' }))
      store.replicate(s)
    })
    server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
    return
  }

  // client
  const drive = new Hyperdrive(store, unhex(cfg.key))
  await drive.ready()
  const socket = net.connect(cfg.port, '127.0.0.1')
  const s = new SecretStream(true, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
  let error = null
  s.on('error', (err) => { error = err.message })
  s.on('close', () => finish(error))
  s.on('connect', () => out({ event: 'connected' }))
  store.replicate(s)
  if (drive.core.peers.length === 0) await new Promise((resolve) => drive.core.once('peer-add', resolve))
  await drive.core.update({ wait: true })
  await drive.getBlobs()
  await drive.download('/').done()
  out(await dump(drive))
  if (cfg.follow) {
    // The writer truncates and writes on while connected: wait for the drive to reach the
    // given state (db version and fork, blobs length and fork), then download and dump again.
    const blobs = (await drive.getBlobs()).core
    const f = cfg.follow
    const reached = () => drive.core.length === f.version && drive.core.fork === f.dbFork &&
      blobs.length === f.blobsLength && blobs.fork === f.blobsFork
    while (!reached()) {
      await drive.core.update({ wait: true })
      await blobs.update({ wait: true })
      if (!reached()) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await drive.download('/').done()
    out(await dump(drive))
  }
  s.end()
}

main().catch((err) => {
  out({ event: 'failed', error: err.stack || String(err) })
  cleanup()
  process.exit(1)
})
