// Connect-by-key benchmarks, the JS side (bench/connect.sh; the Rust side is
// transport-native/examples/bench_connect.rs with the same modes and the same BENCH lines).
// Every node binds 127.0.0.1 and bootstraps from the local testnet given: never public nodes.
//
//   node connect.js testnet N                      a hyperdht testnet of N nodes (createTestnet);
//                                                  prints `bootstrap 127.0.0.1:PORT`, runs until killed
//   node connect.js serve BOOT ECHO_SEED SINK_SEED echo server on the first key pair, sink on the
//                                                  second (counts bytes until the end, answers the
//                                                  count as 8 bytes LE); prints `listening ECHO SINK`
//   node connect.js once BOOT KEY                  one whole-process connect: bootstrap, connect,
//                                                  write 'x', print the echo on stdout, exit
//   node connect.js inproc TAG BOOT ECHO SINK N MIB  N sequential connects from one warm node (time
//                                                  from connect() to the echoed byte), then MIB MiB
//                                                  to the sink over one connection
//   node connect.js swarm-serve BOOT TOPIC         a hyperswarm joined as server; prints `joined`
//   node connect.js swarm-join TAG BOOT TOPIC N    N times: a fresh swarm (new node) joins TOPIC as
//                                                  client; time from its creation to the connection
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const createTestnet = require('hyperdht/testnet')
const b4a = require('b4a')

const [mode, ...args] = process.argv.slice(2)
const buf = (h) => b4a.from(h, 'hex')
const hex = (b) => b4a.toString(b, 'hex')
const bench = (k, v) => console.log(`BENCH ${k} ${v.toFixed(3)}`)
const parse = (s) =>
  s.split(',').map((a) => {
    const [host, port] = a.split(':')
    return { host, port: Number(port) }
  })
const node = (boot) => new HyperDHT({ bootstrap: parse(boot), host: '127.0.0.1' })

function stats(tag, ms) {
  const s = [...ms].sort((a, b) => a - b)
  const rank = (p) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
  bench(`${tag}_median_ms`, rank(50))
  bench(`${tag}_p99_ms`, rank(99))
}

function firstData(socket) {
  return new Promise((resolve, reject) => {
    socket.once('data', resolve)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('closed before the echo')))
  })
}

const modes = {
  async testnet(n) {
    const t = await createTestnet(Number(n), { host: '127.0.0.1' })
    console.log(`bootstrap 127.0.0.1:${t.bootstrap[0].port}`)
    setInterval(() => {}, 1 << 30)
  },

  async serve(boot, echoSeed, sinkSeed) {
    const dht = node(boot)
    const echo = dht.createServer((s) => {
      s.on('data', (d) => s.write(d))
      s.on('end', () => s.end())
      s.on('error', () => {})
    })
    const sink = dht.createServer((s) => {
      let n = 0
      s.on('data', (d) => {
        n += d.byteLength
      })
      s.on('end', () => {
        const b = b4a.alloc(8)
        b.writeBigUInt64LE(BigInt(n))
        s.end(b)
      })
      s.on('error', () => {})
    })
    const e = HyperDHT.keyPair(buf(echoSeed))
    const k = HyperDHT.keyPair(buf(sinkSeed))
    await echo.listen(e)
    await sink.listen(k)
    console.log(`listening ${hex(e.publicKey)} ${hex(k.publicKey)}`)
  },

  async once(boot, key) {
    const dht = node(boot)
    const s = dht.connect(buf(key))
    s.write('x')
    const d = await firstData(s)
    process.stdout.write(d)
    process.exit(0)
  },

  async inproc(tag, boot, echoKey, sinkKey, n, mib) {
    const dht = node(boot)
    await dht.fullyBootstrapped()
    const ms = []
    for (let i = 0; i < Number(n); i++) {
      const t0 = performance.now()
      const s = dht.connect(buf(echoKey))
      s.write('x')
      await firstData(s)
      ms.push(performance.now() - t0)
      s.on('error', () => {})
      s.end()
    }
    bench(`${tag}_inproc_first_ms`, ms[0])
    stats(`${tag}_inproc`, ms.slice(1))

    const total = Number(mib) * 1024 * 1024
    const chunk = b4a.alloc(64 * 1024, 0xab)
    const t0 = performance.now()
    const s = dht.connect(buf(sinkKey))
    await new Promise((resolve, reject) => s.once('open', resolve).once('error', reject))
    const t1 = performance.now()
    const answer = new Promise((resolve, reject) => {
      const parts = []
      s.on('data', (d) => parts.push(d))
      s.on('end', () => resolve(b4a.concat(parts)))
      s.on('error', reject)
    })
    for (let sent = 0; sent < total; sent += chunk.byteLength) {
      if (!s.write(chunk)) await new Promise((resolve) => s.once('drain', resolve))
    }
    s.end()
    const got = Number((await answer).readBigUInt64LE(0))
    const t2 = performance.now()
    if (got !== total) throw new Error(`the sink got ${got} bytes of ${total}`)
    bench(`${tag}_stream_open_ms`, t1 - t0)
    bench(`${tag}_stream_mb_s`, total / 1e6 / ((t2 - t1) / 1000))
    process.exit(0)
  },

  async 'swarm-serve'(boot, topic) {
    const swarm = new Hyperswarm({ dht: node(boot) })
    swarm.on('connection', (c) => c.on('error', () => {}))
    await swarm.join(buf(topic), { server: true, client: false }).flushed()
    console.log('joined')
  },

  async 'swarm-join'(tag, boot, topic, n) {
    const ms = []
    for (let i = 0; i < Number(n); i++) {
      const t0 = performance.now()
      const swarm = new Hyperswarm({ dht: node(boot) })
      const got = new Promise((resolve) => swarm.once('connection', resolve))
      swarm.join(buf(topic), { server: false, client: true })
      const c = await got
      ms.push(performance.now() - t0)
      c.on('error', () => {})
      await swarm.destroy()
    }
    stats(`${tag}_swarm`, ms)
    process.exit(0)
  }
}

modes[mode](...args).catch((e) => {
  console.error(e)
  process.exit(1)
})
