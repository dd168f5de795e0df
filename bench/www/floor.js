// The page side of bench/browser-floor.sh: ?ws=ws://HOST:PORT&size=BYTES&total=BYTES&mode=MODE
// receives TOTAL bytes as binary WebSocket messages of SIZE bytes from bench_ws_floor (a native
// server on loopback) and does, for each, the work MODE says (each mode adds to the one before):
//   recv  nothing (counts the bytes)
//   copy  copies the message into wasm memory (bench_floor's take())
//   hash  copies it into wasm memory and hashes it as 64 KiB blocks: a BLAKE2b leaf hash per
//         block and the parents of the tree over them (bench_floor's Leaves)
//   opfs  and transfers the message to a dedicated worker that appends it to an OPFS file
//         (FileSystemSyncAccessHandle) and flush()es at every MiB
//   idb   and, for each MiB flushed, one IndexedDB readwrite transaction with durability
//         "strict" (16 pointer records of 16 bytes and a 4 KiB page, as a batch's metadata)
// The page sets document.title to `ready` once set up (wasm compiled, worker and database open),
// waits for window.go(), and then to `done MODE SIZE SECONDS BYTES MESSAGES` once the last
// message is processed (opfs: flushed; idb: its transaction committed), or `error: ...`.
import init, { Leaves, take } from './floor/bench_floor.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const MIB = 1 << 20

const WORKER = `
let handle = null
let at = 0
let flushedMiB = 0
onmessage = async (e) => {
  if (e.data.open) {
    const dir = await navigator.storage.getDirectory()
    const file = await dir.getFileHandle(e.data.open, { create: true })
    handle = await file.createSyncAccessHandle()
    handle.truncate(0)
    postMessage({ ready: true })
    return
  }
  const buf = new Uint8Array(e.data.buf)
  handle.write(buf, { at })
  at += buf.byteLength
  const mib = Math.floor(at / ${MIB})
  if (mib > flushedMiB || e.data.last) {
    handle.flush()
    flushedMiB = mib
    postMessage({ flushed: at })
  }
}
`

function request (req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })
}

async function main () {
  const url = params.get('ws')
  const size = Number(params.get('size'))
  const total = Number(params.get('total'))
  const mode = params.get('mode')
  const level = ['recv', 'copy', 'hash', 'opfs', 'idb'].indexOf(mode)
  if (level < 0) throw new Error(`unknown mode ${mode}`)
  await init()
  const leaves = level >= 2 ? new Leaves(65536) : null
  let worker = null
  if (level >= 3) {
    worker = new Worker(URL.createObjectURL(new Blob([WORKER], { type: 'text/javascript' })))
    await new Promise((resolve, reject) => {
      worker.onmessage = (e) => { if (e.data.ready) resolve() }
      worker.onerror = (e) => reject(new Error(`worker: ${e.message}`))
      worker.postMessage({ open: `floor-${Date.now()}` })
    })
  }
  let db = null
  if (level >= 4) {
    const open = indexedDB.open(`floor-${Date.now()}`, 1)
    open.onupgradeneeded = () => { open.result.createObjectStore('meta') }
    db = await request(open)
  }
  document.title = 'ready'
  await new Promise((resolve) => { window.go = resolve })

  const t0 = performance.now()
  let got = 0
  let messages = 0
  let finish
  const done = new Promise((resolve, reject) => { finish = { resolve, reject } })
  if (worker) {
    const page = new Uint8Array(4096)
    let committed = 0
    worker.onmessage = (e) => {
      const flushed = e.data.flushed
      if (!db) {
        if (flushed >= total) finish.resolve()
        return
      }
      // One strict transaction per MiB flushed (in order: IndexedDB runs readwrite
      // transactions on one store one after the other).
      while (committed * MIB < flushed) {
        const mib = committed++
        const tx = db.transaction('meta', 'readwrite', { durability: 'strict' })
        const store = tx.objectStore('meta')
        for (let i = 0; i < 16; i++) store.put(new Uint8Array(16), mib * 16 + i)
        store.put(page, `page-${mib}`)
        tx.onerror = () => finish.reject(tx.error)
        if (committed * MIB >= total) tx.oncomplete = () => finish.resolve()
      }
    }
  }
  const ws = new WebSocket(url)
  ws.binaryType = 'arraybuffer'
  ws.onopen = () => ws.send(`${size} ${total}`)
  ws.onerror = () => finish.reject(new Error('WebSocket error'))
  ws.onclose = (e) => { if (got < total) finish.reject(new Error(`WebSocket closed (${e.code}) after ${got} bytes`)) }
  ws.onmessage = (e) => {
    const buf = e.data
    got += buf.byteLength
    messages++
    if (level === 1) take(new Uint8Array(buf))
    if (level >= 2) leaves.push(new Uint8Array(buf))
    if (worker) worker.postMessage({ buf, last: got >= total }, [buf])
    else if (got >= total) finish.resolve()
  }
  await done
  const t1 = performance.now()
  ws.close()
  $('status').textContent = `${mode}: ${got} bytes in ${messages} messages, ${(t1 - t0).toFixed(0)} ms`
  document.title = `done ${mode} ${size} ${((t1 - t0) / 1000).toFixed(3)} ${got} ${messages}`
}

main().catch((err) => {
  const message = err && err.message ? err.message : String(err)
  $('status').textContent = message
  document.title = `error: ${message}`
})
