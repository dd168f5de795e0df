// A real multi-writer JS autobase 7.28.1 run, for tests/tests/autobase_interop.rs: the writers
// are added by the bootstrap, partitioned, append concurrently, then healed until every member
// has the same view and everything is indexed. Prints one JSON object:
//   { bootstrap, writers: [{ key, blocks: [hex] }], view: [hex], viewSignedLength,
//     viewIndexedLength, indexedLength, systemLength, systemSignedLength, indexers: [key],
//     systemKey, systemBlocks: [hex], viewKey, localSigner, localNamespace }
// (localSigner / localNamespace: the bootstrap's oplog manifest's signer key and namespace)
// Each writer's blocks are read from its own local core (raw oplog bytes).
//
// Usage: node autobase-scenario.js '<json config>' (or the config on stdin)
//   writers: members besides the bootstrap (default 2)
//   indexers: 'bootstrap' (only the bootstrap indexes) | 'all' (every writer is added as indexer)
//   rounds: partitioned rounds of appends (default 3); each member appends `perRound` values
//           per round, every second round as one batch (an array append)
//   removeLast: the bootstrap removes the last writer after healing (it keeps writing; its
//               later values must not count)
//   optimists: members that are never added (default 0): on an optimistic base (JS `optimistic:
//              true`) each appends, in every partitioned round, `o<i> r<r> nope` then `ok o<i> r<r>`
//              with `append(value, { optimistic: true })`; the apply acks the writer of a value
//              starting with `ok` (`host.ackWriter`), so only those stay in the view; after
//              healing, the members are told the optimists' keys (`hintWakeup`)
//   bee: the view is a hyperbee (JS `open: s => new Hyperbee(s.get('view'), { extension: false,
//        keyEncoding: 'utf-8', valueEncoding: 'utf-8' })`): the bootstrap fills it before the
//        partition, and every member's values are operations on it: `put:<k>=<v>`, `del:<k>`,
//        `batch:<op>;<op>;...` (one bee batch); `view` is then the bee's raw blocks, and the
//        output has `bee`: what JS reads from it (`all`: every entry, `range`: gte k2 lt k6,
//        `reverse`: reverse limit 3, `gets`: get of every key ever used, `indexedAll`: every
//        entry of a checkout at the indexed view length)
//   deadline: ms (default 60000)
// The apply: a value `add:<hex key>:<0|1>` adds a writer (indexer if 1), `rm:<hex key>` removes
// one, anything else is appended to the view 'view' as is (or, with `bee`, run on the bee).
// Acks are explicit (ackInterval 0).
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const Corestore = require('corestore')
const Autobase = require('autobase')
const Hyperbee = require('hyperbee')
const b4a = require('b4a')

const cfg = JSON.parse(process.argv[2] || fs.readFileSync(0, 'utf8') || '{}')
const optimists = cfg.optimists ?? 0
const bee = !!cfg.bee
// the view's core: the bee's, or the view itself
const viewCore = (base) => bee ? base.view.core : base.view
const hex = (b) => b4a.toString(b, 'hex')
const dirs = []
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-ab-')); dirs.push(d); return d }
function cleanup () { for (const d of dirs) try { fs.rmSync(d, { recursive: true, force: true }) } catch {} }
const deadline = setTimeout(() => { console.error('deadline'); cleanup(); process.exit(2) }, cfg.deadline || 60000)

function open (store, key) {
  return new Autobase(store, key, {
    valueEncoding: 'binary',
    ackInterval: 0,
    fastForward: false,
    optimistic: optimists > 0,
    open: (s) => bee
      ? new Hyperbee(s.get('view'), { extension: false, keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
      : s.get('view'),
    apply: async (nodes, view, host) => {
      for (const { value, from } of nodes) {
        const s = b4a.toString(value)
        if (optimists > 0 && s.startsWith('ok')) await host.ackWriter(from.key)
        if (s.startsWith('add:')) {
          const [, k, idx] = s.split(':')
          await host.addWriter(b4a.from(k, 'hex'), { indexer: idx === '1' })
          continue
        }
        if (s.startsWith('rm:')) {
          await host.removeWriter(b4a.from(s.slice(3), 'hex'))
          continue
        }
        if (bee) await beeOps(view, s)
        else await view.append(value)
      }
    }
  })
}

// `put:<k>=<v>`, `del:<k>` or `batch:<op>;<op>;...` on the bee view
async function beeOps (view, s) {
  const batch = s.startsWith('batch:')
  const ops = batch ? s.slice(6).split(';') : [s]
  const b = batch ? view.batch() : view
  for (const op of ops) {
    if (op.startsWith('put:')) {
      const i = op.indexOf('=')
      await b.put(op.slice(4, i), op.slice(i + 1))
    } else if (op.startsWith('del:')) {
      await b.del(op.slice(4))
    }
  }
  if (batch) await b.flush()
}

// a member's value `k` of round `r` on the bee: concurrent puts and deletes of shared keys
function beeValue (i, r, k) {
  const key = (n) => 'k' + (n % 8)
  switch (k % 3) {
    case 0: return `put:${key(i * 3 + r)}=w${i}r${r}`
    case 1: return `del:${key(i + r * 5)}`
    default: return `batch:put:b${i}${r}=x;put:${key(i + r)}=y${i}${r};del:${key(i + r + 3)}`
  }
}

let streams = []
function connect (stores) {
  for (let i = 0; i < stores.length; i++) {
    for (let j = i + 1; j < stores.length; j++) {
      const a = stores[i].replicate(true)
      const b = stores[j].replicate(false)
      a.pipe(b).pipe(a)
      a.on('error', () => {}); b.on('error', () => {})
      streams.push(a, b)
    }
  }
}
function partition () { for (const s of streams) s.destroy(); streams = [] }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function viewOf (base) {
  const out = []
  const core = viewCore(base)
  for (let i = 0; i < core.length; i++) out.push(hex(await core.get(i)))
  return out
}

async function main () {
  const n = cfg.writers ?? 2
  const rounds = cfg.rounds ?? 3
  const perRound = cfg.perRound ?? 2
  const allIndexers = cfg.indexers === 'all'
  const stores = []
  for (let i = 0; i <= n + optimists; i++) stores.push(new Corestore(tmp()))
  const bases = [open(stores[0])]
  await bases[0].ready()
  for (let i = 1; i <= n + optimists; i++) { bases.push(open(stores[i], bases[0].key)); await bases[i].ready() }
  const members = bases.slice(0, n + 1)

  for (let i = 1; i <= n; i++) await bases[0].append(b4a.from(`add:${hex(bases[i].local.key)}:${allIndexers ? 1 : 0}`))
  connect(stores)
  for (let t = 0; t < 400 && !members.every((b) => b.writable); t++) {
    for (const b of bases) { await b.update(); if (b.ackable) await b.ack() }
    await sleep(20)
  }
  if (!members.every((b) => b.writable)) throw new Error('not all writable')
  // let everyone see everyone before partitioning
  for (let t = 0; t < 10; t++) { for (const b of bases) { await b.update(); if (b.ackable) await b.ack() } await sleep(20) }

  if (bee) {
    // a tree that splits: 20 keys in one batch, and each shared key once
    const fill = []
    for (let k = 0; k < 20; k++) fill.push(`put:a${String(k).padStart(2, '0')}=fill`)
    await bases[0].append(b4a.from('batch:' + fill.join(';')))
    for (let k = 0; k < 8; k++) await bases[0].append(b4a.from(`put:k${k}=init`))
    for (let t = 0; t < 10; t++) { for (const b of bases) { await b.update(); if (b.ackable) await b.ack() } await sleep(20) }
  }

  partition()
  for (let r = 0; r < rounds; r++) {
    for (let i = n + 1; i < bases.length; i++) {
      await bases[i].append(b4a.from(`o${i} r${r} nope`), { optimistic: true })
      await bases[i].append(b4a.from(`ok o${i} r${r}`), { optimistic: true })
    }
    for (let i = 0; i <= n; i++) {
      const vals = []
      for (let k = 0; k < perRound; k++) vals.push(b4a.from(bee ? beeValue(i, r, k) : `w${i} r${r} v${k}`))
      if (r % 2 === 1) await bases[i].append(vals)
      else for (const v of vals) await bases[i].append(v)
    }
  }
  connect(stores)
  // the members learn of the optimists' cores from outside the system (JS `hintWakeup`, which
  // the wakeup protocol feeds when peers announce writers)
  const hints = bases.slice(n + 1).map((o) => ({ key: o.local.key, length: o.local.length }))
  if (hints.length) for (const b of members) b.hintWakeup(hints)

  if (cfg.removeLast) {
    await sync(bases)
    await bases[0].append(b4a.from(`rm:${hex(bases[n].local.key)}`))
    await sync(bases)
    try { await bases[n].append(b4a.from(`w${n} after removal`)) } catch {}
    await bases[0].append(b4a.from('after removal'))
  }
  await sync(bases)

  const writers = []
  for (const b of bases) {
    const core = b.local.session({ valueEncoding: 'binary' })
    await core.ready()
    const blocks = []
    for (let i = 0; i < core.length; i++) blocks.push(hex(await core.get(i)))
    writers.push({ key: hex(b.local.key), blocks })
    await core.close()
  }
  const sys = bases[0].system.core
  const sysRaw = sys.session({ valueEncoding: 'binary' })
  await sysRaw.ready()
  const systemBlocks = []
  for (let i = 0; i < sysRaw.length; i++) systemBlocks.push(hex(await sysRaw.get(i)))
  await sysRaw.close()
  const signer = bases[0].local.manifest.signers[0]
  const out = {
    systemKey: hex(sys.key),
    systemBlocks,
    viewKey: hex(viewCore(bases[0]).key),
    localSigner: hex(signer.publicKey),
    localNamespace: hex(signer.namespace),
    bootstrap: hex(bases[0].key),
    writers,
    view: await viewOf(bases[0]),
    viewSignedLength: viewCore(bases[0]).signedLength,
    viewIndexedLength: await viewIndexedLength(bases[0]),
    indexedLength: bases[0].indexedLength,
    systemLength: sys.length,
    systemSignedLength: sys.signedLength,
    indexers: bases[0].system.indexers.map((i) => hex(i.key))
  }
  if (bee) out.bee = await beeReads(bases[0].view, out.viewIndexedLength, n)
  process.stdout.write(JSON.stringify(out) + '\n')
  partition()
  for (const b of bases) await b.close()
  clearTimeout(deadline)
  cleanup()
}

async function beeReads (view, indexedLength, n) {
  const entries = async (db, range) => {
    const out = []
    for await (const e of db.createReadStream(range)) out.push([e.key, e.value])
    return out
  }
  const keys = []
  for (let k = 0; k < 20; k++) keys.push(`a${String(k).padStart(2, '0')}`)
  for (let k = 0; k < 8; k++) keys.push(`k${k}`)
  for (let i = 0; i <= n; i++) for (let r = 0; r < 8; r++) keys.push(`b${i}${r}`)
  keys.push('zz')
  const gets = {}
  for (const k of keys) { const e = await view.get(k); gets[k] = e ? e.value : null }
  const indexed = view.checkout(Math.max(indexedLength, 1))
  const indexedAll = await entries(indexed)
  await indexed.close()
  return {
    all: await entries(view),
    range: await entries(view, { gte: 'k2', lt: 'k6' }),
    reverse: await entries(view, { reverse: true, limit: 3 }),
    gets,
    indexedAll
  }
}

async function viewIndexedLength (base) {
  const info = await base.system.getIndexedInfo(base.indexedLength)
  return info.views.length ? info.views[0].length : 0
}

async function sync (bases) {
  let same = 0
  for (let t = 0; t < 600; t++) {
    for (const b of bases) { await b.update(); if (b.ackable) await b.ack() }
    const views = await Promise.all(bases.map(viewOf))
    const first = JSON.stringify(views[0])
    const equal = views.every((v) => JSON.stringify(v) === first)
    const vil = await Promise.all(bases.map(viewIndexedLength))
    const indexed = bases.every((b, i) => vil[i] === views[0].length && viewCore(b).length === views[0].length)
    const heads = bases.every((b) => b.linearizer.heads.size <= 1)
    if (equal && indexed && heads) { if (++same >= 3) return } else same = 0
    // JS never self-acks its own single head: when stuck, one indexer in turn writes an ack
    if (t % 10 === 9) {
      const b = bases[(t / 10 | 0) % bases.length]
      if (b.ackable) await b.append(null)
    }
    await sleep(20)
  }
  throw new Error('no convergence: ' + JSON.stringify(bases.map((b) => ({ len: viewCore(b).length, signed: viewCore(b).signedLength, indexed: b.indexedLength, heads: b.linearizer.heads.size, writable: b.writable, ackable: b.ackable }))))
}

main().catch((e) => { console.error(e); cleanup(); process.exit(1) })
