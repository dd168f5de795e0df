// Golden vector for secret-stream unordered datagrams (stream.send -> UDX MESSAGE packet payload).
// Uses the deterministic handshake hash from vectors-static.json (noiseIK.handshakeHash).
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const SecretStream = require(NM + '@hyperswarm/secret-stream')
const sodium = require(NM + 'sodium-universal')
const b4a = require(NM + 'b4a')
const hash = b4a.from(require('./vectors-static.json').noiseIK.handshakeHash, 'hex')
const s = new SecretStream(true, null, { autoStart: false })
s._setupSecretSend(hash)
s._sendState.subarray(64, 72).fill(0)           // counter := 0 (normally random)
s._sendState.subarray(72).fill(0xff)            // initial := ff.. so no "exhausted" trip
const env = s._boxMessage(b4a.from('hello'))
// receiver side: key = blake2b-256([NS_INITIATOR, NS_SEND], key=hash) for messages from the initiator
const r = new SecretStream(false, null, { autoStart: false })
r._setupSecretSend(hash)
const nonce = b4a.alloc(24); nonce.set(env.subarray(0, 8))
const plain = b4a.alloc(env.byteLength - 8 - 16)
const ok = sodium.crypto_secretbox_open_easy(plain, env.subarray(8), nonce, r._sendState.subarray(32, 64))
console.log(JSON.stringify({
  initiatorSendKey: b4a.toString(s._sendState.subarray(0, 32), 'hex'),
  responderRecvKey: b4a.toString(r._sendState.subarray(32, 64), 'hex'),
  counterAfterIncrement: b4a.toString(env.subarray(0, 8), 'hex'),
  envelope: b4a.toString(env, 'hex'),
  layout: 'counter(8, LE, incremented before use) || mac(16) || ciphertext; nonce = counter || 16 zero bytes; key = blake2b-256(NS_INITIATOR||NS_SEND, key=handshakeHash) for initiator->responder',
  decrypts: ok, plain: b4a.toString(plain)
}, null, 2))
s.destroy(); r.destroy()
