// One end of a udx-native stream in a process of its own, for the network-namespace run of
// bench/run.sh (the same work as `bench_udx recv` / `bench_udx send`). Run it with
// NODE_PATH=tests/interop/node_modules.
//
//   node udx-peer.js recv TAG LOCAL_IP LOCAL_PORT REMOTE_IP REMOTE_PORT MIB
//     stream 2 (peer stream 1): receive MIB MiB, print `BENCH TAG_mb_s X` (first to last byte)
//   node udx-peer.js send LOCAL_IP LOCAL_PORT REMOTE_IP REMOTE_PORT MIB
//     stream 1 (peer stream 2): send MIB MiB in 64 KiB writes, end, exit once closed
const UDX = require('udx-native')

const args = process.argv.slice(2)
const mode = args[0]
const tag = mode === 'recv' ? args[1] : null
const [lip, lport, rip, rport, mib] = mode === 'recv' ? args.slice(2) : args.slice(1)
const total = Number(mib) * 1024 * 1024
setTimeout(() => { console.error('udx-peer.js: deadline reached'); process.exit(2) }, 300000).unref()

const u = new UDX()
const socket = u.createSocket()
socket.bind(Number(lport), lip)
const stream = u.createStream(mode === 'recv' ? 2 : 1)
stream.connect(socket, mode === 'recv' ? 1 : 2, Number(rport), rip)
stream.on('error', (err) => { console.error(err); process.exit(1) })
stream.on('close', () => socket.close())

if (mode === 'recv') {
  let got = 0
  let t = null
  const cpu = process.cpuUsage()
  stream.on('data', (d) => {
    if (t === null) t = process.hrtime.bigint()
    got += d.length
    if (got >= total) {
      const ms = Number(process.hrtime.bigint() - t) / 1e6
      const u = process.cpuUsage(cpu)
      console.log(`received ${mib} MiB: ${ms.toFixed(0)} ms, ${(total / ms / 1000).toFixed(1)} MB/s, ${((u.user + u.system) / 1e6).toFixed(2)} CPU s`)
      console.log(`BENCH ${tag}_mb_s ${(total / ms / 1000).toFixed(3)}`)
    }
  })
  stream.on('end', () => stream.end())
  console.log('ready')
} else {
  const chunk = Buffer.alloc(65536, 7)
  let sent = 0
  const write = () => {
    while (sent < total) {
      sent += chunk.length
      if (!stream.write(chunk)) return stream.once('drain', write)
    }
    stream.end()
  }
  write()
  stream.resume()
}
