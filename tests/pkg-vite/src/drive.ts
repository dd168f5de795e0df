// Corestore and Hyperdrive through the packed package: a store with a fixed primary key (its
// named cores' keys are compared with JS corestore's by scripts/test-pkg.sh), a drive in it:
// put/get/entry/list/readdir/symlink/del, metadata and executables, reopened by name. Returns
// a summary that scripts/test-pkg.sh compares.
import { Corestore, Hyperdrive, toHex, type DriveEntry } from 'hyperpunch'

const text = (b: Uint8Array | null): string => (b === null ? 'null' : new TextDecoder().decode(b))

async function paths (it: AsyncIterable<DriveEntry>): Promise<string> {
  const out: string[] = []
  for await (const e of it) out.push(e.key)
  return out.join(',')
}

async function names (it: AsyncIterable<string>): Promise<string> {
  const out: string[] = []
  for await (const n of it) out.push(n)
  return out.join(',')
}

export async function driveCheck (): Promise<string> {
  const name = 'hyperpunch-vite-store'
  const primaryKey = '07'.repeat(32)
  await Corestore.delete(name)
  const store = new Corestore(name, { primaryKey })
  const notes = store.get({ name: 'notes' })
  await notes.ready()
  await notes.append(['one', 'two'])
  const drive = new Hyperdrive(store)
  await drive.ready()
  await drive.put('/docs/hello.txt', 'hello')
  await drive.put('/docs/run.sh', 'echo hi', { executable: true, metadata: { mode: 'x' } })
  await drive.put('/top.txt', new Uint8Array([104, 105]))
  await drive.symlink('/latest', '/docs/hello.txt')
  await drive.put('/gone.txt', 'bye')
  await drive.del('/gone.txt')
  const hello = text(await drive.get('/docs/hello.txt'))
  const run = await drive.entry('/docs/run.sh')
  const link = await drive.entry('/latest')
  const all = await paths(drive.list('/'))
  const docs = await paths(drive.list('/docs'))
  const root = await names(drive.readdir('/'))
  const gone = `${await drive.exists('/gone.txt')}/${text(await drive.get('/gone.txt'))}`
  let streamed = ''
  for await (const chunk of drive.createReadStream('/top.txt')) streamed += text(chunk)
  const version = drive.version
  const key = toHex(drive.key)
  const notesKey = toHex(notes.key)

  // Reopened by name: the same store, drive and files from IndexedDB.
  const again = new Corestore(name)
  const drive2 = new Hyperdrive(again)
  await drive2.ready()
  const notes2 = again.get({ name: 'notes' })
  await notes2.ready()
  const reopened = toHex(drive2.key) === key && text(await drive2.get('/docs/hello.txt')) === 'hello' &&
    (await paths(drive2.list('/'))) === all && notes2.length === 2 && text(await notes2.get(1)) === 'two'

  return `drive hello=${hello} run=${run?.value.executable}/${JSON.stringify(run?.value.metadata)} ` +
    `link=${link?.value.linkname} all=${all} docs=${docs} readdir=${root} gone=${gone} stream=${streamed} ` +
    `version=${version} writable=${drive.writable} reopened=${reopened} | store notes=${notesKey} db=${key}`
}
