// What JS hyperbee 2, corestore 7 and hyperdrive 13 give for the operations the npm package's
// browser test (tests/pkg-vite/src/api.ts) runs through hyperpunch, printed in the same format,
// so scripts/test-pkg.sh compares the page's summaries with these lines:
//   bee-api ...     history (whole, bounded, reversed, from the end), compare-and-swap puts and
//                   deletes, a diff against an older version, a checkout, a snapshot, a watcher
//                   and getAndWatch
//   store-api ...   namespaced cores, a session, a drive in a namespace, store.list()
//   drive-api ...   a drive batch, a write stream, diff, a checkout, a watcher
//   bee-more ...    getHeader of a bee with header metadata and of one without, a watcher
//                   with `map` (what it yields, and when the mapped values are closed)
//   drive-more ...  ranged read streams of a four-block file (ranges inside blocks, across
//                   them, empty, past the end), a symlink's and a missing file's stream, `has`,
//                   `clear` of a local file, `getBlobsLength`, `entry(path, { follow })`
//   drive-trunc ... `truncate(version)` (bad lengths refused, files after the version gone, the
//                   blobs length JS computes) and `truncate(version, { blobs })` (JS `purge()`
//                   throws under hypercore 11.37.1, so the page checks its purge on its own)
//   drive-replica . a drive of FILES files read by key from another store: `has` before and
//                   after `downloadDiff` and `download`, after reading, after `clear`, and a
//                   cleared file read again from the peer (the page does this with the JS
//                   hyperswarm peer's drive of tests/interop/swarm-drive-peer.js)
//
//   node pkg-api-ops.js PRIMARY_KEY_HEX [FILES]
'use strict'
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const b4a = require('b4a')
const fs = require('fs')
const os = require('os')
const path = require('path')

const ent = (e) => (e === null ? '-' : `${e.key}=${e.value}@${e.seq}`)

async function all (it, f) {
  const out = []
  for await (const x of it) out.push(f(x))
  return out.join(',')
}

async function beeOps (dir) {
  const core = new Hypercore(path.join(dir, 'bee'))
  const bee = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
  await bee.ready()
  await bee.put('a', '1')
  await bee.put('b', '2')
  await bee.put('c', '3')
  await bee.del('b')
  const v1 = bee.version
  const versions = []
  const differs = (stored, next) => stored.value !== next.value
  await bee.put('a', '10', { cas: differs })
  versions.push(bee.version)
  await bee.put('a', '10', { cas: differs })
  versions.push(bee.version)
  await bee.put('c', '30', { cas: () => false })
  versions.push(bee.version)
  await bee.del('c', { cas: (stored) => stored.value === '3' })
  versions.push(bee.version)
  await bee.del('a', { cas: () => false })
  versions.push(bee.version)
  const batch = bee.batch()
  await batch.put('d', '4')
  await batch.put('e', '5')
  await batch.put('e', '50', { cas: () => false })
  await batch.flush()
  const history = (o) => all(bee.createHistoryStream(o), (e) => `${e.type}${e.seq}:${e.key}=${e.value}`)
  const h = [await history({}), await history({ gte: 2, lt: 6 }), await history({ reverse: true, limit: 2 }), await history({ gte: -2 })]
  const diff = await all(bee.createDiffStream(v1), (d) => `${ent(d.left)}/${ent(d.right)}`)
  const old = bee.checkout(v1)
  const checkout = `${old.version}:${await all(old.createReadStream(), ent)}`
  const snap = bee.snapshot()
  await bee.put('f', '6')
  const snapshot = `${snap.version}:${await all(snap.createReadStream(), (e) => e.key)}/${bee.version}`
  const watcher = bee.watch({ gte: 'a', lt: 'z' })
  await watcher.ready()
  await bee.put('g', '7')
  const { value: [current, previous] } = await watcher.next()
  const watched = `${current.version}/${previous.version}:${await all(current.createDiffStream(previous), (d) => `${ent(d.left)}/${ent(d.right)}`)}`
  await watcher.close()
  const eager = bee.watch({ gte: 'd', lt: 'f' }, { eager: true })
  await eager.ready()
  const first = await eager.next()
  const eagerSeen = first.done === true ? 'done' : `${first.value[0].version}/${first.value[1].version}`
  await eager.close()
  const bySeq = []
  for (const seq of [4, 5]) {
    const { key, value } = await bee.getBySeq(seq)
    bySeq.push(`${key}=${value}`)
  }
  const ew = await bee.getAndWatch('a')
  const before = ent(ew.node)
  const updated = new Promise((resolve) => ew.once('update', resolve))
  await bee.put('a', '11')
  await updated
  const entryWatch = `${before}>${ent(ew.node)}`
  await ew.close()
  const line = `bee-api history=${h.join('|')} cas=${versions.join(',')} v=${bee.version} diff=${diff} checkout=${checkout} ` +
    `snapshot=${snapshot} watch=${watched} eager=${eagerSeen} bySeq=${bySeq.join(',')} getAndWatch=${entryWatch}`
  await bee.close()
  return line
}

async function storeOps (dir, primaryKey) {
  const store = new Corestore(path.join(dir, 'store'), { primaryKey, unsafe: true })
  const ns = store.namespace('app')
  const notes = ns.get({ name: 'notes' })
  await notes.ready()
  const inner = ns.namespace('inner').get({ name: 'notes' })
  await inner.ready()
  const rootNotes = store.get({ name: 'notes' })
  await rootNotes.ready()
  const sess = store.session().get({ name: 'notes' })
  await sess.ready()
  const drive = new Hyperdrive(ns)
  await drive.ready()
  const hex = (k) => b4a.toString(k, 'hex')
  const storeLine = `store-api ns=${hex(notes.key)} inner=${hex(inner.key)} session=${b4a.equals(sess.key, rootNotes.key)} drive=${hex(drive.key)}`

  await drive.put('/a.txt', 'A')
  await drive.put('/dir/b.txt', 'B')
  const v1 = drive.version
  const batch = drive.batch()
  await batch.put('/dir/c.txt', 'C')
  await batch.del('/a.txt')
  await batch.symlink('/l', '/dir/b.txt')
  await batch.flush()
  const afterBatch = drive.version
  const ws = drive.createWriteStream('/w.txt', { metadata: { by: 'stream' } })
  await new Promise((resolve, reject) => {
    ws.on('error', reject)
    ws.on('close', resolve)
    ws.write(b4a.from('he'))
    ws.write(b4a.from('llo'))
    ws.end()
  })
  const w = await drive.entry('/w.txt')
  const written = `${b4a.toString(await drive.get('/w.txt'))}/${w.value.blob.blockLength}/${JSON.stringify(w.value.metadata)}`
  const side = (e) => (e === null ? '-' : `${e.seq}`)
  const diff = await all(drive.diff(v1, '/'), (d) => `${(d.left || d.right).key}:${side(d.left)}/${side(d.right)}`)
  const old = drive.checkout(v1)
  const checkout = `${old.version}:${await all(old.list('/'), (e) => e.key)}`
  const watcher = drive.watch('/dir')
  await watcher.ready()
  await drive.put('/elsewhere.txt', 'not watched')
  await drive.put('/dir/d.txt', 'D')
  const { value: [current, previous] } = await watcher.next()
  const watched = `${current.version}/${previous.version}`
  await watcher.destroy()
  let cores = 0
  for await (const dk of store.list()) if (dk) cores++
  const driveLine = `drive-api batch=${v1}>${afterBatch} written=${written} diff=${diff} checkout=${checkout} watch=${watched} v=${drive.version} cores=${cores}`
  const moreLine = await driveMoreOps(drive, v1)
  await drive.close()
  const truncLine = await driveTruncOps(store)
  await store.close()
  return [storeLine, driveLine, moreLine, truncLine]
}

// `truncate(version, { blobs })` and `purge()` of a drive in the namespace 'trunc'.
async function driveTruncOps (store) {
  const ns = store.namespace('trunc')
  const drive = new Hyperdrive(ns)
  await drive.ready()
  const key = b4a.toString(drive.key, 'hex')
  await drive.put('/a.txt', 'A')
  await drive.put('/b.txt', 'BB')
  const v1 = drive.version
  await drive.put('/c.txt', b4a.alloc(70000, 'c'))
  await drive.put('/a.txt', 'A2')
  await drive.del('/b.txt')
  const before = `${drive.version}/${await drive.getBlobsLength()}/${await drive.getBlobsLength(v1)}`
  const bad = []
  for (const [v, o] of [[drive.version + 1, {}], [v1, { blobs: 999 }]]) {
    try {
      await drive.truncate(v, o)
      bad.push('done')
    } catch {
      bad.push('threw')
    }
  }
  const unchanged = `${drive.version}/${await drive.getBlobsLength()}`
  await drive.truncate(v1)
  const files = await all(drive.list('/'), (e) => e.key)
  const after = `${drive.version}/${await drive.getBlobsLength()}/${text(await drive.get('/a.txt'))}/${text(await drive.get('/b.txt'))}/${await drive.exists('/c.txt')}`
  await drive.put('/d.txt', 'D')
  const dOffset = (await drive.entry('/d.txt')).value.blob.blockOffset
  // An explicit blobs length below what the version needs: /d's blob goes, its entry stays and
  // the next blob takes its block.
  await drive.truncate(drive.version, { blobs: 2 })
  await drive.put('/e.txt', 'E')
  const explicit = `${drive.version}/${await drive.getBlobsLength()}/${dOffset}/${text(await drive.get('/d.txt'))}`
  // JS purge() is not compared: under hypercore 11.37.1 it throws (`this._closeAllSessions is
  // not a function`); the page checks its own purge on its own.
  await drive.close()
  return `drive-trunc before=${before} bad=${bad.join(',')} unchanged=${unchanged} files=${files} after=${after} ` +
    `explicit=${explicit}`
}

const hex = (k) => b4a.toString(k, 'hex')
const text = (b) => (b === null || b === undefined ? 'null' : b4a.toString(b))

function header (h) {
  if (h === null) return 'null'
  const m = h.metadata
  const md = m === null ? 'null' : `${m.contentFeed === null ? 'null' : hex(m.contentFeed)}/${text(m.userData)}`
  return `${h.protocol}/${md}`
}

async function beeMoreOps (dir) {
  const core = new Hypercore(path.join(dir, 'bee-meta'))
  const metadata = { contentFeed: b4a.alloc(32, 11), userData: b4a.from('app data') }
  const bee = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8', metadata })
  await bee.ready()
  await bee.put('a', '1')
  const plainCore = new Hypercore(path.join(dir, 'bee-plain'))
  const plain = new Hyperbee(plainCore, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
  await plain.ready()
  await plain.put('a', '1')
  const headers = `${header(await bee.getHeader())},${header(await plain.getHeader())}`
  let closes = 0
  const watcher = bee.watch({ gte: 'a', lt: 'z' }, { map: (snap) => ({ version: snap.version, close: async () => { closes++ } }) })
  await watcher.ready()
  await bee.put('b', '2')
  const m1 = await watcher.next()
  await bee.put('c', '3')
  const m2 = await watcher.next()
  const closedBefore = closes
  await watcher.close()
  const mapped = `${m1.value[0].version}/${m1.value[1].version},${m2.value[0].version}/${m2.value[1].version}:${closedBefore}/${closes}`
  await bee.close()
  await plain.close()
  return `bee-more header=${headers} map=${mapped}`
}

// Ranges of the four-block file /m.txt ("abcd" "efgh" "ijkl" "mnop"): chunks joined by '|'.
const RANGES = [{}, { start: 2, end: 9 }, { start: 5, length: 6 }, { start: 4, end: 7 }, { start: 6, end: 6 },
  { start: 3, length: 0 }, { length: 0 }, { start: 3, end: 2 }, { end: 0 }, { start: 14 }, { start: 16 }, { start: 20 }]

async function readAll (drive, file, range) {
  const out = []
  for await (const chunk of drive.createReadStream(file, range)) out.push(b4a.toString(chunk))
  return out.join('|')
}

async function driveMoreOps (drive, v1) {
  const ws = drive.createWriteStream('/m.txt')
  await new Promise((resolve, reject) => {
    ws.on('error', reject)
    ws.on('close', resolve)
    for (const c of ['abcd', 'efgh', 'ijkl', 'mnop']) ws.write(b4a.from(c))
    ws.end()
  })
  await drive.put('/n.txt', 'NEXT')
  const reads = []
  for (const r of RANGES) reads.push(await readAll(drive, '/m.txt', r))
  const link = await readAll(drive, '/l', {})
  let missing = 'none'
  try {
    await readAll(drive, '/nope.txt', {})
  } catch {
    missing = 'threw'
  }
  const has = []
  for (const p of ['/m.txt', '/', '/l', '/nope', '/nope/', '/dir/']) has.push(await drive.has(p))
  const blobsLength = `${await drive.getBlobsLength()}/${await drive.getBlobsLength(v1)}`
  const follow = `${(await drive.entry('/l')).key}>${(await drive.entry('/l', { follow: true })).key}/${await drive.entry('/nope', { follow: true })}`
  const cleared = JSON.stringify(await drive.clear('/n.txt'))
  const afterClear = `${await drive.has('/n.txt')}/${await drive.has('/')}/${await drive.has('/m.txt')}`
  return `drive-more read=${reads.join(',')} link=${link} missing=${missing} has=${has.join(',')} blobsLength=${blobsLength} ` +
    `follow=${follow} clear=${cleared} after=${afterClear}`
}

// `store.watch(fn)`: the cores reported to two watchers (hex keys, in order) for the same opens
// as the page's watchCheck (tests/pkg-vite/src/api.ts).
async function watchOps (dir) {
  const store = new Corestore(path.join(dir, 'watch'), { primaryKey: b4a.alloc(32, 3), unsafe: true })
  const first = []
  const second = []
  const fn1 = (core) => first.push(core)
  const fn2 = (core) => second.push(core)
  await store.get({ name: 'before' }).ready()
  store.watch(fn1)
  const a = store.get({ name: 'a' })
  await a.ready()
  await store.get({ name: 'a' }).ready()
  await a.session().ready()
  await store.get({ name: 'before' }).ready()
  const ns = store.namespace('ns')
  await ns.get({ name: 'a' }).ready()
  ns.watch(fn2)
  await store.get({ key: b4a.alloc(32, 9) }).ready()
  store.unwatch(fn1)
  await store.get({ name: 'c' }).ready()
  const keys = (l) => l.map((c) => b4a.toString(c.key, 'hex').slice(0, 8)).join(',')
  const line = `store-watch first=${keys(first)} second=${keys(second)}`
  await store.close()
  return line
}

async function replicaOps (dir, files) {
  const seedStore = new Corestore(path.join(dir, 'seed'))
  const seed = new Hyperdrive(seedStore)
  await seed.ready()
  for (let i = 0; i < files; i++) await seed.put(`/f/${i}.txt`, b4a.from(`file ${i}`))
  const store = new Corestore(path.join(dir, 'reader'))
  const a = seedStore.replicate(true)
  const b = store.replicate(false)
  a.pipe(b).pipe(a)
  const drive = new Hyperdrive(store, seed.key)
  await drive.ready()
  await drive.update()
  const has = (p) => drive.has(p)
  const before = `${await has('/f/3.txt')}/${await has('/f/')}`
  const half = Math.floor(files / 2)
  await (await drive.downloadDiff(half + 1, '/f')).done()
  const afterDiff = [await has('/f/0.txt'), await has(`/f/${half - 1}.txt`), await has(`/f/${half}.txt`), await has(`/f/${files - 1}.txt`)].join(',')
  await drive.download('/f/3.txt').done()
  const afterDownload = `${await has('/f/3.txt')}/${await has('/f/4.txt')}`
  const monitor = drive.monitor('/f/5.txt')
  await monitor.ready()
  for (let i = 0; i < files; i++) await drive.get(`/f/${i}.txt`)
  const m = monitor.downloadStats
  const monitored = `${m.blocks}/${m.monitoringBytes}/${m.targetBlocks}/${m.targetBytes}/${m.percentage}/${monitor.uploadStats.blocks}`
  await monitor.close()
  const allRead = await has('/f/')
  const cleared = JSON.stringify(await drive.clear('/f/1.txt'))
  const afterClear = `${await has('/f/1.txt')}/${await has('/f/')}/${await has('/f/2.txt')}`
  const missing = `${JSON.stringify(await drive.clear('/nope', { diff: true }))}/${JSON.stringify(await drive.clear('/nope'))}`
  const again = `${text(await drive.get('/f/1.txt'))}/${await has('/f/1.txt')}/${await has('/f/')}`
  const line = `drive-replica v=${drive.version} has=${before} diff=${afterDiff} download=${afterDownload} read=${allRead} ` +
    `clear=${cleared} after=${afterClear} missing=${missing} again=${again} monitor=${monitored}`
  a.destroy()
  b.destroy()
  await drive.close()
  await seed.close()
  await store.close()
  await seedStore.close()
  return line
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-pkg-api-ops-'))
  try {
    console.log(await beeOps(dir))
    for (const line of await storeOps(dir, b4a.from(process.argv[2], 'hex'))) console.log(line)
    console.log(await beeMoreOps(dir))
    console.log(await replicaOps(dir, Number(process.argv[3] || 20)))
    console.log(await watchOps(dir))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
