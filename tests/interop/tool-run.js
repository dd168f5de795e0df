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
// hyperdht's default 49737 is bound with SO_REUSEADDR, so several JS nodes on one machine share
// it, and a peer pinging the LAN address 127.0.0.1:49737 one of them shares may reach another.
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
    super({ ...opts, bootstrap, host: '127.0.0.1', port: 0, anyPort: true })
  }
}
require.cache[dhtPath].exports = TestnetDHT

process.argv = [process.argv[0], binPath, ...args]
require(binPath)
