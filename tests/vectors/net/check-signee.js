// Checks how dht-relay 0.4.3 SigneeProxy encodes a signAnnounce request when called the way
// hyperdht's Announcer calls signAnnounce(target, token, id, ann, keyPair).
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const c = require(NM + '@hyperswarm/dht-relay/node_modules/compact-encoding/index.js')
const msgs = require(NM + '@hyperswarm/dht-relay/lib/messages.js')
const b4a = require(NM + 'b4a')
const ann = { peer: { publicKey: b4a.alloc(32, 1), relayAddresses: [] }, refresh: null, signature: null }
const { peer: relayAddresses } = ann // what signee-proxy.js:19 destructures
try {
  const buf = c.encode(msgs.signAnnounce, { id: 1, signee: 2, token: b4a.alloc(32, 3), peerId: b4a.alloc(32, 4), relayAddresses })
  console.log('encoded', b4a.toString(buf, 'hex'))
} catch (e) { console.log('THROWS', e.message) }
