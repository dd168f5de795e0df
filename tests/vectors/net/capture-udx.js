// Capture raw UDX stream packets on loopback by routing two udx-native streams through a
// node:dgram proxy (127.0.0.1 only). Exits by itself.
// Run: NODE_PATH=../../interop/node_modules node capture-udx.js > out-udx.txt
const NM = (process.env.REF_NODE_MODULES || require('path').join(__dirname, '../../interop/node_modules')) + '/'
const dgram = require('dgram')
const fs = require('fs')
const UDX = require(NM + 'udx-native')
const b4a = require(NM + 'b4a')

const HARD = setTimeout(() => { console.log('hard timeout'); process.exit(2) }, 30000)
const FLAGS = ['DATA', 'END', 'SACK', 'MESSAGE', 'DESTROY', 'HEARTBEAT']
const t0 = Date.now()
const jsonl = fs.openSync(__dirname + '/out-udx.jsonl', 'w')

function decode(buf) {
  if (buf.byteLength < 20 || buf[0] !== 0xff) return { raw: b4a.toString(buf, 'hex') }
  const type = buf[2]
  const dataOffset = buf[3]
  const id = buf.readUInt32LE(4)
  const rwnd = buf.readUInt32LE(8)
  const seq = buf.readUInt32LE(12)
  const ack = buf.readUInt32LE(16)
  const flags = FLAGS.filter((_, i) => type & (1 << i))
  const r = { magic: buf[0], version: buf[1], type, flags: flags.length ? flags : ['ACK/STATE'], dataOffset, id, rwnd, seq, ack }
  let pos = 20
  if (type & 4) {
    const headerEnd = dataOffset > 0 ? 20 + dataOffset : buf.byteLength
    r.sacks = []
    while (pos + 8 <= headerEnd) {
      r.sacks.push([buf.readUInt32LE(pos), buf.readUInt32LE(pos + 4)])
      pos += 8
    }
  } else if (dataOffset) {
    pos += dataOffset // padding (MTU probe)
  }
  r.payloadLen = buf.byteLength - pos
  if (r.payloadLen > 0 && r.payloadLen <= 24) r.payload = b4a.toString(buf.subarray(pos), 'hex')
  return r
}

let dropped = false
function proxy(name, aPort, bPort) {
  const p = dgram.createSocket('udp4')
  p.on('message', (msg, rinfo) => {
    const toPort = rinfo.port === aPort ? bPort : aPort
    const dir = rinfo.port === aPort ? `${name}:A->B` : `${name}:B->A`
    const d = decode(msg)
    let drop = false
    // drop the 3rd DATA packet A->B once, to force SACK + retransmit
    if (!dropped && dir.endsWith('A->B') && d.flags && d.flags.includes('DATA') && d.seq === 2 && name === 'pair1') { drop = true; dropped = true }
    const line = `${String(Date.now() - t0).padStart(5)} ${dir} len=${msg.byteLength}${drop ? ' (DROPPED)' : ''} ${JSON.stringify(d)}`
    console.log(line)
    fs.writeSync(jsonl, JSON.stringify({ t: Date.now() - t0, dir, drop, len: msg.byteLength, hex: msg.byteLength <= 80 ? b4a.toString(msg, 'hex') : b4a.toString(msg.subarray(0, 80), 'hex') + '...', d }) + '\n')
    if (!drop) p.send(msg, toPort, '127.0.0.1')
  })
  return new Promise((resolve) => p.bind(0, '127.0.0.1', () => resolve(p)))
}

async function pair(name, u, aId, bId) {
  const sa = u.createSocket()
  const sb = u.createSocket()
  sa.bind(0, '127.0.0.1')
  sb.bind(0, '127.0.0.1')
  const p = await proxy(name, sa.address().port, sb.address().port)
  const pp = p.address().port
  const a = u.createStream(aId)
  const b = u.createStream(bId)
  a.connect(sa, bId, pp, '127.0.0.1')
  b.connect(sb, aId, pp, '127.0.0.1')
  return { a, b, sa, sb, p }
}

async function main() {
  const u = new UDX()
  console.log('# pair1: A(id=1) <-> B(id=2) bulk write 20000 bytes, drop seq 2 once, message, end both')
  const p1 = await pair('pair1', u, 1, 2)
  const got = []
  p1.b.on('data', (d) => got.push(d))
  p1.b.on('message', (msg) => console.log('# B got message', b4a.toString(msg)))
  p1.a.on('data', (d) => console.log('# A got data', b4a.toString(d)))
  p1.a.write(b4a.alloc(20000, 0x61))
  await new Promise((r) => setTimeout(r, 400))
  p1.a.send(b4a.from('datagram!'))
  p1.b.write(b4a.from('pong'))
  await new Promise((r) => setTimeout(r, 200))
  console.log('# B received bytes', got.reduce((n, d) => n + d.byteLength, 0), 'mtu A', p1.a.mtu, 'rtt', p1.a.rtt, 'cwnd', p1.a.cwnd)
  const closed = Promise.all([new Promise((r) => p1.a.once('close', r)), new Promise((r) => p1.b.once('close', r))])
  p1.b.resume()
  p1.a.resume()
  p1.a.end()
  p1.b.end()
  await closed
  console.log('# pair1 closed')

  console.log('# pair2: keepalive heartbeat (200ms) then destroy from A')
  const p2 = await pair('pair2', u, 3, 4)
  p2.b.on('error', (e) => console.log('# B error', e.code || e.message))
  p2.a.on('error', () => {})
  p2.a.setKeepalive(200)
  p2.a.write(b4a.from('x'))
  await new Promise((r) => setTimeout(r, 550))
  const c2 = new Promise((r) => p2.b.once('close', r))
  p2.a.destroy()
  await Promise.race([c2, new Promise((r) => setTimeout(r, 1000))])
  console.log('# pair2 done')

  for (const p of [p1, p2]) {
    await p.sa.close()
    await p.sb.close()
    p.p.close()
  }
  clearTimeout(HARD)
}
main().catch((e) => { console.log('fatal', e.stack); process.exit(1) })
