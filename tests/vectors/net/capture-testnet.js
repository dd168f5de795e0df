// Loopback-only hyperdht testnet capture. Usage:
//   NODE_PATH=../../interop/node_modules node capture-testnet.js <scenario> <outfile.jsonl>
// scenarios: connect-open | connect-holepunch | records
// Never contacts public bootstrap nodes: the testnet helper is given an explicit
// local bootstrap list and every node binds 127.0.0.1. Exits by itself (hard timeout 90s).
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const { install } = require('./capture-lib')
const [scenario = 'connect-open', outFile = __dirname + '/out-' + scenario + '.jsonl'] = process.argv.slice(2)
const cap = install(outFile)

const createTestnet = require(NM + 'hyperdht/testnet.js')
const DHT = require(NM + 'hyperdht')
const b4a = require(NM + 'b4a')

const HARD = setTimeout(() => {
  cap.note({ error: 'hard timeout' })
  process.exit(2)
}, 90000)

function nameNode(n, label) {
  const s = n.io.serverSocket && n.io.serverSocket.address()
  const k = n.io.clientSocket && n.io.clientSocket.address()
  if (s) cap.names.set(s.port, label + '.srv')
  if (k) cap.names.set(k.port, label + '.cli')
}

async function main() {
  // Bootstrap node on 127.0.0.1 with an explicit empty bootstrap list -> it is its own bootstrap.
  const testnet = await createTestnet(4, { host: '127.0.0.1', bootstrap: [] })
  testnet.nodes.forEach((n, i) => nameNode(n, 'B' + i))
  cap.note({ testnet: testnet.bootstrap, ids: testnet.nodes.map((n) => n.id && b4a.toString(n.id, 'hex').slice(0, 16)), ephemeral: testnet.nodes.map((n) => n.ephemeral) })

  const extra = {}
  const serverNode = testnet.createNode(extra)
  const clientNode = testnet.createNode(extra)
  await serverNode.fullyBootstrapped()
  await clientNode.fullyBootstrapped()
  nameNode(serverNode, 'S')
  nameNode(clientNode, 'C')
  cap.note({ serverFirewalled: serverNode.firewalled, clientFirewalled: clientNode.firewalled, serverEphemeral: serverNode.ephemeral })

  if (scenario === 'records') {
    const topic = DHT.hash(b4a.from('topic'))
    const kp = DHT.keyPair(b4a.alloc(32, 1))
    cap.note({ step: 'announce' })
    await serverNode.announce(topic, kp, []).finished()
    cap.note({ step: 'lookup' })
    for await (const r of clientNode.lookup(topic)) cap.note({ lookupResult: r.peers.map((p) => b4a.toString(p.publicKey, 'hex').slice(0, 16)), from: r.from.port })
    cap.note({ step: 'unannounce' })
    await serverNode.unannounce(topic, kp)
    cap.note({ step: 'mutablePut' })
    const put = await serverNode.mutablePut(kp, b4a.from('hello'), { seq: 1 })
    cap.note({ mutablePut: { seq: put.seq, sig: b4a.toString(put.signature, 'hex') } })
    cap.note({ step: 'mutableGet' })
    const got = await clientNode.mutableGet(kp.publicKey, { latest: true })
    cap.note({ mutableGet: got && { seq: got.seq, value: b4a.toString(got.value) } })
    cap.note({ step: 'immutablePut' })
    const ip = await serverNode.immutablePut(b4a.from('immutable!'))
    cap.note({ step: 'immutableGet' })
    const ig = await clientNode.immutableGet(ip.hash)
    cap.note({ immutableGet: ig && b4a.toString(ig.value) })
  } else {
    const kp = DHT.keyPair(b4a.alloc(32, 1))
    const hp = scenario === 'connect-holepunch' || scenario === 'connect-punch'
    const server = serverNode.createServer({ shareLocalAddress: !hp }, (sock) => {
      cap.note({ server: 'connection', remote: b4a.toString(sock.remotePublicKey, 'hex').slice(0, 16) })
      sock.on('data', (d) => sock.write(b4a.concat([b4a.from('echo:'), d])))
      sock.on('error', () => {})
    })
    cap.note({ step: 'listen' })
    await server.listen(kp)
    cap.note({ step: 'connect' })
    const sock = clientNode.connect(kp.publicKey, { keyPair: DHT.keyPair(b4a.alloc(32, 2)), localConnection: !hp, fastOpen: scenario !== 'connect-punch' })
    sock.on('error', (e) => cap.note({ clientError: e.code || e.message }))
    await new Promise((resolve) => {
      sock.once('open', () => {
        cap.note({ client: 'open', rawStream: { id: sock.rawStream.id, remoteId: sock.rawStream.remoteId, remote: sock.rawStream.remoteHost + ':' + sock.rawStream.remotePort, local: sock.rawStream.socket.address().port } })
        sock.write(b4a.from('hello'))
      })
      sock.once('data', (d) => {
        cap.note({ client: 'data', data: b4a.toString(d) })
        resolve()
      })
      sock.once('close', resolve)
    })
    cap.note({ stats: clientNode.stats.punches, serverStats: serverNode.stats.punches })
    sock.destroy()
    await server.close()
  }
  cap.note({ names: Object.fromEntries(cap.names) })
  await clientNode.destroy()
  await serverNode.destroy()
  await testnet.destroy()
  clearTimeout(HARD)
  cap.note({ done: true })
}

main().catch((e) => {
  cap.note({ fatal: e.stack })
  process.exit(1)
})
