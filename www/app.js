// The hyperpunch demo page: ?relay=ws://HOST:PORT&key=HEX fetches a core through a dht-relay
// into IndexedDB and shows its blocks live. For automation, document.title is `synced <length>`
// once the fetched core is complete, and `error: <message>` when something failed.
import { Hypercore } from './hyperpunch/index.js'

const $ = (id) => document.getElementById(id)
const SHOWN = 200 // blocks listed at most (the latest ones)
const decoder = new TextDecoder()

function fail (err) {
  const message = err && err.message ? err.message : String(err)
  $('error').hidden = false
  $('error').textContent = message
  document.title = `error: ${message}`
}

async function start (relay, key) {
  $('open').hidden = true
  $('view').hidden = false
  const core = new Hypercore(`hyperpunch-demo-${key}`, key)
  await core.ready()
  const shown = new Map() // index -> li
  let dirty = true
  let synced = false

  async function show (index, fresh) {
    if (shown.has(index)) return
    const block = await core.get(index, { wait: false })
    if (block === undefined || shown.has(index)) return
    const li = document.createElement('li')
    li.value = index
    li.textContent = decoder.decode(block)
    if (fresh) li.className = 'new'
    const list = $('blocks')
    let before = null
    for (const [i, el] of shown) if (i > index && (before === null || i < before[0])) before = [i, el]
    list.insertBefore(li, before ? before[1] : null)
    shown.set(index, li)
    while (shown.size > SHOWN) {
      const first = Math.min(...shown.keys())
      shown.get(first).remove()
      shown.delete(first)
    }
  }

  function render () {
    if (!dirty) return
    dirty = false
    const length = core.length
    $('progress').max = Math.max(length, 1)
    $('progress').value = core.contiguousLength
    $('counts').textContent = `${core.contiguousLength} / ${length} blocks, ` +
      `${core.byteLength} bytes, ${core.peers} peer${core.peers === 1 ? '' : 's'}`
    if (synced) $('status').textContent = `synced: ${length} blocks, following the core live`
  }
  const later = () => { dirty = true; requestAnimationFrame(render) }

  core.on('download', (index) => { later(); if (index >= core.length - SHOWN) show(index, true) })
  core.on('append', later)
  core.on('peer-add', later)
  core.on('peer-remove', later)

  // What IndexedDB already holds (after a reload), before any peer.
  $('status').textContent = `core ${key.slice(0, 16)}… in IndexedDB: ${core.contiguousLength} blocks; looking up peers through ${relay}`
  for (let i = Math.max(0, core.length - SHOWN); i < core.length; i++) await show(i, false)
  later()

  await core.replicate(relay)
  $('status').textContent = 'connected, downloading'
  // The peer tells its length right after connecting.
  if (core.length === 0) await new Promise((resolve) => core.once('append', resolve))
  core.download({ start: 0 }) // and every block appended later, live
  const length = core.length
  await core.download({ start: 0, end: length })
  for (let i = Math.max(0, length - SHOWN); i < length; i++) await show(i, false)
  synced = true
  later()
  render()
  document.title = `synced ${length}`
}

const params = new URLSearchParams(location.search)
$('relay').value = params.get('relay') || ''
$('key').value = params.get('key') || ''
$('open').addEventListener('submit', (e) => {
  e.preventDefault()
  const next = new URLSearchParams({ relay: $('relay').value, key: $('key').value.toLowerCase() })
  location.search = next.toString()
})
window.addEventListener('unhandledrejection', (e) => fail(e.reason))
if (params.get('create')) {
  fail('creating and serving a core from the page (?create=N) is not implemented yet')
} else if (params.get('relay') && params.get('key')) {
  const key = params.get('key').toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(key)) fail('key must be 64 hex characters')
  else start(params.get('relay'), key).catch(fail)
}
