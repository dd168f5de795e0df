// A real @hyperswarm/secret-stream peer over TCP on 127.0.0.1, driven by the Rust interop tests
// (tests/tests/interop_secretstream.rs).
//
// Usage: node secretstream-peer.js '<json config>'
//   mode: 'server' (listen on an ephemeral port) | 'client' (connect to `port`)
//   seed: hex 32 bytes, the static key pair seed
//   pattern: 'XX' (default) | 'IK'; remotePublicKey: hex (IK initiator)
//   keepAlive, timeout: ms (0 = off)
//   echo: write every received message back
//   send: [sizes], messages written after connecting; message k of size n holds bytes (k * 31 + j) & 255
//   endAfterSend: end the stream after writing `send`
//   deadline: ms after which the process gives up (exit 2)
// Prints one JSON object per line: {event:'listening', port}, {event:'connected', publicKey,
// remotePublicKey, handshakeHash}, {event:'closed', error, received:[{len, hash}], ended, rawBytesRead}
// and exits 0 when the stream closes.
const net = require('net')
const SecretStream = require('@hyperswarm/secret-stream')
const sodium = require('sodium-universal')
const b4a = require('b4a')

const cfg = JSON.parse(process.argv[2] || '{}')
const hex = (b) => b4a.toString(b, 'hex')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const deadline = setTimeout(() => {
  out({ event: 'deadline' })
  process.exit(2)
}, cfg.deadline || 20000)

function message (k, n) {
  const b = b4a.alloc(n)
  for (let j = 0; j < n; j++) b[j] = (k * 31 + j) & 255
  return b
}

function blake2b (b) {
  const h = b4a.alloc(32)
  sodium.crypto_generichash(h, b)
  return hex(h)
}

function run (socket, isInitiator) {
  const keyPair = SecretStream.keyPair(b4a.from(cfg.seed, 'hex'))
  const opts = { keyPair, pattern: cfg.pattern || 'XX' }
  if (cfg.remotePublicKey) opts.remotePublicKey = b4a.from(cfg.remotePublicKey, 'hex')
  if (cfg.keepAlive) opts.keepAlive = cfg.keepAlive
  const s = new SecretStream(isInitiator, socket, opts)
  if (cfg.timeout) s.setTimeout(cfg.timeout)

  const received = []
  let ended = false
  let error = null

  s.on('connect', () => {
    out({
      event: 'connected',
      publicKey: hex(s.publicKey),
      remotePublicKey: hex(s.remotePublicKey),
      handshakeHash: hex(s.handshakeHash)
    })
    const sizes = cfg.send || []
    sizes.forEach((n, k) => s.write(message(k, n)))
    if (cfg.endAfterSend) s.end()
  })
  s.on('data', (data) => {
    received.push({ len: data.byteLength, hash: blake2b(data) })
    if (cfg.echo) s.write(b4a.from(data))
  })
  s.on('end', () => {
    ended = true
    s.end()
  })
  s.on('error', (err) => { error = err.message })
  s.on('close', () => {
    clearTimeout(deadline)
    out({ event: 'closed', error, received, ended, rawBytesRead: s.rawBytesRead })
    if (server) server.close()
    // Give stdout a moment, then leave even if the socket lingers.
    setTimeout(() => process.exit(0), 50)
  })
}

let server = null
if (cfg.mode === 'server') {
  server = net.createServer((socket) => {
    server.close()
    run(socket, false)
  })
  server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
} else {
  const socket = net.connect(cfg.port, '127.0.0.1')
  run(socket, true)
}
