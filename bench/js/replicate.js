// Copy of /work/shared/reference/jsbench/replicate.js (the JS benchmark of the pinned reference),
// kept verbatim below this header so bench/run.sh works without the shared folder. Run it with
// NODE_PATH=tests/interop/node_modules (bench/run.sh does).
const Hypercore = require('hypercore')
const fs = require('fs')
;(async () => {
  const dir = '/tmp/hp-jsbench/s-repl'
  fs.rmSync(dir, { recursive: true, force: true })
  const a = new Hypercore(dir + '/a')
  await a.ready()
  const size = 4096, n = 25000
  const blocks = []
  for (let i = 0; i < n; i++) blocks.push(Buffer.alloc(size, i % 256))
  for (let i = 0; i < n; i += 1000) await a.append(blocks.slice(i, i + 1000))
  const b = new Hypercore(dir + '/b', a.key)
  await b.ready()
  const s1 = a.replicate(true), s2 = b.replicate(false)
  s1.pipe(s2).pipe(s1)
  const t = process.hrtime.bigint()
  await b.download({ start: 0, end: n }).done()
  const ms = Number(process.hrtime.bigint() - t) / 1e6
  console.log(`replicate (secret-stream, in-process) ${n} x ${size}B: ${ms.toFixed(0)} ms, ${(n * size / ms / 1000).toFixed(1)} MB/s, ${(n/ms*1000).toFixed(0)} blocks/s`)
  await a.close(); await b.close()
  process.exit(0)
})()
