// The page side of bench/relay.sh: ?relay=ws://HOST:PORT&key=HEX&n=BLOCKS&tag=TAG fetches the
// core KEY through the relay into a fresh IndexedDB database with the npm package (pkg/: wasm
// hypercore, IdbStorage), timed from the replicate() call (WebSocket open, lookup, connect) to
// the last of the N blocks stored (verified against the signed tree, in IndexedDB); each run
// uses a database of its own (the browser profile is a temporary one). &custodial=0: the page
// runs Noise and secret-stream itself (the npm package's default; the relay forwards ciphertext);
// otherwise custodial (the relay runs them).
// document.title: `done TAG SECONDS CONNECT_SECONDS BYTES WS_MESSAGES` (WebSocket messages the
// page received), or `error: ...`.
import { Hypercore, init } from './hyperpunch/index.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)

// Counts the WebSocket messages the page receives (the wasm opens its WebSocket by the global
// name, so this subclass sees the relay's).
let wsMessages = 0
globalThis.WebSocket = class extends globalThis.WebSocket {
  constructor (...args) {
    super(...args)
    this.addEventListener('message', () => { wsMessages++ })
  }
}

async function main () {
  const relay = params.get('relay')
  const key = params.get('key')
  const n = Number(params.get('n'))
  const tag = params.get('tag') || 'page'
  await init()
  // ?manual=1: wait for window.go() (a profiler attaches first: bench/profile-page.py).
  if (params.get('manual')) {
    document.title = 'waiting'
    await new Promise((resolve) => { window.go = resolve })
  }
  const name = `relay-bench-${tag}-${Date.now()}`
  const core = new Hypercore(name, key)
  await core.ready()
  const t0 = performance.now()
  const custodial = params.get('custodial') !== '0'
  const replication = await core.replicate(relay, { maxPeers: 1, custodial })
  const t1 = performance.now()
  if (core.length < n) {
    await new Promise((resolve) => {
      const check = () => { if (core.length >= n) { core.off('append', check); resolve() } }
      core.on('append', check)
      check()
    })
  }
  await core.download({ start: 0, end: n })
  const t2 = performance.now()
  const bytes = core.byteLength
  $('status').textContent = `fetched ${n} blocks, ${bytes} bytes in ${(t2 - t0).toFixed(0)} ms`
  document.title = `done ${tag} ${((t2 - t0) / 1000).toFixed(3)} ${((t1 - t0) / 1000).toFixed(3)} ${bytes} ${wsMessages}`
  await replication.end()
}

main().catch((err) => {
  const message = err && err.message ? err.message : String(err)
  $('status').textContent = message
  document.title = `error: ${message}`
})
