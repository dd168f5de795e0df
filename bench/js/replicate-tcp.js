// Hypercore replication over TCP on 127.0.0.1 with secret-stream, one side of it, for
// bench/run.sh (Rust reading from JS, JS reading from Rust, JS reading from JS). Run it with
// NODE_PATH=tests/interop/node_modules.
//
//   node replicate-tcp.js serve TAG BLOCKS [FILE]
//     create a core of BLOCKS blocks of 64 KiB (block i filled with i % 256, or the i-th 64 KiB
//     of FILE when given; appended 16 at a time), print `listening PORT KEYHEX`, replicate it to the first client, exit once that
//     connection closes, printing `BENCH TAG_server_cpu_s X` (CPU seconds while serving).
//   node replicate-tcp.js fetch TAG PORT KEYHEX BLOCKS
//     download blocks 0..BLOCKS of KEYHEX from 127.0.0.1:PORT, timed from the connect to the last
//     block stored; print `BENCH TAG_mb_s X`, `BENCH TAG_in_process_s SECONDS` and
//     `BENCH TAG_reader_cpu_s X`, then close.
// Scratch data goes to a fresh folder under /tmp/hp-jsbench, removed on exit.
const Hypercore = require('hypercore')
const SecretStream = require('@hyperswarm/secret-stream')
const net = require('net')
const fs = require('fs')
const path = require('path')

const SIZE = 65536
const [mode, tag] = process.argv.slice(2)
fs.mkdirSync('/tmp/hp-jsbench', { recursive: true })
const dir = fs.mkdtempSync(path.join('/tmp/hp-jsbench', 'repl-tcp-'))
const cpuSeconds = (since) => { const u = process.cpuUsage(since); return (u.user + u.system) / 1e6 }
function done (code) {
  fs.rmSync(dir, { recursive: true, force: true })
  process.exit(code)
}
setTimeout(() => { console.error('replicate-tcp.js: deadline reached'); done(2) }, 600000).unref()

async function serve (blocks, file) {
  const core = new Hypercore(dir)
  await core.ready()
  const data = file ? fs.readFileSync(file) : null
  if (data && data.length < blocks * SIZE) throw new Error(`${file} holds fewer than ${blocks} blocks`)
  for (let i = 0; i < blocks; i += 16) {
    const batch = []
    for (let b = i; b < Math.min(i + 16, blocks); b++) {
      batch.push(data ? data.subarray(b * SIZE, (b + 1) * SIZE) : Buffer.alloc(SIZE, b % 256))
    }
    await core.append(batch)
  }
  const server = net.createServer((socket) => {
    server.close()
    socket.setNoDelay(true)
    const cpu = process.cpuUsage()
    const s = new SecretStream(false, socket)
    s.on('error', () => {})
    s.on('close', async () => {
      console.log(`BENCH ${tag}_server_cpu_s ${cpuSeconds(cpu).toFixed(3)}`)
      await core.close()
      done(0)
    })
    core.replicate(s)
  })
  server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port} ${core.key.toString('hex')}`))
}

async function fetch (port, key, blocks) {
  const core = new Hypercore(dir, Buffer.from(key, 'hex'))
  await core.ready()
  const cpu = process.cpuUsage()
  const t = process.hrtime.bigint()
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  const s = new SecretStream(true, socket)
  s.on('error', () => {})
  core.replicate(s)
  // update() resolves at once when no peer can upgrade us yet: yield to I/O between tries.
  while (core.length < blocks) {
    await core.update({ wait: true })
    if (core.length < blocks) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await core.download({ start: 0, end: blocks }).done()
  const ms = Number(process.hrtime.bigint() - t) / 1e6
  const used = cpuSeconds(cpu)
  const bytes = blocks * SIZE
  console.log(`fetched ${blocks} x ${SIZE}B over TCP: ${ms.toFixed(0)} ms, ${(bytes / ms / 1000).toFixed(1)} MB/s, ${used.toFixed(2)} CPU s`)
  console.log(`BENCH ${tag}_mb_s ${(bytes / ms / 1000).toFixed(3)}`)
  console.log(`BENCH ${tag}_in_process_s ${(ms / 1000).toFixed(4)}`)
  console.log(`BENCH ${tag}_reader_cpu_s ${used.toFixed(3)}`)
  s.end()
  s.on('close', async () => { await core.close(); done(0) })
}

const main = mode === 'serve'
  ? serve(Number(process.argv[4]), process.argv[5])
  : fetch(Number(process.argv[4]), process.argv[5], Number(process.argv[6]))
main.catch((err) => { console.error(err); done(1) })
