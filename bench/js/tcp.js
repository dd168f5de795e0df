// Copy of /work/shared/reference/jsbench/tcp.js (the JS benchmark of the pinned reference),
// kept verbatim below this header so bench/run.sh works without the shared folder. Run it with
// NODE_PATH=tests/interop/node_modules (bench/run.sh does).
const net = require('net')
const total = 256 * 1024 * 1024
const srv = net.createServer((s) => { let got = 0; const t = process.hrtime.bigint(); s.on('data', d => { got += d.length; if (got >= total) { const ms = Number(process.hrtime.bigint() - t) / 1e6; console.log(`tcp loopback ${total/1048576} MiB: ${ms.toFixed(0)} ms, ${(total/ms/1000).toFixed(0)} MB/s`); s.destroy(); srv.close() } }) })
srv.listen(0, '127.0.0.1', () => { const c = net.connect(srv.address().port, '127.0.0.1'); const chunk = Buffer.alloc(65536, 7); let sent = 0; function w () { while (sent < total) { sent += chunk.length; if (!c.write(chunk)) return c.once('drain', w) } } c.on('connect', w); c.on('error', () => {}) })
