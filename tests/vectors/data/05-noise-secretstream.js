// Deterministic Noise XX (Ed25519 DH, ChaChaPoly, BLAKE2b) + secret-stream framing vectors.
// Uses the SAME modules @hyperswarm/secret-stream 6.9.2 uses (nested noise-handshake 4.2.0 + noise-curve-ed 2.1.0).
const base = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/@hyperswarm/secret-stream/node_modules/'
const Noise = require(base + 'noise-handshake')
const curve = require('noise-curve-ed')
const sodium = require('sodium-universal')
const crypto = require('hypercore-crypto')
const hex = (b) => Buffer.from(b).toString('hex')

function fixedCurve (seed) { return { ...curve, generateKeyPair: () => curve.generateKeyPair(Buffer.alloc(32, seed)) } }
const iS = curve.generateKeyPair(Buffer.alloc(32, 0x11)) // == crypto_sign_seed_keypair(seed)
const rS = curve.generateKeyPair(Buffer.alloc(32, 0x22))
console.log('initiator static pk', hex(iS.publicKey)); console.log('responder static pk', hex(rS.publicKey))
console.log('initiator ephemeral seed = 0xa1*32 -> pk', hex(curve.generateKeyPair(Buffer.alloc(32, 0xa1)).publicKey))
console.log('responder ephemeral seed = 0xb2*32 -> pk', hex(curve.generateKeyPair(Buffer.alloc(32, 0xb2)).publicKey))
const EMPTY = Buffer.alloc(0)
const I = new Noise('XX', true, iS, { curve: fixedCurve(0xa1) })
const R = new Noise('XX', false, rS, { curve: fixedCurve(0xb2) })
console.log('protocol name', JSON.stringify(I.protocol.toString()), I.protocol.length + 'B')
I.initialise(EMPTY); R.initialise(EMPTY)
console.log('h0 (after initialise, prologue empty)', hex(I.digest))
// NOTE: copy each message before the peer parses it: noise-handshake keeps `re` as a view into the
// received buffer and zero-fills it on completion (_clear), which would otherwise wipe our printout.
const m1 = Buffer.from(I.send()); R.recv(Buffer.from(m1))
const m2 = Buffer.from(R.send()); I.recv(Buffer.from(m2))
const m3 = Buffer.from(I.send()); R.recv(Buffer.from(m3))
console.log('msg1', m1.length + 'B', hex(m1))
console.log('msg2', m2.length + 'B', hex(m2))
console.log('msg3', m3.length + 'B', hex(m3))
console.log('handshakeHash', hex(I.hash), 'equal:', Buffer.compare(I.hash, R.hash) === 0)
console.log('I.tx', hex(I.tx), ' I.rx', hex(I.rx))
console.log('R.tx', hex(R.tx), ' R.rx', hex(R.rx))
console.log('I.rs == rS.pk', Buffer.compare(I.rs, rS.publicKey) === 0)

// secret-stream wire framing of handshake messages: uint24le(len) || msg
const fr = (b) => { const o = Buffer.alloc(b.length + 3); o[0] = b.length & 255; o[1] = (b.length >> 8) & 255; o[2] = b.length >> 16; b.copy(o, 3); return o }
console.log('framed msg1', hex(fr(m1)))

// stream id + secretstream header message
const [NS_INITIATOR, NS_RESPONDER, NS_SEND] = crypto.namespace('hyperswarm/secret-stream', 3)
console.log('NS_INITIATOR', hex(NS_INITIATOR)); console.log('NS_RESPONDER', hex(NS_RESPONDER)); console.log('NS_SEND', hex(NS_SEND))
const hh = I.hash
const idI = Buffer.alloc(32); sodium.crypto_generichash(idI, NS_INITIATOR, hh)
const idR = Buffer.alloc(32); sodium.crypto_generichash(idR, NS_RESPONDER, hh)
console.log('streamId(initiator) = blake2b256(msg=NS_INITIATOR, key=handshakeHash)', hex(idI))
console.log('streamId(responder)', hex(idR))

// Secretstream: a deterministic push using a chosen header (state from init_pull(header) == state from init_push producing that header)
const header = Buffer.alloc(24, 0x5a)
const key = I.tx.subarray(0, 32)
const st = Buffer.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
sodium.crypto_secretstream_xchacha20poly1305_init_pull(st, header, key)
console.log('header message (initiator->responder) =', hex(fr(Buffer.concat([idI, header]))), '(uint24le 56 || streamId || 24B header)')
const TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
console.log('TAG_MESSAGE', TAG_MESSAGE, 'TAG_FINAL', sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL, 'ABYTES', sodium.crypto_secretstream_xchacha20poly1305_ABYTES, 'HEADERBYTES', sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES)
const msgs = [Buffer.from('hello'), Buffer.alloc(0), Buffer.from('0001010f6879706572636f72652f616c706861', 'hex')]
const cts = []
for (const p of msgs) {
  const ct = Buffer.alloc(p.length + 17)
  sodium.crypto_secretstream_xchacha20poly1305_push(st, ct, p, null, TAG_MESSAGE)
  cts.push(ct)
  console.log('push(%s) -> frame %s', JSON.stringify(hex(p)), hex(fr(ct)))
}
// verify by independent pull
const ps = Buffer.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
sodium.crypto_secretstream_xchacha20poly1305_init_pull(ps, header, R.rx.subarray(0, 32))
for (const ct of cts) {
  const out = Buffer.alloc(ct.length - 17); const tag = Buffer.alloc(1)
  sodium.crypto_secretstream_xchacha20poly1305_pull(ps, out, tag, ct, null)
  console.log('pull ->', JSON.stringify(hex(out)), 'tag', tag[0])
}
// UDP "send" channel keys
const encI = Buffer.alloc(32); sodium.crypto_generichash_batch(encI, [NS_INITIATOR, NS_SEND], hh)
const encR = Buffer.alloc(32); sodium.crypto_generichash_batch(encR, [NS_RESPONDER, NS_SEND], hh)
console.log('secretbox send key (initiator tx / responder rx) =', hex(encI))
console.log('secretbox send key (responder tx / initiator rx) =', hex(encR))
