// Copy of /work/shared/reference/jsbench/append.js (the JS benchmark of the pinned reference),
// kept verbatim below this header so bench/run.sh works without the shared folder. Run it with
// NODE_PATH=tests/interop/node_modules (bench/run.sh does).
const Hypercore = require('hypercore')
const fs = require('fs')
;(async () => {
  for (const [size, n, batch] of [[64, 100000, 1000], [4096, 20000, 100], [64, 5000, 1]]) {
    const dir = '/tmp/hp-jsbench/s-append'
    fs.rmSync(dir, { recursive: true, force: true })
    const c = new Hypercore(dir)
    await c.ready()
    const blocks = []
    for (let i = 0; i < n; i++) blocks.push(Buffer.alloc(size, i % 256))
    const t = process.hrtime.bigint()
    for (let i = 0; i < n; i += batch) await c.append(batch === 1 ? blocks[i] : blocks.slice(i, i + batch))
    const ms = Number(process.hrtime.bigint() - t) / 1e6
    console.log(`append size=${size} n=${n} batch=${batch}: ${ms.toFixed(0)} ms, ${(n / ms * 1000).toFixed(0)} blocks/s, ${(n * size / ms / 1000).toFixed(1)} MB/s`)
    const t2 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await c.get(i)
    const ms2 = Number(process.hrtime.bigint() - t2) / 1e6
    console.log(`  get all: ${ms2.toFixed(0)} ms, ${(n / ms2 * 1000).toFixed(0)} gets/s`)
    await c.close()
  }
})()
