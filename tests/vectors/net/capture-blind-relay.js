// hyperdht relayThrough + blind-relay on a loopback testnet. Logs DHT datagrams (capture-lib)
// and every blind-relay pair/unpair message encoded. Exits by itself.
// Run: NODE_PATH=../../interop/node_modules node capture-blind-relay.js
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const { install } = require('./capture-lib')
const cap = install(__dirname + '/out-blind-relay.jsonl')
const createTestnet = require(NM + 'hyperdht/testnet.js')
const DHT = require(NM + 'hyperdht')
const BlindRelay = require(NM + 'blind-relay')
const b4a = require(NM + 'b4a')

const HARD = setTimeout(() => { cap.note({ error: 'hard timeout' }); process.exit(2) }, 60000)

// log pair/unpair encodes & decodes
for (const name of ['pair', 'unpair']) {
  const e = BlindRelay.messages[name]
  const enc = e.encode
  const dec = e.decode
  e.encode = function (state, msg) {
    const start = state.start
    enc.call(this, state, msg)
    cap.note({ blindRelay: 'encode ' + name, msg: { ...msg, token: msg.token && b4a.toString(msg.token, 'hex').slice(0, 16) }, hex: b4a.toString(state.buffer.subarray(start, state.start), 'hex') })
  }
  e.decode = function (state) {
    const r = dec.call(this, state)
    cap.note({ blindRelay: 'decode ' + name, msg: { ...r, token: r.token && b4a.toString(r.token, 'hex').slice(0, 16) } })
    return r
  }
}

function nameNode(n, label) {
  cap.names.set(n.io.serverSocket.address().port, label + '.srv')
  cap.names.set(n.io.clientSocket.address().port, label + '.cli')
}

async function main() {
  const testnet = await createTestnet(4, { host: '127.0.0.1', bootstrap: [] })
  testnet.nodes.forEach((n, i) => nameNode(n, 'B' + i))
  const R = testnet.createNode()
  const S = testnet.createNode()
  const C = testnet.createNode()
  for (const n of [R, S, C]) await n.fullyBootstrapped()
  nameNode(R, 'R'); nameNode(S, 'S'); nameNode(C, 'C')

  // Relay host: a hyperdht server whose connections are handed to a blind-relay server.
  const relayServer = new BlindRelay.Server({
    createStream(opts) {
      const s = R.createRawStream({ ...opts, framed: true })
      cap.note({ relay: 'createStream', id: s.id })
      return s
    }
  })
  const rkp = DHT.keyPair(b4a.alloc(32, 3))
  const rsrv = R.createServer((socket) => {
    const session = relayServer.accept(socket, { id: socket.remotePublicKey })
    session.on('pair', (isInitiator, token, stream, remoteId) => cap.note({ relay: 'paired', isInitiator, token: b4a.toString(token, 'hex').slice(0, 16), relayStreamId: stream.id, peerStreamId: remoteId }))
    session.on('error', () => {})
  })
  await rsrv.listen(rkp)

  const skp = DHT.keyPair(b4a.alloc(32, 1))
  const server = S.createServer({ relayThrough: rkp.publicKey, shareLocalAddress: false, holepunch: () => false }, (sock) => {
    cap.note({ server: 'connection' })
    sock.on('data', (d) => sock.write(b4a.concat([b4a.from('echo:'), d])))
    sock.on('error', () => {})
  })
  await server.listen(skp)
  cap.note({ step: 'connect' })
  const sock = C.connect(skp.publicKey, { localConnection: false, fastOpen: false, holepunch: () => false })
  sock.on('error', (e) => cap.note({ clientError: e.code || e.message }))
  await new Promise((resolve) => {
    sock.once('open', () => {
      const rs = sock.rawStream
      cap.note({ client: 'open', rawStream: { id: rs.id, remoteId: rs.remoteId, remote: rs.remoteHost + ':' + rs.remotePort } })
      sock.write(b4a.from('via relay'))
    })
    sock.once('data', (d) => { cap.note({ client: 'data', data: b4a.toString(d) }); resolve() })
    sock.once('close', resolve)
  })
  cap.note({ relaying: S.stats.relaying, relayStats: { pairings: relayServer.stats.pairings, streams: { opened: relayServer.stats.streams.opened } } })
  cap.note({ names: Object.fromEntries(cap.names) })
  sock.destroy()
  await server.close()
  await rsrv.close()
  for (const n of [C, S, R]) await n.destroy()
  await testnet.destroy()
  clearTimeout(HARD)
  cap.note({ done: true })
  setTimeout(() => process.exit(0), 100)
}
main().catch((e) => { cap.note({ fatal: e.stack }); process.exit(1) })
