// A JS hyperswarm 4.17.2 peer on a topic, for the browser tests (scripts/test-pkg.sh, and
// transport-web/tests/swarm_pages.rs through scripts/test-browser.sh): it joins TOPIC (server
// and client) on a local DHT (BOOTSTRAP, never the public bootstrap nodes), prints `joined
// PUBLIC_KEY` once the topic is announced, and on every connection prints `connection
// REMOTE_KEY client|server`, sends `hello from js`, prints each message it gets as `data TEXT`,
// and answers `hello from page` with `echo hello from page`, `whoami` with `you are REMOTE_KEY
// client|server` (the page's key as this peer sees it, and this peer's side), `reset me` by
// destroying the connection (`reset REMOTE_KEY`), and `join TOPIC_HEX` by joining that topic as
// a client only (so it dials the pages there; `joined-as-client TOPIC_HEX`). Exits after
// TIMEOUT_MS (default 240 s) or on SIGTERM.
//
//   node swarm-topic-peer.js BOOTSTRAP_HOST:PORT TOPIC_HEX
//
// hyperdht turns `port: 0` into its default 49737: a port range of [0, 0] binds one the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const b4a = require('b4a')

const [bootstrap, topicHex] = process.argv.slice(2)
const [host, port] = bootstrap.split(':')
const timeout = setTimeout(() => {
  console.log('timeout')
  process.exit(2)
}, Number(process.env.TIMEOUT_MS || 240000))
timeout.unref()

async function main () {
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1', port: ANY_PORT, anyPort: true, ephemeral: true })
  await dht.fullyBootstrapped()
  const swarm = new Hyperswarm({ dht })
  swarm.on('connection', (conn, info) => {
    console.log('connection', b4a.toString(conn.remotePublicKey, 'hex'), info.client ? 'client' : 'server')
    conn.on('error', (err) => console.log('conn-error', err.message))
    conn.on('data', (data) => {
      const text = b4a.toString(data)
      console.log('data', text)
      if (text === 'hello from page') conn.write('echo hello from page')
      if (text === 'whoami') conn.write(`you are ${b4a.toString(conn.remotePublicKey, 'hex')} ${info.client ? 'client' : 'server'}`)
      if (/^join [0-9a-f]{64}$/.test(text)) {
        const topic = text.slice(5)
        swarm.join(b4a.from(topic, 'hex'), { server: false, client: true }).flushed()
          .then(() => console.log('joined-as-client', topic), (err) => console.log('error', err.message))
      }
      if (/^flood [0-9]{1,4}$/.test(text)) {
        // N messages of 64 KiB (a reader that stalls: tests/swarm_pages.rs).
        const n = Number(text.slice(6))
        for (let i = 0; i < n; i++) conn.write(b4a.alloc(65536, i & 0xff))
      }
      if (text === 'reset me') {
        console.log('reset', b4a.toString(conn.remotePublicKey, 'hex'))
        conn.destroy()
      }
    })
    conn.write('hello from js')
  })
  const discovery = swarm.join(b4a.from(topicHex, 'hex'), { server: true, client: true })
  await discovery.flushed()
  console.log('joined', b4a.toString(swarm.keyPair.publicKey, 'hex'))
  const stop = async () => {
    await swarm.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  console.log('error', err.stack || err.message)
  process.exit(1)
})
