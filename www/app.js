// The hyperpunch demo page: ?relay=ws://HOST:PORT&key=HEX fetches a core through a dht-relay
// into IndexedDB and shows its blocks live; ?relay=ws://HOST:PORT&create=N creates a core in
// IndexedDB whose block i is the UTF-8 text `hyperpunch block <i>`, announces it through the
// relay and serves it (a reload serves the same core). For automation, document.title is
// `synced <length>` once the fetched core is complete, `serving <KEY HEX> <N>` once the created
// core is announced, and `error: <message>` when something failed.
import { Hypercore, toHex } from './hyperpunch/index.js'

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

// ?create=N: make (or reopen) the core, then serve it through the relay.
async function serve (relay, n) {
  $('open').hidden = true
  $('view').hidden = false
  const core = new Hypercore(`hyperpunch-demo-create-${n}`)
  await core.ready()
  const key = toHex(core.key)
  const counts = () => {
    $('counts').textContent = `${core.length} blocks, ${core.byteLength} bytes, ` +
      `${core.peers} peer${core.peers === 1 ? '' : 's'} replicating`
  }
  core.on('peer-add', counts)
  core.on('peer-remove', counts)
  $('status').textContent = `core ${key} in IndexedDB: ${core.length} blocks; appending up to ${n}`
  $('progress').max = n
  const batch = []
  for (let i = core.length; i < n; i++) {
    batch.push(`hyperpunch block ${i}`)
    if (batch.length === 100 || i === n - 1) {
      await core.append(batch.splice(0))
      $('progress').value = core.length
    }
  }
  $('progress').value = core.length
  const list = async (i, fresh) => {
    const li = document.createElement('li')
    li.value = i
    li.textContent = decoder.decode(await core.get(i))
    if (fresh) li.className = 'new'
    $('blocks').appendChild(li)
    while ($('blocks').children.length > SHOWN) $('blocks').firstElementChild.remove()
  }
  for (let i = Math.max(0, core.length - SHOWN); i < core.length; i++) await list(i, false)
  counts()
  $('status').textContent = `announcing core ${key} through ${relay}`
  core.on('error', fail)
  const serving = await core.serve(relay)
  const fetchUrl = `${location.pathname}?${new URLSearchParams({ relay, key })}`
  $('status').innerHTML = ''
  $('status').append(`serving core ${key} (${n} blocks) through ${relay}, reachable as ` +
    `${toHex(serving.publicKey).slice(0, 16)}…; fetch it: `)
  const a = document.createElement('a')
  a.href = fetchUrl
  a.textContent = 'open it in another browser'
  $('status').append(a, ` or \`hyperpunch core fetch --swarm --key ${key} ...\``)
  const stop = document.createElement('button')
  stop.id = 'stop'
  stop.textContent = 'stop serving'
  stop.addEventListener('click', async () => {
    stop.disabled = true
    await serving.close()
    $('status').textContent = `stopped serving core ${key}; reload to serve it again`
    document.title = `stopped ${key}`
  })
  // Append live: connected readers get the block at once (`core fetch --live`, a page with
  // ?key=). Empty text appends the next `hyperpunch block <i>`.
  const form = document.createElement('form')
  form.id = 'append-form'
  const text = document.createElement('input')
  text.id = 'append-text'
  text.placeholder = 'text of a new block'
  const append = document.createElement('button')
  append.id = 'append'
  append.type = 'submit'
  append.textContent = 'append'
  form.append(text, append)
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    const block = text.value || `hyperpunch block ${core.length}`
    text.value = ''
    const length = await core.append(block)
    await list(length - 1, true)
    $('progress').max = length
    $('progress').value = length
    counts()
    document.title = `serving ${key} ${length}`
  })
  $('status').after(stop, form)
  document.title = `serving ${key} ${core.length}`
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
if (params.get('create') !== null) {
  const n = Number(params.get('create'))
  if (!params.get('relay')) fail('create=N needs relay=ws://HOST:PORT')
  else if (!Number.isSafeInteger(n) || n < 1 || n > 1000000) fail('create must be a whole number of blocks from 1 to 1000000')
  else serve(params.get('relay'), n).catch(fail)
} else if (params.get('relay') && params.get('key')) {
  const key = params.get('key').toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(key)) fail('key must be 64 hex characters')
  else start(params.get('relay'), key).catch(fail)
}
