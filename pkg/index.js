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
export class Hypercore {
  constructor (name, key = null, opts = {}) {
    if (typeof name !== 'string' || name === '') throw new TypeError('name must be a non-empty string')
    this.name = name
    this._key = key === null || key === undefined ? undefined : toBytes('key', key)
    this._opts = opts
    this._listeners = new Map()
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
   * Non-custodial unless `opts.custodial`: the session's key never leaves the page, the
   * encryption runs here and the relay forwards ciphertext.
   */
  async replicate (url, opts = {}) {
    await this.opening
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
