// Corestore 7 key derivation, driven by tests/tests/corestore_interop.rs.
//
// Input (stdin, JSON): { primaryKey: hex32, manifestVersion?: n,
//   cases: [ { namespaces: [string, ...], name: string } ] }
// For each case: store.namespace(ns0).namespace(ns1)... .get({ name }) and createKeyPair(name).
// Output: { cases: [ { publicKey, key, discoveryKey, manifestVersion, keyPairPublicKey, ns } ] }
// (hex). The store lives in a temporary directory, removed at the end.
'use strict'

const Corestore = require('corestore')
const b4a = require('b4a')
const fs = require('fs')
const os = require('os')
const path = require('path')

const hex = (b) => b4a.toString(b, 'hex')

async function main () {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-cs-keys-'))
  try {
    const store = new Corestore(dir, {
      primaryKey: b4a.from(cfg.primaryKey, 'hex'),
      unsafe: true,
      manifestVersion: cfg.manifestVersion
    })
    await store.ready()
    const out = []
    for (const c of cfg.cases) {
      let s = store
      for (const ns of c.namespaces) s = s.namespace(ns)
      const core = s.get({ name: c.name })
      await core.ready()
      const kp = await s.createKeyPair(c.name)
      out.push({
        ns: hex(s.ns),
        publicKey: hex(core.keyPair.publicKey),
        keyPairPublicKey: hex(kp.publicKey),
        key: hex(core.key),
        discoveryKey: hex(core.discoveryKey),
        manifestVersion: core.manifest.version
      })
      await core.close()
    }
    await store.close()
    process.stdout.write(JSON.stringify({ cases: out }))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
