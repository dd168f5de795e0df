// The protomux-wakeup 2.9.0 messages (autobase 7.28.1's wakeup protocol) as JS encodes them, for
// the byte tests of core/src/protomux_wakeup (`wakeup_js_bytes`): prints one JSON object of hex
// strings. Keys and hashes are fixed fills (0x11.., 0x22..) so the Rust side can rebuild them.
// Usage: node wakeup-vectors.js
'use strict'

const crypto = require('hypercore-crypto')
const b4a = require('b4a')
const schema = require('protomux-wakeup/spec/hyperschema')

const fill = (b) => b4a.alloc(32, b)
const hex = (b) => b4a.toString(b, 'hex')
const enc = (name, m) => hex(schema.encode(name, m))
const [NS_INITIATOR, NS_RESPONDER] = crypto.namespace('wakeup', 2)
const handshakeHash = b4a.alloc(64, 0x33)

const out = {
  handshakeActive: enc('@wakeup/handshake', { version: 0, capability: fill(0x11), active: true }),
  handshakeInactive: enc('@wakeup/handshake', { version: 0, capability: fill(0x11), active: false }),
  handshakeVersion300: enc('@wakeup/handshake', { version: 300, capability: fill(0x22), active: true }),
  lookupEmpty: enc('@wakeup/lookup', { hash: null }),
  lookupHash: enc('@wakeup/lookup', { hash: fill(0x22) }),
  infoActive: enc('@wakeup/info', { active: true }),
  infoInactive: enc('@wakeup/info', { active: false }),
  announceEmpty: enc('@wakeup/announce', []),
  announceTwo: enc('@wakeup/announce', [
    { key: fill(0x11), length: 5 },
    { key: fill(0x22), length: 70000 }
  ]),
  // the capability proofs (index.js _makeCapability) for capability 0x11.., handshake hash 0x33..
  proofInitiator: hex(crypto.hash([NS_INITIATOR, fill(0x11), handshakeHash])),
  proofResponder: hex(crypto.hash([NS_RESPONDER, fill(0x11), handshakeHash])),
  // the topic id (channel id) of capability 0x11.. without a discovery key: crypto.discoveryKey
  topicId: hex(crypto.discoveryKey(fill(0x11))),
  // what JS decodes from bytes another implementation might send
  decodeInfoFlags3: schema.decode('@wakeup/info', b4a.from('03', 'hex')),
  decodeLookupFlags2: schema.decode('@wakeup/lookup', b4a.from('02', 'hex'))
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n')
