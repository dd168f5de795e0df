// A JS member of a `hyperpunch chat` room: autobase 7.28.1 with the chat's apply function
// (values {"type":"message","text"} and {"type":"add","key"[,"indexer":true]}; the view `messages` holds
// {"from","text"}), connected over TCP (secret-stream + corestore.replicate) to a hyperpunch chat
// that `--listen`s, or (create: true) the creator of a room that hyperpunch chats join.
// For transport-native/tests/chat_cli.rs.
//
// Usage: node autobase-chat.js '<json config>'
//   room: hex room key; port: the hyperpunch member's port on 127.0.0.1
//   say: [text] messages to send once writable; expect: messages to wait for in the view
//   deadline: ms (default 60000); linger: after 'done', keep replicating until killed (or the
//   deadline), so the other member can still fetch our blocks
//   ack: ack as an indexer (when `ackable`, and an ack when nodes wait unindexed); its 'done'
//   lists the indexed messages, and with linger it goes on acking after 'done' (the other
//   indexers need its acks: with two indexers the majority is both, so one that stops acking
//   stops the room's indexing)
//   reader: do not wait to be added; fastForwardKey: hex system key to fast-forward to at start
//   waitSigned: 'done' also waits until the system core is signed past its prologue
//   encryptionKey: hex, the room's encryption key (JS `encryptionKey`, `hyperpunch chat --encryption-key`)
//   wakeup: replicate with `base.replicate(stream)` (corestore replication plus the
//   protomux-wakeup channel) instead of `store.replicate`; 'done' then has `wakeupPeers`, the
//   peers its wakeup session has (whose channel opened with a valid capability)
//   optimistic: an open room (JS `optimistic: true`, `hyperpunch chat --optimistic`): the apply
//   keeps a non-member's optimistic message by adding its writer (`host.addWriter(from.key)`)
//   and drops its optimistic `add`s (not acked: rolled back); a member does not wait to be
//   added, it sends `say` with `append(value, { optimistic: true })` while it is not writable
//   optimisticSay: [text] sent with `{ optimistic: true }` at once, whatever the base (on a base
//   that is not optimistic nobody applies them); the member then does not wait to be added
//   waitPeerHas: 'done' also waits until a peer holds every block of its oplog (the peer's
//   bitfield: it downloaded them)
//   ackInterval: ms, JS autobase's own ack timer (default 0: none); with ack, such a member writes
//   no ack of its own accord: its timer does (it still reports what is indexed)
// Prints {event:'writer', key}, {event:'writable'}, {event:'done', messages:['<from8>: text'],
// fastForwards:[{to, from}] (its 'fast-forward' events), systemKey, viewKey, signedLength,
// prologueLength, indexers (the system core's signers), localLength (its oplog's entries),
// writable (whether it is a writer now)}.
//
// With create: true, it creates the room (its writer key is the room key, it is the indexer and
// acks; `count`: it first appends that many messages m0, m1, ... in batches of `batch`), listens
// on 127.0.0.1 (any port) and prints {event:'room', key, port, systemLength, signedLength}; then it reads
// commands on stdin, one JSON object a line: {"add": "<writer key>"} adds a writer (not an
// indexer), {"say": "text"} sends a message. Once its view holds `expect` indexed messages it
// prints {event:'done', messages}, and it keeps serving (and acking) until stdin closes.
'use strict'

const net = require('net')
const fs = require('fs')
const os = require('os')
const path = require('path')
const Corestore = require('corestore')
const Autobase = require('autobase')
const SecretStream = require('@hyperswarm/secret-stream')
const b4a = require('b4a')

const cfg = JSON.parse(process.argv[2] || fs.readFileSync(0, 'utf8') || '{}')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
// dir: the store's folder (the test's own temporary folder, so that it goes when the test kills us)
const dir = cfg.dir ? (fs.mkdirSync(cfg.dir, { recursive: true }), cfg.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abchat-'))
const cleanup = () => { try { fs.rmSync(dir, { recursive: true, force: true }) } catch {} }
const deadline = setTimeout(() => { out({ event: 'deadline' }); cleanup(); process.exit(2) }, cfg.deadline || 60000)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function open (store, key, extra = {}) {
  return new Autobase(store, key, {
    ...extra,
    valueEncoding: 'json',
    ackInterval: cfg.ackInterval || 0,
    encryptionKey: cfg.encryptionKey ? b4a.from(cfg.encryptionKey, 'hex') : undefined,
    optimistic: !!cfg.optimistic,
    open: (s) => s.get('messages'),
    apply: async (nodes, view, host) => {
      for (const { value, from, optimistic } of nodes) {
        // a non-member's optimistic `add` is not acked: autobase rolls it back
        if (value && value.type === 'add' && !optimistic) { await host.addWriter(b4a.from(value.key, 'hex'), { indexer: value.indexer === true }); continue }
        if (value && value.type === 'message') {
          // an open room keeps a non-member's optimistic message by adding its writer
          if (optimistic) await host.addWriter(from.key, { indexer: false })
          await view.append(b4a.from(JSON.stringify({ from: b4a.toString(from.key, 'hex'), text: value.text })))
        }
      }
    }
  })
}

async function indexedMessages (base) {
  const info = await base.system.getIndexedInfo(base.indexedLength)
  const n = info.views.length ? info.views[0].length : 0
  const messages = []
  for (let i = 0; i < n; i++) {
    const v = JSON.parse(b4a.toString(await base.view.get(i)))
    messages.push(`${v.from.slice(0, 8)}: ${v.text}`)
  }
  return messages
}

async function create () {
  const store = new Corestore(dir)
  const base = open(store, null)
  await base.ready()
  const sockets = []
  const server = net.createServer((socket) => {
    sockets.push(socket)
    const s = new SecretStream(false, socket)
    s.on('error', () => {})
    socket.on('error', () => {})
    if (cfg.wakeup) base.replicate(s)
    else store.replicate(s)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const commands = []
  let stdinOpen = true
  require('readline').createInterface({ input: process.stdin })
    .on('line', (l) => { try { commands.push(JSON.parse(l)) } catch {} })
    .on('close', () => { stdinOpen = false })
  // count: first append `count` messages m0, m1, ... in batches of `batch` (default 10) values
  const count = cfg.count || 0
  const batch = cfg.batch || 10
  for (let i = 0; i < count; i += batch) {
    const values = []
    for (let j = i; j < Math.min(count, i + batch); j++) values.push({ type: 'message', text: `m${j}` })
    await base.append(values)
  }
  for (const text of cfg.say || []) await base.append({ type: 'message', text })
  out({ event: 'room', key: b4a.toString(base.key, 'hex'), port: server.address().port, systemLength: base.core.length, signedLength: base.core.signedLength })
  let done = false
  let stuck = 0
  while (stdinOpen) {
    while (commands.length) {
      const c = commands.shift()
      if (c.add) await base.append({ type: 'add', key: c.add })
      if (c.say) await base.append({ type: 'message', text: c.say })
    }
    await base.update()
    if (base.ackable) await base.ack()
    const messages = await indexedMessages(base)
    // JS never acks its own lone head: when nodes wait unindexed, write an ack (as the scenarios do)
    stuck = base.view.length > messages.length ? stuck + 1 : 0
    if (stuck >= 20) { stuck = 0; await base.append(null) }
    if (!done && messages.length >= cfg.expect) {
      done = true
      out({ event: 'done', messages })
    }
    await sleep(20)
  }
  clearTimeout(deadline)
  server.close()
  for (const s of sockets) s.destroy()
  await base.close()
  await store.close()
  cleanup()
}

async function main () {
  if (cfg.create) return create()
  const store = new Corestore(dir)
  // fastForwardKey: start with a fast-forward to that system key (JS `fastForward: { key }`)
  const extra = cfg.fastForwardKey ? { fastForward: { key: b4a.from(cfg.fastForwardKey, 'hex') } } : {}
  const base = open(store, b4a.from(cfg.room, 'hex'), extra)
  const fastForwards = []
  base.on('fast-forward', (to, from) => fastForwards.push({ to, from }))
  await base.ready()
  out({ event: 'writer', key: b4a.toString(base.local.key, 'hex') })
  const socket = net.connect(cfg.port, '127.0.0.1')
  const s = new SecretStream(true, socket)
  s.on('error', () => {})
  if (cfg.wakeup) base.replicate(s)
  else store.replicate(s)
  for (const text of cfg.optimisticSay || []) await base.append({ type: 'message', text }, { optimistic: true })
  // reader: never added, it only reads; an open room's member (optimistic) writes at once
  if (!cfg.reader && !cfg.optimistic && !cfg.optimisticSay) {
    while (!base.writable) { await base.update(); await sleep(50) }
    out({ event: 'writable' })
  }
  for (const text of cfg.say || []) await base.append({ type: 'message', text }, { optimistic: !!cfg.optimistic && !base.writable })
  let stuck = 0
  let done = false
  for (;;) {
    await base.update()
    // ack: act as an indexer does (ack when `ackable`, and write an ack when nodes wait unindexed)
    let indexed = null
    if (cfg.ack && base.writable) {
      if (!cfg.ackInterval && base.ackable) await base.ack()
      indexed = await indexedMessages(base)
      stuck = base.view.length > indexed.length ? stuck + 1 : 0
      if (stuck >= 20 && !cfg.ackInterval) { stuck = 0; await base.append(null) }
    }
    if (!done) {
      // an indexer reports what is indexed (the room's order); others what their view holds
      let messages = indexed
      if (!cfg.ack) {
        messages = []
        for (let i = 0; i < base.view.length; i++) {
          const v = JSON.parse(b4a.toString(await base.view.get(i)))
          messages.push(`${v.from.slice(0, 8)}: ${v.text}`)
        }
      }
      // waitSigned: also wait until the system core is signed past its prologue (after an indexer
      // change: a multisig of a quorum of the indexers)
      const sys = base.system.core
      const prologueLength = sys.manifest && sys.manifest.prologue ? sys.manifest.prologue.length : 0
      const signed = !cfg.waitSigned || sys.signedLength > prologueLength
      const held = !cfg.waitPeerHas || base.local.peers.some((p) => p.remoteContiguousLength >= base.local.length)
      if (messages && messages.length >= cfg.expect && signed && held) {
        const hex = (b) => b4a.toString(b, 'hex')
        out({ event: 'done', messages, fastForwards, systemKey: hex(sys.key), viewKey: hex(base.view.key), signedLength: sys.signedLength, prologueLength, indexers: sys.manifest ? sys.manifest.signers.length : 0, wakeupPeers: cfg.wakeup ? base.wakeupSession.peers.length : null, localLength: base.local.length, writable: base.writable })
        done = true
        clearTimeout(deadline)
        if (!cfg.linger) break
        // keep replicating (the other member may still be fetching our blocks) until killed
        setTimeout(() => { s.destroy(); cleanup(); process.exit(0) }, cfg.deadline || 60000)
        // an indexer goes on acking: the other indexers' nodes need its acks to be indexed
        // (with two indexers the majority is both)
        if (!cfg.ack) return
      }
    }
    await sleep(50)
  }
  s.destroy()
  await base.close()
  await store.close()
  cleanup()
}

main().catch((err) => { out({ event: 'failed', error: err.stack }); cleanup(); process.exit(1) })
