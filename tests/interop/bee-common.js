// Shared by bee-ops.js and bee-peer.js: apply a list of operations to a JS hyperbee 2.27.3 and
// run queries on one, in the JSON shapes tests/tests/bee_interop.rs uses.
//
// Operations (keys and values are strings; the bee uses keyEncoding/valueEncoding 'utf-8'):
//   { op: 'put', key, value, sub?, sep? }      sub: a sub prefix (sep: its separator, default \0)
//   { op: 'put-null', key, sub?, sep? }        put(key) without a value
//   { op: 'del', key, sub?, sep? }
//   { op: 'cas-put', key, value, expect }      cas: write when the stored value === expect
//   { op: 'cas-del', key, expect }
//   { op: 'batch', ops: [put/put-null/del/cas-put/cas-del], sub?, sep?, flush: true|false }
//       flush false: the batch is closed (discarded) instead
// Queries:
//   ranges:    [{ sub?, sep?, gt?, gte?, lt?, lte?, reverse?, limit? }] -> [[seq, key, value], ...]
//   gets:      [{ sub?, sep?, key }] -> [seq, key, value] | null
//   histories: [{ gt?, gte?, lt?, lte?, reverse?, limit? }] -> [[type, seq, key, value], ...]
//   diffs:     [{ version, gt?, gte?, lt?, lte?, limit? }] -> [[left|null, right|null], ...]
//   versions:  [{ version, ranges: [...] }] -> the ranges on checkout(version)
'use strict'

const b4a = require('b4a')

function view (db, o) {
  if (o.sub === undefined || o.sub === null) return db
  return o.sep ? db.sub(o.sub, { sep: b4a.from(o.sep) }) : db.sub(o.sub)
}

async function applyOne (target, o) {
  switch (o.op) {
    case 'put': return target.put(o.key, o.value)
    case 'put-null': return target.put(o.key)
    case 'del': return target.del(o.key)
    case 'cas-put': return target.put(o.key, o.value, { cas: (prev) => prev.value === o.expect })
    case 'cas-del': return target.del(o.key, { cas: (prev) => prev.value === o.expect })
    default: throw new Error('unknown op ' + o.op)
  }
}

async function apply (db, ops) {
  for (const o of ops) {
    if (o.op === 'batch') {
      const b = view(db, o).batch()
      for (const x of o.ops) await applyOne(b, x)
      if (o.flush === false) await b.close()
      else await b.flush()
    } else {
      await applyOne(view(db, o), o)
    }
  }
}

const entry = (e) => e && [e.seq, e.key, e.value === undefined ? null : e.value]

function rangeOf (q) {
  const r = {}
  for (const k of ['gt', 'gte', 'lt', 'lte', 'reverse', 'limit']) if (q[k] !== undefined && q[k] !== null) r[k] = q[k]
  return r
}

async function ranges (db, qs) {
  const out = []
  for (const q of qs || []) {
    const rows = []
    for await (const e of view(db, q).createReadStream(rangeOf(q))) rows.push(entry(e))
    out.push(rows)
  }
  return out
}

async function queries (db, q) {
  const out = { ranges: await ranges(db, q.ranges), gets: [], histories: [], diffs: [], versions: [] }
  for (const g of q.gets || []) out.gets.push(entry(await view(db, g).get(g.key)))
  for (const h of q.histories || []) {
    const rows = []
    for await (const e of db.createHistoryStream(rangeOf(h))) rows.push([e.type, e.seq, e.key, e.value === undefined ? null : e.value])
    out.histories.push(rows)
  }
  for (const d of q.diffs || []) {
    const rows = []
    for await (const e of db.createDiffStream(d.version, rangeOf(d))) rows.push([entry(e.left), entry(e.right)])
    out.diffs.push(rows)
  }
  for (const v of q.versions || []) {
    const snap = db.checkout(v.version)
    out.versions.push(await ranges(snap, v.ranges))
    await snap.close()
  }
  return out
}

module.exports = { apply, queries }
