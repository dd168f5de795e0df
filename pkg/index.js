// hyperpunch in the browser: hypercores in IndexedDB, replicated with peers on the DHT through a
// dht-relay WebSocket. A thin JS layer over the wasm module (./wasm/, built by wasm-bindgen
// --target web; the .wasm file is loaded by URL, so bundlers such as Vite need no plugin).
import initWasm, * as wasm from './wasm/hyperpunch_web.js'

let loading = null

/**
 * Load and instantiate the wasm module (once; later calls return the same promise). Called by
 * every API that needs it; call it yourself to choose where the .wasm file comes from.
 */
export function init (wasmUrl) {
  if (loading === null) {
    loading = initWasm(wasmUrl === undefined ? undefined : { module_or_path: wasmUrl })
  }
  return loading
}

function toBytes (what, value) {
  if (value instanceof Uint8Array) return value
  if (typeof value === 'string' && /^([0-9a-fA-F]{2})*$/.test(value)) {
    const out = new Uint8Array(value.length / 2)
    for (let i = 0; i < out.length; i++) out[i] = parseInt(value.slice(2 * i, 2 * i + 2), 16)
    return out
  }
  throw new TypeError(`${what} must be a Uint8Array or a hex string`)
}

function toBlock (value) {
  if (value instanceof Uint8Array) return value
  if (typeof value === 'string') return new TextEncoder().encode(value)
  throw new TypeError('a block must be a Uint8Array or a string')
}

/** Bytes as lowercase hex. */
export function toHex (bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** A small event emitter (on / once / off / emit), as Node's for the events used here. */
class Emitter {
  constructor () {
    this._listeners = new Map()
  }

  on (name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, [])
    this._listeners.get(name).push(fn)
    return this
  }

  once (name, fn) {
    const wrap = (...args) => { this.off(name, wrap); fn(...args) }
    return this.on(name, wrap)
  }

  off (name, fn) {
    const list = this._listeners.get(name)
    if (list) {
      const i = list.indexOf(fn)
      if (i !== -1) list.splice(i, 1)
    }
    return this
  }

  emit (name, ...args) {
    const list = this._listeners.get(name)
    if (!list || list.length === 0) {
      if (name === 'error') console.error(args[0])
      return false
    }
    for (const fn of list.slice()) fn.apply(this, args)
    return true
  }
}

/**
 * A hypercore (a signed append-only log) stored in the IndexedDB database `name`.
 *
 * `new Hypercore(name)` opens the core stored there, or creates a new writable one;
 * `new Hypercore(name, key)` opens or creates a reader of someone else's core. With the `relay`
 * option it replicates with the core's peers through that dht-relay as soon as it is open;
 * `serve(url)` makes it a server its peers find through a dht-relay.
 * Events: 'ready', 'append' (length), 'download' (index), 'peer-add' / 'peer-remove' (peers),
 * 'error' (Error, from the `relay` option, or serving that stopped with an error).
 */
export class Hypercore extends Emitter {
  constructor (name, key = null, opts = {}) {
    super()
    if (typeof name !== 'string' || name === '') throw new TypeError('name must be a non-empty string')
    this.name = name
    this._key = key === null || key === undefined ? undefined : toBytes('key', key)
    this._opts = opts
    this._core = null
    this.replication = null
    this.serving = null
    this.opening = this._open()
    this.opening.catch(() => {})
  }

  async _open () {
    await init(this._opts.wasmUrl)
    const encryptionKey = this._opts.encryptionKey === undefined
      ? undefined
      : toBytes('encryptionKey', this._opts.encryptionKey)
    this._core = await wasm.Hypercore.load(this.name, this._key, encryptionKey)
    this._core.onEvent((name, value) => this.emit(name, value))
    this.emit('ready')
    if (this._opts.relay) {
      this.replicate(this._opts.relay).catch((err) => this.emit('error', err))
    }
  }

  /** Resolves once the core is open. */
  ready () {
    return this.opening
  }

  _opened () {
    if (this._core === null) throw new Error('the core is not open yet: await core.ready()')
    return this._core
  }

  get key () { return this._opened().key }
  get discoveryKey () { return this._opened().discoveryKey }
  get length () { return this._core === null ? 0 : this._core.length }
  get contiguousLength () { return this._core === null ? 0 : this._core.contiguousLength }
  get byteLength () { return this._core === null ? 0 : this._core.byteLength }
  get fork () { return this._core === null ? 0 : this._core.fork }
  get writable () { return this._core !== null && this._core.writable }
  get peers () { return this._core === null ? 0 : this._core.peers }

  /** Append blocks (Uint8Array or string, or an array of them); resolves to the new length. */
  async append (blocks) {
    await this.opening
    let length = this._core.length
    for (const b of Array.isArray(blocks) ? blocks : [blocks]) {
      length = await this._core.append(toBlock(b))
    }
    return length
  }

  /** Block `index`; waits for peers to send it unless `{ wait: false }` (then undefined). */
  async get (index, opts = {}) {
    await this.opening
    return this._core.get(index, opts.wait)
  }

  /** Whether block `index` is stored locally. */
  async has (index) {
    return (await this.get(index, { wait: false })) !== undefined
  }

  /**
   * Download `start..end` from peers, resolving when all are stored; without `end`, every block
   * from `start` on as the core grows (resolves at once).
   */
  async download ({ start = 0, end } = {}) {
    await this.opening
    return this._core.download(start, end)
  }

  /**
   * Find this core's peers through the dht-relay at `url` and replicate with them. Resolves to
   * a handle with `connections` and `end()`; the core keeps it as `core.replication`.
   * `core.replicate(conn)` with a `SwarmConnection` replicates over that connection instead
   * (as JS `swarm.on('connection', (conn) => core.replicate(conn))`), resolving when it closed.
   * Non-custodial unless `opts.custodial`: the session's key never leaves the page, the
   * encryption runs here and the relay forwards ciphertext.
   */
  async replicate (url, opts = {}) {
    await this.opening
    if (url instanceof SwarmConnection) return wasm.replicateConnection(this._core, url._c)
    this.replication = await this._core.replicateThroughRelay(url, opts.maxPeers, opts.custodial === true)
    return this.replication
  }

  /**
   * Serve this core to its peers on the DHT through the dht-relay at `url`: the page is
   * announced on the core's discovery key (as JS `swarm.join(core.discoveryKey)` does for a
   * server) and replicates with every peer that connects (hyperpunch, JS hyperswarm +
   * hypercore, other pages). Resolves once announced to a handle with `publicKey` (the key the
   * page is reachable under, made for this session), `connections` and `close()`; the core
   * keeps it as `core.serving` until serving stops. When the relay session fails, serving
   * stops and the core emits 'error'. Non-custodial by default: the session key never leaves
   * the page, which runs each peer's encryption; the relay forwards ciphertext (a relay that
   * refuses the mode with 4005 is retried custodially). `opts.custodial: true` hands the
   * session key to the relay (a JS dht-relay needs it); never the core's signing key.
   */
  async serve (url, opts = {}) {
    await this.opening
    const serving = await this._core.serveThroughRelay(url, (error) => {
      if (this.serving === serving) this.serving = null
      if (error !== null) this.emit('error', new Error(`serve through ${url}: ${error}`))
    }, opts.custodial)
    this.serving = serving
    return serving
  }

  /** Delete the IndexedDB database `name` with every block in it. */
  static async delete (name) {
    await init()
    return wasm.Hypercore.deleteDatabase(name)
  }
}

/** The discovery key of a core key (hex string or Uint8Array). */
export async function discoveryKey (key) {
  await init()
  return wasm.discoveryKey(toBytes('key', key))
}

/** The hyperpunch version. */
export async function version () {
  await init()
  return wasm.version()
}

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()

function asBytes (value) {
  if (value instanceof Uint8Array) return value
  if (typeof value === 'string') return utf8Encoder.encode(value)
  throw new TypeError('expected a Uint8Array or a string')
}

// The encodings of JS `codecs` (hyperbee's keyEncoding / valueEncoding): same bytes.
const ENCODINGS = {
  binary: { encode: asBytes, decode: (b) => b },
  'utf-8': { encode: asBytes, decode: (b) => utf8Decoder.decode(b) },
  json: { encode: (v) => utf8Encoder.encode(JSON.stringify(v)), decode: (b) => JSON.parse(utf8Decoder.decode(b)) }
}
ENCODINGS.utf8 = ENCODINGS['utf-8']

function codec (enc) {
  if (enc === undefined || enc === null) return ENCODINGS.binary
  if (typeof enc === 'string') {
    const c = ENCODINGS[enc]
    if (!c) throw new TypeError(`unknown encoding ${JSON.stringify(enc)} (binary, utf-8, json, or { encode, decode })`)
    return c
  }
  if (typeof enc.encode === 'function' && typeof enc.decode === 'function') return enc
  throw new TypeError('an encoding is binary, utf-8, json, or an object with encode and decode')
}

function decodeEntry (entry, keys, values) {
  if (entry === null || entry === undefined) return null
  return {
    seq: entry.seq,
    key: keys.decode(entry.key),
    value: entry.value === null ? null : values.decode(entry.value)
  }
}

/**
 * A Hyperbee (an append-only B-tree, JS hyperbee 2.x) on a `Hypercore` of the page: the same
 * blocks JS hyperbee writes for the same operations, so JS peers read it (and the other way
 * around). `keyEncoding` / `valueEncoding`: 'binary' (default), 'utf-8', 'json', or
 * `{ encode, decode }`.
 */
export class Hyperbee {
  constructor (core, opts = {}) {
    if (!(core instanceof Hypercore)) throw new TypeError('new Hyperbee(core): core must be a Hypercore of this package')
    this.core = core
    this.keyEncoding = codec(opts.keyEncoding)
    this.valueEncoding = codec(opts.valueEncoding)
    this._metadata = opts.metadata || null
    this._parent = opts._parent || null
    this._prefix = opts._prefix
    this._sep = opts._sep
    // A checkout or snapshot: a promise of its wasm bee.
    this._from = opts._from || null
    this._checkout = 0
    this._w = null
    this.closed = false
    this.opening = this._open()
    this.opening.catch(() => {})
  }

  async _open () {
    await this.core.ready()
    if (this._from !== null) {
      this._w = await this._from
      this._checkout = this._w.checkoutVersion || 0
    } else if (this._parent !== null) {
      await this._parent.ready()
      this._w = this._parent._bee.sub(this._prefix, this._sep)
      this._checkout = this._parent._checkout
    } else {
      const md = this._metadata
      const field = (name) => {
        const v = md === null ? undefined : md[name]
        return v === undefined || v === null ? undefined : asBytes(v)
      }
      this._w = new wasm.Hyperbee(this.core._core, field('contentFeed'), field('userData'))
    }
    if (this.closed) this._free()
  }

  get _bee () {
    if (this.closed) throw new Error('the bee is closed')
    return this._w
  }

  _free () {
    if (this._w !== null) {
      this._w.free()
      this._w = null
    }
  }

  /**
   * Close this bee (a checkout, snapshot or sub; or the bee itself): its wasm object is freed
   * and later calls throw. The core stays open.
   */
  async close () {
    this.closed = true
    await this.opening.catch(() => {})
    this._free()
  }

  _derive (from) {
    return new Hyperbee(this.core, { keyEncoding: this.keyEncoding, valueEncoding: this.valueEncoding, _from: from })
  }

  /** Resolves once the core is open. */
  ready () {
    return this.opening
  }

  /** The bee's version: the core's length (at least 1), or the version of a checkout / snapshot. */
  get version () {
    return this._checkout || Math.max(1, this.core.length)
  }

  /** Whether this page can write (the core is writable and this is not a checkout). */
  get writable () {
    return this.core.writable && this._checkout === 0
  }

  _cas (opts) {
    const cas = opts && opts.cas
    if (cas === undefined || cas === null) return undefined
    if (typeof cas !== 'function') throw new TypeError('opts.cas must be a function (stored, next) => boolean')
    return (stored, next) => cas(decodeEntry(stored, this.keyEncoding, this.valueEncoding), decodeEntry(next, this.keyEncoding, this.valueEncoding))
  }

  /**
   * Put `value` under `key` (without `value`: the key with no value). `opts.cas(stored, next)`:
   * when the key exists, it is replaced only if this returns true.
   */
  async put (key, value, opts) {
    await this.opening
    const v = value === undefined ? undefined : this.valueEncoding.encode(value)
    await this._bee.put(this.keyEncoding.encode(key), v, this._cas(opts))
  }

  /** `{ seq, key, value }` of `key`, or null. */
  async get (key) {
    await this.opening
    return decodeEntry(await this._bee.get(this.keyEncoding.encode(key)), this.keyEncoding, this.valueEncoding)
  }

  /**
   * Delete `key` (nothing is appended when it is not there). `opts.cas(stored, next)`: deleted
   * only if this returns true.
   */
  async del (key, opts) {
    await this.opening
    await this._bee.del(this.keyEncoding.encode(key), this._cas(opts))
  }

  /** A batch: puts and deletes appended in one write by `flush()`. */
  batch () {
    return new HyperbeeBatch(this)
  }

  /** The bee as of `version` (read-only; same encodings). */
  checkout (version) {
    return this._derive(this.opening.then(() => this._bee.checkout(version)))
  }

  /** The bee as it is now (read-only; same encodings). */
  snapshot () {
    return this._derive(this.opening.then(() => this._bee.snapshot()))
  }

  _range (range) {
    const enc = (k) => (k === undefined || k === null ? undefined : this.keyEncoding.encode(k))
    return [enc(range.gt), enc(range.gte), enc(range.lt), enc(range.lte)]
  }

  /**
   * Entries in key order (`reverse`: descending) within `gt`/`gte`/`lt`/`lte` (keys, encoded
   * with keyEncoding), at most `limit`: an async iterable (`for await`), read from a snapshot
   * taken when iteration starts.
   */
  createReadStream (range = {}) {
    const bee = this
    return {
      async * [Symbol.asyncIterator] () {
        await bee.opening
        const it = bee._bee.readStream(...bee._range(range), range.reverse === true, range.limit === undefined ? undefined : range.limit)
        try {
          while (true) {
            const e = await it.next()
            if (e === null) return
            yield decodeEntry(e, bee.keyEncoding, bee.valueEncoding)
          }
        } finally {
          it.free()
        }
      }
    }
  }

  /**
   * Every put and delete in block order: `{ type: 'put' | 'del', seq, key, value }` within
   * `gt`/`gte`/`lt`/`lte` (seqs; negative ones count back from the version), `reverse`,
   * `limit`, `live` (keep following the core; end it with `break`).
   */
  createHistoryStream (opts = {}) {
    const bee = this
    return {
      async * [Symbol.asyncIterator] () {
        await bee.opening
        const it = bee._bee.historyStream(opts.gt, opts.gte, opts.lt, opts.lte, opts.reverse === true,
          opts.limit === undefined ? undefined : opts.limit, opts.live === true)
        try {
          while (true) {
            const e = await it.next()
            if (e === null) return
            const d = decodeEntry(e, bee.keyEncoding, bee.valueEncoding)
            yield { type: e.type, seq: d.seq, key: d.key, value: d.value }
          }
        } finally {
          it.close()
          it.free()
        }
      }
    }
  }

  /**
   * What differs between this bee (left) and `other` (a version number, or a checkout or
   * snapshot of it; right), within the key range: `{ left, right }` entries, `null` on the
   * side without the key, in key order.
   */
  createDiffStream (other, range = {}) {
    const bee = this
    return {
      async * [Symbol.asyncIterator] () {
        await bee.opening
        const right = other instanceof Hyperbee ? other : bee.checkout(other)
        await right.ready()
        const it = bee._bee.diffStream(right._bee, ...bee._range(range), range.reverse === true,
          range.limit === undefined ? undefined : range.limit)
        try {
          while (true) {
            const d = await it.next()
            if (d === null) return
            yield { left: decodeEntry(d.left, bee.keyEncoding, bee.valueEncoding), right: decodeEntry(d.right, bee.keyEncoding, bee.valueEncoding) }
          }
        } finally {
          it.free()
        }
      }
    }
  }

  /**
   * Watch the key range: an async iterable of `[current, previous]` snapshots (Hyperbees),
   * one per change in range made here or replicated; 'update' is emitted too. `close()` ends it.
   * `eager`: count from the empty bee, so the first change is reported at once if the range
   * holds anything.
   */
  watch (range = {}, opts = {}) {
    if (opts.map !== undefined && opts.map !== null && typeof opts.map !== 'function') throw new TypeError('watch: opts.map must be a function (snapshot) => value')
    return new BeeWatcher(this, range, opts.eager === true, opts.map || null)
  }

  /** The key and value block `seq` wrote (a deletion's value is null): `{ key, value }`. */
  async getBySeq (seq) {
    await this.opening
    const { key, value } = await this._bee.getBySeq(seq)
    return { key: this.keyEncoding.decode(key), value: value === null ? null : this.valueEncoding.decode(value) }
  }

  /** `key`'s entry (`watcher.node`) kept up to date: 'update' is emitted on each change. */
  async getAndWatch (key) {
    await this.opening
    const inner = await this._bee.getAndWatch(this.keyEncoding.encode(key))
    return new BeeEntryWatcher(this, inner)
  }

  /**
   * Block 0, the header: `{ protocol, metadata }`, `metadata` being `{ contentFeed, userData }`
   * (Uint8Array or null each) or null; null while the core has no block.
   */
  async getHeader () {
    await this.opening
    return this._bee.getHeader()
  }

  /** The first entry in range (`createReadStream({ ...range, limit: 1 })`), or null. */
  async peek (range = {}) {
    for await (const e of this.createReadStream({ ...range, limit: 1 })) return e
    return null
  }

  /**
   * A sub-database under `prefix` (a string or bytes), separated by `sep` (default one zero
   * byte); it keeps this bee's encodings unless given others.
   */
  sub (prefix, opts = {}) {
    return new Hyperbee(this.core, {
      keyEncoding: opts.keyEncoding || this.keyEncoding,
      valueEncoding: opts.valueEncoding || this.valueEncoding,
      _parent: this,
      _prefix: asBytes(prefix),
      _sep: opts.sep === undefined ? undefined : asBytes(opts.sep)
    })
  }
}

/** `bee.watch(range)`: `[current, previous]` snapshots per change, as hyperbee's Watcher. */
class BeeWatcher extends Emitter {
  constructor (bee, range, eager, map) {
    super()
    this.bee = bee
    this.current = null
    this.previous = null
    this._map = map
    this.currentMapped = null
    this.previousMapped = null
    this.closed = false
    this._inner = null
    this.opening = bee.opening.then(async () => {
      this._inner = await bee._bee.watch(...bee._range(range), eager)
      if (this.closed) this._inner.close()
    })
    this.opening.catch(() => {})
  }

  ready () {
    return this.opening
  }

  async next () {
    await this.opening
    const pair = await this._inner.next()
    if (pair === null) return { done: true, value: undefined }
    const wrap = (b) => this.bee._derive(Promise.resolve(b))
    // As hyperbee's Watcher: the pair of the last change (and what `map` made of it) is
    // closed when the next one comes.
    await this._closePair()
    this.current = wrap(pair[0])
    this.previous = wrap(pair[1])
    await Promise.all([this.current.ready(), this.previous.ready()])
    if (this._map === null) {
      this.currentMapped = this.current
      this.previousMapped = this.previous
    } else {
      this.currentMapped = this._map(this.current)
      this.previousMapped = this._map(this.previous)
    }
    this.emit('update')
    return { done: false, value: [this.currentMapped, this.previousMapped] }
  }

  async _closePair () {
    const all = [this.currentMapped, this.current, this.previousMapped, this.previous]
    this.current = this.previous = this.currentMapped = this.previousMapped = null
    const closed = new Set()
    for (const x of all) {
      if (x === null || x === undefined || closed.has(x)) continue
      closed.add(x)
      if (typeof x.close === 'function') await x.close()
    }
  }

  async return () {
    await this.close()
    return { done: true, value: undefined }
  }

  [Symbol.asyncIterator] () {
    return this
  }

  /** Stop watching: a pending `next` ends the iteration; the last pair is closed. */
  async close () {
    this.closed = true
    if (this._inner !== null) this._inner.close()
    await this._closePair()
  }

  destroy () {
    return this.close()
  }
}

/** `bee.getAndWatch(key)`: `node` is the key's entry, updated on each change ('update'). */
class BeeEntryWatcher extends Emitter {
  constructor (bee, inner) {
    super()
    this.bee = bee
    this._inner = inner
    this.closed = false
    this.node = this._decode()
    this._loop().catch((err) => this.emit('error', err))
  }

  _decode () {
    return decodeEntry(this._inner.node, this.bee.keyEncoding, this.bee.valueEncoding)
  }

  async _loop () {
    while (await this._inner.changed()) {
      this.node = this._decode()
      this.emit('update')
    }
  }

  /** Stop watching. */
  async close () {
    this.closed = true
    this._inner.close()
  }

  destroy () {
    return this.close()
  }
}

/** A batch of a `Hyperbee` (`bee.batch()`). */
class HyperbeeBatch {
  constructor (bee) {
    this.bee = bee
    this._batch = null
  }

  async _open () {
    await this.bee.opening
    if (this._batch === null) this._batch = this.bee._bee.batch()
    return this._batch
  }

  async put (key, value, opts) {
    const b = await this._open()
    const v = value === undefined ? undefined : this.bee.valueEncoding.encode(value)
    await b.put(this.bee.keyEncoding.encode(key), v, this.bee._cas(opts))
  }

  async del (key, opts) {
    const b = await this._open()
    await b.del(this.bee.keyEncoding.encode(key), this.bee._cas(opts))
  }

  async get (key) {
    const b = await this._open()
    return decodeEntry(await b.get(this.bee.keyEncoding.encode(key)), this.bee.keyEncoding, this.bee.valueEncoding)
  }

  /** Append everything staged in one write. */
  async flush () {
    const b = await this._open()
    return b.flush()
  }

  /** Discard what is staged. */
  async close () {
    const b = await this._open()
    return b.close()
  }
}

/**
 * One connection of a `Swarm` (hyperswarm's 'connection' stream): end-to-end encrypted
 * messages with the peer `remotePublicKey`, or a core's replication (`core.replicate(conn)`).
 * Events: 'data' (Uint8Array; reading starts with the first 'data' listener or `for await`),
 * 'end', 'close', 'error'.
 */
export class SwarmConnection extends Emitter {
  constructor (inner) {
    super()
    this._c = inner
    this.remotePublicKey = inner.remotePublicKey
    this.isInitiator = inner.isInitiator
    this.destroyed = false
    this._reading = false
    this._iterating = false
    inner.whenClosed().then((error) => {
      this.destroyed = true
      if (error !== null) this.emit('error', new Error(error))
      this.emit('close')
    })
  }

  on (name, fn) {
    super.on(name, fn)
    if (name === 'data') this._read()
    return this
  }

  _read () {
    if (this._reading) return
    this._reading = true
    const loop = async () => {
      while (true) {
        const m = await this._c.read()
        if (m === null) break
        this.emit('data', m)
      }
      this.emit('end')
    }
    loop().catch((err) => this.emit('error', err))
  }

  /** Send one message (a Uint8Array, or a string as UTF-8); false once ended or closed. */
  write (data) {
    return this._c.write(asBytes(data))
  }

  /** End our side (optionally after a last message); the stream closes once the peer ended too. */
  end (data) {
    if (data !== undefined) this.write(data)
    this._c.end()
  }

  /** Close the stream now. */
  destroy () {
    this._c.destroy()
  }

  /** The messages, until the peer ends (instead of 'data' events). */
  async * [Symbol.asyncIterator] () {
    if (this._reading) throw new Error('the connection is read through its data events')
    this._reading = true
    while (true) {
      const m = await this._c.read()
      if (m === null) return
      yield m
    }
  }
}

function toTopic (topic) {
  const t = toBytes('topic', topic)
  if (t.length !== 32) throw new TypeError('a topic is 32 bytes (or 64 hex characters)')
  return t
}

/** What `swarm.join(topic)` returns (hyperswarm's PeerDiscovery). */
class PeerDiscovery {
  constructor (swarm, topic, session) {
    this.swarm = swarm
    this.topic = topic
    this._session = session
    this._session.catch(() => {})
  }

  /** Resolves once the topic was announced / looked up and its peers were tried. */
  async flushed () {
    await this._session
    return this.swarm._swarm.flush(this.topic)
  }

  /** Leave this join. */
  async destroy () {
    const id = await this._session
    this.swarm._swarm.leaveSession(id)
  }
}

/**
 * Hyperswarm in the page, through a dht-relay (`new Swarm({ relay: 'ws://...' })`): join
 * topics, meet the peers that joined them (JS hyperswarm, hyperpunch, other pages), get a
 * 'connection' (a `SwarmConnection`, with the peer's info) for each.
 */
export class Swarm extends Emitter {
  constructor (opts = {}) {
    super()
    if (typeof opts.relay !== 'string') throw new TypeError('new Swarm({ relay }): relay must be a dht-relay WebSocket URL (ws:// or wss://)')
    this.relay = opts.relay
    this._opts = opts
    this._swarm = null
    this.connections = new Set()
    this.destroyed = false
    this.opening = this._open()
    this.opening.catch((err) => this.emit('error', err))
  }

  async _open () {
    await init(this._opts.wasmUrl)
    this._swarm = await wasm.Swarm.open(this.relay, this._opts.custodial)
    this._accept().catch((err) => this.emit('error', err))
  }

  async _accept () {
    while (true) {
      const inner = await this._swarm.nextConnection()
      if (inner === null) return
      const conn = new SwarmConnection(inner)
      this.connections.add(conn)
      conn.once('close', () => this.connections.delete(conn))
      this.emit('connection', conn, { publicKey: conn.remotePublicKey, client: conn.isInitiator })
    }
  }

  /** Resolves once the relay session is open. */
  ready () {
    return this.opening
  }

  /** The swarm's public key (32 bytes; throws before `ready`). */
  get publicKey () {
    if (this._swarm === null) throw new Error('the swarm is not open yet: await swarm.ready()')
    return this._swarm.publicKey
  }

  /**
   * Join `topic` (32 bytes or 64 hex characters): announce it (`server`, default true) and look
   * it up and connect to its peers (`client`, default true).
   */
  join (topic, opts = {}) {
    const t = toTopic(topic)
    const session = this.opening.then(() => this._swarm.join(t, opts.server, opts.client))
    return new PeerDiscovery(this, t, session)
  }

  /** Leave `topic`: its announcement is removed; connections stay. */
  async leave (topic) {
    const t = toTopic(topic)
    await this.opening
    this._swarm.leave(t)
  }

  /** Resolves once every topic was announced / looked up and every peer found was tried. */
  async flush () {
    await this.opening
    return this._swarm.flush()
  }

  /** Leave every topic, close every connection and the relay session. */
  async destroy () {
    if (this.destroyed) return
    this.destroyed = true
    try {
      await this.opening
    } catch {
      return
    }
    await this._swarm.destroy()
  }
}

/**
 * A corestore (JS corestore 7) in the IndexedDB database `name`: named cores whose keys are the
 * ones JS corestore derives from the same primary key, replicated together over each
 * connection (`store.replicate(conn)`). `primaryKey` (32 bytes or hex) for a new store;
 * default random, kept in the database.
 */
export class Corestore {
  constructor (name, opts = {}) {
    if (typeof name !== 'string' || name === '') throw new TypeError('name must be a non-empty string')
    this.name = name
    this._opts = opts
    this._store = null
    // A namespace or session: a function of the parent's wasm store.
    this._derivedFrom = opts._parent || null
    this.opening = this._open()
    this.opening.catch(() => {})
  }

  async _open () {
    if (this._derivedFrom !== null) {
      const [parent, make] = this._derivedFrom
      await parent.opening
      this._store = make(parent._store)
      return
    }
    await init(this._opts.wasmUrl)
    const pk = this._opts.primaryKey === undefined ? undefined : toBytes('primaryKey', this._opts.primaryKey)
    this._store = await wasm.Corestore.open(this.name, pk)
  }

  /**
   * The namespace `name` (a string or bytes) of this store: the same store, whose named cores
   * (and drives) are looked up in the child namespace, with the keys JS corestore gives them.
   */
  namespace (name) {
    const n = asBytes(name)
    return new Corestore(this.name, { _parent: [this, (s) => s.namespace(n)] })
  }

  /** Another session of the store, in the same namespace. */
  session () {
    return new Corestore(this.name, { _parent: [this, (s) => s.session()] })
  }

  /** The namespace names are looked up in (32 bytes; throws before `ready`). */
  get ns () {
    if (this._store === null) throw new Error('the store is not open yet: await store.ready()')
    return this._store.ns
  }

  /**
   * The discovery keys of every core stored here, or with `namespace` (32 bytes, e.g.
   * `store.namespace('x').ns`) of the named cores in it: an async iterable.
   */
  list (namespace) {
    const ns = namespace === undefined ? undefined : toBytes('namespace', namespace)
    return fromArray(this.opening.then(() => this._store.list(ns)), (k) => k)
  }

  /** Resolves once the store is open. */
  ready () {
    return this.opening
  }

  /** The primary key (32 bytes; throws before `ready`). */
  get primaryKey () {
    if (this._store === null) throw new Error('the store is not open yet: await store.ready()')
    return this._store.primaryKey
  }

  /**
   * The core named `name` (`{ name }`: created, writable, when missing) or with public key
   * `key` (`{ key }`, or the key itself): a `CorestoreCore` (await `core.ready()`).
   */
  get (opts) {
    if (opts instanceof Uint8Array || typeof opts === 'string') opts = { key: opts }
    if (!opts || (typeof opts.name !== 'string' && opts.key === undefined)) throw new TypeError('store.get({ name }) or store.get({ key })')
    return new CorestoreCore(this, opts)
  }

  /**
   * Call `fn({ key, discoveryKey, forRemote })` with each core the store opens from now on,
   * in any namespace or session of it, or for a peer that asked for a stored core (JS
   * `store.watch(fn)`; JS passes the core itself). Resolves once watching: opens after that
   * are reported. Watching `fn` twice is once.
   */
  watch (fn) {
    if (typeof fn !== 'function') throw new TypeError('store.watch(fn): fn must be a function')
    const watchers = this._rootWatchers()
    if (watchers.has(fn)) return watchers.get(fn).opening
    const w = { inner: null, opening: null, closing: null }
    watchers.set(fn, w)
    w.opening = this.opening.then(async () => {
      w.inner = await this._store.watch()
    })
    w.opening.then(async () => {
      for (;;) {
        const core = await w.inner.next()
        if (core === null) return
        fn(core)
      }
    }).catch(() => {})
    return w.opening
  }

  /**
   * Stop calling `fn` (JS `store.unwatch(fn)`): the cores opened before this call are still
   * reported. Resolves once stopped.
   */
  unwatch (fn) {
    const watchers = this._rootWatchers()
    const w = watchers.get(fn)
    if (w === undefined) return Promise.resolve()
    watchers.delete(fn)
    return w.opening.then(() => w.inner.close())
  }

  _rootWatchers () {
    let root = this
    while (root._derivedFrom !== null) root = root._derivedFrom[0]
    if (root._watchers === undefined) root._watchers = new Map()
    return root._watchers
  }

  /** Replicate every core of the store over a `Swarm` connection; resolves once it closed. */
  async replicate (connection) {
    if (!(connection instanceof SwarmConnection)) throw new TypeError('store.replicate(conn): conn must be a SwarmConnection')
    await this.opening
    return this._store.replicateConnection(connection._c)
  }

  /** Delete the IndexedDB database `name` with every core in it. */
  static async delete (name) {
    await init()
    return wasm.Hypercore.deleteDatabase(name)
  }
}

/** A core of a `Corestore` (`store.get(...)`). */
class CorestoreCore {
  constructor (store, opts) {
    this.store = store
    this._h = null
    this.length = 0
    this.writable = false
    this.opening = this._open(opts)
    this.opening.catch(() => {})
  }

  async _open (opts) {
    await this.store.opening
    if (opts._session !== undefined) {
      this._h = await opts._session
    } else {
      const key = opts.key === undefined ? undefined : toBytes('key', opts.key)
      this._h = await this.store._store.get(opts.name, key)
    }
    await this._refresh()
  }

  async _refresh () {
    const info = await this._h.info()
    this.length = info.length
    this.writable = info.writable
  }

  ready () {
    return this.opening
  }

  /** 32 bytes (throws before `ready`). */
  get key () {
    if (this._h === null) throw new Error('the core is not open yet: await core.ready()')
    return this._h.key
  }

  /** 32 bytes (throws before `ready`). */
  get discoveryKey () {
    if (this._h === null) throw new Error('the core is not open yet: await core.ready()')
    return this._h.discoveryKey
  }

  /** Refresh `length` / `writable` (they are read at `ready` and after each append). */
  async update () {
    await this.opening
    await this._refresh()
  }

  /** Append blocks (Uint8Array or string, or an array of them); resolves to the new length. */
  async append (blocks) {
    await this.opening
    for (const b of Array.isArray(blocks) ? blocks : [blocks]) this.length = await this._h.append(toBlock(b))
    return this.length
  }

  /**
   * Block `index`, downloaded from the store's peers first when missing (past the length of a
   * core this page does not write: once a peer extends it).
   */
  async get (index) {
    await this.opening
    const block = await this._h.get(index)
    await this._refresh()
    return block
  }

  /** Another session of this core (open until it is closed too). */
  session () {
    return new CorestoreCore(this.store, { _session: this.opening.then(() => this._h.session()) })
  }

  /** End this session of the core. */
  async close () {
    await this.opening
    return this._h.close()
  }
}

function parseEntry (e) {
  if (e === null || e === undefined) return null
  return { seq: e.seq, key: e.key, value: JSON.parse(e.value) }
}

function fromArray (promise, map) {
  return {
    async * [Symbol.asyncIterator] () {
      for (const x of await promise) yield map(x)
    }
  }
}

/**
 * A Hyperdrive (JS hyperdrive 13: files on a db core and a blobs core) in a `Corestore`:
 * `new Hyperdrive(store)` is the drive the store writes (its named core 'db', so the same drive
 * key as JS hyperdrive on a corestore with the same primary key); `new Hyperdrive(store, key)`
 * someone else's, read from the store's peers.
 */
export class Hyperdrive {
  constructor (store, key = null, opts = {}) {
    if (!(store instanceof Corestore)) throw new TypeError('new Hyperdrive(store, key?): store must be a Corestore of this package')
    this.corestore = store
    this._key = key === null || key === undefined ? undefined : toBytes('key', key)
    this._opts = opts
    this._dw = null
    this.closed = false
    this.version = 0
    this.writable = false
    this.contentKey = null
    this.opening = this._open()
    this.opening.catch(() => {})
  }

  async _open () {
    await this.corestore.opening
    this._dw = this._opts._from !== undefined
      ? await this._opts._from
      : await wasm.Hyperdrive.open(this.corestore._store, this._key, this._opts.waitMs)
    this.contentKey = await this._dw.contentKey()
    await this._refresh()
    if (this.closed) this._free()
  }

  get _d () {
    if (this.closed) throw new Error('the drive is closed')
    return this._dw
  }

  _free () {
    if (this._dw !== null) {
      this._dw.free()
      this._dw = null
    }
  }

  /** Close this drive (or checkout): its wasm object is freed and later calls throw. */
  async close () {
    this.closed = true
    await this.opening.catch(() => {})
    this._free()
  }

  _derive (from) {
    return new Hyperdrive(this.corestore, null, { _from: from })
  }

  /** The drive as of `version`, read-only. */
  checkout (version) {
    return this._derive(this.opening.then(() => this._d.checkout(version)))
  }

  /**
   * What differs between this drive and its version `version` below `folder`: `{ left,
   * right }` entries (null where the path has none), in path order: an async iterable.
   */
  diff (version, folder = '/') {
    const drive = this
    return {
      async * [Symbol.asyncIterator] () {
        await drive.opening
        const it = await drive._d.diff(version, folder)
        try {
          while (true) {
            const d = await it.next()
            if (d === null) return
            yield { left: parseEntry(d.left), right: parseEntry(d.right) }
          }
        } finally {
          it.free()
        }
      }
    }
  }

  /**
   * Watch `folder`: an async iterable of `[current, previous]` checkouts, one per change
   * below it (made here or replicated); 'update' is emitted too. `destroy()` ends it.
   */
  watch (folder = '/') {
    return new DriveWatcher(this, folder)
  }

  /**
   * Upload and download statistics of the file `name` (JS `drive.monitor(name)`): the blobs
   * blocks of its range as peers fetch them from here or this page fetches them; 'update' is
   * emitted at each. No name (or a name not in the drive): every block of both cores counts.
   */
  monitor (name) {
    return new DriveMonitor(this, name)
  }

  /** A batch: files written now, their entries appended together by `flush()`. */
  batch () {
    return new DriveBatch(this)
  }

  /**
   * A WHATWG `WritableStream` writing the file `path`: each chunk (a Uint8Array, or a string
   * as UTF-8) is one block of the file, and closing the stream (`writer.close()`, or the end
   * of a `pipeTo`) puts the entry; aborting it puts nothing.
   */
  createWriteStream (path, opts = {}) {
    const metadata = opts.metadata === undefined || opts.metadata === null ? undefined : JSON.stringify(opts.metadata)
    let w = null
    const drive = this
    return new WritableStream({
      async start () {
        await drive.opening
        w = await drive._d.createWriter(path, opts.executable === true, metadata)
      },
      async write (chunk) {
        await w.write(asBytes(chunk))
      },
      async close () {
        await w.finish()
        w.free()
        await drive._refresh()
      },
      async abort () {
        if (w !== null) {
          await w.abort()
          w.free()
        }
      }
    })
  }

  async _refresh () {
    this.version = await this._d.version()
    this.writable = this._d.checkoutVersion === undefined && await this._d.writable()
  }

  /** Resolves once the drive is open. */
  ready () {
    return this.opening
  }

  /** 32 bytes (throws before `ready`). */
  get key () {
    if (this._dw === null) throw new Error('the drive is not open yet: await drive.ready()')
    return this._d.key
  }

  /** 32 bytes (throws before `ready`). */
  get discoveryKey () {
    if (this._dw === null) throw new Error('the drive is not open yet: await drive.ready()')
    return this._d.discoveryKey
  }

  /** Refresh `version` / `writable` (read at `ready` and after each write). */
  async update () {
    await this.opening
    await this._refresh()
  }

  /** Write the file `path` (a Uint8Array, or a string as UTF-8). */
  async put (path, data, opts = {}) {
    await this.opening
    const metadata = opts.metadata === undefined || opts.metadata === null ? undefined : JSON.stringify(opts.metadata)
    await this._d.put(path, asBytes(data), opts.executable === true, metadata)
    await this._refresh()
  }

  /** The file's bytes, or null. */
  async get (path) {
    await this.opening
    return this._d.get(path)
  }

  /** Delete the file `path`. */
  async del (path) {
    await this.opening
    await this._d.del(path)
    await this._refresh()
  }

  /** Make `path` a symlink to `target`. */
  async symlink (path, target) {
    await this.opening
    await this._d.symlink(path, target)
    await this._refresh()
  }

  /**
   * `{ seq, key, value: { executable, linkname, blob, metadata } }` of `path`, or null;
   * `follow: true` follows symlinks (at most 16 in a row).
   */
  async entry (path, opts = {}) {
    await this.opening
    return parseEntry(await this._d.entry(path, opts.follow === true))
  }

  /** Whether the file `path` exists. */
  async exists (path) {
    await this.opening
    return this._d.exists(path)
  }

  /** The entries under `folder` (every file below it; `recursive: false`: directly in it), in path order: an async iterable. */
  list (folder = '/', opts = {}) {
    const entries = this.opening.then(() => this._d.list(folder, opts.recursive !== false))
    return fromArray(entries, parseEntry)
  }

  /** The names directly in `folder` (files and folders): an async iterable. */
  readdir (folder = '/') {
    return fromArray(this.opening.then(() => this._d.readdir(folder)), (name) => name)
  }

  /**
   * The file's bytes as an async iterable of chunks (one per block read): the whole file, or
   * from `start` to `end` (inclusive), or `length` bytes from `start` (`length` wins over
   * `end`). Only the blocks in range are read (fetched from the peers when missing). A range
   * is clamped to the file (JS reads on past a blob's end). No such file throws.
   */
  createReadStream (path, opts = {}) {
    const drive = this
    const num = (n) => (n === undefined || n === null ? undefined : n)
    return {
      async * [Symbol.asyncIterator] () {
        await drive.opening
        const r = await drive._d.createReader(path, num(opts.start), num(opts.end), num(opts.length))
        try {
          while (true) {
            const chunk = await r.next()
            if (chunk === null) return
            yield chunk
          }
        } finally {
          r.free()
        }
      }
    }
  }

  /**
   * Whether the file `path`, or every file below the folder `path`, is stored here in full
   * (a symlink, or a folder without files: false).
   */
  async has (path) {
    await this.opening
    return this._d.has(path)
  }

  /**
   * Delete this page's copy of the file's contents (its entry stays; the blocks can be
   * fetched again from a peer). `{ diff: true }` resolves to `{ blocks }`, the number of
   * blocks cleared (JS hyperdrive 13 on hypercore 11 always says 0 there); else to null.
   */
  async clear (path, opts = {}) {
    await this.opening
    const n = await this._d.clear(path)
    return opts && opts.diff ? { blocks: n === null ? 0 : n } : null
  }

  /** Delete this page's copy of every blob of the drive; `{ diff: true }` as `clear`. */
  async clearAll (opts = {}) {
    await this.opening
    const n = await this._d.clearAll()
    return opts && opts.diff ? { blocks: n } : null
  }

  /** Download every file under `folder` from the peers; resolves to the number of files downloaded. */
  async download (folder = '/') {
    await this.opening
    return this._d.download(folder)
  }

  /**
   * Download the files below `folder` that were added or changed since version `version`;
   * resolves to the number of files downloaded.
   */
  async downloadDiff (version, folder = '/') {
    await this.opening
    return this._d.downloadDiff(version, folder)
  }

  /** The blobs core's length the drive's version `version` (default, or 0: now) needs. */
  async getBlobsLength (version) {
    await this.opening
    // As JS: a missing or zero version means the drive's version.
    return this._d.getBlobsLength(version ? version : undefined)
  }

  /**
   * Cut the drive back to `version`: the db core to `version` blocks, then the blobs core to
   * `opts.blobs` blocks or (default, -1) to what `version`'s files need (`getBlobsLength`).
   * Files written after `version` are gone; both cores move to their next fork. Throws (nothing
   * truncated) on a length past a core's end, a checkout, or a drive this page cannot write.
   */
  async truncate (version, opts = {}) {
    await this.opening
    const blobs = opts && opts.blobs !== undefined && opts.blobs !== -1 ? opts.blobs : undefined
    await this._d.truncate(version, blobs)
    await this._refresh()
  }

  /**
   * Delete the drive (its db and blobs cores, every block and record) from the store, and close
   * it. Throws on a checkout. Opening the drive again gives an empty one.
   */
  async purge () {
    await this.opening
    await this._d.purge()
    await this.close()
  }

  /** Replicate the drive's store over a `Swarm` connection; resolves once it closed. */
  async replicate (connection) {
    return this.corestore.replicate(connection)
  }
}

/** `drive.watch(folder)`: `[current, previous]` checkouts per change, as hyperdrive's watcher. */
const NO_STATS = Object.freeze({
  startTime: 0, percentage: 0, peers: 0, speed: 0, blocks: 0, totalBytes: 0, monitoringBytes: 0, targetBytes: 0, targetBlocks: 0
})

class DriveMonitor extends Emitter {
  constructor (drive, name) {
    super()
    this.drive = drive
    this.name = name === undefined ? null : name
    this.closed = false
    this._inner = null
    this._last = null
    this.opening = drive.opening.then(async () => {
      this._inner = await drive._d.monitor(this.name === null ? undefined : this.name)
      if (this.closed) this._free()
    })
    this.opening.catch(() => {})
    this.opening.then(async () => {
      while (this._inner !== null && await this._inner.next()) this.emit('update')
    }).catch((err) => this.emit('error', err))
  }

  // Keeps the last statistics, then frees the wasm monitor: it leaves the store's event
  // subscribers now (a pending `next` gives false).
  _free () {
    const inner = this._inner
    if (inner === null) return
    this._last = {
      uploadStats: inner.uploadStats,
      downloadStats: inner.downloadStats,
      peers: inner.peers
    }
    this._inner = null
    inner.close()
    inner.free()
  }

  ready () {
    return this.opening
  }

  get uploadStats () {
    if (this._inner !== null) return this._inner.uploadStats
    return this._last === null ? { ...NO_STATS } : { ...this._last.uploadStats }
  }

  get downloadStats () {
    if (this._inner !== null) return this._inner.downloadStats
    return this._last === null ? { ...NO_STATS } : { ...this._last.downloadStats }
  }

  get peers () {
    if (this._inner !== null) return this._inner.peers
    return this._last === null ? 0 : this._last.peers
  }

  downloadSpeed () {
    return this._inner === null ? 0 : this._inner.downloadSpeed()
  }

  uploadSpeed () {
    return this._inner === null ? 0 : this._inner.uploadSpeed()
  }

  async close () {
    this.closed = true
    this._free()
  }
}

class DriveWatcher extends Emitter {
  constructor (drive, folder) {
    super()
    this.drive = drive
    this.current = null
    this.previous = null
    this.closed = false
    this._inner = null
    this.opening = drive.opening.then(async () => {
      this._inner = await drive._d.watch(folder)
      if (this.closed) this._inner.close()
    })
    this.opening.catch(() => {})
  }

  ready () {
    return this.opening
  }

  async next () {
    await this.opening
    const pair = await this._inner.next()
    if (pair === null) return { done: true, value: undefined }
    const old = [this.current, this.previous]
    this.current = this.drive._derive(Promise.resolve(pair[0]))
    this.previous = this.drive._derive(Promise.resolve(pair[1]))
    await Promise.all([this.current.ready(), this.previous.ready()])
    for (const d of old) if (d !== null) await d.close()
    this.emit('update')
    return { done: false, value: [this.current, this.previous] }
  }

  async return () {
    await this.destroy()
    return { done: true, value: undefined }
  }

  [Symbol.asyncIterator] () {
    return this
  }

  /** Stop watching: a pending `next` ends the iteration; the last pair is closed. */
  async destroy () {
    this.closed = true
    if (this._inner !== null) this._inner.close()
    for (const d of [this.current, this.previous]) if (d !== null) await d.close()
  }

  close () {
    return this.destroy()
  }
}

/** `drive.batch()`: put / del / symlink staged, appended to the db together by `flush()`. */
class DriveBatch {
  constructor (drive) {
    this.drive = drive
    this._b = null
  }

  async _open () {
    await this.drive.opening
    if (this._b === null) this._b = this.drive._d.batch()
    return this._b
  }

  /** Write the file `path` (its bytes go to the blobs core now; the entry at `flush`). */
  async put (path, data, opts = {}) {
    const b = await this._open()
    const metadata = opts.metadata === undefined || opts.metadata === null ? undefined : JSON.stringify(opts.metadata)
    await b.put(path, asBytes(data), opts.executable === true, metadata)
  }

  async del (path) {
    const b = await this._open()
    await b.del(path)
  }

  async symlink (path, target) {
    const b = await this._open()
    await b.symlink(path, target)
  }

  /** Append every staged entry in one write; the batch is done afterwards. */
  async flush () {
    const b = await this._open()
    await b.flush()
    await this.drive._refresh()
  }

  /** Discard the staged entries. */
  async close () {
    const b = await this._open()
    await b.close()
  }
}

/**
 * An autobase (JS autobase 7.28.1: a multi-writer log whose writers' oplogs are ordered into
 * views by `apply`) on a `Corestore`: `new Autobase(store, bootstrap, { apply, open,
 * valueEncoding })`. `bootstrap` is the base's key (the bootstrap writer's oplog key) or null
 * for a new base this page bootstraps. The local writer is the store's core `local`, as in JS.
 * `open(store)` opens the views with `store.get(name, { valueEncoding })` (append-only logs:
 * `length`, `indexedLength`, `get(i)`, `append(block)`); `apply(nodes, view, host)` (may be
 * async) is called once per batch and writes the views and adds / removes writers through
 * `host`. Events: 'update' (after the views changed), 'error'. Replicates through the store:
 * `base.replicate(conn)`.
 */
export class Autobase extends Emitter {
  constructor (store, bootstrap, handlers = {}) {
    super()
    if (!(store instanceof Corestore)) throw new TypeError('new Autobase(store, bootstrap, handlers): store must be a Corestore')
    if (typeof handlers.apply !== 'function') throw new TypeError('new Autobase: handlers.apply must be a function')
    if (handlers.open !== undefined && typeof handlers.open !== 'function') throw new TypeError('new Autobase: handlers.open must be a function')
    if (handlers.ackInterval !== undefined && !(Number.isSafeInteger(handlers.ackInterval) && handlers.ackInterval >= 0)) throw new TypeError('new Autobase: handlers.ackInterval must be a whole number of milliseconds, 0 or more')
    this._ackInterval = handlers.ackInterval
    this.store = store
    this._bootstrap = bootstrap === null || bootstrap === undefined ? undefined : toBytes('bootstrap', bootstrap)
    this._values = codec(handlers.valueEncoding)
    this._apply = handlers.apply
    this._views = []
    this._ops = null
    this._b = null
    this.view = null
    this._discoveryKey = null
    this._local = null
    this.writable = false
    this.isIndexer = false
    this.indexedLength = 0
    this.closed = false
    this.opening = this._open(handlers.open)
    this.opening.catch(() => {})
  }

  async _open (open) {
    await this.store.opening
    if (open !== undefined) this.view = await open(new AutobaseViewStore(this))
    const names = this._views.map((v) => v.name)
    this._b = await wasm.Autobase.open(this.store._store, this._bootstrap, names, (nodes, lengths) => this._runApply(nodes, lengths), this._ackInterval)
    this._discoveryKey = wasm.discoveryKey(this._b.key)
    const localKey = this._b.localKey
    this._local = { key: localKey, discoveryKey: wasm.discoveryKey(localKey) }
    await this._update()
    this._loop()
  }

  _opened () {
    if (this._local === null) throw new Error('the base is not open yet: await base.ready()')
  }

  /** The base's key: the bootstrap writer's oplog key (32 bytes; throws before `ready`). */
  get key () {
    this._opened()
    return this._b.key
  }

  /** 32 bytes (throws before `ready`). */
  get discoveryKey () {
    this._opened()
    return this._discoveryKey
  }

  /** The local writer's oplog (the store's core 'local'): `{ key, discoveryKey }` (throws before `ready`). */
  get local () {
    this._opened()
    return this._local
  }

  async _runApply (nodes, lengths) {
    for (let i = 0; i < this._views.length; i++) this._views[i]._truncate(lengths[i])
    const ops = []
    this._ops = ops
    try {
      const batch = nodes.map((n) => ({
        indexed: n.indexed,
        from: { key: n.from },
        length: n.length,
        value: this._values.decode(n.value),
        heads: n.heads.map(([key, length]) => ({ key, length }))
      }))
      await this._apply(batch, this.view, new AutobaseHost(ops))
    } finally {
      this._ops = null
    }
    return ops
  }

  _sync (s) {
    for (let i = 0; i < this._views.length; i++) {
      this._views[i]._truncate(s.lengths[i])
      this._views[i].indexedLength = s.indexedLengths[i]
    }
    this.writable = s.writable
    this.isIndexer = s.isIndexer
    this.indexedLength = s.indexedLength
    if (s.changed) this.emit('update')
  }

  async _update () {
    this._sync(await this._b.update())
  }

  async _loop () {
    while (!this.closed) {
      const next = this._b.changed()
      try {
        await this._update()
      } catch (err) {
        if (!this.closed) this.emit('error', err)
        return
      }
      await next
    }
  }

  /** Resolves once the base is open and what the store held is applied. */
  ready () {
    return this.opening
  }

  /** Apply what the store holds now (the base also does it by itself on every change). */
  async update () {
    await this.opening
    await this._update()
  }

  /** Append a value (or an array of values: one batch) as the local writer (a member of the base). */
  async append (value) {
    await this.opening
    if (this._ops !== null) throw new Error('append is not allowed inside apply')
    const values = Array.isArray(value) ? value : [value]
    await this._b.append(values.map((v) => this._values.encode(v)))
    await this._update()
  }

  /** Write an ack now if this writer is an indexer and one is due (JS `shouldAck`); the ack timer (`ackInterval`) acks by itself. */
  async ack () {
    await this.opening
    await this._b.ack()
    await this._update()
  }

  /** Replicate the store (every writer's oplog) over a `Swarm` connection. */
  replicate (connection) {
    return this.store.replicate(connection)
  }

  /** Close the base (the store stays open). */
  async close () {
    if (this.closed) return
    this.closed = true
    await this.opening.catch(() => {})
    if (this._b !== null) await this._b.close()
  }
}

/** What `open(store)` gets: views by name. */
class AutobaseViewStore {
  constructor (base) {
    this._base = base
  }

  /** The view `name` (or `{ name, valueEncoding }`), an append-only log. */
  get (name, opts = {}) {
    if (typeof name === 'object' && name !== null) {
      opts = name
      name = name.name
    }
    if (typeof name !== 'string' || name === '') throw new TypeError('store.get(name): a view has a non-empty name')
    const open = this._base._views.find((v) => v.name === name)
    if (open !== undefined) return open
    if (this._base._b !== null) throw new Error('views are opened in open(store) only')
    const v = new AutobaseView(this._base, this._base._views.length, name, opts.valueEncoding)
    this._base._views.push(v)
    return v
  }
}

/** A view of an autobase: an append-only log written by `apply` (kept in memory). */
class AutobaseView {
  constructor (base, index, name, valueEncoding) {
    this._base = base
    this._index = index
    this.name = name
    this._enc = codec(valueEncoding)
    this._blocks = []
    this.indexedLength = 0
  }

  get length () {
    return this._blocks.length
  }

  /** Block `index`, decoded; null past the length. */
  async get (index) {
    const b = this._blocks[index]
    return b === undefined ? null : this._enc.decode(b)
  }

  /** Append a block (or an array of them): only inside `apply`. */
  async append (block) {
    const ops = this._base._ops
    if (ops === null) throw new Error('a view is written only inside apply')
    for (const b of Array.isArray(block) ? block : [block]) {
      const bytes = this._enc.encode(b)
      this._blocks.push(bytes)
      ops.push(['append', this._index, bytes])
    }
    return { length: this._blocks.length }
  }

  _truncate (length) {
    if (this._blocks.length > length) this._blocks.length = length
  }
}

/** The system calls `apply` may make. */
class AutobaseHost {
  constructor (ops) {
    this._ops = ops
  }

  /** Add a writer (an indexer unless `{ indexer: false }`, as JS). */
  async addWriter (key, { indexer = true, isIndexer = indexer } = {}) {
    this._ops.push(['add', toBytes('key', key), isIndexer])
  }

  /** Remove a writer (the last indexer cannot be: the base then fails with an error). */
  async removeWriter (key) {
    this._ops.push(['remove', toBytes('key', key)])
  }

  /** Record that a writer acked (JS `host.ackWriter`). */
  async ackWriter (key) {
    this._ops.push(['ack', toBytes('key', key)])
  }
}
