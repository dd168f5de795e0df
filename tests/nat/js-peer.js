// The JS side of the NAT lab (tests/nat/lab.sh): the pinned hyperdht 6.34.0 as a new user runs
// it, in the lab's network namespaces. Never the public bootstrap nodes: every command takes
// an explicit --bootstrap list (or builds the lab's own DHT).
//
//   node js-peer.js nodes HOST:PORT[,HOST:PORT...]
//       the lab's "internet" DHT in one process: the first address is a bootstrapper
//       (`DHT.bootstrapper`), the others persistent nodes (as hyperdht's testnet) bound to
//       their own host; prints `ready` on stderr once all are bootstrapped; runs until killed.
//   node js-peer.js listen --seed HEX --bootstrap B [--relay-through KEY] [--message M]
//       a server (`dht.createServer`): prints `listening KEY` on stderr, then, for its first
//       connection, `connected HOST:PORT` on stderr, sends M, ends, and prints what the peer
//       sent on stdout; exits once both sides ended.
//   node js-peer.js connect KEY --bootstrap B [--relay-through KEY] [--relay-host IP] [--message M]
//       a client: bootstraps, then connects (`dht.connect`) and prints on stderr
//       `connected HOST:PORT via direct|punched|relayed in N ms` (N: from the connect call to
//       the open stream; relayed: the stream runs to --relay-host, the relay's address;
//       direct: hyperdht counted an open-server connection, no punch), sends M, ends, prints
//       what the server sent on stdout and exits 0 once both sides ended; on failure prints
//       `error CODE` on stderr and exits 1.
const HyperDHT = require('hyperdht')
const b4a = require('b4a')
const crypto = require('crypto')

const argv = process.argv.slice(2)
const cmd = argv.shift()
const flags = {}
const positional = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i].startsWith('--')) flags[argv[i].slice(2)] = argv[++i]
  else positional.push(argv[i])
}

function parse(list) {
  return list
    .split(',')
    .filter(Boolean)
    .map((s) => {
      const [host, port] = s.split(':')
      return { host, port: Number(port) }
    })
}

function fail(err) {
  process.stderr.write('error ' + ((err && err.code) || String(err)) + '\n')
  process.exit(1)
}

// Bind the address of the namespace's default route interface (all interfaces: 0.0.0.0), as
// a user's process does.
function peer() {
  if (!flags.bootstrap) fail('--bootstrap is required')
  return new HyperDHT({ bootstrap: parse(flags.bootstrap) })
}

// --bulk-mib N (with --sent FILE): after the message line, send N/2 MiB of random bytes, then
// 64 KiB every 250 ms until the stream moved from a relay to a direct path (bounded: 120
// rounds), then N/2 MiB more, and write everything sent to FILE (the lab compares hashes).
function sendBulk(socket, message) {
  const mib = Number(flags['bulk-mib'] || 0)
  const sent = [b4a.from(message)]
  const send = (b) => {
    sent.push(b)
    socket.write(b)
  }
  socket.write(sent[0])
  send(crypto.randomBytes((mib * 1048576) / 2))
  let upgraded = false
  const raw = socket.rawStream
  if (raw) raw.once('remote-changed', () => (upgraded = true))
  let rounds = 0
  const tick = () => {
    if (!upgraded && rounds++ < 120) {
      send(crypto.randomBytes(65536))
      return setTimeout(tick, 250)
    }
    send(crypto.randomBytes((mib * 1048576) / 2))
    if (flags.sent) require('fs').writeFileSync(flags.sent, b4a.concat(sent))
    socket.end()
  }
  tick()
}

function pipe(socket, message, onend) {
  let ended = false
  let closed = false
  const raw0 = socket.rawStream
  if (raw0) {
    raw0.on('remote-changed', () => {
      process.stderr.write('upgraded to direct ' + raw0.remoteHost + ':' + raw0.remotePort + '\n')
    })
  }
  socket.on('data', (d) => process.stdout.write(d))
  socket.on('end', () => {
    ended = true
    socket.end()
  })
  socket.on('error', (e) => {
    if (!closed && !ended) fail(e)
  })
  socket.on('close', () => {
    closed = true
    // The secret stream closes once both sides ended, before the raw UDX stream has had what
    // we sent acknowledged: wait for the raw stream (bounded), or our last bytes are lost.
    const raw = socket.rawStream
    if (!raw || raw.destroyed) return onend(ended)
    const t = setTimeout(() => onend(ended), 5000)
    raw.once('close', () => {
      clearTimeout(t)
      onend(ended)
    })
  })
  if (flags['bulk-mib']) return sendBulk(socket, message)
  socket.write(b4a.from(message))
  socket.end()
}

async function main() {
  if (cmd === 'nodes') {
    const addrs = parse(positional[0] || '')
    const nodes = []
    const first = HyperDHT.bootstrapper(addrs[0].port, addrs[0].host, { host: addrs[0].host })
    nodes.push(first)
    await first.fullyBootstrapped()
    for (const a of addrs.slice(1)) {
      const n = new HyperDHT({
        bootstrap: [addrs[0]],
        host: a.host,
        port: a.port,
        anyPort: false,
        ephemeral: false,
        firewalled: false
      })
      nodes.push(n)
      await n.fullyBootstrapped()
    }
    process.stderr.write('ready\n')
    return
  }

  if (cmd === 'listen') {
    const dht = peer()
    const relayThrough = flags['relay-through'] ? b4a.from(flags['relay-through'], 'hex') : null
    let taken = false
    const server = dht.createServer({ relayThrough }, (socket) => {
      if (taken) return socket.destroy()
      taken = true
      const rs = socket.rawStream
      process.stderr.write('connected ' + rs.remoteHost + ':' + rs.remotePort + '\n')
      pipe(socket, flags.message || 'world\n', () => {
        dht.destroy().then(() => process.exit(0))
      })
    })
    await server.listen(HyperDHT.keyPair(b4a.from(flags.seed, 'hex')))
    process.stderr.write('listening ' + b4a.toString(server.publicKey, 'hex') + '\n')
    return
  }

  if (cmd === 'connect') {
    const dht = peer()
    // HP_LAB_CONNECT_EARLY=1: connect at once, before the node's firewall check can finish
    // (the node still takes itself for firewalled, though it may be on a public address).
    if (!process.env.HP_LAB_CONNECT_EARLY) await dht.fullyBootstrapped()
    const relayThrough = flags['relay-through'] ? b4a.from(flags['relay-through'], 'hex') : null
    const before = dht.stats.punches.open
    const start = process.hrtime.bigint()
    const socket = dht.connect(b4a.from(positional[0], 'hex'), { relayThrough })
    let opened = false
    socket.once('open', () => {
      opened = true
      const ms = Number(process.hrtime.bigint() - start) / 1e6
      const rs = socket.rawStream
      const how =
        flags['relay-host'] && rs.remoteHost === flags['relay-host']
          ? 'relayed'
          : dht.stats.punches.open > before
            ? 'direct'
            : 'punched'
      process.stderr.write(
        'connected ' + rs.remoteHost + ':' + rs.remotePort + ' via ' + how + ' in ' + ms.toFixed(0) + ' ms\n'
      )
      pipe(socket, flags.message || 'hello\n', () => {
        dht.destroy().then(() => process.exit(0))
      })
    })
    socket.once('error', (e) => {
      if (!opened) fail(e)
    })
    return
  }

  fail('usage: js-peer.js nodes|listen|connect ...')
}

main().catch(fail)
