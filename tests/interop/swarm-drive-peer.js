// A JS hyperswarm 4.17.2 peer seeding a hyperdrive 13 (in a corestore 7), for the browser tests
// (scripts/test-pkg.sh, transport-web/tests/swarm_pages.rs through scripts/test-browser.sh): it
// writes FILES files (/f/<i>.txt = "file <i>") and a named core "notes" with two blocks, joins the
// drive's discovery key (server and client) on a local DHT (BOOTSTRAP, never the public bootstrap
// nodes), replicates the store on every connection, and prints `seeding DRIVE_KEY NOTES_KEY` once
// announced, then `connection REMOTE_KEY` for each peer. Exits after TIMEOUT_MS (default 240 s) or
// on SIGTERM.
//
//   node swarm-drive-peer.js BOOTSTRAP_HOST:PORT FILES
//
// hyperdht turns `port: 0` into its default 49737: a port range of [0, 0] binds one the OS picks.
'use strict'
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const b4a = require('b4a')
const fs = require('fs')
const os = require('os')
const path = require('path')

const [bootstrap, files] = process.argv.slice(2)
const [host, port] = bootstrap.split(':')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-swarm-drive-'))
const cleanup = () => fs.rmSync(dir, { recursive: true, force: true })
const timeout = setTimeout(() => {
  console.log('timeout')
  cleanup()
  process.exit(2)
}, Number(process.env.TIMEOUT_MS || 240000))
timeout.unref()

async function main () {
  const store = new Corestore(dir)
  const drive = new Hyperdrive(store)
  await drive.ready()
  for (let i = 0; i < Number(files); i++) await drive.put(`/f/${i}.txt`, b4a.from(`file ${i}`))
  const notes = store.get({ name: 'notes' })
  await notes.ready()
  await notes.append([b4a.from('note 0'), b4a.from('note 1')])
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1', port: ANY_PORT, anyPort: true, ephemeral: true })
  await dht.fullyBootstrapped()
  const swarm = new Hyperswarm({ dht })
  swarm.on('connection', (conn) => {
    console.log('connection', b4a.toString(conn.remotePublicKey, 'hex'))
    conn.on('error', (err) => console.log('conn-error', err.message))
    store.replicate(conn)
  })
  await swarm.join(drive.discoveryKey, { server: true, client: true }).flushed()
  console.log('seeding', b4a.toString(drive.key, 'hex'), b4a.toString(notes.key, 'hex'))
  const stop = async () => {
    await swarm.destroy()
    await drive.close()
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
