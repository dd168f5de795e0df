// What JS hyperbee 2, corestore 7 and hyperdrive 13 give for the operations the npm package's
// browser test (tests/pkg-vite/src/api.ts) runs through hyperpunch, printed in the same format,
// so scripts/test-pkg.sh compares the page's summaries with these lines:
//   bee-api ...     history (whole, bounded, reversed, from the end), compare-and-swap puts and
//                   deletes, a diff against an older version, a checkout, a snapshot, a watcher
//                   and getAndWatch
//   store-api ...   namespaced cores, a session, a drive in a namespace, store.list()
//   drive-api ...   a drive batch, a write stream, diff, a checkout, a watcher
//
//   node pkg-api-ops.js PRIMARY_KEY_HEX
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
  await drive.close()
  await store.close()
  return [storeLine, driveLine]
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-pkg-api-ops-'))
  try {
    console.log(await beeOps(dir))
    for (const line of await storeOps(dir, b4a.from(process.argv[2], 'hex'))) console.log(line)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
