// Live protomux peer (driven by tests/tests/interop_protomux.rs).
//
// Input (argv[2] or stdin): { "port": n, "role": "opener" | "answerer" }. Connects to 127.0.0.1:port
// and runs protomux 3.12.1 over the plain TCP socket, framed as `uint24le length ‖ frame` (one
// protomux message per frame), with this script on both roles:
//
// * Both sides open the chat channel on connect, before reading anything (the opens cross):
//   protocol "hp/chat/v2", aliases ["hp/chat"], handshake c.uint(1 for the opener, 2 otherwise),
//   messages [c.string]. (The Rust peer opens it as "hp/chat" with alias "hp/chat/v2".)
// * The opener also opens "hp/kv" (id c0ffee, handshake c.string("hello from js"), messages
//   [c.string, c.uint, c.buffer]), "hp/unknown" (nobody pairs: rejected) and "hp/maybe" (paired
//   but declined: rejected). The answerer pairs "hp/kv" (answering with handshake
//   c.string("welcome from js")) and "hp/maybe" (declining: creates no channel).
// * When kv opens, each side sends: t0 "js says hi", t1 300, then corked: t2 buffer 0001ff,
//   t0 "batched 1", t1 2^40, chat t0 "chat in batch"; uncorked; then t0 "bye".
// * The opener closes chat then kv once it got the remote's "bye"; the answerer ends the socket
//   once kv is closed by the remote.
//
// Output: one JSON document: { tx: [hex frame...], rx: [hex frame...], events: [...],
// messages: [{ channel, type, value }] } where values are strings, numbers or hex (buffers).
// Exits by itself: on socket close, or with an error after a timeout.
'use strict'

const net = require('net')
const Protomux = require('protomux')
const { Duplex } = require('streamx')
const c = require('compact-encoding')

const hex = (b) => Buffer.from(b).toString('hex')

class Framed extends Duplex {
  constructor (socket) {
    super()
    this.socket = socket
    this.pending = Buffer.alloc(0)
    this.tx = []
    this.rx = []
    socket.on('data', (data) => {
      this.pending = Buffer.concat([this.pending, data])
      while (this.pending.length >= 3) {
        const len = this.pending[0] | (this.pending[1] << 8) | (this.pending[2] << 16)
        if (this.pending.length < 3 + len) break
        const frame = Buffer.from(this.pending.subarray(3, 3 + len))
        this.pending = this.pending.subarray(3 + len)
        this.rx.push(hex(frame))
        this.push(frame)
      }
    })
    socket.on('end', () => this.push(null))
    socket.on('error', (err) => this.destroy(err))
    socket.on('close', () => this.destroy())
  }

  _write (data, cb) {
    this.tx.push(hex(data))
    const head = Buffer.alloc(3)
    head.writeUIntLE(data.length, 0, 3)
    this.socket.write(Buffer.concat([head, data]), cb)
  }

  _final (cb) {
    this.socket.end()
    cb()
  }

  _destroy (cb) {
    this.socket.destroy()
    cb()
  }
}

function readInput () {
  if (process.argv[2]) return Promise.resolve(JSON.parse(process.argv[2]))
  return new Promise((resolve, reject) => {
    let s = ''
    process.stdin.on('data', (d) => { s += d })
    process.stdin.on('end', () => {
      try { resolve(JSON.parse(s)) } catch (e) { reject(e) }
    })
  })
}

function value (v) {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return hex(v)
  return v
}

async function main () {
  const { port, role } = await readInput()
  const opener = role === 'opener'
  const timer = setTimeout(() => {
    console.error('protomux-peer: timed out')
    process.exit(1)
  }, 15000)

  const socket = net.connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.setNoDelay(true)
  const stream = new Framed(socket)
  const mux = new Protomux(stream)

  const events = []
  const messages = []
  const record = (channel) => (type, encoding) => ({
    encoding,
    onmessage: (m) => {
      messages.push({ channel, type, value: value(m) })
      if (channel === 'kv' && type === 0 && m === 'bye' && opener) {
        chat.close()
        kv.close()
      }
    }
  })
  const kvMessages = [c.string, c.uint, c.buffer].map((enc, t) => record('kv')(t, enc))
  let kv = null

  const chat = mux.createChannel({
    protocol: 'hp/chat/v2',
    aliases: ['hp/chat'],
    handshake: c.uint,
    messages: [record('chat')(0, c.string)],
    onopen: (hs) => events.push({ event: 'open', channel: 'chat', handshake: value(hs) }),
    onclose: (remote) => events.push({ event: 'close', channel: 'chat', remote })
  })
  chat.open(opener ? 1 : 2)

  const sendScript = () => {
    kv.messages[0].send('js says hi')
    kv.messages[1].send(300)
    mux.cork()
    kv.messages[2].send(Buffer.from('0001ff', 'hex'))
    kv.messages[0].send('batched 1')
    kv.messages[1].send(2 ** 40)
    chat.messages[0].send('chat in batch')
    mux.uncork()
    kv.messages[0].send('bye')
  }

  const kvChannel = (handshake) => {
    kv = mux.createChannel({
      protocol: 'hp/kv',
      id: Buffer.from('c0ffee', 'hex'),
      handshake: c.string,
      messages: kvMessages,
      onopen: (hs) => {
        events.push({ event: 'open', channel: 'kv', handshake: value(hs) })
        sendScript()
      },
      onclose: (remote) => {
        events.push({ event: 'close', channel: 'kv', remote })
        if (!opener) stream.end()
      }
    })
    kv.open(handshake)
    return kv
  }

  if (opener) {
    kvChannel('hello from js')
    for (const protocol of ['hp/unknown', 'hp/maybe']) {
      const ch = mux.createChannel({
        protocol,
        onopen: () => events.push({ event: 'open', channel: protocol }),
        onclose: (remote) => events.push({ event: 'rejected', channel: protocol, remote })
      })
      ch.open()
    }
  } else {
    mux.pair({ protocol: 'hp/kv' }, (id) => {
      events.push({ event: 'pair', protocol: 'hp/kv', id: value(id) })
      kvChannel('welcome from js')
    })
    mux.pair({ protocol: 'hp/maybe' }, (id) => {
      events.push({ event: 'pair', protocol: 'hp/maybe', id: id && value(id) })
    })
  }

  if (opener) {
    // After closing, end our side once everything is written.
    const check = setInterval(() => {
      if (kv && kv.closed && chat.closed) {
        clearInterval(check)
        stream.end()
      }
    }, 10)
  }

  await new Promise((resolve) => socket.once('close', resolve))
  clearTimeout(timer)
  process.stdout.write(JSON.stringify({ tx: stream.tx, rx: stream.rx, events, messages }))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
