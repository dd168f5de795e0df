// Replication over a Swarm connection through the packed package: a JS hyperswarm peer seeds a
// hyperdrive (and a named core "notes") in its corestore; the page joins the drive's discovery
// key through the relay, replicates its Corestore on each connection (`store.replicate(conn)`),
// opens the drive by key and reads every file, and a reader of "notes" by key; then a lone
// Hypercore of "notes" replicated over another swarm's connection (`core.replicate(conn)`).
// Before reading, and after: `has`, `downloadDiff`, `download` and `clear` of the drive, as
// tests/interop/pkg-api-ops.js does them (its `drive-replica` line) on a JS drive of the same
// files replicated between two JS stores.
// Returns a summary that scripts/test-pkg.sh compares.
import { Corestore, Hypercore, Hyperdrive, Swarm, discoveryKey, toHex } from 'hyperpunch'

export async function replicateCheck (relay: string, driveKey: string, notesKey: string, files: number): Promise<string> {
  const name = 'hyperpunch-vite-replica'
  await Corestore.delete(name)
  const store = new Corestore(name)
  await store.ready()
  const swarm = new Swarm({ relay })
  const replications: Array<Promise<void>> = []
  swarm.on('connection', (conn) => { replications.push(store.replicate(conn).catch(() => {})) })
  // Opening by key waits (up to waitMs) for a peer to send the db core's manifest.
  const drive = new Hyperdrive(store, driveKey, { waitMs: 120000 })
  const flushed = await swarm.join(await discoveryKey(driveKey)).flushed()
  await drive.ready()
  await drive.update()
  const has = (p: string): Promise<boolean> => drive.has(p)
  const before = `${await has('/f/3.txt')}/${await has('/f/')}`
  const half = Math.floor(files / 2)
  const diffFiles = await drive.downloadDiff(half + 1, '/f')
  const afterDiff = [await has('/f/0.txt'), await has(`/f/${half - 1}.txt`), await has(`/f/${half}.txt`), await has(`/f/${files - 1}.txt`)].join(',')
  const downloaded = await drive.download('/f/3.txt')
  const afterDownload = `${await has('/f/3.txt')}/${await has('/f/4.txt')}`
  // A monitor of one file not downloaded yet (JS `drive.monitor(name)`), through the reads.
  const monitor = drive.monitor('/f/5.txt')
  await monitor.ready()
  let updates = 0
  monitor.on('update', () => { updates++ })
  const got: string[] = []
  for (let i = 0; i < files; i++) {
    const data = await drive.get(`/f/${i}.txt`)
    got.push(data === null ? 'null' : new TextDecoder().decode(data))
  }
  const ok = got.every((t, i) => t === `file ${i}`)
  const m = monitor.downloadStats
  const monitored = `${m.blocks}/${m.monitoringBytes}/${m.targetBlocks}/${m.targetBytes}/${m.percentage}/${monitor.uploadStats.blocks}`
  await monitor.close()
  const allRead = await has('/f/')
  const cleared = JSON.stringify(await drive.clear('/f/1.txt'))
  const afterClear = `${await has('/f/1.txt')}/${await has('/f/')}/${await has('/f/2.txt')}`
  const missing = `${JSON.stringify(await drive.clear('/nope', { diff: true }))}/${JSON.stringify(await drive.clear('/nope'))}`
  const refetched = await drive.get('/f/1.txt')
  const again = `${refetched === null ? 'null' : new TextDecoder().decode(refetched)}/${await has('/f/1.txt')}/${await has('/f/')}`
  const compared = `drive-replica v=${drive.version} has=${before} diff=${afterDiff} download=${afterDownload} read=${allRead} ` +
    `clear=${cleared} after=${afterClear} missing=${missing} again=${again} monitor=${monitored}`
  // Page-only: the counts (files downloaded; blocks cleared, which JS hyperdrive 13 on
  // hypercore 11 gives as 0): one block for /f/2.txt, then the other files' blocks.
  const one = await drive.clear('/f/2.txt', { diff: true })
  const rest = await drive.clearAll({ diff: true })
  const counts = `counts=${diffFiles}/${downloaded}/${one.blocks}/${rest.blocks}/${await has('/f/0.txt')} monitor-updates=${updates}`
  let listed = 0
  for await (const e of drive.list('/f')) if (e.value.blob !== null) listed++
  const notes = store.get({ key: notesKey })
  const note1 = await notes.get(1)
  const summary = `replica flushed=${flushed} drive=${toHex(drive.key).slice(0, 8)} files=${got.length} ok=${ok} listed=${listed} ` +
    `writable=${drive.writable} note1=${note1 === null ? 'null' : new TextDecoder().decode(note1)}`
  await swarm.destroy()

  // A lone Hypercore replicated over a connection of another swarm (`core.replicate(conn)`):
  // the JS peer replicates its whole store on it, the page asks for "notes" alone.
  await Hypercore.delete('hyperpunch-vite-notes')
  const core = new Hypercore('hyperpunch-vite-notes', notesKey)
  await core.ready()
  const appended = new Promise<void>((resolve) => { core.on('append', () => resolve()) })
  const swarm2 = new Swarm({ relay })
  swarm2.on('connection', (conn) => { core.replicate(conn).catch(() => {}) })
  await swarm2.join(await discoveryKey(driveKey), { server: false }).flushed()
  if (core.length < 2) await appended
  const block = await core.get(1)
  const lone = `core length=${core.length} block1=${block === undefined ? 'none' : new TextDecoder().decode(block)}`
  await swarm2.destroy()
  return `${summary} ${lone} | ${compared} | ${counts}`
}
