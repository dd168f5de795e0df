// A JS hyperdht node for bench/dht.sh: `DHT.bootstrapper(port, '127.0.0.1')` bound to
// 127.0.0.1 only (a persistent node that stores records), printing `listening PORT PID` once
// ready. It runs until killed.
const HyperDHT = require('hyperdht')

const port = Number(process.argv[2])
const node = HyperDHT.bootstrapper(port, '127.0.0.1', { host: '127.0.0.1' })
node.fullyBootstrapped().then(() => {
  console.log('listening ' + node.address().port + ' ' + process.pid)
})
