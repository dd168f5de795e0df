// Live interop driver for hypercore's data layer (driven by tests/tests/interop_hypercore.rs).
//
// Input: one JSON document, on argv[2] or (if absent) on stdin. Either a single job or an array of
// jobs; the output is one JSON document (an object, or an array in the same order) on stdout.
//
// Job "build": create a writer core from a seed and run operations on it.
//   { "mode": "build", "seed": hex32, "compat": bool, "encryptionKey": hex32 | null,
//     "ops": [ { "append": [hex, ...] }
//            | { "generate": { "count": n, "size": s, "fill": p, "batch": b } }
//            | { "truncate": len }
//            | { "snapshot": true } ],    // take a snapshot session (core.snapshot()) here
//     "proofs": [ { "block"?: {index,nodes}, "hash"?: {index,nodes}, "seek"?: {bytes,padding},
//                   "upgrade"?: {start,length},
//                   "snapshot"?: true } ] }   // proofs are taken after the last op, from the
//                                           // last snapshot session with `snapshot`
//   Generated block k (0-based within that op) is `size` bytes, all equal to (fill + k) & 0xff;
//   they are appended `batch` at a time (default: all at once).
//   Output: { key, discoveryKey, manifest (encoded), publicKey, compat, states: [ one per op:
//     { length, byteLength, treeByteLength, fork, treeHash, signature } ], proofs: [ { data } ] }
//   where `signature` is the stored signature as it goes on the wire (upgrade.signature) and each
//   proof is the `wire.data` encoding (request = position + 1, fork = core fork, no manifest).
//
// Job "verify": apply proofs (wire.data encodings, e.g. produced by Rust) on a reader core.
//   { "mode": "verify", "key": hex32, "manifest": hex | null, "compat": bool,
//     "encryptionKey": hex32 | null,
//     "proofs": [ { "data": hex, "fresh"?: bool } ] }   // fresh: start a new, empty reader first
//   A proof whose fork differs from the reader's is applied as a reorg first (as the replicator
//   does), then verified. Output: { results: [ { ok, error?, length, fork, byteLength, treeHash,
//   block?: { index, value }, held: [index, ...] } ] } where block.value is the (decrypted) block
//   read back and held lists the blocks the reader has afterwards.
//
// Storage is a temporary directory per core, always removed; the script exits by itself.
'use strict'

const Hypercore = require('hypercore')
const hcrypto = require('hypercore-crypto')
const Verifier = require('hypercore/lib/verifier')
const m = require('hypercore/lib/messages')
const { MerkleTree } = require('hypercore/lib/merkle-tree')
const c = require('compact-encoding')
const fs = require('fs')
const os = require('os')
const path = require('path')

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))
const unhex = (s) => Buffer.from(s, 'hex')

const dirs = []
function tmpdir () {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-interop-'))
  dirs.push(d)
  return d
}
function cleanup () {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
}

function generated ({ count, size, fill = 0 }) {
  const out = new Array(count)
  for (let k = 0; k < count; k++) out[k] = Buffer.alloc(size, (fill + k) & 0xff)
  return out
}

async function stateOf (core) {
  return {
    length: core.length,
    byteLength: core.byteLength,
    treeByteLength: core.state.byteLength,
    fork: core.fork,
    treeHash: hex(await core.treeHash()),
    signature: hex(core.core.state.signature)
  }
}

// As in vectors/data/03-proofs.js: MerkleTree.proof directly (core.proof flushes the read batch
// before seek lookups are queued), plus the stored block for block proofs.
async function proofOf (core, req) {
  const rx = core.state.storage.read()
  const pp = MerkleTree.proof(core.state, rx, req)
  const blockP = req.block ? rx.getBlock(req.block.index) : null
  const proof = await pp
  rx.tryFlush()
  const settled = await proof.settle()
  if (blockP) settled.block.value = await blockP
  return settled
}

async function build (job) {
  const keyPair = hcrypto.keyPair(unhex(job.seed))
  const opts = { keyPair, compat: !!job.compat }
  if (job.encryptionKey) opts.encryption = { key: unhex(job.encryptionKey) }
  const core = new Hypercore(tmpdir(), opts)
  await core.ready()
  let snap = null
  try {
    const states = []
    for (const op of job.ops || []) {
      if (op.append) {
        await core.append(op.append.map(unhex))
      } else if (op.generate) {
        const blocks = generated(op.generate)
        const batch = op.generate.batch || blocks.length || 1
        for (let i = 0; i < blocks.length; i += batch) await core.append(blocks.slice(i, i + batch))
      } else if (op.truncate !== undefined) {
        await core.truncate(op.truncate)
      } else if (op.snapshot) {
        if (snap) await snap.close()
        snap = core.snapshot()
        await snap.ready()
      } else {
        throw new Error('unknown op ' + JSON.stringify(op))
      }
      states.push(await stateOf(core))
    }
    const proofs = []
    let request = 0
    for (const req of job.proofs || []) {
      request++
      try {
        const { snapshot, ...rest } = JSON.parse(JSON.stringify(req))
        // A snapshot session proves from its own state (JS `session.proof()`).
        const from = snapshot ? snap : core
        const p = await proofOf(from, rest)
        const msg = { request, fork: from.fork, block: p.block, hash: p.hash, seek: p.seek, upgrade: p.upgrade, manifest: null }
        proofs.push({ data: hex(c.encode(m.wire.data, msg)) })
      } catch (e) {
        proofs.push({ error: e.code || e.message })
      }
    }
    return {
      key: hex(core.key),
      discoveryKey: hex(core.discoveryKey),
      publicKey: hex(keyPair.publicKey),
      compat: core.core.compat,
      manifest: hex(Verifier.encodeManifest(core.manifest)),
      states,
      proofs
    }
  } finally {
    if (snap) await snap.close()
    await core.close()
  }
}

async function verify (job) {
  const manifest = job.manifest ? c.decode(m.manifest, unhex(job.manifest)) : null
  const opts = { key: unhex(job.key), compat: !!job.compat }
  if (job.encryptionKey) opts.encryption = { key: unhex(job.encryptionKey) }
  let reader = null
  const results = []
  try {
    for (const item of job.proofs) {
      if (reader === null || item.fresh) {
        if (reader) await reader.close()
        reader = new Hypercore(tmpdir(), opts)
        await reader.ready()
      }
      const r = {}
      try {
        const data = c.decode(m.wire.data, unhex(item.data))
        const proof = { fork: data.fork, block: data.block, hash: data.hash, seek: data.seek, upgrade: data.upgrade, manifest: data.manifest || manifest }
        let ok = true
        if (proof.fork !== reader.fork) {
          if (!proof.upgrade) throw new Error('proof for another fork without an upgrade')
          const batch = await reader.core.verifyReorg(proof)
          ok = await reader.core.reorg(batch)
        }
        if (ok) ok = await reader.applyProof(proof)
        r.ok = !!ok
        if (ok && proof.block) {
          r.block = { index: proof.block.index, value: hex(await reader.get(proof.block.index, { wait: false })) }
        }
      } catch (e) {
        r.ok = false
        r.error = e.code || e.message
      }
      r.length = reader.length
      r.fork = reader.fork
      r.byteLength = reader.byteLength
      r.treeHash = hex(hcrypto.tree(await MerkleTree.getRoots(reader.state, reader.length)))
      r.held = []
      for (let i = 0; i < reader.length; i++) if (await reader.has(i)) r.held.push(i)
      results.push(r)
    }
  } finally {
    if (reader) await reader.close()
  }
  return { results }
}

async function run (job) {
  try {
    if (job.mode === 'build') return await build(job)
    if (job.mode === 'verify') return await verify(job)
    throw new Error('unknown mode ' + job.mode)
  } finally {
    cleanup()
  }
}

async function readInput () {
  if (process.argv[2]) return process.argv[2]
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

async function main () {
  const input = JSON.parse(await readInput())
  const out = []
  for (const job of Array.isArray(input) ? input : [input]) out.push(await run(job))
  const text = JSON.stringify(Array.isArray(input) ? out : out[0]) + '\n'
  // Exit only once stdout is flushed: writes to a pipe are asynchronous.
  await new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())))
}

main().then(
  () => process.exit(0),
  (e) => {
    cleanup()
    console.error(e && e.stack ? e.stack : e)
    process.exit(1)
  }
)
