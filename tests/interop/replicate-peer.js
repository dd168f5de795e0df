// A real JS hypercore 11 replicating over @hyperswarm/secret-stream on a TCP socket on 127.0.0.1,
// driven by tests/tests/replication_interop.rs.
//
// Usage: node replicate-peer.js '<json config>'
//   mode: 'server' (listen on an ephemeral port) | 'client' (connect to `port`)
//   streamSeed: hex 32 bytes, the secret-stream static key pair seed
//   role: 'writer' | 'reader'
//   writer: seed (hex 32, the core's key pair), count (blocks appended before connecting),
//           live (blocks appended once the remote has caught up with `count`)
//   reader: key (hex 32), expect (wait until the core has this length and every block)
//   encryptionKey: hex 32 (optional, block encryption)
//   deadline: ms after which the process gives up (exit 2)
// Block k is `block ${k} ` followed by (k * 37) % 3000 bytes equal to k & 255.
// Prints one JSON object per line: {event:'ready', key, discoveryKey, length} (writer),
// {event:'listening', port}, {event:'connected'}, {event:'done', length, fork, blocks:[hex],
// remoteDownloading, remoteAllowPush} (reader; the flags of the remote's last sync),
// {event:'append', length}, {event:'appended', length} (live writer),
// {event:'verification-error' | 'invalid-request', error} (what JS complains about),
// {event:'closed', length, error}, and exits 0 when the stream closes.
'use strict'

const net = require('net')
const Hypercore = require('hypercore')
const hcrypto = require('hypercore-crypto')
const SecretStream = require('@hyperswarm/secret-stream')

const { peer, block } = require('./peer-common.js')

const { cfg, hex, unhex, out, dir, cleanup, deadline } = peer('hp-replicate-', 30000)

async function main () {
  const opts = {}
  if (cfg.encryptionKey) opts.encryption = { key: unhex(cfg.encryptionKey) }
  let core
  if (cfg.role === 'writer') {
    opts.keyPair = hcrypto.keyPair(unhex(cfg.seed))
    core = new Hypercore(dir, opts)
    await core.ready()
    const blocks = []
    for (let k = 0; k < (cfg.count || 0); k++) blocks.push(block(k))
    if (blocks.length) await core.append(blocks)
    out({ event: 'ready', key: hex(core.key), discoveryKey: hex(core.discoveryKey), length: core.length })
  } else {
    core = new Hypercore(dir, unhex(cfg.key), opts)
    await core.ready()
  }

  let finished = false
  function finish (s, error) {
    if (finished) return
    finished = true
    clearTimeout(deadline)
    out({ event: 'closed', length: core.length, error })
    core.close().catch(() => {}).finally(() => {
      cleanup()
      setTimeout(() => process.exit(0), 50)
    })
  }

  function run (socket, isInitiator) {
    const s = new SecretStream(isInitiator, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
    let error = null
    s.on('error', (err) => { error = err.message })
    s.on('close', () => finish(s, error))
    s.on('connect', () => out({ event: 'connected' }))
    core.replicate(s)
    core.on('verification-error', (err) => out({ event: 'verification-error', error: err.message }))
    core.on('invalid-request', (err) => out({ event: 'invalid-request', error: err.message }))
    core.on('peer-remove', () => out({ event: 'peer-remove' }))
    core.on('append', () => out({ event: 'append', length: core.length }))

    if (cfg.role === 'writer' && cfg.live) {
      // Append live once a peer has everything written so far.
      let appended = false
      const check = async () => {
        if (appended) return
        for (const peer of core.peers) {
          if (peer.remoteLength >= core.length && core.length === cfg.count) {
            appended = true
            const more = []
            for (let k = cfg.count; k < cfg.count + cfg.live; k++) more.push(block(k))
            await core.append(more)
            out({ event: 'appended', length: core.length })
            return
          }
        }
        setTimeout(check, 20)
      }
      check()
    }

    if (cfg.role === 'reader') {
      (async () => {
        // update() resolves at once when no peer can upgrade us yet: yield to I/O between tries.
        while (core.length < cfg.expect) {
          await core.update({ wait: true })
          if (core.length < cfg.expect) await new Promise((resolve) => setTimeout(resolve, 10))
        }
        await core.download({ start: 0, end: cfg.expect }).done()
        const blocks = []
        for (let k = 0; k < cfg.expect; k++) blocks.push(hex(await core.get(k)))
        // What the remote's last sync said (JS `isDownloading` / `isAllowingPush` over there).
        const peer = core.peers[0]
        out({
          event: 'done',
          length: core.length,
          fork: core.fork,
          blocks,
          remoteDownloading: peer ? peer.remoteDownloading : null,
          remoteAllowPush: peer ? peer.remoteAllowPush : null
        })
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
