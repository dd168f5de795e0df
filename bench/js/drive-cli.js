// What `hyperpunch drive mirror|serve|fetch|ls` do, as one node process each, with the pinned
// hyperdrive 13.3.4 / localdrive / mirror-drive / corestore, for the whole-process rows of the
// hyperdrive benchmark (bench/drive.sh):
//   node drive-cli.js mirror DIR STORE      folder DIR into the store's drive (JS `drives mirror`:
//                                           new MirrorDrive(new Localdrive(DIR), new Hyperdrive(store)));
//                                           prints the drive key
//   node drive-cli.js serve STORE           replicates the store to every TCP client on 127.0.0.1
//                                           (an ephemeral port, printed as `listening PORT KEY`)
//   node drive-cli.js fetch STORE KEY PORT  the whole drive, db and blobs, over one connection
//                                           (JS `drives download`, over TCP instead of hyperswarm)
//   node drive-cli.js ls STORE              every file, recursively, one path a line (drive.list('/'))
// Run with NODE_PATH=tests/interop/node_modules.
'use strict'
const net = require('net')
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const Localdrive = require('localdrive')
const MirrorDrive = require('mirror-drive')
const b4a = require('b4a')

const [cmd, ...args] = process.argv.slice(2)

async function main () {
  if (cmd === 'mirror') {
    const [dir, storage] = args
    const store = new Corestore(storage)
    const drive = new Hyperdrive(store)
    await drive.ready()
    const m = new MirrorDrive(new Localdrive(dir), drive)
    await m.done()
    process.stderr.write(`done: ${m.count.files} files compared (+${m.count.add} -${m.count.remove} ~${m.count.change}); drive version ${drive.version}\n`)
    process.stdout.write(b4a.toString(drive.key, 'hex') + '\n')
    await drive.close()
    await store.close()
  } else if (cmd === 'serve') {
    const [storage] = args
    const store = new Corestore(storage)
    const drive = new Hyperdrive(store)
    await drive.ready()
    const server = net.createServer((socket) => {
      socket.setNoDelay(true)
      const s = store.replicate(false)
      socket.pipe(s).pipe(socket)
      s.on('error', () => socket.destroy())
      socket.on('error', () => s.destroy())
    })
    server.listen(0, '127.0.0.1', () => {
      process.stdout.write(`listening ${server.address().port} ${b4a.toString(drive.key, 'hex')}\n`)
    })
  } else if (cmd === 'fetch') {
    const [storage, key, port] = args
    const store = new Corestore(storage)
    const socket = net.connect(Number(port), '127.0.0.1')
    socket.setNoDelay(true)
    const s = store.replicate(true)
    socket.pipe(s).pipe(socket)
    const drive = new Hyperdrive(store, b4a.from(key, 'hex'))
    await drive.ready()
    await drive.core.update({ wait: true })
    await drive.core.download({ start: 0, end: drive.core.length }).done()
    const blobs = await drive.getBlobs()
    await blobs.core.update({ wait: true })
    await blobs.core.download({ start: 0, end: blobs.core.length }).done()
    let files = 0
    for await (const e of drive.list('/')) if (e) files++ // eslint-disable-line
    process.stderr.write(`fetched drive ${key}: version ${drive.version}, ${files} files, ${blobs.core.byteLength} bytes of contents\n`)
    s.destroy()
    socket.destroy()
    await drive.close()
    await store.close()
  } else if (cmd === 'ls') {
    const [storage] = args
    const store = new Corestore(storage)
    const drive = new Hyperdrive(store)
    await drive.ready()
    let out = ''
    for await (const e of drive.list('/')) {
      out += e.key + '\n'
      if (out.length > 1 << 16) {
        if (!process.stdout.write(out)) await new Promise((resolve) => process.stdout.once('drain', resolve))
        out = ''
      }
    }
    process.stdout.write(out)
    await drive.close()
    await store.close()
  } else {
    throw new Error('usage: drive-cli.js mirror DIR STORE | serve STORE | fetch STORE KEY PORT | ls STORE')
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack) + '\n')
  process.exit(1)
})
