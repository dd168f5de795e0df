// A JS hyperswarm 4.17.2 + hypercore 11.37.1 reader, as a JS user writes one: joins a core's
// discovery key as a client through a local DHT, replicates every connection, downloads the
// whole core and checks that block i is the UTF-8 text `hyperpunch block <i>`. Used by
// scripts/www-fetch-served.sh against a browser page serving a core through a relay.
//
//   node swarm-fetch.js BOOTSTRAP(HOST:PORT) KEY(hex) LENGTH DIR
//
// Prints `fetched <LENGTH>` and exits 0 when every block checked out; exits 1 with the reason
// on stderr otherwise, 2 after 90 s. Binds 127.0.0.1, never the public bootstrap nodes.
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`), so concurrent JS nodes
// would take 49737, 49738, ... in turn; a port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const Hypercore = require('hypercore')
const b4a = require('b4a')

const [bootstrap, keyHex, lengthArg, dir] = process.argv.slice(2)
const length = Number(lengthArg)
const [host, port] = bootstrap.split(':')

setTimeout(() => {
  console.error(`swarm-fetch: timed out (length ${core.length}, contiguous ${core.contiguousLength})`)
  process.exit(2)
}, 90000).unref()

const core = new Hypercore(dir, b4a.from(keyHex, 'hex'))

async function main () {
  await core.ready()
  const dht = new HyperDHT({
    bootstrap: [{ host, port: Number(port) }],
    host: '127.0.0.1',
    port: ANY_PORT,
    anyPort: true,
    ephemeral: true
  })
  await dht.fullyBootstrapped()
  const swarm = new Hyperswarm({ dht })
  swarm.on('connection', (conn) => {
    conn.on('error', () => {})
    core.replicate(conn)
  })
  swarm.join(core.discoveryKey, { server: false, client: true })
  const done = core.findingPeers()
  swarm.flush().then(done, done)
  await core.update({ wait: true })
  if (core.length !== length) throw new Error(`the peer has ${core.length} blocks, expected ${length}`)
  await core.download({ start: 0, end: length }).done()
  for (let i = 0; i < length; i++) {
    const got = b4a.toString(await core.get(i))
    if (got !== `hyperpunch block ${i}`) throw new Error(`block ${i} is ${JSON.stringify(got)}`)
  }
  console.log(`fetched ${length}`)
  await swarm.destroy()
  await core.close()
}

main().then(() => process.exit(0), (err) => {
  console.error('swarm-fetch:', err)
  process.exit(1)
})
