// A JS @hyperswarm/dht-relay relay (hyperdht node + WebSocketServer) on a local bootstrap node:
// scripts/relay-stall-repro.sh, scripts/test-browser.sh and scripts/test-pkg.sh. Prints `relay ws://...`.
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`), so concurrent JS nodes
// would take 49737, 49738, ... in turn; a port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const HyperDHT = require('hyperdht')
const { relay } = require('@hyperswarm/dht-relay')
const Stream = require('@hyperswarm/dht-relay/ws')
const { WebSocketServer } = require('ws')
;(async () => {
  const [host, port] = process.argv[2].split(':')
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1', port: ANY_PORT, anyPort: true })
  await dht.fullyBootstrapped()
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => wss.once('listening', resolve))
  wss.on('connection', (socket) => relay(dht, new Stream(false, socket)))
  console.log('relay ws://127.0.0.1:' + wss.address().port)
})()
