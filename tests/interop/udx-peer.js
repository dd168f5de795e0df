// A live udx-native 1.21.3 peer for tests/tests/udx_interop.rs.
//
// argv[2] is JSON: { rustPort, localId, remoteId, sendFirst, endFirst, sendAfterEnd, sendTag,
// recvTag, message }. Prints one JSON object per line: ready {port}, message {hex}, end
// {received, ok}, close {received, ok} or error {message}. Byte i of a stream tagged t is
// (i * 7 + (i >> 10) + t) & 255; the receiver checks every byte. Exits by itself after 60 s.
const UDX = require('udx-native')

const cfg = JSON.parse(process.argv[2])
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const pattern = (offset, len, tag) => {
  const b = Buffer.alloc(len)
  for (let j = 0; j < len; j++) {
    const i = offset + j
    b[j] = (i * 7 + Math.floor(i / 1024) + tag) & 255
  }
  return b
}
const writeAll = (stream, total, tag) => {
  for (let off = 0; off < total; off += 65536) {
    stream.write(pattern(off, Math.min(65536, total - off), tag))
  }
}

setTimeout(() => {
  out({ event: 'error', message: 'udx-peer timed out' })
  process.exit(2)
}, 60000).unref()

const udx = new UDX()
const socket = udx.createSocket()
socket.bind(0, '127.0.0.1')
out({ event: 'ready', port: socket.address().port })

const stream = udx.createStream(cfg.localId)
let received = 0
let ok = true
let messaged = false
stream.on('data', (d) => {
  const want = pattern(received, d.length, cfg.recvTag)
  if (!want.equals(d)) ok = false
  received += d.length
  if (!messaged && cfg.message) {
    messaged = true
    stream.send(Buffer.from(cfg.message))
  }
})
stream.on('message', (m) => out({ event: 'message', hex: m.toString('hex') }))
stream.on('end', () => {
  out({ event: 'end', received, ok })
  if (cfg.sendAfterEnd) writeAll(stream, cfg.sendAfterEnd, cfg.sendTag)
  if (!cfg.endFirst) stream.end()
})
stream.on('error', (e) => out({ event: 'error', message: e.message }))
stream.on('close', () => {
  out({ event: 'close', received, ok })
  setTimeout(() => socket.close().then(() => process.exit(0)), 300)
})
stream.connect(socket, cfg.remoteId, cfg.rustPort, '127.0.0.1')
if (cfg.sendFirst) writeAll(stream, cfg.sendFirst, cfg.sendTag)
if (cfg.endFirst) stream.end()
