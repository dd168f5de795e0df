// The keys JS corestore 7 and hyperdrive 13 give for a primary key, for the npm package's
// browser test (scripts/test-pkg.sh compares the page's Corestore and Hyperdrive with them):
// prints `notes=<key of store.get({ name: 'notes' })> db=<key of new Hyperdrive(store)>` (hex).
//
//   node store-drive-keys.js PRIMARY_KEY_HEX
'use strict'
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const b4a = require('b4a')
const fs = require('fs')
const os = require('os')
const path = require('path')

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-store-drive-keys-'))
  try {
    const store = new Corestore(dir, { primaryKey: b4a.from(process.argv[2], 'hex'), unsafe: true })
    const notes = store.get({ name: 'notes' })
    await notes.ready()
    const drive = new Hyperdrive(store)
    await drive.ready()
    console.log(`notes=${b4a.toString(notes.key, 'hex')} db=${b4a.toString(drive.key, 'hex')}`)
    await drive.close()
    await store.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
