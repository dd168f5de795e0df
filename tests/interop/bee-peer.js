// A JS hyperbee 2.27.3 replicating over @hyperswarm/secret-stream on TCP 127.0.0.1, driven by
// tests/tests/bee_interop.rs.
//
// Usage: node bee-peer.js '<json config>'
//   mode 'writer': seed (hex32 key pair seed), opsFile (JSON list of ops, see bee-common.js),
//     queries: builds the bee, answers the queries itself, listens on an ephemeral port and
//     serves every connection. Prints {event:'listening', port, key, length, treeHash, results}.
//   mode 'reader': key (hex32), port, expect (length to wait for), queries: connects, reads the
//     bee sparsely (each query downloads what it touches), prints {event:'done', length,
//     downloaded, results} and exits 0.
//   streamSeed: hex32, the secret-stream key pair seed; deadline: ms before giving up (exit 2).
'use strict'

const net = require('net')
const fs = require('fs')
const os = require('os')
const path = require('path')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')
const hcrypto = require('hypercore-crypto')
const SecretStream = require('@hyperswarm/secret-stream')
const b4a = require('b4a')
const { apply, queries } = require('./bee-common')

const cfg = JSON.parse(process.argv[2] || '{}')
const hex = (b) => b4a.toString(b, 'hex')
const unhex = (s) => b4a.from(s, 'hex')
// Resolves once the line is handed to the OS (a large line to a pipe is written in parts).
const out = (o) => new Promise((resolve) => process.stdout.write(JSON.stringify(o) + '\n', resolve))

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bee-peer-'))
function cleanup () {
  try { fs.rmSync(dir, { recursive: true, force: true }) } catch {}
}

setTimeout(() => {
  out({ event: 'deadline' })
  cleanup()
  process.exit(2)
}, cfg.deadline || 60000).unref()

function stream (isInitiator, socket, core) {
  const s = new SecretStream(isInitiator, socket, { keyPair: SecretStream.keyPair(unhex(cfg.streamSeed)) })
  s.on('error', () => {})
  core.replicate(s)
  return s
}

async function main () {
  if (cfg.mode === 'writer') {
    const core = new Hypercore(dir, { keyPair: hcrypto.keyPair(unhex(cfg.seed)) })
    const db = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
    await db.ready()
    await apply(db, JSON.parse(fs.readFileSync(cfg.opsFile, 'utf-8')))
    const results = await queries(db, cfg.queries || {})
    const server = net.createServer((socket) => stream(false, socket, core))
    server.listen(0, '127.0.0.1', async () => {
      out({
        event: 'listening',
        port: server.address().port,
        key: hex(core.key),
        length: core.length,
        treeHash: hex(await core.treeHash()),
        results
      })
    })
    return
  }

  const core = new Hypercore(dir, unhex(cfg.key))
  await core.ready()
  const db = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
  await db.ready()
  const socket = net.connect(cfg.port, '127.0.0.1')
  const s = stream(true, socket, core)
  // update() resolves at once while no peer can upgrade us yet: yield to I/O between tries.
  while (core.length < cfg.expect) {
    await core.update({ wait: true })
    if (core.length < cfg.expect) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const results = await queries(db, cfg.queries || {})
  let downloaded = 0
  for (let i = 0; i < core.length; i++) if (await core.has(i)) downloaded++
  await out({ event: 'done', length: core.length, downloaded, results })
  s.end()
  await db.close()
  cleanup()
  process.exit(0)
}

main().catch(async (err) => {
  await out({ event: 'failed', error: err.stack })
  cleanup()
  process.exit(1)
})
