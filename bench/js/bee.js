// The JS half of the hyperbee benchmark (bench/run.sh): hyperbee 2.27.3 on hypercore's default
// storage (RocksDB), keyEncoding 'utf-8', valueEncoding 'binary' (32-byte values). Extends the
// reference jsbench/bee.js with a range-scan row. Same work as bench_bee.rs `compare`:
//   1. SINGLE single puts of permuted keys 'key-NNNNNNNN'
//   2. BATCHED puts of 'bkey-NNNNNNNN' in batches of 1000
//   3. GETS gets of keys put in 2, in a fixed pseudo-random order
//   4. a full scan of every entry
//   5. RANGES ranges of 100 entries from pseudo-random keys (gte + limit)
// Prints one `BENCH name value` line per figure. Run with NODE_PATH=tests/interop/node_modules.
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')
const fs = require('fs')
const os = require('os')
const path = require('path')

const SINGLE = Number(process.env.BEE_SINGLE || 10000)
const BATCHED = Number(process.env.BEE_BATCHED || 100000)
const GETS = 20000
const RANGES = 200

const pad = (n) => String(n).padStart(8, '0')
const bench = (name, value) => console.log(`BENCH ${name} ${value.toFixed(3)}`)

// Run `f` (one pass of `n` operations) until at least `min` seconds passed; report the rate per
// wall-clock second as `name` and per CPU second of the process (every thread, RocksDB's too)
// as `name`_cpu (bench_bee.rs does the same).
async function phase (name, n, min, f) {
  const t = process.hrtime.bigint()
  const c = process.cpuUsage()
  let done = 0
  do {
    await f()
    done += n
  } while (Number(process.hrtime.bigint() - t) / 1e9 < min)
  const wall = Number(process.hrtime.bigint() - t) / 1e9
  const cpu = process.cpuUsage(c)
  bench(name, done / wall)
  bench(name.replace(/_ops_s$/, '_cpu_ops_s'), done / Math.max(0.01, (cpu.user + cpu.system) / 1e6))
}

;(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-jsbench-bee-'))
  try {
    const core = new Hypercore(dir)
    const db = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'binary' })
    await db.ready()
    const val = Buffer.alloc(32, 1)

    await phase('bee_put_single_ops_s', SINGLE, 0, async () => {
      for (let i = 0; i < SINGLE; i++) await db.put('key-' + pad((i * 7919) % SINGLE), val)
    })
    await phase('bee_put_batch_ops_s', BATCHED, 0, async () => {
      for (let i = 0; i < BATCHED; i += 1000) {
        const b = db.batch()
        for (let j = i; j < i + 1000; j++) await b.put('bkey-' + pad((j * 7919) % BATCHED), val)
        await b.flush()
      }
    })
    await phase('bee_get_ops_s', GETS, 2, async () => {
      for (let i = 0; i < GETS; i++) {
        const e = await db.get('bkey-' + pad((i * 104729) % BATCHED))
        if (!e) throw new Error('missing key')
      }
    })
    await phase('bee_scan_ops_s', SINGLE + BATCHED, 2, async () => {
      let n = 0
      for await (const e of db.createReadStream()) n += e.value.length > 0 ? 1 : 0
      if (n !== SINGLE + BATCHED) throw new Error('scan saw ' + n)
    })
    await phase('bee_range_ops_s', RANGES * 100, 2, async () => {
      let n = 0
      for (let i = 0; i < RANGES; i++) {
        const gte = 'bkey-' + pad((i * 48611) % (BATCHED - 200))
        for await (const e of db.createReadStream({ gte, limit: 100 })) n += e.seq > 0 ? 1 : 0
      }
      if (n !== RANGES * 100) throw new Error('ranges saw ' + n)
    })
    console.log(`bee: ${SINGLE} single puts, ${BATCHED} batched, ${GETS} gets, scan ${SINGLE + BATCHED}, ${RANGES} ranges of 100 (core length ${core.length})`)
    await db.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()
