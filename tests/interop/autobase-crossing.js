// A diagnosis tool, not run by the tests: two JS autobase 7.28.1 indexers (no hyperpunch) in one
// process. One writes a value while the other acks (the two cross), then both ack as the
// autobase-peer.js loop does (`update()` then `ack()` when ackable; `ack()` writes only when
// `shouldAck` says so). The acks cross again, after which `shouldAck` is false on both and the
// value stays unindexed (50 rounds); a forced ack (`append(null)`) from one and then the other
// indexes it. This is the stall `rust_indexer_with_a_js_indexer_over_tcp` met in about 4 runs of
// 10, shown here JS to JS. The core test `crossing_acks_stall_until_an_ack_sees_the_other_indexer`
// reproduces it deterministically in the Rust engine.
//
// Usage: node autobase-crossing.js [rounds]   (extra rounds of concurrent forced acks first; 0)
// Prints the linearizer state of both after each phase: view length (indexed), heads, tails.
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const Corestore = require('corestore')
const Autobase = require('autobase')
const b4a = require('b4a')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const hex = (b) => b4a.toString(b, 'hex')
const ref = (n) => n ? hex(n.writer.core.key).slice(0, 2) + ':' + n.length + (n.value === null ? '' : '*') : '-'

function make (dir, key) {
  const store = new Corestore(dir)
  return new Autobase(store, key, {
    valueEncoding: 'binary',
    ackInterval: 0,
    fastForward: false,
    open: (s) => s.get('view'),
    apply: async (nodes, view, host) => {
      for (const { value } of nodes) {
        const s = b4a.toString(value)
        if (s.startsWith('add:')) { await host.addWriter(b4a.from(s.slice(4), 'hex'), { indexer: true }); continue }
        await view.append(value)
      }
    }
  })
}

async function sync (bases) {
  await syncInner(bases)
  for (const b of bases) b._vi = await viewIndexed(b)
}
async function syncInner (bases) {
  for (let i = 0; i < 500; i++) {
    for (const b of bases) await b.update()
    let done = true
    for (const b of bases) {
      for (const o of bases) {
        if (o === b || !o.localWriter) continue
        const w = b.activeWriters.get(o.local.key)
        if (!w || w.length !== o.local.length) done = false
      }
    }
    if (done) return
    await sleep(5)
  }
  throw new Error('no sync')
}

async function viewIndexed (b) {
  const info = await b.system.getIndexedInfo(b.indexedLength)
  return info.views.length ? info.views[0].length : 0
}
function state (name, b) {
  const lin = b.linearizer
  return `${name}: view ${b.view.length} (indexed ${b._vi}) indexedLength ${b.indexedLength} heads ${[...lin.heads].map(ref)} tails ${[...lin.tails].map(ref)} shouldAck ${lin.shouldAck(b.localWriter)}`
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abcross-'))
  const a = make(path.join(dir, 'a'), null)
  await a.ready()
  const b = make(path.join(dir, 'b'), a.key)
  await b.ready()
  const s1 = a.store.replicate(true)
  const s2 = b.store.replicate(false)
  s1.pipe(s2).pipe(s1)

  await a.append(b4a.from('a 0'))
  await a.append(b4a.from('add:' + hex(b.local.key)))
  await sync([a, b])
  // confirm as JS's own tests do: forced acks in turn until all is indexed
  for (let r = 0; r < 4; r++) {
    for (const x of [a, b]) { if (x.ackable) { await x.append(null); await sync([a, b]) } }
  }
  console.log('start', state('a', a), '|', state('b', b))
  // b's value crosses an ack of a's
  await Promise.all([a.append(null), b.append(b4a.from('b value'))])
  await sync([a, b])
  const rounds = +(process.argv[2] || 0)
  for (let r = 0; r < rounds; r++) {
    await Promise.all([a.append(null), b.append(null)]) // concurrent acks: they cross
    await sync([a, b])
  }
  console.log('value crossed an ack', state('a', a), '|', state('b', b))
  // now ack only as JS decides (the JS peer's loop: update, then ack() when ackable)
  for (let i = 0; i < 50; i++) {
    for (const x of [a, b]) { await x.update(); if (x.ackable) await x.ack() }
    await sync([a, b])
  }
  console.log('after 50 ack() rounds', state('a', a), '|', state('b', b))
  await a.append(null); await sync([a, b])
  console.log('after a forced ack from a', state('a', a), '|', state('b', b))
  await b.append(null); await sync([a, b])
  console.log('after a forced ack from b', state('a', a), '|', state('b', b))
  s1.destroy(); s2.destroy()
  await a.close(); await b.close()
  fs.rmSync(dir, { recursive: true, force: true })
}
main().catch((e) => { console.error(e); process.exit(1) })
