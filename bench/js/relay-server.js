// The JS relay for bench/relay.sh: the pinned @hyperswarm/dht-relay 0.4.3 `relay()` on a hyperdht
// 6.34 node bootstrapped from BOOTSTRAP (HOST:PORT, a local node: never the public ones) and a
// `ws` WebSocketServer on 127.0.0.1 (as the package's bin.js, which would use the public
// bootstrap nodes). Prints `relay ws://127.0.0.1:PORT` once listening; runs until killed.
//
//   node relay-server.js BOOTSTRAP
const HyperDHT = require('hyperdht')
const { relay } = require('@hyperswarm/dht-relay')
const Stream = require('@hyperswarm/dht-relay/ws')
const { WebSocketServer } = require('ws')

const [host, port] = process.argv[2].split(':')

async function main () {
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1' })
  await dht.fullyBootstrapped()
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => wss.once('listening', resolve))
  wss.on('connection', (socket) => relay(dht, new Stream(false, socket)))
  console.log(`relay ws://127.0.0.1:${wss.address().port}`)
}

main().catch((err) => { console.error(err); process.exit(1) })
