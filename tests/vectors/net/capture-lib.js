// Shared helper: hooks udx-native sockets (JS level) to log every datagram sent/received
// by dht-rpc/hyperdht (RPC messages and 1-byte holepunch probes). UDX stream packets are
// produced inside libudx (C) and are NOT visible here (see capture-udx.js for those).
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const fs = require('fs')
const c = require(NM + 'compact-encoding')
const b4a = require(NM + 'b4a')
const Socket = require(NM + 'udx-native/lib/socket.js')
const m = require(NM + 'hyperdht/lib/messages.js')

const CMD_INTERNAL = ['PING', 'PING_NAT', 'FIND_NODE', 'DOWN_HINT', 'DELAYED_PING']
const CMD_USER = ['PEER_HANDSHAKE', 'PEER_HOLEPUNCH', 'FIND_PEER', 'LOOKUP', 'ANNOUNCE', 'UNANNOUNCE', 'MUTABLE_PUT', 'MUTABLE_GET', 'IMMUTABLE_PUT', 'IMMUTABLE_GET', 'PLUGIN']
const MODES = ['FROM_CLIENT', 'FROM_SERVER', 'FROM_RELAY', 'FROM_SECOND_RELAY', 'REPLY']
const hex = (b) => (b ? b4a.toString(b, 'hex') : null)
const short = (b) => (b ? b4a.toString(b, 'hex').slice(0, 16) + '..' : null)

const tidCommand = new Map() // "tid" -> {command, internal}

function decodeDatagram(buf) {
  if (buf.byteLength === 1) return { kind: 'HOLEPUNCH_PROBE', byte: buf[0] }
  if (buf[0] === 0xff) return { kind: 'UDX?' }
  const state = { start: 1, end: buf.byteLength, buffer: buf }
  try {
    if (buf[0] === 0x03) {
      const flags = c.uint.decode(state)
      const tid = c.uint16.decode(state)
      const to = c.ipv4Address.decode(state)
      const id = flags & 1 ? c.fixed32.decode(state) : null
      const token = flags & 2 ? c.fixed32.decode(state) : null
      const internal = (flags & 4) !== 0
      const command = c.uint.decode(state)
      const target = flags & 8 ? c.fixed32.decode(state) : null
      const value = flags & 16 ? c.buffer.decode(state) : null
      const name = internal ? CMD_INTERNAL[command] : CMD_USER[command]
      tidCommand.set(tid, { name, internal })
      return { kind: 'REQUEST', flags, tid, to: to.host + ':' + to.port, id: short(id), token: short(token), internal, command: name, target: short(target), value: decodeValue(name, value, false), valueLen: value ? value.byteLength : 0 }
    }
    if (buf[0] === 0x13) {
      const flags = c.uint.decode(state)
      const tid = c.uint16.decode(state)
      const to = c.ipv4Address.decode(state)
      const id = flags & 1 ? c.fixed32.decode(state) : null
      const token = flags & 2 ? c.fixed32.decode(state) : null
      const closer = flags & 4 ? c.array(c.ipv4Address).decode(state) : null
      const error = flags & 8 ? c.uint.decode(state) : 0
      const value = flags & 16 ? c.buffer.decode(state) : null
      const req = tidCommand.get(tid)
      return { kind: 'RESPONSE', flags, tid, forCommand: req ? req.name : '?', to: to.host + ':' + to.port, id: short(id), token: short(token), closerNodes: closer ? closer.map((a) => a.host + ':' + a.port) : null, error, value: decodeValue(req && req.name, value, true), valueLen: value ? value.byteLength : 0 }
    }
  } catch (e) {
    return { kind: 'UNDECODABLE', err: e.message }
  }
  return { kind: 'OTHER' }
}

function decodeValue(name, value, isReply) {
  if (!value) return null
  try {
    switch (name) {
      case 'PEER_HANDSHAKE': {
        const h = c.decode(m.handshake, value)
        return { mode: MODES[h.mode], noiseLen: h.noise.byteLength, peerAddress: addr(h.peerAddress), relayAddress: addr(h.relayAddress) }
      }
      case 'PEER_HOLEPUNCH': {
        const h = c.decode(m.holepunch, value)
        return { mode: MODES[h.mode], id: h.id, payloadLen: h.payload.byteLength, peerAddress: addr(h.peerAddress) }
      }
      case 'PING_NAT':
      case 'DOWN_HINT':
      case 'DELAYED_PING':
        return hex(value)
      case 'FIND_PEER':
        return isReply ? { peer: short(c.decode(m.peer, value).publicKey) } : hex(value)
      case 'LOOKUP': {
        if (!isReply) return hex(value)
        const l = c.decode(m.lookupRawReply, value)
        return { peers: l.peers.map((p) => ({ publicKey: short(p.publicKey), relayAddresses: p.relayAddresses.map(addr) })), bump: l.bump }
      }
      case 'ANNOUNCE':
      case 'UNANNOUNCE': {
        if (isReply) return hex(value)
        const a = c.decode(m.announce, value)
        return { peer: a.peer && { publicKey: short(a.peer.publicKey), relayAddresses: a.peer.relayAddresses.map(addr) }, refresh: short(a.refresh), signature: short(a.signature), bump: a.bump }
      }
      case 'MUTABLE_GET':
        if (!isReply) return { seq: c.decode(c.uint, value) }
        return (({ seq, value: v }) => ({ seq, value: b4a.toString(v) }))(c.decode(m.mutableGetResponse, value))
      case 'MUTABLE_PUT':
        if (isReply) return hex(value)
        return (({ seq, value: v }) => ({ seq, value: b4a.toString(v) }))(c.decode(m.mutablePutRequest, value))
      default:
        return value.byteLength <= 64 ? hex(value) : short(value)
    }
  } catch (e) {
    return 'undecodable:' + hex(value)
  }
}
function addr(a) {
  return a ? a.host + ':' + a.port : null
}

function install(logPath, names = new Map()) {
  const t0 = Date.now()
  const fd = fs.openSync(logPath, 'w')
  const label = (sock) => {
    const a = sock.address && sock.bound ? sock.address() : null
    const p = a ? a.port : 0
    return names.get(p) || String(p)
  }
  const log = (dir, sock, buf, host, port, ttl) => {
    const rec = { t: Date.now() - t0, dir, local: label(sock), remote: (names.get(port) || port) + (host === '127.0.0.1' ? '' : '@' + host), ttl: ttl || undefined, len: buf.byteLength, hex: hex(buf), d: decodeDatagram(buf) }
    fs.writeSync(fd, JSON.stringify(rec) + '\n')
  }
  const origTry = Socket.prototype.trySend
  const origSend = Socket.prototype.send
  const origEmit = Socket.prototype.emit
  Socket.prototype.trySend = function (buf, port, host, ttl) {
    log('tx', this, buf, host, port, ttl)
    return origTry.call(this, buf, port, host, ttl)
  }
  Socket.prototype.send = function (buf, port, host, ttl) {
    log('tx', this, buf, host, port, ttl)
    return origSend.call(this, buf, port, host, ttl)
  }
  Socket.prototype.emit = function (name, ...args) {
    if (name === 'message') {
      const [buf, rinfo] = args
      log('rx', this, buf, rinfo.host, rinfo.port)
    }
    return origEmit.call(this, name, ...args)
  }
  return { names, note: (obj) => fs.writeSync(fd, JSON.stringify({ t: Date.now() - t0, note: obj }) + '\n') }
}

module.exports = { install, decodeDatagram }
