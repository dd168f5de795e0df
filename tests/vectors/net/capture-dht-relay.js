// @hyperswarm/dht-relay over a loopback WebSocket (ws://127.0.0.1), relaying into a loopback
// hyperdht testnet. Logs every WebSocket frame (protomux) in both directions, decoded.
// Usage: NODE_PATH=../../interop/node_modules node capture-dht-relay.js [custodial|noncustodial]
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const fs = require('fs')
const { WebSocketServer, WebSocket } = require(NM + 'ws')
const createTestnet = require(NM + 'hyperdht/testnet.js')
const DHT = require(NM + 'hyperdht')
const RelayedDHT = require(NM + '@hyperswarm/dht-relay')
const { relay } = require(NM + '@hyperswarm/dht-relay')
const WSStream = require(NM + '@hyperswarm/dht-relay/ws')
const c = require(NM + '@hyperswarm/dht-relay/node_modules/compact-encoding/index.js')
const b4a = require(NM + 'b4a')

const mode = process.argv[2] || 'custodial'
const out = fs.openSync(__dirname + '/out-dht-relay-' + mode + '.txt', 'w')
const t0 = Date.now()
const log = (s) => fs.writeSync(out, `${String(Date.now() - t0).padStart(5)} ${s}\n`)
const HARD = setTimeout(() => { log('hard timeout'); process.exit(2) }, 60000)
const NAMES = ['handshake', 'ping', 'pong', 'connect', 'connection', 'connected', 'incoming', 'deny', 'accept', 'destroy', 'listen', 'listening', 'close', 'closed', 'open', 'end', 'data', 'result', 'finished', 'lookup', 'announce', 'unannounce', 'signAnnounce', 'signUnannounce', 'signature', 'noiseSend', 'noiseReceive', 'noiseReply']

function describe(buf) {
  const state = { start: 0, end: buf.byteLength, buffer: buf }
  const ch = c.uint.decode(state)
  const type = c.uint.decode(state)
  if (ch === 0) {
    const ctl = ['batch', 'open', 'reject', 'close'][type]
    let extra = ''
    if (type === 1) {
      const id = c.uint.decode(state)
      const proto = c.string.decode(state)
      extra = ` localId=${id} protocol=${JSON.stringify(proto)}`
    }
    return `ctrl:${ctl}${extra}`
  }
  return `ch=${ch} msg=${NAMES[type] || type} bodyLen=${state.end - state.start}`
}

process.on('uncaughtException', (e) => log('## UNCAUGHT (relay-side bug?) ' + e.message + ' @ ' + (e.stack.split('\n').find((l) => l.includes('dht-relay/lib')) || '').trim()))

async function main() {
  const testnet = await createTestnet(3, { host: '127.0.0.1', bootstrap: [] })
  const relayNode = testnet.createNode()
  await relayNode.fullyBootstrapped()
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise((r) => wss.once('listening', r))
  wss.on('connection', (socket) => {
    const origSend = socket.send.bind(socket)
    socket.send = (data, ...rest) => { log(`relay -> browser ${b4a.from(data).byteLength}B ${describe(b4a.from(data))} hex=${b4a.toString(b4a.from(data), 'hex').slice(0, 160)}`); return origSend(data, ...rest) }
    relay(relayNode, new WSStream(false, socket))
  })
  const ws = new WebSocket('ws://127.0.0.1:' + wss.address().port)
  const origSend = ws.send.bind(ws)
  ws.send = (data, ...rest) => { log(`browser -> relay ${b4a.from(data).byteLength}B ${describe(b4a.from(data))} hex=${b4a.toString(b4a.from(data), 'hex').slice(0, 160)}`); return origSend(data, ...rest) }
  const browser = new RelayedDHT(new WSStream(true, ws), { custodial: mode === 'custodial', keyPair: DHT.keyPair(b4a.alloc(32, 9)) })
  await browser.ready()
  log('## browser ready')

  // 1. browser acts as a server (the relay listens/announces on its behalf)
  const kp = DHT.keyPair(b4a.alloc(32, 7))
  const bserver = browser.createServer((sock) => {
    log('## browser server got connection from ' + b4a.toString(sock.remotePublicKey, 'hex').slice(0, 16))
    sock.on('data', (d) => sock.write(b4a.concat([b4a.from('browser-echo:'), d])))
    sock.on('error', () => {})
  })
  await bserver.listen(kp)
  log('## browser server listening ' + JSON.stringify(bserver.address() && { host: bserver.address().host, port: bserver.address().port }))
  const peer = testnet.createNode()
  await peer.fullyBootstrapped()
  const s1 = peer.connect(kp.publicKey)
  s1.on('error', (e) => log('## peer->browser error ' + e.message))
  await new Promise((resolve) => {
    s1.once('open', () => s1.write(b4a.from('hi browser')))
    s1.once('data', (d) => { log('## peer got ' + b4a.toString(d)); resolve() })
    setTimeout(resolve, 15000)
  })
  s1.destroy()

  // 2. browser connects out to a normal hyperdht server
  const kp2 = DHT.keyPair(b4a.alloc(32, 8))
  const srv = peer.createServer((sock) => { sock.on('data', (d) => sock.write(b4a.concat([b4a.from('dht-echo:'), d]))); sock.on('error', () => {}) })
  await srv.listen(kp2)
  const s2 = browser.connect(kp2.publicKey)
  s2.on('error', (e) => log('## browser->peer error ' + e.message))
  await new Promise((resolve) => {
    s2.once('open', () => s2.write(b4a.from('hi dht')))
    s2.once('data', (d) => { log('## browser got ' + b4a.toString(d)); resolve() })
    setTimeout(resolve, 15000)
  })
  s2.destroy()

  // 3. lookup + announce through the relay
  const topic = DHT.hash(b4a.from('relay-topic'))
  const ann = browser.announce(topic, kp)
  await new Promise((resolve) => { ann.on('data', () => {}); ann.once('close', resolve); ann.once('error', resolve); setTimeout(resolve, 10000) })
  log('## announce done')
  const q = browser.lookup(topic)
  await new Promise((resolve) => { q.on('data', (r) => log('## lookup result peers=' + r.peers.length)); q.once('close', resolve); q.once('error', resolve); setTimeout(resolve, 10000) })
  log('## lookup done')

  await bserver.close().catch(() => {})
  await browser.destroy({ force: true })
  ws.close()
  wss.close()
  await srv.close()
  await relayNode.destroy()
  await testnet.destroy()
  clearTimeout(HARD)
  log('## done')
  setTimeout(() => process.exit(0), 200)
}
main().catch((e) => { log('fatal ' + e.stack); process.exit(1) })
