// A real JS hypercore 11 replicating over @hyperswarm/secret-stream on a TCP socket on 127.0.0.1,
// driven by tests/tests/replication_features_interop.rs (seeks by byte offset, fork conflicts).
//
// Usage: node replicate-features-peer.js '<json config>'
//   mode: 'server' (listen on an ephemeral port) | 'client' (connect to `port`)
//   streamSeed: hex 32 bytes, the secret-stream static key pair seed
//   role: 'writer' | 'reader'
//   writer: seed (hex 32, the core's key pair), count (blocks appended before connecting),
//           truncate: {at, append} (once the peer holds everything: truncate to `at`, then append
//           `append` blocks `fork ${k}`)
//   reader: key (hex 32), expect (wait until the core has this length)
//   seeks: byte offsets; the writer answers them locally in 'ready', the reader seeks them over
//          the wire once it has upgraded to `expect` (without downloading any block first)
//   treeHashes: lengths; the writer prints core.treeHash(length) for each in 'ready'
//   extension: a name; messages of that extension (raw bytes) are echoed back prefixed 'echo:'
//   push (writer): {blocks, append, delay}: once a peer's sync allows pushes (and `delay` ms
//          more), core.replicator.push() each of `blocks`, then append `append` blocks one at a time pushing each, and print
//          {event:'pushed', length}
//   allowPush, pushOnly (reader): the core's options of the same names
//   reportSync: print {event:'remote-sync', length, downloading, allowPush} for every sync the
//          remote sends
//   received (reader, with `expect`): instead of asking for anything, wait until it holds every
//          block of 0..expect (pushed to it), then print {event:'received', length, blocks,
//          mismatched (indexes whose bytes differ from block(k)), requestsSent} and end
//   deadline: ms after which the process gives up (exit 2)
// Block k is `block ${k} ` followed by (k * 37) % 3000 bytes equal to k & 255.
// Prints one JSON object per line: {event:'ready', key, discoveryKey, length, byteLength, seeks,
// treeHashes} (writer; seeks = [[index, offset]], treeHashes = hex, from its own tree), {event:'listening', port},
// {event:'connected'}, {event:'seeked', length, seeks, blocks} (reader; blocks = how many blocks
// it holds after seeking), {event:'verification-error' | 'invalid-request', error},
// {event:'truncated', length, fork}, {event:'extension', message} (utf-8), {event:'closed', length, error,
// requestsReceived, blockRequestsReceived, requestsSent}, and exits 0 when the stream closes.
'use strict'

const net = require('net')
const Hypercore = require('hypercore')
const hcrypto = require('hypercore-crypto')
const SecretStream = require('@hyperswarm/secret-stream')
const b4a = require('b4a')

const { peer, block } = require('./peer-common.js')

const { cfg, hex, unhex, out, dir, cleanup, deadline } = peer('hp-replicate-features-', 30000)

async function main () {
  let core
  if (cfg.role === 'writer') {
    core = new Hypercore(dir, { keyPair: hcrypto.keyPair(unhex(cfg.seed)) })
    await core.ready()
    const blocks = []
    for (let k = 0; k < (cfg.count || 0); k++) blocks.push(block(k))
    if (blocks.length) await core.append(blocks)
    const seeks = []
    for (const bytes of cfg.seeks || []) seeks.push(await core.seek(bytes))
    const treeHashes = []
    for (const length of cfg.treeHashes || []) treeHashes.push(hex(await core.treeHash(length)))
    out({
      event: 'ready',
      key: hex(core.key),
      discoveryKey: hex(core.discoveryKey),
      length: core.length,
      byteLength: core.byteLength,
      seeks,
      treeHashes
    })
  } else {
    core = new Hypercore(dir, unhex(cfg.key), { allowPush: !!cfg.allowPush, pushOnly: !!cfg.pushOnly })
    await core.ready()
  }

  // Count the requests peers send us, and those asking for a block.
  const replicator = core.core.replicator
  let blockRequestsReceived = 0
  const Peer = replicator.constructor.Peer
  const onrequest = Peer.prototype.onrequest
  Peer.prototype.onrequest = function (msg) {
    if (msg.block) blockRequestsReceived++
    return onrequest.call(this, msg)
  }
  if (cfg.reportSync) {
    // Print the flags of every sync the remote sends.
    const onsync = Peer.prototype.onsync
    Peer.prototype.onsync = function (msg) {
      out({ event: 'remote-sync', length: msg.length, downloading: msg.downloading, allowPush: msg.allowPush })
      return onsync.call(this, msg)
    }
  }

  let finished = false
  function finish (error) {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({
      event: 'closed',
      length: core.length,
      error,
      requestsReceived: replicator.stats.wireRequest.rx,
      blockRequestsReceived,
      requestsSent: replicator.stats.wireRequest.tx
    })
    core.close().catch(() => {}).finally(() => {
      cleanup()
      setTimeout(() => process.exit(0), 50)
    })
  }

  function run (socket, isInitiator) {
    const s = new SecretStream(isInitiator, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
    let error = null
    s.on('error', (err) => { error = err.message })
    s.on('close', () => finish(error))
    s.on('connect', () => out({ event: 'connected' }))
    core.replicate(s)
    core.on('verification-error', (err) => out({ event: 'verification-error', error: err.message }))
    core.on('invalid-request', (err) => out({ event: 'invalid-request', error: err.message }))
    core.on('conflict', (length, fork) => out({ event: 'conflict', length, fork }))

    if (cfg.extension) {
      // Echo every message of the extension back to its sender, prefixed with 'echo:'.
      const ext = core.registerExtension(cfg.extension, {
        encoding: 'binary',
        onmessage (message, peer) {
          out({ event: 'extension', message: b4a.toString(message) })
          ext.send(b4a.concat([b4a.from('echo:'), message]), peer)
        }
      })
    }

    if (cfg.role === 'writer' && cfg.truncate) {
      // Once a peer has everything: truncate to `at` (fork + 1) and append `append` other blocks.
      let done = false
      const check = async () => {
        if (done) return
        for (const peer of core.peers) {
          if (peer.remoteLength >= core.length && peer.remoteContiguousLength >= core.length) {
            done = true
            await core.truncate(cfg.truncate.at)
            const more = []
            for (let k = cfg.truncate.at; k < cfg.truncate.at + cfg.truncate.append; k++) {
              more.push(b4a.from(`fork ${k}`))
            }
            await core.append(more)
            out({ event: 'truncated', length: core.length, fork: core.fork })
            return
          }
        }
        setTimeout(check, 20)
      }
      check()
    }

    if (cfg.role === 'writer' && cfg.push) {
      (async () => {
        while (!replicator.peers.some((p) => p.remoteAllowPush && p.remoteDownloading)) {
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
        if (cfg.push.delay) await new Promise((resolve) => setTimeout(resolve, cfg.push.delay))
        for (const k of cfg.push.blocks || []) await replicator.push(k)
        for (let i = 0; i < (cfg.push.append || 0); i++) {
          const k = core.length
          await core.append(block(k))
          await replicator.push(k)
        }
        out({ event: 'pushed', length: core.length })
      })().catch((err) => {
        out({ event: 'failed', error: err.message })
        s.destroy(err)
      })
    }

    if (cfg.role === 'reader' && cfg.received) {
      (async () => {
        const holds = async () => {
          if (core.length < cfg.expect) return false
          for (let k = 0; k < cfg.expect; k++) if (!(await core.has(k))) return false
          return true
        }
        while (!(await holds())) await new Promise((resolve) => setTimeout(resolve, 10))
        const mismatched = []
        for (let k = 0; k < cfg.expect; k++) {
          const value = await core.get(k, { wait: false })
          if (!value || !b4a.equals(value, block(k))) mismatched.push(k)
        }
        out({
          event: 'received',
          length: core.length,
          blocks: cfg.expect,
          mismatched,
          requestsSent: replicator.stats.wireRequest.tx
        })
        s.end()
      })().catch((err) => {
        out({ event: 'failed', error: err.message })
        s.destroy(err)
      })
    } else if (cfg.role === 'reader') {
      (async () => {
        // update() resolves at once when no peer can upgrade us yet: yield to I/O between tries.
        while (core.length < cfg.expect) {
          await core.update({ wait: true })
          if (core.length < cfg.expect) await new Promise((resolve) => setTimeout(resolve, 10))
        }
        const seeks = []
        for (const bytes of cfg.seeks || []) seeks.push(await core.seek(bytes))
        let blocks = 0
        for (let k = 0; k < core.length; k++) if (await core.has(k)) blocks++
        out({ event: 'seeked', length: core.length, seeks, blocks })
        s.end()
      })().catch((err) => {
        out({ event: 'failed', error: err.message })
        s.destroy(err)
      })
    }
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
  cleanup()
  process.exit(1)
})
