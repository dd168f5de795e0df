// A live udx-native 1.21.3 peer for the UDX interop tests (tests/tests/udx_interop.rs,
// tests/tests/udx_lossy.rs, transport-native/tests/udx_cli.rs).
//
// argv[2] is JSON: { rustPort, localId, remoteId, sendFirst, endFirst, sendAfterEnd, sendTag,
// recvTag, message, destroyAfter, flushFirst, destroyOnFinish, moveAfter, timeoutMs }. Prints
// one JSON object per line: ready {port}, message {hex}, moved {port}, remote-changed,
// end {received, ok}, error {message, code}, close {received, ok}.
// Byte i of a stream tagged t is (i * 7 + (i >> 10) + t) & 255; the receiver checks every byte.
// Writes respect backpressure ('drain'). With destroyAfter the peer destroys the stream once it
// has received that many bytes. With flushFirst it waits until sendFirst is acknowledged
// (stream.flush(): by cumulative or selective acks) before it ends. With destroyOnFinish it
// destroys the stream as soon as 'finish' fires (udx-native: once the END is queued, not when
// it is acknowledged). With moveAfter the peer moves its end of the stream to a new socket
// (stream.changeRemote, a new port) once it has written that many bytes of sendFirst, prints
// `moved` with the new port, and `remote-changed` when udx-native reports the change complete.
// Exits by itself after timeoutMs (60 s by default).
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
const writeAll = async (stream, total, tag, onWritten) => {
  for (let off = 0; off < total; off += 65536) {
    if (onWritten) onWritten(off)
    const more = stream.write(pattern(off, Math.min(65536, total - off), tag))
    if (!more) await new Promise((resolve) => stream.once('drain', resolve))
  }
}

setTimeout(() => {
  out({ event: 'error', message: 'udx-peer timed out' })
  process.exit(2)
}, cfg.timeoutMs || 60000).unref()

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
  if (cfg.destroyAfter && received >= cfg.destroyAfter) stream.destroy()
})
stream.on('message', (m) => out({ event: 'message', hex: m.toString('hex') }))
stream.on('end', async () => {
  out({ event: 'end', received, ok })
  if (cfg.sendAfterEnd) await writeAll(stream, cfg.sendAfterEnd, cfg.sendTag)
  // Not before our own first writes are queued: ending earlier would cut them off.
  await sentFirst
  if (!cfg.endFirst) stream.end()
})
if (cfg.destroyOnFinish) stream.on('finish', () => stream.destroy())
stream.on('error', (e) => out({ event: 'error', message: e.message, code: e.code }))
stream.on('close', () => {
  out({ event: 'close', received, ok })
  setTimeout(() => socket.close().then(() => process.exit(0)), 300)
})
stream.connect(socket, cfg.remoteId, cfg.rustPort, '127.0.0.1')
const sentFirst = (async () => {
  let moved = false
  const move = (written) => {
    if (!cfg.moveAfter || moved || written < cfg.moveAfter) return
    moved = true
    const next = udx.createSocket()
    next.bind(0, '127.0.0.1')
    out({ event: 'moved', port: next.address().port })
    stream.changeRemote(next, cfg.remoteId, cfg.rustPort, '127.0.0.1').then(
      () => out({ event: 'remote-changed' }),
      (e) => out({ event: 'error', message: e.message })
    )
  }
  if (cfg.sendFirst) await writeAll(stream, cfg.sendFirst, cfg.sendTag, move)
  if (cfg.flushFirst) await stream.flush()
  if (cfg.endFirst) stream.end()
})()
