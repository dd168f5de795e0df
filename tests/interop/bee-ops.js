// A JS hyperbee 2.27.3 (keyEncoding/valueEncoding 'utf-8') on a hypercore with a fixed key pair:
// apply operations, then dump every block, the tree hash and query results.
//
// stdin: { seed: hex32, ops: [...], queries: {...} } (shapes in bee-common.js)
// stdout: { key, length, treeHash, blocks: [hex], results: {...} }
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')
const hcrypto = require('hypercore-crypto')
const b4a = require('b4a')
const { apply, queries } = require('./bee-common')

const hex = (b) => b4a.toString(b, 'hex')

async function main () {
  const input = JSON.parse(fs.readFileSync(0, 'utf-8'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bee-ops-'))
  try {
    const core = new Hypercore(dir, { keyPair: hcrypto.keyPair(b4a.from(input.seed, 'hex')) })
    const db = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
    await db.ready()
    await apply(db, input.ops || [])
    const blocks = []
    for (let i = 0; i < core.length; i++) blocks.push(hex(await core.get(i)))
    const results = await queries(db, input.queries || {})
    process.stdout.write(JSON.stringify({
      key: hex(core.key),
      length: core.length,
      treeHash: hex(await core.treeHash()),
      blocks,
      results
    }))
    await db.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => { console.error(e); process.exit(1) })
