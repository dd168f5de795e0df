// Copy of /work/shared/reference/jsbench/udx.js (the JS benchmark of the pinned reference),
// kept verbatim below this header so bench/run.sh works without the shared folder. Run it with
// NODE_PATH=tests/interop/node_modules (bench/run.sh does).
const UDX = require('udx-native')
;(async () => {
  const u = new UDX()
  const sa = u.createSocket(), sb = u.createSocket()
  sa.bind(0, '127.0.0.1'); sb.bind(0, '127.0.0.1')
  const a = u.createStream(1), b = u.createStream(2)
  a.connect(sa, 2, sb.address().port, '127.0.0.1')
  b.connect(sb, 1, sa.address().port, '127.0.0.1')
  const total = 256 * 1024 * 1024
  const chunk = Buffer.alloc(65536, 7)
  let got = 0
  const t = process.hrtime.bigint()
  b.on('data', (d) => { got += d.length; if (got >= total) { const ms = Number(process.hrtime.bigint() - t) / 1e6; console.log(`udx loopback ${total/1048576} MiB: ${ms.toFixed(0)} ms, ${(total / ms / 1000).toFixed(0)} MB/s`); a.destroy(); b.destroy(); sa.close(); sb.close() } })
  let sent = 0
  function write () { while (sent < total) { sent += chunk.length; if (!a.write(chunk)) return a.once('drain', write) } }
  write()
})()
