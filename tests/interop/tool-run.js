// Runs a pinned JS tool's command-line script UNCHANGED on a local testnet, for the tool interop
// tests (transport-native/tests/{tele,beam,shell}_interop.rs):
//
//   HYPERPUNCH_TEST_BOOTSTRAP=127.0.0.1:PORT[,...] node tool-run.js <package/bin.js> [args...]
//
// e.g. `node tool-run.js hypertele/server.js -l 8080 --seed ...`. Every hyperdht instance the
// script creates (from the copy of hyperdht it requires itself: hypertele pins its own) gets the
// bootstrap list of HYPERPUNCH_TEST_BOOTSTRAP and binds 127.0.0.1 on a random port, whatever the
// script passes: the tools otherwise reach the public bootstrap nodes (hyperbeam has no option at
// all, hypershell's --testnet is a fixed port), which tests never do. The random port matters:
// hyperdht turns `port: 0` into its default 49737 (`opts.port || 49737`) and dht-rpc then tries
// 49737..49741, so concurrent JS nodes would take those in turn, and a peer given one's LAN address
// could reach another started after it exited. A port range of [0, 0] binds a port the OS picks.
const ANY_PORT = [0, 0]
const path = require('path')

const list = process.env.HYPERPUNCH_TEST_BOOTSTRAP
if (!list) {
  console.error('tool-run.js: set HYPERPUNCH_TEST_BOOTSTRAP=host:port[,host:port]')
  process.exit(2)
}
const bootstrap = list.split(',').map((s) => {
  const [host, port] = s.trim().split(':')
  return { host, port: Number(port) }
})

const [, , bin, ...args] = process.argv
const binPath = require.resolve(bin)
const dhtPath = require.resolve('hyperdht', { paths: [path.dirname(binPath)] })
const DHT = require(dhtPath)

class TestnetDHT extends DHT {
  constructor (opts = {}) {
    super({ ...opts, bootstrap, host: '127.0.0.1', port: ANY_PORT, anyPort: true })
  }
}
require.cache[dhtPath].exports = TestnetDHT

process.argv = [process.argv[0], binPath, ...args]
require(binPath)
