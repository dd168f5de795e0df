// Many hypercore replication cases at once: a real JS hypercore 11 process holding several cores
// (writers and/or readers), replicating all of them over one @hyperswarm/secret-stream TCP
// connection on 127.0.0.1. Driven by tests/tests/replication_matrix.rs.
//
// Usage: node replicate-matrix.js '<json config>'
//   mode: 'server' (listen on an ephemeral port, accept one connection) | 'client' (connect to port)
//   streamSeed: hex 32 bytes, the secret-stream static key pair seed
//   deadline: ms after which the process gives up (exit 2)
//   cores: [{
//     name: tag used in the blocks and the printed events
//     role: 'writer' | 'reader'
//     writer: seed (hex 32), compat (bool), count (blocks before connecting), clear ([start, end):
//             blocks dropped locally after writing, for a seeder holding part of the core),
//             live (blocks appended one at a time once the peer has `count`),
//             truncate: { to, append } (once the peer has `count`: truncate to `to`, then append
//             `append` blocks of the new fork)
//     reader: key (hex 32), compat (bool, needed for encrypted compat cores), expect (final length), fork (expected final fork), blocks (optional
//             list of indices: download only those, a sparse copy)
//     encryptionKey: hex 32 (optional)
//     extension: name of a user extension: a writer answers each message m with `pong:m`,
//                a reader sends `ping:<name>` once connected and waits for the answer
//   }]
// Block k of core `name` on fork f: `${name}/${f} ${k} ` followed by size(k) bytes equal to
// (k + f) & 255, size(k) = 1 MiB - (k % 7) when k % 1000 == 999, else (k * 37) % 3000.
// Events (one JSON object per line): listening, ready (writer), appended, truncated,
// extension, done (reader: what it verified), closed.

const Hypercore = require('hypercore')
const SecretStream = require('@hyperswarm/secret-stream')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')
const cenc = require('compact-encoding')
const net = require('net')
const path = require('path')

const { peer } = require('./peer-common.js')

const { cfg, unhex, out, dir, cleanup, deadline } = peer('hp-matrix-', 90000)

function size (k) {
  return k % 1000 === 999 ? (1 << 20) - (k % 7) : (k * 37) % 3000
}

function block (name, fork, k) {
  return b4a.concat([b4a.from(`${name}/${fork} ${k} `), b4a.alloc(size(k), (k + fork) & 255)])
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function open (c, i) {
  const opts = {}
  if (c.encryptionKey) opts.encryption = { key: unhex(c.encryptionKey) }
  let core
  if (c.role === 'writer') {
    opts.keyPair = hcrypto.keyPair(unhex(c.seed))
    if (c.compat) opts.compat = true
    core = new Hypercore(path.join(dir, String(i)), opts)
    await core.ready()
    for (let k = 0; k < (c.count || 0); k += 500) {
      const batch = []
      for (let j = k; j < Math.min(c.count, k + 500); j++) batch.push(block(c.name, 0, j))
      await core.append(batch)
    }
    // A seeder holding only part of the core: drop the blocks of [start, end) locally.
    if (c.clear) await core.clear(c.clear[0], c.clear[1])
    out({ event: 'ready', name: c.name, key: b4a.toString(core.key, 'hex'), discoveryKey: b4a.toString(core.discoveryKey, 'hex'), length: core.length })
  } else {
    // The pinned JS cannot switch an encrypted reader to compat keys later (DefaultEncryption
    // _reload reads keys.blockKey, deriveKeys returns keys.block): say so up front.
    if (c.compat) opts.compat = true
    core = new Hypercore(path.join(dir, String(i)), unhex(c.key), opts)
    await core.ready()
  }
  core.on('verification-error', (err) => out({ event: 'verification-error', name: c.name, error: err.message }))
  core.on('invalid-request', (err) => out({ event: 'invalid-request', name: c.name, error: err.message }))
  return core
}

// Resolves once some peer has everything the writer has written so far.
async function peerCaughtUp (core) {
  for (;;) {
    for (const peer of core.peers) {
      if (peer.remoteLength >= core.length && peer.remoteContiguousLength >= core.length) return
    }
    await sleep(10)
  }
}

async function runWriter (c, core) {
  if (c.extension) {
    const ext = core.registerExtension(c.extension, {
      encoding: cenc.raw,
      onmessage (message, peer) {
        out({ event: 'extension', name: c.name, message: b4a.toString(message) })
        ext.send(b4a.from('pong:' + b4a.toString(message)), peer)
      }
    })
  }
  if (c.live) {
    await peerCaughtUp(core)
    for (let k = c.count; k < c.count + c.live; k++) {
      await core.append(block(c.name, 0, k))
      await sleep(5)
    }
    out({ event: 'appended', name: c.name, length: core.length })
  }
  if (c.truncate) {
    await peerCaughtUp(core)
    await core.truncate(c.truncate.to)
    const more = []
    for (let k = c.truncate.to; k < c.truncate.to + c.truncate.append; k++) more.push(block(c.name, core.fork, k))
    await core.append(more)
    out({ event: 'truncated', name: c.name, length: core.length, fork: core.fork })
  }
}

async function runReader (c, core) {
  if (c.extension) {
    const got = new Promise((resolve) => {
      const ext = core.registerExtension(c.extension, {
      encoding: cenc.raw,
        onmessage (message) { resolve(b4a.toString(message)) }
      })
      const send = () => {
        if (core.peers.length) ext.broadcast(b4a.from('ping:' + c.name))
        else setTimeout(send, 10)
      }
      send()
    })
    out({ event: 'extension', name: c.name, message: await got })
  }
  // update() resolves at once when no peer can upgrade us yet: yield to I/O between tries.
  while (core.length < c.expect || core.fork !== (c.fork || 0)) {
    await core.update({ wait: true })
    await sleep(10)
  }
  const indices = c.blocks || [...Array(c.expect).keys()]
  if (c.blocks) {
    await Promise.all(indices.map((k) => core.download({ start: k, end: k + 1 }).done()))
  } else {
    await core.download({ start: 0, end: c.expect }).done()
  }
  const bad = []
  for (const k of indices) {
    const b = await core.get(k, { wait: false })
    if (!b || !b4a.equals(b, block(c.name, k >= (c.forkFrom ?? Infinity) ? core.fork : 0, k))) bad.push(k)
  }
  let held = 0
  for (let k = 0; k < core.length; k++) if (await core.has(k)) held++
  out({ event: 'done', name: c.name, length: core.length, fork: core.fork, checked: indices.length, bad, held, byteLength: core.byteLength })
}

async function main () {
  const cores = []
  for (let i = 0; i < cfg.cores.length; i++) cores.push(await open(cfg.cores[i], i))

  let finished = false
  function finish (error) {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed', error })
    Promise.all(cores.map((c) => c.close().catch(() => {}))).finally(() => {
      cleanup()
      setTimeout(() => process.exit(0), 50)
    })
  }

  function run (socket, isInitiator) {
    const s = new SecretStream(isInitiator, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
    let error = null
    s.on('error', (err) => { error = err.message })
    s.on('close', () => finish(error))
    for (const core of cores) core.replicate(s)
    const jobs = cfg.cores.map((c, i) => c.role === 'writer' ? runWriter(c, cores[i]) : runReader(c, cores[i]))
    Promise.all(jobs).then(() => {
      out({ event: 'all-done' })
      // Readers end the stream once every case is done; writers wait for the peer to end.
      if (cfg.cores.every((c) => c.role === 'reader')) s.end()
    }, (err) => {
      out({ event: 'failed', error: err.stack })
      s.destroy(err)
    })
  }

  if (cfg.mode === 'server') {
    const server = net.createServer((socket) => {
      server.close()
      run(socket, false)
    })
    server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
  } else {
    run(net.connect(cfg.port, '127.0.0.1'), true)
  }
}

main().catch((err) => {
  out({ event: 'failed', error: err.stack })
  console.error(err.stack) // the harness shows stderr when the process exits early
  cleanup()
  process.exit(1)
})
