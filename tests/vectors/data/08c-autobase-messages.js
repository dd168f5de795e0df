// Golden vectors: every autobase 7.28.1 message (autobase/lib/messages.js), encoded by JS and
// decoded back by JS, one JSON object a line: { type, hex, value, encodes }.
// `encodes` is false for the legacy versions JS only decodes (their bytes are built by hand
// here from the legacy layouts and the value is what JS decodes them to).
// Run: NODE_PATH=../../interop/node_modules node 08c-autobase-messages.js > 08c-autobase-messages.out
const c = require('compact-encoding')
const m = require('autobase/lib/messages')

const k = (n) => Buffer.alloc(32, n)
const sig = (n) => Buffer.alloc(64, n)
const j = (o) => JSON.stringify(o, (key, v) => (v && v.type === 'Buffer') ? Buffer.from(v.data).toString('hex') : v)

function emit (type, enc, value) {
  const bytes = c.encode(enc, value)
  console.log(j({ type, hex: bytes.toString('hex'), value: c.decode(enc, bytes), encodes: true }))
}

function emitRaw (type, enc, bytes) {
  console.log(j({ type, hex: bytes.toString('hex'), value: c.decode(enc, bytes), encodes: false }))
}

const heads = [{ key: k(1), length: 1 }, { key: k(2), length: 300 }, { key: k(3), length: 70000 }]
const node = (h, batch, value) => ({ heads: h, batch, value })

// oplog v2
emit('oplog', m.OplogMessage, { version: 2, node: node([], 1, Buffer.from('hello')), checkpoint: null, digest: null, optimistic: false, trace: null })
emit('oplog', m.OplogMessage, { version: 2, node: node(heads, 3, null), checkpoint: null, digest: { pointer: 0, key: k(9) }, optimistic: false, trace: null })
emit('oplog', m.OplogMessage, { version: 2, node: node(heads.slice(0, 1), 1, Buffer.alloc(300, 7)), checkpoint: { system: null, encryption: null, user: null }, digest: { pointer: 5, key: null }, optimistic: true, trace: null })
emit('oplog', m.OplogMessage, {
  version: 2,
  node: node(heads.slice(1), 2, Buffer.from('x')),
  checkpoint: {
    system: { checkpointer: 0, checkpoint: { signature: sig(4), length: 12 } },
    encryption: { checkpointer: 3, checkpoint: null },
    user: [{ checkpointer: 0, checkpoint: { signature: sig(5), length: 100000 } }, { checkpointer: 2, checkpoint: null }]
  },
  digest: { pointer: 0, key: k(8) },
  optimistic: false,
  trace: { system: [1, 2, 3], encryption: [], user: [{ view: 0, blocks: [10, 300] }, { view: 2, blocks: [] }] }
})
emit('oplog', m.OplogMessage, { version: 2, node: node([], 1, null), checkpoint: { system: null, encryption: null, user: [] }, digest: null, optimistic: false, trace: { system: [], encryption: [5], user: [] } })

// oplog v1 (decode only): version, maxSupportedVersion, flags, [checkpointers, digest], node
{
  const nodeBytes = c.encode(m.OplogMessage, { version: 2, node: node(heads.slice(0, 2), 1, Buffer.from('v1')), checkpoint: null, digest: null, optimistic: false, trace: null })
  // strip the v2 version byte and the trailing flags byte to get the bare node
  const bare = nodeBytes.subarray(1, nodeBytes.length - 1)
  const st = c.state()
  const parts = []
  const u = (n) => parts.push(c.encode(c.uint, n))
  u(1); u(2); u(1) // version 1, maxSupportedVersion 2, flags: checkpointer
  u(2) // two checkpointers
  u(0); parts.push(sig(6)); u(7) // checkpointer 0 + checkpoint
  u(4) // pointer 4
  u(0); parts.push(k(10)) // digest pointer 0 + key
  parts.push(bare)
  void st
  emitRaw('oplog', m.OplogMessage, Buffer.concat(parts))
  const p2 = [c.encode(c.uint, 1), c.encode(c.uint, 1), c.encode(c.uint, 2), bare]
  emitRaw('oplog', m.OplogMessage, Buffer.concat(p2))
  // v0: version, flags, [digestV0, checkpointers], node, additional, [maxSupportedVersion]
  const p3 = [c.encode(c.uint, 0), c.encode(c.uint, 1),
    c.encode(c.uint, 0), c.encode(c.uint, 1), c.encode(c.uint, 3), k(11), k(12), // digest v0: pointer 0 + 1 indexer
    c.encode(c.uint, 1), c.encode(c.uint, 0), sig(13), c.encode(c.uint, 9), // one checkpointer
    bare, c.encode(c.uint, 0), c.encode(c.uint, 3), k(14), c.encode(c.uint, 77), // additional pointer 0, flags 3
    c.encode(c.uint, 1)]
  emitRaw('oplog', m.OplogMessage, Buffer.concat(p3))
  const p4 = [c.encode(c.uint, 0), c.encode(c.uint, 0), bare, c.encode(c.uint, 2)]
  emitRaw('oplog', m.OplogMessage, Buffer.concat(p4))
}

// info
emit('info', m.Info, { version: 1, members: 2, pendingIndexers: [k(3)], indexers: heads.slice(0, 1), heads, views: [{ key: k(20), length: 5 }], encryptionLength: 0, entropy: null })
emit('info', m.Info, { version: 2, members: 300, pendingIndexers: [], indexers: heads, heads: [], views: [], encryptionLength: 4, entropy: k(21) })
emit('info', m.Info, { version: 2, members: 0, pendingIndexers: [], indexers: [], heads: [], views: [], encryptionLength: 0, entropy: null })
emit('info', m.Info, { version: 0, members: 1, pendingIndexers: [], indexers: [], heads: heads.slice(2), views: [], encryptionLength: 0, entropy: null })

// member
for (const [isIndexer, isRemoved, length] of [[false, false, 0], [true, false, 1], [false, true, 65536], [true, true, 2 ** 40]]) {
  emit('member', m.Member, { isIndexer, isRemoved, length })
}

// boot record
emit('boot', m.BootRecord, { version: 3, key: k(30), systemLength: 17, indexersUpdated: true, fastForwarding: false, recoveries: 0 })
emit('boot', m.BootRecord, { version: 1, key: k(31), systemLength: 0, indexersUpdated: false, fastForwarding: true, recoveries: 3 })
emitRaw('boot', m.BootRecord, Buffer.concat([c.encode(c.uint, 0), k(32), c.encode(c.uint, 5), c.encode(c.uint, 1), k(33), c.encode(c.uint, 2)]))

// wakeup
emit('wakeup', m.Wakeup, { version: 1, type: 1, writers: heads })
emit('wakeup', m.Wakeup, { version: 1, type: 0, writers: null })
emit('wakeup', m.Wakeup, { version: 0, type: 1, writers: [{ key: k(40) }, { key: k(41) }] })

// linearizer update, encryption descriptor, manifest data
emit('linearizer-update', m.LinearizerUpdate, { key: k(50), length: 3, batch: 2, systemLength: 1000, indexers: true })
emit('linearizer-update', m.LinearizerUpdate, { key: k(51), length: 0, batch: 0, systemLength: 0, indexers: false })
emit('encryption-descriptor', m.EncryptionDescriptor, { type: 1, payload: Buffer.from('payload') })
emit('encryption-descriptor', m.EncryptionDescriptor, { type: 0, payload: null })
emit('manifest-data', m.ManifestData, { version: 1, legacyBlocks: 0, namespace: k(60) })
emit('manifest-data', m.ManifestData, { version: 0, legacyBlocks: 12, namespace: null })
