// Deterministic golden vectors produced by calling the JS encoders directly.
// Run: NODE_PATH=../../interop/node_modules node vectors-static.js > vectors-static.json
// No network is used.
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const c = require('compact-encoding')
const b4a = require('b4a')
const sodium = require('sodium-universal')
const peer = require(NM + 'dht-rpc/lib/peer.js')
const IO = require(NM + 'dht-rpc/lib/io.js')
const m = require(NM + 'hyperdht/lib/messages.js')
const { NS, COMMANDS } = require(NM + 'hyperdht/lib/constants.js')
const Persistent = require(NM + 'hyperdht/lib/persistent.js')
const NoiseHandshake = require(NM + 'hyperdht/node_modules/noise-handshake/noise.js')
const curveEd = require('noise-curve-ed')
const SecretStream = require('@hyperswarm/secret-stream')
const hcrypto = require('hypercore-crypto')
const relayMsgs = require('blind-relay').messages
const dhtRelayMsgs = require(NM + '@hyperswarm/dht-relay/lib/messages.js')
const HyperdhtAddress = require('hyperdht-address')

const out = {}
const hex = (b) => (b === null || b === undefined ? null : b4a.toString(b, 'hex'))
const fill = (n, v) => b4a.alloc(n, v)
function seedKP(byte) {
  const publicKey = b4a.alloc(32)
  const secretKey = b4a.alloc(64)
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, fill(32, byte))
  return { publicKey, secretKey }
}
function enc(e, v) {
  return hex(c.encode(e, v))
}

// ---- compact-encoding primitives
out.compactEncoding = {
  uint: Object.fromEntries([0, 1, 252, 253, 254, 255, 256, 65535, 65536, 4294967295, 4294967296].map((n) => [n, enc(c.uint, n)])),
  uint16_0x1234: enc(c.uint16, 0x1234),
  uint32_0x12345678: enc(c.uint32, 0x12345678),
  buffer_empty: enc(c.buffer, b4a.alloc(0)),
  buffer_null: (() => { try { return enc(c.buffer, null) } catch (e) { return 'THROWS: ' + e.message } })(),
  buffer_null_decodes_to: hex(c.decode(c.buffer, b4a.from([0]))),
  buffer_abc: enc(c.buffer, b4a.from('abc')),
  string_hello: enc(c.string, 'hello'),
  fixed32_ones: enc(c.fixed32, fill(32, 1)),
  ipv4Address_127_0_0_1_49737: enc(c.ipv4Address, { host: '127.0.0.1', port: 49737 }),
  ipv4Address_10_1_2_3_1: enc(c.ipv4Address, { host: '10.1.2.3', port: 1 }),
  array_of_ipv4: enc(c.array(c.ipv4Address), [{ host: '1.2.3.4', port: 5 }, { host: '6.7.8.9', port: 10 }]),
  ipv6Address_1: enc(c.ipv6Address, { host: '::1', port: 80 })
}

// ---- dht-rpc node id
out.dhtRpc = {
  nodeId_127_0_0_1_49737: hex(peer.id('127.0.0.1', 49737)),
  nodeId_88_99_3_86_49737: hex(peer.id('88.99.3.86', 49737)),
  nodeIdRule: 'blake2b-256( ipv4(4 bytes) || port uint16 LE )'
}

// Build a real IO instance with fake sockets so we can call the real encoder code.
const captured = []
function fakeSocket(name) {
  return {
    name,
    trySend(buf, port, host, ttl) {
      captured.push({ via: name, to: host + ':' + port, ttl: ttl || 0, hex: hex(buf) })
    }
  }
}
const tableId = fill(32, 0xaa)
const closerNodes = [
  { id: null, host: '10.0.0.1', port: 1000 },
  { id: null, host: '10.0.0.2', port: 2000 }
]
const fakeTable = { id: tableId, closest: () => closerNodes }
const fakeUdx = { watchNetworkInterfaces: () => ({ on() {}, destroy() {} }) }
const io = new IO(fakeTable, fakeUdx, { onrequest: (req) => lastReq.push(req) })
const lastReq = []
io.serverSocket = fakeSocket('server')
io.clientSocket = fakeSocket('client')
io._tid = 0x1234
// deterministic token secrets
io._secrets = [fill(32, 0x11), fill(32, 0x22)]

const reqs = {}
// 1. firewalled/ephemeral client PING (internal, no target, no value)
io.firewalled = true
io.ephemeral = true
let r = io.createRequest({ id: null, host: '127.0.0.1', port: 49737 }, null, true, 0, null, null, null, 0)
r.send(true)
reqs.ping_internal_ephemeral = captured.pop()
// 2. FIND_NODE internal with target
r = io.createRequest({ id: null, host: '127.0.0.1', port: 49737 }, null, true, 2, fill(32, 0xbb), null, null, 0)
r.send(true)
reqs.find_node_internal_ephemeral = captured.pop()
// 3. persistent node (ephemeral=false, firewalled=false) -> id flag set, user command 3 (LOOKUP) + token + value
io.firewalled = false
io.ephemeral = false
r = io.createRequest({ id: null, host: '127.0.0.1', port: 49737 }, fill(32, 0xcc), false, COMMANDS.ANNOUNCE, fill(32, 0xbb), b4a.from('value'), null, 0)
r.send(true)
reqs.announce_user_persistent_with_token_value = captured.pop()
// clear timers
for (const q of io.inflight) clearTimeout(q._timeout)
io.inflight = []

// Replies: feed a request into io.onmessage so Request.decode runs, then reply.
io.ephemeral = false
io.firewalled = false
const incoming = b4a.from(reqs.find_node_internal_ephemeral.hex, 'hex')
io.onmessage(io.serverSocket, incoming, { host: '127.0.0.1', port: 50000 })
const decReq = lastReq.pop()
out.dhtRpc.decodedRequest = {
  tid: decReq.tid,
  to: decReq.to,
  command: decReq.command,
  internal: decReq.internal,
  target: hex(decReq.target),
  token: hex(decReq.token)
}
decReq.sendReply(0, null, true, true) // FIND_NODE style reply with token and closer nodes
reqs.reply_with_id_token_closer = captured.pop()
decReq.sendReply(0, b4a.from('hi'), false, false)
reqs.reply_value_only = captured.pop()
decReq.error(1) // UNKNOWN_COMMAND
reqs.reply_error_unknown_command = captured.pop()
out.dhtRpc.tokenOfSender127_0_0_1 = {
  secret1: '22'.repeat(32),
  token: hex(io.token({ host: '127.0.0.1' }, 1)),
  rule: 'blake2b-256(utf8(host string), key=secret[i])'
}
out.dhtRpc.packets = reqs

// ---- hyperdht
out.hyperdht = {}
out.hyperdht.NS = Object.fromEntries(Object.entries(NS).map(([k, v]) => [k, hex(v)]))
out.hyperdht.NS_rule = "ns = blake2b-256('hyperswarm/dht'); NS[cmd] = blake2b-256(ns || byte(cmd))"
const secretNS = hcrypto.namespace('hyperswarm/secret-stream', 3)
out.secretStreamNS = { INITIATOR: hex(secretNS[0]), RESPONDER: hex(secretNS[1]), SEND: hex(secretNS[2]) }

const kpServer = seedKP(1)
const kpClient = seedKP(2)
out.hyperdht.keys = {
  serverSeed: '01'.repeat(32),
  serverPublicKey: hex(kpServer.publicKey),
  clientSeed: '02'.repeat(32),
  clientPublicKey: hex(kpClient.publicKey),
  serverTarget_blake2b_pk: hex(hcrypto.hash ? (() => { const o = b4a.alloc(32); sodium.crypto_generichash(o, kpServer.publicKey); return o })() : null)
}

const msgs = {}
msgs.handshake_fromClient = enc(m.handshake, { mode: 0, noise: b4a.from('noise'), peerAddress: null, relayAddress: null })
msgs.handshake_fromRelay = enc(m.handshake, { mode: 2, noise: b4a.from('noise'), peerAddress: { host: '1.2.3.4', port: 1234 }, relayAddress: null })
msgs.handshake_fromSecondRelay = enc(m.handshake, { mode: 3, noise: b4a.from('noise'), peerAddress: { host: '1.2.3.4', port: 1234 }, relayAddress: { host: '5.6.7.8', port: 5678 } })
msgs.handshake_reply = enc(m.handshake, { mode: 4, noise: b4a.from('noise'), peerAddress: { host: '1.2.3.4', port: 1234 } })
msgs.holepunch_fromClient = enc(m.holepunch, { mode: 0, id: 7, payload: b4a.from('p'), peerAddress: { host: '1.2.3.4', port: 1234 } })
msgs.holepunch_reply = enc(m.holepunch, { mode: 4, id: 7, payload: b4a.from('p'), peerAddress: null })
msgs.noisePayload_client = enc(m.noisePayload, {
  error: 0,
  firewall: 0,
  holepunch: null,
  addresses4: [{ host: '192.168.1.2', port: 49737 }],
  addresses6: [],
  udx: { reusableSocket: false, id: 0x01020304, seq: 0 },
  secretStream: {},
  relayThrough: null
})
msgs.noisePayload_server_full = enc(m.noisePayload, {
  error: 0,
  firewall: 2,
  holepunch: { id: 3, relays: [{ relayAddress: { host: '9.9.9.9', port: 9 }, peerAddress: { host: '8.8.8.8', port: 8 } }] },
  addresses4: [{ host: '1.1.1.1', port: 1 }],
  addresses6: [{ host: '::1', port: 2 }],
  udx: { reusableSocket: true, id: 5, seq: 0 },
  secretStream: {},
  relayThrough: { publicKey: fill(32, 0xee), token: fill(32, 0xdd) },
  relayAddresses: [{ host: '7.7.7.7', port: 7 }]
})
msgs.holepunchPayload_probe = enc(m.holepunchPayload, {
  error: 0, firewall: 2, round: 0, connected: false, punching: false,
  addresses: [{ host: '1.2.3.4', port: 40000 }], remoteAddress: { host: '5.6.7.8', port: 50000 }, token: null, remoteToken: null
})
msgs.holepunchPayload_punch = enc(m.holepunchPayload, {
  error: 0, firewall: 2, round: 1, connected: false, punching: true,
  addresses: [{ host: '1.2.3.4', port: 40000 }], remoteAddress: null, token: fill(32, 0x01), remoteToken: fill(32, 0x02)
})
msgs.peer = enc(m.peer, { publicKey: kpServer.publicKey, relayAddresses: [{ host: '1.2.3.4', port: 5 }] })
msgs.lookupRawReply = enc(m.lookupRawReply, { peers: [c.encode(m.peer, { publicKey: kpServer.publicKey, relayAddresses: [] })], bump: 0 })
msgs.lookupRawReply_bump = enc(m.lookupRawReply, { peers: [], bump: 1700000000000 })
msgs.mutablePutRequest = enc(m.mutablePutRequest, { publicKey: kpServer.publicKey, seq: 1, value: b4a.from('v'), signature: fill(64, 0x05) })
msgs.mutableGetResponse = enc(m.mutableGetResponse, { seq: 1, value: b4a.from('v'), signature: fill(64, 0x05) })
msgs.mutableGetRequestValue_seq0 = enc(c.uint, 0)
msgs.pluginRequest = enc(m.pluginRequest, { plugin: 'x', version: 1, command: 2, value: b4a.from('v') })
msgs.hyperdhtAddress_keyOnly = hex(HyperdhtAddress.encode(kpServer.publicKey))
msgs.hyperdhtAddress_withNodes = hex(HyperdhtAddress.encode(kpServer.publicKey, [{ host: '1.2.3.4', port: 5 }]))
out.hyperdht.messages = msgs

// Announce signature (deterministic ed25519)
const target = fill(32, 0x33)
const token = fill(32, 0x44)
const nodeId = fill(32, 0x55)
const ann = { peer: { publicKey: kpServer.publicKey, relayAddresses: [] }, refresh: null, signature: null }
const signableHash = b4a.alloc(32)
sodium.crypto_generichash_batch(signableHash, [target, nodeId, token, c.encode(m.peer, ann.peer), b4a.alloc(0)])
ann.signature = Persistent.signAnnounce(target, token, nodeId, ann, kpServer)
out.hyperdht.announce = {
  target: hex(target),
  token: hex(token),
  nodeId: hex(nodeId),
  signableInnerHash: hex(signableHash),
  signable: hex(b4a.concat([NS.ANNOUNCE, signableHash])),
  signature: hex(ann.signature),
  encodedAnnounceValue: enc(m.announce, ann),
  unannounceSignature: hex(Persistent.signUnannounce(target, token, nodeId, { peer: ann.peer, refresh: null }, kpServer))
}
// Mutable signature
const mutSig = Persistent.signMutable(5, b4a.from('hello'), kpServer)
const mutHash = b4a.alloc(32)
sodium.crypto_generichash(mutHash, c.encode(m.mutableSignable, { seq: 5, value: b4a.from('hello') }))
out.hyperdht.mutable = {
  seq: 5,
  value: hex(b4a.from('hello')),
  signableInnerHash: hex(mutHash),
  signable: hex(b4a.concat([NS.MUTABLE_PUT, mutHash])),
  signature: hex(mutSig),
  verify: Persistent.verifyMutable(mutSig, 5, b4a.from('hello'), kpServer.publicKey),
  target_blake2b_pk: hex((() => { const o = b4a.alloc(32); sodium.crypto_generichash(o, kpServer.publicKey); return o })())
}
// immutable
const immTarget = b4a.alloc(32)
sodium.crypto_generichash(immTarget, b4a.from('hello'))
out.hyperdht.immutable = { value: hex(b4a.from('hello')), target: hex(immTarget) }

// ---- Deterministic Noise IK (hyperdht flavour) using seeded ephemeral keys
let eCounter = 0x10
const detCurve = {
  ...curveEd,
  generateKeyPair(priv) {
    if (priv) return curveEd.generateKeyPair(priv)
    const kp = seedKP(eCounter++)
    return kp
  }
}
const initiator = new NoiseHandshake('IK', true, kpClient, { curve: detCurve })
initiator.initialise(NS.PEER_HANDSHAKE, kpServer.publicKey)
const responder = new NoiseHandshake('IK', false, kpServer, { curve: detCurve })
responder.initialise(NS.PEER_HANDSHAKE)
const clientPayload = {
  error: 0, firewall: 0, holepunch: null, addresses4: [], addresses6: [],
  udx: { reusableSocket: false, id: 1, seq: 0 }, secretStream: {}, relayThrough: null
}
const serverPayload = {
  error: 0, firewall: 0, holepunch: { id: 0, relays: [] }, addresses4: [], addresses6: null,
  udx: { reusableSocket: false, id: 2, seq: 0 }, secretStream: {}, relayThrough: null, relayAddresses: null
}
const msg1 = initiator.send(c.encode(m.noisePayload, clientPayload))
const p1 = c.decode(m.noisePayload, responder.recv(b4a.from(msg1))) // copy: recv() zeroes re in-place after final()
const msg2 = responder.send(c.encode(m.noisePayload, serverPayload))
const p2 = c.decode(m.noisePayload, initiator.recv(b4a.from(msg2)))
const hpSecret = b4a.alloc(32)
sodium.crypto_generichash(hpSecret, NS.PEER_HOLEPUNCH, initiator.hash)
out.noiseIK = {
  protocolName: b4a.toString(initiator.protocol),
  prologue: hex(NS.PEER_HANDSHAKE),
  initiatorStatic: hex(kpClient.publicKey),
  responderStatic: hex(kpServer.publicKey),
  initiatorEphemeralSeed: '10'.repeat(32),
  responderEphemeralSeed: '11'.repeat(32),
  clientPayloadPlain: enc(m.noisePayload, clientPayload),
  serverPayloadPlain: enc(m.noisePayload, serverPayload),
  msg1: hex(msg1),
  msg1_len: msg1.byteLength,
  msg2: hex(msg2),
  msg2_len: msg2.byteLength,
  responderSawInitiatorStatic: hex(responder.rs),
  decodedClientUdxId: p1.udx.id,
  decodedServerUdxId: p2.udx.id,
  handshakeHash: hex(initiator.hash),
  handshakeHashEqual: b4a.equals(initiator.hash, responder.hash),
  initiatorTx: hex(initiator.tx),
  initiatorRx: hex(initiator.rx),
  responderTx: hex(responder.tx),
  holepunchSecret: hex(hpSecret),
  streamIdInitiator: hex(SecretStream.id(initiator.hash, true)),
  streamIdResponder: hex(SecretStream.id(initiator.hash, false)),
  note: 'client NoiseWrap.final().remoteId = SecretStream.id(hash, !isInitiator); secret-stream first frame = uint24le(56) || streamId(own side) || secretstream header(24)'
}
// Holepunch payload secretbox with fixed nonce
const nonce = fill(24, 0x07)
const plain = c.encode(m.holepunchPayload, {
  error: 0, firewall: 2, round: 0, connected: false, punching: false,
  addresses: [{ host: '127.0.0.1', port: 40000 }], remoteAddress: null, token: null, remoteToken: null
})
const boxed = b4a.alloc(24 + 16 + plain.byteLength)
boxed.set(nonce, 0)
sodium.crypto_secretbox_easy(boxed.subarray(24), plain, nonce, hpSecret)
out.securePayload = {
  key: hex(hpSecret),
  nonce: hex(nonce),
  plain: hex(plain),
  wire: hex(boxed),
  layout: 'nonce(24) || secretbox_easy(mac16 || ciphertext) keyed by holepunchSecret'
}

// ---- blind-relay messages
out.blindRelay = {
  pair_initiator: enc(relayMsgs.pair, { isInitiator: true, token: fill(32, 0x09), id: 1234, seq: 0 }),
  pair_responder: enc(relayMsgs.pair, { isInitiator: false, token: fill(32, 0x09), id: 70000, seq: 0 }),
  unpair: enc(relayMsgs.unpair, { token: fill(32, 0x09) })
}
// ---- dht-relay messages (compact-encoding v2 inside dht-relay)
const ce2 = require(NM + '@hyperswarm/dht-relay/node_modules/compact-encoding/index.js')
const enc2 = (e, v) => hex(ce2.encode(e, v))
out.dhtRelay = {
  handshake_custodial: enc2(dhtRelayMsgs.handshake, { custodial: true, publicKey: kpClient.publicKey, secretKey: kpClient.secretKey }),
  handshake_noncustodial: enc2(dhtRelayMsgs.handshake, { custodial: false, publicKey: kpClient.publicKey }),
  connect_noncustodial: enc2(dhtRelayMsgs.connect, { custodial: false, alias: 1, publicKey: kpClient.publicKey, remotePublicKey: kpServer.publicKey }),
  lookup: enc2(dhtRelayMsgs.lookup, { id: 2, topic: fill(32, 0x33) }),
  data: enc2(dhtRelayMsgs.data, { alias: 1, data: [b4a.from('hi')] }),
  destroy_paired_err: enc2(dhtRelayMsgs.destroy, { paired: true, alias: 1, error: 'x' }),
  noiseReply_complete: enc2(dhtRelayMsgs.noiseReply, { id: 3, payload: b4a.from('p'), isInitiator: true, complete: true, remoteId: fill(32, 1), holepunchSecret: fill(32, 2) })
}

console.log(JSON.stringify(out, null, 2))
