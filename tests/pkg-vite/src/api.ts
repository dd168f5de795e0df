// The rest of the JS API of hyperbee, corestore and hyperdrive through the packed package: the
// same operations as tests/interop/pkg-api-ops.js runs with JS hyperbee 2, corestore 7 and
// hyperdrive 13, summarised in the same format (scripts/test-pkg.sh compares the lines):
// history, compare-and-swap, diff, checkouts, snapshots, watch and getAndWatch of a bee;
// namespaces, sessions and listing of a store; batches, write streams, diff, checkouts and watch
// of a drive; a bee's header and a watcher with `map`; ranged read streams, `has`, `clear`,
// `getBlobsLength` and `entry(path, { follow })` of a drive.
import { Corestore, Hyperbee, Hypercore, Hyperdrive, toHex, type BeeEntry, type OpenedCore, type CasCallback, type Codec, type DriveReadRange, type HyperbeeHeader } from 'hyperpunch'

const ent = (e: BeeEntry<string, string> | null): string => (e === null ? '-' : `${e.key}=${e.value}@${e.seq}`)

async function all<T> (it: AsyncIterable<T>, f: (x: T) => string): Promise<string> {
  const out: string[] = []
  for await (const x of it) out.push(f(x))
  return out.join(',')
}

export async function beeApiCheck (): Promise<string> {
  const name = 'hyperpunch-vite-bee-api'
  await Hypercore.delete(name)
  const core = new Hypercore(name)
  const bee = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
  await bee.ready()
  await bee.put('a', '1')
  await bee.put('b', '2')
  await bee.put('c', '3')
  await bee.del('b')
  const v1 = bee.version
  const versions: number[] = []
  const differs: CasCallback<string, string> = (stored, next) => stored.value !== next.value
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
  const history = (o: Parameters<typeof bee.createHistoryStream>[0]): Promise<string> =>
    all(bee.createHistoryStream(o), (e) => `${e.type}${e.seq}:${e.key}=${e.value}`)
  const h = [await history({}), await history({ gte: 2, lt: 6 }), await history({ reverse: true, limit: 2 }), await history({ gte: -2 })]
  const diff = await all(bee.createDiffStream(v1), (d) => `${ent(d.left)}/${ent(d.right)}`)
  const old = bee.checkout(v1)
  await old.ready()
  const checkout = `${old.version}:${await all(old.createReadStream(), ent)}`
  const snap = bee.snapshot()
  await snap.ready()
  await bee.put('f', '6')
  const snapshot = `${snap.version}:${await all(snap.createReadStream(), (e) => e.key)}/${bee.version}`
  const watcher = bee.watch({ gte: 'a', lt: 'z' })
  await watcher.ready()
  await bee.put('g', '7')
  const next = await watcher.next()
  if (next.done === true) throw new Error('the watcher ended')
  const [current, previous] = next.value
  const watched = `${current.version}/${previous.version}:${await all(current.createDiffStream(previous), (d) => `${ent(d.left)}/${ent(d.right)}`)}`
  await watcher.close()
  const eager = bee.watch({ gte: 'd', lt: 'f' }, { eager: true })
  await eager.ready()
  const first = await eager.next()
  const eagerSeen = first.done === true ? 'done' : `${first.value[0].version}/${first.value[1].version}`
  await eager.close()
  const bySeq: string[] = []
  for (const seq of [4, 5]) {
    const { key, value } = await bee.getBySeq(seq)
    bySeq.push(`${key}=${value}`)
  }
  const ew = await bee.getAndWatch('a')
  const before = ent(ew.node)
  const updated = new Promise<void>((resolve) => { ew.once('update', resolve) })
  await bee.put('a', '11')
  await updated
  const entryWatch = `${before}>${ent(ew.node)}`
  await ew.close()
  // A checkout cannot be written.
  let refused = false
  try {
    await old.put('x', 'y')
  } catch {
    refused = true
  }
  const compared = `bee-api history=${h.join('|')} cas=${versions.join(',')} v=${bee.version} diff=${diff} checkout=${checkout} ` +
    `snapshot=${snapshot} watch=${watched} eager=${eagerSeen} bySeq=${bySeq.join(',')} getAndWatch=${entryWatch}`
  // Page-only checks (after the part compared with JS):
  // a live history stream gives the last entry, then waits for the next write;
  const live = bee.createHistoryStream({ gte: -1, live: true })[Symbol.asyncIterator]()
  const last = await live.next()
  const pending = live.next()
  await bee.put('h', '8')
  const arrived = await pending
  await live.return?.(undefined)
  const liveSeen = `${last.done === true ? 'done' : last.value.key}>${arrived.done === true ? 'done' : `${arrived.value.type}${arrived.value.seq}:${arrived.value.key}`}`
  // closing a watcher ends a pending next;
  const idle = bee.watch({ gte: 'x' })
  await idle.ready()
  const waiting = idle.next()
  await idle.close()
  const closedEnds = (await waiting).done
  // a compare-and-swap callback that throws rejects the put with its error, nothing written.
  const vBefore = bee.version
  let thrown = ''
  try {
    await bee.put('a', 'x', { cas: () => { throw new Error('cas says no') } })
  } catch (err) {
    thrown = err instanceof Error ? err.message : String(err)
  }
  // A closed checkout refuses reads.
  await old.close()
  let closedRead = ''
  try {
    await old.get('a')
  } catch (err) {
    closedRead = err instanceof Error ? err.message : String(err)
  }
  // A codec of one's own types the bee (its values are `{ n: number }`).
  const numCodec: Codec<{ n: number }> = {
    encode: (v) => new TextEncoder().encode(JSON.stringify(v)),
    decode: (b) => JSON.parse(new TextDecoder().decode(b)) as { n: number }
  }
  const typed = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: numCodec })
  const typedEntry: BeeEntry<string, { n: number }> | null = await typed.get('no such key')
  return `${compared} | codec=${typedEntry === null ? 'null' : typedEntry.value?.n} checkout-write-refused=${refused} live=${liveSeen} watcher-close-ends=${closedEnds} ` +
    `cas-throw=${thrown}/${bee.version === vBefore} closed-checkout=${closedRead}`
}

const text = (b: Uint8Array | null): string => (b === null ? 'null' : new TextDecoder().decode(b))

function header (h: HyperbeeHeader | null): string {
  if (h === null) return 'null'
  const m = h.metadata
  const md = m === null ? 'null' : `${m.contentFeed === null ? 'null' : toHex(m.contentFeed)}/${text(m.userData)}`
  return `${h.protocol}/${md}`
}

// getHeader of a bee made with header metadata and of one without; a watcher with `map`.
export async function beeMoreCheck (): Promise<string> {
  const metaName = 'hyperpunch-vite-bee-meta'
  const plainName = 'hyperpunch-vite-bee-plain'
  await Hypercore.delete(metaName)
  await Hypercore.delete(plainName)
  const contentFeed = new Uint8Array(32).fill(11)
  const bee = new Hyperbee(new Hypercore(metaName), { keyEncoding: 'utf-8', valueEncoding: 'utf-8', metadata: { contentFeed, userData: 'app data' } })
  await bee.ready()
  await bee.put('a', '1')
  const plain = new Hyperbee(new Hypercore(plainName), { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
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
  if (m1.done === true || m2.done === true) throw new Error('the mapped watcher ended')
  const closedBefore = closes
  await watcher.close()
  const mapped = `${m1.value[0].version}/${m1.value[1].version},${m2.value[0].version}/${m2.value[1].version}:${closedBefore}/${closes}`
  // Page-only: a core without blocks has no header.
  const emptyName = 'hyperpunch-vite-bee-empty'
  await Hypercore.delete(emptyName)
  const empty = new Hyperbee(new Hypercore(emptyName))
  const none = await empty.getHeader()
  await bee.close()
  await plain.close()
  await empty.close()
  return `bee-more header=${headers} map=${mapped} | empty-header=${none === null ? 'null' : none.protocol}`
}

// The ranges tests/interop/pkg-api-ops.js reads of the four-block file /m.txt.
const RANGES: DriveReadRange[] = [{}, { start: 2, end: 9 }, { start: 5, length: 6 }, { start: 4, end: 7 }, { start: 6, end: 6 },
  { start: 3, length: 0 }, { length: 0 }, { start: 3, end: 2 }, { end: 0 }, { start: 14 }, { start: 16 }, { start: 20 }]

async function readAll (drive: Hyperdrive, file: string, range: DriveReadRange): Promise<string> {
  const out: string[] = []
  for await (const chunk of drive.createReadStream(file, range)) out.push(new TextDecoder().decode(chunk))
  return out.join('|')
}

// Ranged reads of a multi-block file, `has`, `clear`, `getBlobsLength`, `entry(path, { follow })`
// of the drive storeApiCheck wrote; the compared line, then page-only checks.
async function driveMoreCheck (drive: Hyperdrive, v1: number): Promise<[string, string]> {
  const ws = drive.createWriteStream('/m.txt').getWriter()
  for (const c of ['abcd', 'efgh', 'ijkl', 'mnop']) await ws.write(c)
  await ws.close()
  await drive.put('/n.txt', 'NEXT')
  const reads: string[] = []
  for (const r of RANGES) reads.push(await readAll(drive, '/m.txt', r))
  const link = await readAll(drive, '/l', {})
  let missing = 'none'
  try {
    await readAll(drive, '/nope.txt', {})
  } catch {
    missing = 'threw'
  }
  const has: boolean[] = []
  for (const p of ['/m.txt', '/', '/l', '/nope', '/nope/', '/dir/']) has.push(await drive.has(p))
  const blobsLength = `${await drive.getBlobsLength()}/${await drive.getBlobsLength(v1)}`
  const key = (e: { key: string } | null): string => (e === null ? 'null' : e.key)
  const follow = `${key(await drive.entry('/l'))}>${key(await drive.entry('/l', { follow: true }))}/${key(await drive.entry('/nope', { follow: true }))}`
  const cleared = JSON.stringify(await drive.clear('/n.txt'))
  const afterClear = `${await drive.has('/n.txt')}/${await drive.has('/')}/${await drive.has('/m.txt')}`
  const line = `drive-more read=${reads.join(',')} link=${link} missing=${missing} has=${has.join(',')} blobsLength=${blobsLength} ` +
    `follow=${follow} clear=${cleared} after=${afterClear}`
  // Page-only: `{ diff: true }` counts the blocks cleared (JS hyperdrive 13 on hypercore 11
  // says 0): the four of /m.txt, then none when cleared again, and nothing stored is left.
  const diff = await drive.clear('/m.txt', { diff: true })
  const again = await drive.clear('/m.txt', { diff: true })
  const all = await drive.clearAll({ diff: true })
  const extra = `clear-diff=${diff.blocks}/${again.blocks} clear-all=${all.blocks}/${await drive.has('/dir/')}`
  return [line, extra]
}

// `truncate(version, { blobs })` and `purge()` of a drive in the namespace 'trunc'; the line
// tests/interop/pkg-api-ops.js prints for the same operations.
// Then, page-only (JS hyperdrive 13.3.4's `purge()` throws under hypercore 11.37.1): `purge()`
// removes both cores from the store, and the drive made again has the same key and starts empty.
async function driveTruncCheck (store: Corestore): Promise<[string, string]> {
  const ns = store.namespace('trunc')
  const drive = new Hyperdrive(ns)
  await drive.ready()
  const key = toHex(drive.key)
  await drive.put('/a.txt', 'A')
  await drive.put('/b.txt', 'BB')
  const v1 = drive.version
  await drive.put('/c.txt', new Uint8Array(70000).fill(99))
  await drive.put('/a.txt', 'A2')
  await drive.del('/b.txt')
  const before = `${drive.version}/${await drive.getBlobsLength()}/${await drive.getBlobsLength(v1)}`
  const bad: string[] = []
  for (const [v, o] of [[drive.version + 1, {}], [v1, { blobs: 999 }]] as Array<[number, { blobs?: number }]>) {
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
  const dOffset = (await drive.entry('/d.txt'))?.value.blob?.blockOffset
  await drive.truncate(drive.version, { blobs: 2 })
  await drive.put('/e.txt', 'E')
  const explicit = `${drive.version}/${await drive.getBlobsLength()}/${dOffset}/${text(await drive.get('/d.txt'))}`
  let cores = 0
  for await (const dk of store.list()) if (dk.length === 32) cores++
  await drive.purge()
  let left = 0
  for await (const dk of store.list()) if (dk.length === 32) left++
  const again = new Hyperdrive(ns)
  await again.ready()
  const purged = `${cores - left}/${toHex(again.key) === key}/${again.version}/${await all(again.list('/'), (e) => e.key)}`
  await again.put('/new.txt', 'N')
  const reborn = `${again.version}/${await again.getBlobsLength()}`
  await again.close()
  const line = `drive-trunc before=${before} bad=${bad.join(',')} unchanged=${unchanged} files=${files} after=${after} ` +
    `explicit=${explicit}`
  return [line, `purge=${purged} reborn=${reborn}`]
}

// `store.watch(fn)` / `unwatch(fn)`: the cores reported to two watchers for the opens
// tests/interop/pkg-api-ops.js makes (its `store-watch` line).
export async function watchCheck (): Promise<string> {
  const name = 'hyperpunch-vite-store-watch'
  await Corestore.delete(name)
  const store = new Corestore(name, { primaryKey: '03'.repeat(32) })
  const first: OpenedCore[] = []
  const second: OpenedCore[] = []
  const fn1 = (core: OpenedCore): void => { first.push(core) }
  const fn2 = (core: OpenedCore): void => { second.push(core) }
  await store.get({ name: 'before' }).ready()
  await store.watch(fn1)
  const a = store.get({ name: 'a' })
  await a.ready()
  await store.get({ name: 'a' }).ready()
  await a.session().ready()
  await store.get({ name: 'before' }).ready()
  const ns = store.namespace('ns')
  await ns.get({ name: 'a' }).ready()
  await ns.watch(fn2)
  await store.get({ key: '09'.repeat(32) }).ready()
  await store.unwatch(fn1)
  await store.get({ name: 'c' }).ready()
  // The callbacks run as the watchers' queues are read: wait (bounded) for the second's two.
  for (let i = 0; i < 200 && second.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 25))
  await store.unwatch(fn2)
  const keys = (l: OpenedCore[]): string => l.map((c) => toHex(c.key).slice(0, 8)).join(',')
  return `store-watch first=${keys(first)} second=${keys(second)}`
}

export async function storeApiCheck (): Promise<string> {
  const name = 'hyperpunch-vite-store-api'
  await Corestore.delete(name)
  const store = new Corestore(name, { primaryKey: '07'.repeat(32) })
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
  const storeLine = `store-api ns=${toHex(notes.key)} inner=${toHex(inner.key)} session=${toHex(sess.key) === toHex(rootNotes.key)} drive=${toHex(drive.key)}`

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
  const writer = ws.getWriter()
  await writer.write(new TextEncoder().encode('he'))
  await writer.write('llo')
  await writer.close()
  const w = await drive.entry('/w.txt')
  const bytes = await drive.get('/w.txt')
  const written = `${bytes === null ? 'null' : new TextDecoder().decode(bytes)}/${w?.value.blob?.blockLength}/${JSON.stringify(w?.value.metadata)}`
  const side = (e: { seq: number } | null): string => (e === null ? '-' : `${e.seq}`)
  const diff = await all(drive.diff(v1, '/'), (d) => `${(d.left ?? d.right)?.key}:${side(d.left)}/${side(d.right)}`)
  const old = drive.checkout(v1)
  await old.ready()
  const checkout = `${old.version}:${await all(old.list('/'), (e) => e.key)}`
  const watcher = drive.watch('/dir')
  await watcher.ready()
  await drive.put('/elsewhere.txt', 'not watched')
  await drive.put('/dir/d.txt', 'D')
  const next = await watcher.next()
  if (next.done === true) throw new Error('the drive watcher ended')
  const [current, previous] = next.value
  const watched = `${current.version}/${previous.version}`
  await watcher.destroy()
  let cores = 0
  for await (const dk of store.list()) if (dk.length === 32) cores++
  // The namespace's named cores, listed by namespace.
  let named = 0
  for await (const dk of store.list(ns.ns)) if (dk.length === 32) named++
  // A second session of a core reads what the first appended.
  const again = notes.session()
  await again.ready()
  await notes.append('one')
  const sessionRead = await again.get(0)
  await again.close()
  const driveLine = `drive-api batch=${v1}>${afterBatch} written=${written} diff=${diff} checkout=${checkout} watch=${watched} v=${drive.version} cores=${cores}`
  const [moreLine, moreExtra] = await driveMoreCheck(drive, v1)
  const [truncLine, purgeExtra] = await driveTruncCheck(store)
  // An aborted write stream puts no entry and releases the drive for the next write.
  const aborted = drive.createWriteStream('/aborted.txt').getWriter()
  await aborted.write('partial')
  await aborted.abort()
  await drive.put('/after.txt', 'after')
  const abortedOk = `${await drive.exists('/aborted.txt')}/${await drive.exists('/after.txt')}`
  await old.close()
  let closedRead = ''
  try {
    await old.get('/a.txt')
  } catch (err) {
    closedRead = err instanceof Error ? err.message : String(err)
  }
  return `${storeLine} | ${driveLine} | ${moreLine} | ${truncLine} | named=${named} core-session=${sessionRead === null ? 'null' : new TextDecoder().decode(sessionRead)} ` +
    `checkout-writable=${old.writable} aborted-stream=${abortedOk} closed-checkout=${closedRead} ${moreExtra} ${purgeExtra}`
}
