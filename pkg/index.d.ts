// Types of the hyperpunch npm package (hand-written; the wasm module's own are in ./wasm/).

/** A core key or encryption key: 32 bytes, or 64 hex characters. */
export type KeyLike = Uint8Array | string

/** Load and instantiate the wasm module once (done for you by every call that needs it). */
export function init(wasmUrl?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<unknown>

/** Bytes as lowercase hex. */
export function toHex(bytes: Uint8Array): string

/** The discovery key of a core key: what peers announce and look up on the DHT. */
export function discoveryKey(key: KeyLike): Promise<Uint8Array>

/** The hyperpunch version. */
export function version(): Promise<string>

export interface HypercoreOptions {
  /** A dht-relay WebSocket URL (`ws://` or `wss://`): replicate with the core's peers through it once open. */
  relay?: string
  /** Block encryption key of an encrypted core. */
  encryptionKey?: KeyLike
  /** Where the .wasm file is loaded from (default: next to the module). */
  wasmUrl?: string | URL
}

export interface GetOptions {
  /** `false`: resolve to `undefined` instead of waiting for peers when the block is missing. */
  wait?: boolean
}

export interface DownloadRange {
  start?: number
  /** Exclusive; without it, every block from `start` on, live. */
  end?: number
}

export interface ReplicateOptions {
  /** Most peers to connect to (default 8). */
  maxPeers?: number
  /**
   * `true`: the relay runs the encryption with a key made for the session and sees the
   * traffic (JS dht-relay's default mode). Default `false` (non-custodial): the key never
   * leaves the page, Noise and secret-stream run in the page, the relay forwards ciphertext.
   */
  custodial?: boolean
}

/** Options of `core.serve(url, opts)`. */
export interface ServeOptions {
  /**
   * Hand the session's key pair to the relay, which then runs the encryption to the peers and
   * sees the replication traffic (needed with a JS `@hyperswarm/dht-relay`, which stores no
   * non-custodial announcement). Default: non-custodial, falling back to custodial only when
   * the relay refuses the mode (close code 4005). Set `false` to never fall back.
   */
  custodial?: boolean
}

/** Replication with a core's peers through a dht-relay. */
export interface RelayReplication {
  /** Connections through the relay still replicating. */
  readonly connections: number
  /** End every connection gracefully and close the relay session. */
  end(): Promise<void>
}

/** A core served to its peers through a dht-relay (`core.serve(url)`). */
export interface RelayServing {
  /** The public key (32 bytes) the page is announced and reachable under: made for this session, not the core's key. */
  readonly publicKey: Uint8Array
  /** Peers connected and replicating now. */
  readonly connections: number
  /** Stop serving: close the server, end every connection gracefully, close the relay session. */
  close(): Promise<void>
}

export interface HypercoreEvents {
  ready: () => void
  /** The core grew (a local append, or a peer's verified upgrade) to `length`. */
  append: (length: number) => void
  /** Block `index` arrived from a peer, verified and stored. */
  download: (index: number) => void
  'peer-add': (peers: number) => void
  'peer-remove': (peers: number) => void
  /** Replication through the `relay` option failed, or serving (`serve`) stopped with an error. */
  error: (error: Error) => void
}

/** A hypercore (signed append-only log) stored in an IndexedDB database. */
export class Hypercore {
  /**
   * Open the core stored in the IndexedDB database `name`, or create one there: a reader of
   * `key`, or without a key a new writable core.
   */
  constructor(name: string, key?: KeyLike | null, opts?: HypercoreOptions)
  readonly name: string
  /** The replication started by `replicate` or the `relay` option. */
  replication: RelayReplication | null
  /** The serving started by `serve`, until it stops. */
  serving: RelayServing | null
  /** Resolves once the core is open. */
  ready(): Promise<void>
  readonly opening: Promise<void>
  /** 32 bytes (throws before `ready`). */
  readonly key: Uint8Array
  /** 32 bytes (throws before `ready`). */
  readonly discoveryKey: Uint8Array
  readonly length: number
  readonly contiguousLength: number
  readonly byteLength: number
  readonly fork: number
  readonly writable: boolean
  /** Peers replicating the core now. */
  readonly peers: number
  append(blocks: Uint8Array | string | Array<Uint8Array | string>): Promise<number>
  get(index: number, opts?: GetOptions): Promise<Uint8Array | undefined>
  has(index: number): Promise<boolean>
  download(range?: DownloadRange): Promise<void>
  /** Find the core's peers through the dht-relay at `url` and replicate with them. */
  replicate(url: string, opts?: ReplicateOptions): Promise<RelayReplication>
  /**
   * Replicate over a connection of a `Swarm` (JS `swarm.on('connection', (conn) =>
   * core.replicate(conn))`): the replication runs in the connection's encrypted stream;
   * resolves once it closed cleanly. The connection's messages are the replication's then.
   */
  replicate(connection: SwarmConnection): Promise<void>
  /**
   * Serve the core through the dht-relay at `url`: announce it on its discovery key and
   * replicate with every peer that connects. Resolves once announced. Non-custodial by
   * default (the session key never leaves the page; the relay forwards ciphertext; a relay
   * that refuses with 4005 is retried custodially); `custodial: true` for a JS dht-relay.
   */
  serve(url: string, opts?: ServeOptions): Promise<RelayServing>
  on<E extends keyof HypercoreEvents>(name: E, fn: HypercoreEvents[E]): this
  once<E extends keyof HypercoreEvents>(name: E, fn: HypercoreEvents[E]): this
  off<E extends keyof HypercoreEvents>(name: E, fn: HypercoreEvents[E]): this
  emit<E extends keyof HypercoreEvents>(name: E, ...args: Parameters<HypercoreEvents[E]>): boolean
  /** Delete the IndexedDB database `name` with every block in it. */
  static delete(name: string): Promise<void>
}

/** A key or value encoding of its own: bytes in, bytes out. */
export interface Codec<T> {
  encode(value: T): Uint8Array
  decode(bytes: Uint8Array): T
}

/** hyperbee's named encodings (JS `codecs`): the same bytes as JS hyperbee stores. */
export type EncodingName = 'binary' | 'utf-8' | 'utf8' | 'json'

/** A `keyEncoding` / `valueEncoding`. */
export type Encoding = EncodingName | Codec<unknown>

/** What an encoding decodes to: bytes for 'binary', strings for 'utf-8', any for 'json'. */
export type Decoded<E> =
  E extends 'utf-8' | 'utf8' ? string
    : E extends 'json' ? any
      : E extends Codec<infer T> ? T
        : Uint8Array

export interface HyperbeeOptions<KE extends Encoding = 'binary', VE extends Encoding = 'binary'> {
  /** Default 'binary'. Keys sort by their encoded bytes. */
  keyEncoding?: KE
  /** Default 'binary'. */
  valueEncoding?: VE
  /**
   * Written into the header (block 0) when the first write creates it, as JS hyperbee's
   * `metadata` (a string as UTF-8). A bee that has its header already keeps it.
   */
  metadata?: HyperbeeMetadataOptions
}

/** `metadata` of `new Hyperbee(core, { metadata })`. */
export interface HyperbeeMetadataOptions {
  /** The key of a core holding the content (hyperdrive puts its blobs core's key here). */
  contentFeed?: Uint8Array | string | null
  /** Free-form application data. */
  userData?: Uint8Array | string | null
}

/** A bee's header, block 0 of its core (`bee.getHeader()`), as JS hyperbee decodes it. */
export interface HyperbeeHeader {
  /** 'hyperbee'. */
  protocol: string
  /** null when the header has no metadata. */
  metadata: {
    contentFeed: Uint8Array | null
    userData: Uint8Array | null
  } | null
}

/** One entry of a bee: the block `seq` holding `key`'s `value` (null: put without a value). */
export interface BeeEntry<K, V> {
  seq: number
  key: K
  value: V | null
}

/** Bounds and options of `createReadStream` (keys in the bee's key encoding). */
export interface BeeRange<K> {
  gt?: K
  gte?: K
  lt?: K
  lte?: K
  /** Descending order. */
  reverse?: boolean
  /** At most this many entries (negative: no limit). */
  limit?: number
}

/**
 * A compare-and-swap check (JS hyperbee's `cas`): called with the stored entry and the one
 * about to be written (for a delete, `value` null); the write happens only if it returns true.
 * Called synchronously; a throw rejects the write.
 */
export type CasCallback<K, V> = (stored: BeeEntry<K, V>, next: BeeEntry<K, V>) => boolean

export interface BeePutOptions<K, V> {
  /** Replace an existing entry only if this returns true (a new key is always written). */
  cas?: CasCallback<K, V>
}

export interface BeeDelOptions<K, V> {
  /** Delete only if this returns true. */
  cas?: CasCallback<K, V>
}

/** Bounds and options of `createHistoryStream` (block seqs; negative: back from the version). */
export interface HistoryRange {
  gt?: number
  gte?: number
  lt?: number
  lte?: number
  /** Newest first. */
  reverse?: boolean
  /** At most this many entries. */
  limit?: number
  /** Keep following the core as it grows (end the iteration with `break`); not with `reverse`. */
  live?: boolean
}

/** One block of a bee's history: a put or a delete (`value` null) of `key`. */
export interface HistoryEntry<K, V> {
  type: 'put' | 'del'
  seq: number
  key: K
  value: V | null
}

/** One difference of `createDiffStream`: the entry in this bee and in the other version. */
export interface DiffEntry<K, V> {
  /** The entry in the bee the stream was made from (null: not there). */
  left: BeeEntry<K, V> | null
  /** The entry in the other version (null: not there). */
  right: BeeEntry<K, V> | null
}

/** Key bounds of `watch`. */
export interface WatchRange<K> {
  gt?: K
  gte?: K
  lt?: K
  lte?: K
}

export interface WatcherEvents {
  /** A change in range (after `current` / `previous` were set). */
  update: () => void
  error: (error: Error) => void
}

/** Options of `bee.watch(range, opts)`. */
export interface BeeWatchOptions<K, V, T> {
  /**
   * Count from the empty bee (version 1), so the first `next` reports at once if the range
   * holds anything.
   */
  eager?: boolean
  /**
   * What each change yields instead of the snapshot pair: `[map(current), map(previous)]`
   * (JS `map`). A value with a `close()` method is closed with its snapshot when the next
   * change comes, or when the watcher closes.
   */
  map?: (snapshot: Hyperbee<K, V>) => T
}

/**
 * `bee.watch(range)`: an async iterable of `[current, previous]` snapshots (or what `map`
 * makes of them), one per change in range (made in this page or replicated), as hyperbee's
 * Watcher.
 */
export interface HyperbeeWatcher<K, V, T = Hyperbee<K, V>> extends AsyncIterableIterator<[T, T]> {
  readonly bee: Hyperbee<K, V>
  /** The snapshot after the last change (null before the first). */
  readonly current: Hyperbee<K, V> | null
  /** The snapshot before the last change (null before the first). */
  readonly previous: Hyperbee<K, V> | null
  /** What was yielded for `current` (`current` itself without `map`). */
  readonly currentMapped: T | null
  /** What was yielded for `previous` (`previous` itself without `map`). */
  readonly previousMapped: T | null
  readonly closed: boolean
  ready(): Promise<void>
  /** Stop watching: a pending `next` ends the iteration. */
  close(): Promise<void>
  destroy(): Promise<void>
  on<E extends keyof WatcherEvents>(name: E, fn: WatcherEvents[E]): this
  once<E extends keyof WatcherEvents>(name: E, fn: WatcherEvents[E]): this
  off<E extends keyof WatcherEvents>(name: E, fn: WatcherEvents[E]): this
}

/** `bee.getAndWatch(key)`: the key's entry, kept up to date ('update' on each change). */
export interface HyperbeeEntryWatcher<K, V> {
  readonly bee: Hyperbee<K, V>
  /** The entry now (null: absent). */
  readonly node: BeeEntry<K, V> | null
  readonly closed: boolean
  close(): Promise<void>
  destroy(): Promise<void>
  on<E extends keyof WatcherEvents>(name: E, fn: WatcherEvents[E]): this
  once<E extends keyof WatcherEvents>(name: E, fn: WatcherEvents[E]): this
  off<E extends keyof WatcherEvents>(name: E, fn: WatcherEvents[E]): this
}

/** Puts and deletes staged in memory, appended in one write by `flush()` (`bee.batch()`). */
export interface HyperbeeBatch<K, V> {
  put(key: K, value?: V, opts?: BeePutOptions<K, V>): Promise<void>
  del(key: K, opts?: BeeDelOptions<K, V>): Promise<void>
  /** `key`'s entry with the staged writes applied. */
  get(key: K): Promise<BeeEntry<K, V> | null>
  /** Append everything staged in one atomic write; the batch can be used again. */
  flush(): Promise<void>
  /** Discard what is staged. */
  close(): Promise<void>
}

export interface HyperbeeSubOptions<KE extends Encoding, VE extends Encoding> extends HyperbeeOptions<KE, VE> {
  /** Between the prefix and the keys (default one zero byte). */
  sep?: Uint8Array | string
}

/**
 * A Hyperbee (an append-only B-tree, JS hyperbee 2.x) on a `Hypercore` of the page. Its blocks
 * are the ones JS hyperbee writes for the same operations: JS peers read it, and a bee
 * replicated from JS reads here (missing blocks are downloaded as queries reach them).
 */
export interface Hyperbee<K = Uint8Array, V = Uint8Array> {
  readonly core: Hypercore
  readonly keyEncoding: Codec<K>
  readonly valueEncoding: Codec<V>
  /** Resolves once the core is open. */
  ready(): Promise<void>
  readonly opening: Promise<void>
  /** The core's length (at least 1), or the version of a checkout / snapshot. */
  readonly version: number
  /** Whether the core is writable here and this is not a checkout / snapshot. */
  readonly writable: boolean
  /** Put `value` under `key` (without `value`: the key with no value); `cas`: see `CasCallback`. */
  put(key: K, value?: V, opts?: BeePutOptions<K, V>): Promise<void>
  /** `key`'s entry, or null. */
  get(key: K): Promise<BeeEntry<K, V> | null>
  /** Delete `key` (appends nothing when it is not there); `cas`: see `CasCallback`. */
  del(key: K, opts?: BeeDelOptions<K, V>): Promise<void>
  batch(): HyperbeeBatch<K, V>
  /** Whether `close()` was called. */
  readonly closed: boolean
  /**
   * Free this bee's wasm object (a checkout, snapshot, sub, or the bee itself; the core stays
   * open); later calls throw. A watcher closes the pair of a change when the next one comes.
   */
  close(): Promise<void>
  /** The bee as of `version`, read-only (reads fail while the core is shorter). */
  checkout(version: number): Hyperbee<K, V>
  /** The bee as it is now, read-only. */
  snapshot(): Hyperbee<K, V>
  /** Every put and delete in block order, within the seq bounds. */
  createHistoryStream(opts?: HistoryRange): AsyncIterable<HistoryEntry<K, V>>
  /**
   * What differs between this bee (left) and `other` (right): a version number, or a
   * checkout / snapshot of this bee; within the key range, in key order.
   */
  createDiffStream(other: number | Hyperbee<K, V>, range?: BeeRange<K>): AsyncIterable<DiffEntry<K, V>>
  /**
   * Watch the key range: `[current, previous]` snapshots per change. `eager`: count from the
   * empty bee (version 1), so the first `next` reports at once if the range holds anything.
   * `map`: yield `[map(current), map(previous)]` instead.
   */
  watch(range?: WatchRange<K>, opts?: { eager?: boolean, map?: undefined }): HyperbeeWatcher<K, V>
  watch<T>(range: WatchRange<K> | undefined, opts: BeeWatchOptions<K, V, T> & { map: (snapshot: Hyperbee<K, V>) => T }): HyperbeeWatcher<K, V, T>
  /**
   * Block 0, the header (`{ protocol, metadata }`), as JS hyperbee's `getHeader()`; null
   * while the core has no block.
   */
  getHeader(): Promise<HyperbeeHeader | null>
  /** The key and value block `seq` wrote (a deletion's value is null). */
  getBySeq(seq: number): Promise<{ key: K, value: V | null }>
  /** `key`'s entry, kept up to date as the bee changes. */
  getAndWatch(key: K): Promise<HyperbeeEntryWatcher<K, V>>
  /**
   * Entries in key order (descending with `reverse`) within the bounds, at most `limit`:
   * iterate with `for await`. Reads a snapshot taken when iteration starts.
   */
  createReadStream(range?: BeeRange<K>): AsyncIterable<BeeEntry<K, V>>
  /** The first entry in range, or null. */
  peek(range?: BeeRange<K>): Promise<BeeEntry<K, V> | null>
  /** A sub-database under `prefix`, with this bee's encodings unless given others. */
  sub(prefix: Uint8Array | string): Hyperbee<K, V>
  sub<KE extends Encoding, VE extends Encoding>(prefix: Uint8Array | string, opts: HyperbeeSubOptions<KE, VE>): Hyperbee<Decoded<KE>, Decoded<VE>>
}

export interface HyperbeeConstructor {
  /**
   * A bee on `core` (`new Hyperbee(core, { keyEncoding, valueEncoding, metadata })`). An empty
   * writable core becomes a bee with its first write; its types follow the encodings
   * (`'utf-8'`: string, `'json'`: any, `'binary'`: Uint8Array, a `Codec<T>`: T).
   */
  new <KE extends Encoding = 'binary', VE extends Encoding = 'binary'>(core: Hypercore, opts?: HyperbeeOptions<KE, VE>): Hyperbee<Decoded<KE>, Decoded<VE>>
}

export declare const Hyperbee: HyperbeeConstructor

/** A listener of the events of `E`. */
type Listener<E, K extends keyof E> = E[K] extends (...args: never[]) => void ? E[K] : never

export interface SwarmConnectionEvents {
  /** A message from the peer (reading starts with the first 'data' listener). */
  data: (message: Uint8Array) => void
  /** The peer ended its side. */
  end: () => void
  /** The stream closed (after 'error' when it failed). */
  close: () => void
  error: (error: Error) => void
}

/**
 * One connection of a `Swarm` (hyperswarm's 'connection' stream): end-to-end encrypted
 * messages with the peer, or a core's replication (`core.replicate(conn)`).
 */
export declare class SwarmConnection implements AsyncIterable<Uint8Array> {
  private constructor()
  /** The peer's public key (32 bytes). */
  readonly remotePublicKey: Uint8Array
  /** Whether this page dialed it. */
  readonly isInitiator: boolean
  /** Whether the stream closed. */
  readonly destroyed: boolean
  /** Send one message (a string is sent as UTF-8); false once ended or closed. */
  write(data: Uint8Array | string): boolean
  /** End our side (after a last message, if given). */
  end(data?: Uint8Array | string): void
  /** Close the stream now. */
  destroy(): void
  on<E extends keyof SwarmConnectionEvents>(name: E, fn: Listener<SwarmConnectionEvents, E>): this
  once<E extends keyof SwarmConnectionEvents>(name: E, fn: Listener<SwarmConnectionEvents, E>): this
  off<E extends keyof SwarmConnectionEvents>(name: E, fn: Listener<SwarmConnectionEvents, E>): this
  emit<E extends keyof SwarmConnectionEvents>(name: E, ...args: Parameters<Listener<SwarmConnectionEvents, E>>): boolean
  /** The messages until the peer ends (instead of 'data' events). */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array>
}

/** What the 'connection' event tells about the peer (hyperswarm's PeerInfo, in part). */
export interface SwarmPeerInfo {
  /** The peer's public key. */
  publicKey: Uint8Array
  /** Whether this page dialed it (found it under a topic it looked up). */
  client: boolean
}

export interface SwarmOptions {
  /** The dht-relay WebSocket URL (`ws://` or `wss://`): `hyperpunch relay --ws`, or a JS `@hyperswarm/dht-relay`. */
  relay: string
  /**
   * `true`: the relay holds the swarm's key pair (made for this swarm alone), runs the
   * encryption and reads the traffic (needed to announce through a JS dht-relay). Default:
   * non-custodial (the key never leaves the page; the relay forwards ciphertext), falling back
   * to custodial when the relay refuses that mode (close code 4005); `false` never falls back.
   */
  custodial?: boolean
  /** Where the .wasm file is loaded from (default: next to the module). */
  wasmUrl?: string | URL
}

export interface JoinOptions {
  /** Announce the topic and accept its peers' connections (default true). */
  server?: boolean
  /** Look the topic up and connect to its peers (default true). */
  client?: boolean
}

/** What `swarm.join(topic)` returns (hyperswarm's PeerDiscovery). */
export interface PeerDiscovery {
  readonly swarm: Swarm
  /** The topic (32 bytes). */
  readonly topic: Uint8Array
  /** Resolves once the topic was announced / looked up and the peers found were tried (false: the swarm was destroyed first). */
  flushed(): Promise<boolean>
  /** Leave this join. */
  destroy(): Promise<void>
}

export interface SwarmEvents {
  /** A new connection: one per peer at a time (duplicates resolved as hyperswarm does). */
  connection: (connection: SwarmConnection, info: SwarmPeerInfo) => void
  /** The relay session could not be opened. */
  error: (error: Error) => void
}

/**
 * Hyperswarm in the page through a dht-relay: join topics, get a 'connection' for each peer
 * met there (JS hyperswarm peers, hyperpunch, other pages). The engine is hyperswarm 4.17's
 * (refreshes, connection queue, retries, duplicate tie-break), run in wasm.
 */
export declare class Swarm {
  constructor(opts: SwarmOptions)
  readonly relay: string
  /** Open connections. */
  readonly connections: Set<SwarmConnection>
  readonly destroyed: boolean
  /** Resolves once the relay session is open. */
  ready(): Promise<void>
  readonly opening: Promise<void>
  /** The swarm's public key, made for it (throws before `ready`). */
  readonly publicKey: Uint8Array
  /** Join `topic` (32 bytes or 64 hex characters): announce it and/or look it up. */
  join(topic: KeyLike, opts?: JoinOptions): PeerDiscovery
  /** Leave `topic` (its announcement is removed; connections stay). */
  leave(topic: KeyLike): Promise<void>
  /** Resolves once every topic was announced / looked up and every peer found was tried. */
  flush(): Promise<boolean>
  /** Leave every topic, close every connection and the relay session. */
  destroy(): Promise<void>
  on<E extends keyof SwarmEvents>(name: E, fn: Listener<SwarmEvents, E>): this
  once<E extends keyof SwarmEvents>(name: E, fn: Listener<SwarmEvents, E>): this
  off<E extends keyof SwarmEvents>(name: E, fn: Listener<SwarmEvents, E>): this
  emit<E extends keyof SwarmEvents>(name: E, ...args: Parameters<Listener<SwarmEvents, E>>): boolean
}

export interface CorestoreOptions {
  /** The primary key of a new store (32 bytes or hex; default random, kept in the database). */
  primaryKey?: KeyLike
  /** Where the .wasm file is loaded from (default: next to the module). */
  wasmUrl?: string | URL
}

/** `store.get(...)`: a named core (created when missing) or a core by key. */
export type CorestoreGetOptions = { name: string } | { key: KeyLike }

/** A core of a `Corestore`. */
export interface CorestoreCore {
  readonly store: Corestore
  ready(): Promise<void>
  readonly opening: Promise<void>
  /** 32 bytes (throws before `ready`). */
  readonly key: Uint8Array
  /** 32 bytes (throws before `ready`). */
  readonly discoveryKey: Uint8Array
  /** The length as of `ready`, the last append or `update()`. */
  readonly length: number
  readonly writable: boolean
  /** Refresh `length` and `writable`. */
  update(): Promise<void>
  append(blocks: Uint8Array | string | Array<Uint8Array | string>): Promise<number>
  /** Block `index`, downloaded from the store's peers first when missing (past the length of a core this page does not write: once a peer extends it). */
  get(index: number): Promise<Uint8Array | null>
  /** Another session of this core (JS `core.session()`): open until it is closed too. */
  session(): CorestoreCore
  /** End this session of the core. */
  close(): Promise<void>
}

/**
 * A corestore (JS corestore 7) in an IndexedDB database: named cores with the keys JS
 * corestore derives from the same primary key, replicated together over each connection.
 */
export declare class Corestore {
  constructor(name: string, opts?: CorestoreOptions)
  readonly name: string
  ready(): Promise<void>
  readonly opening: Promise<void>
  /** 32 bytes (throws before `ready`). */
  readonly primaryKey: Uint8Array
  get(opts: CorestoreGetOptions | KeyLike): CorestoreCore
  /**
   * The namespace `name` of this store (JS `store.namespace(name)`): the same store and
   * database, whose named cores and drives get the keys JS corestore gives them there.
   */
  namespace(name: Uint8Array | string): Corestore
  /** Another session of the store, in the same namespace (JS `store.session()`). */
  session(): Corestore
  /** The namespace names are looked up in (32 bytes; throws before `ready`). */
  readonly ns: Uint8Array
  /**
   * The discovery keys of every core stored in the database, or with `namespace` (32 bytes,
   * e.g. another store's `ns`) of the named cores in that namespace (JS `store.list(ns)`).
   */
  list(namespace?: KeyLike): AsyncIterable<Uint8Array>
  /**
   * Call `fn` with each core the store opens from now on, in any namespace or session of it,
   * or for a peer that asked for a stored core (JS `store.watch(fn)`, which passes the core
   * itself). Resolves once watching: opens after that are reported. Watching `fn` twice is once.
   */
  watch(fn: (core: OpenedCore) => void): Promise<void>
  /**
   * Stop calling `fn` (JS `store.unwatch(fn)`): the cores opened before this call are still
   * reported. Resolves once stopped.
   */
  unwatch(fn: (core: OpenedCore) => void): Promise<void>
  /** Replicate every core of the store over a `Swarm` connection; resolves once it closed. */
  replicate(connection: SwarmConnection): Promise<void>
  /** Delete the IndexedDB database `name` with every core in it. */
  static delete(name: string): Promise<void>
}

/** A core a `Corestore` opened (what `store.watch(fn)` calls `fn` with). */
export interface OpenedCore {
  /** 32 bytes. */
  key: Uint8Array
  /** 32 bytes. */
  discoveryKey: Uint8Array
  /** Opened because a peer asked for it (it is stored here), not by `store.get`. */
  forRemote: boolean
}

/** Where a file's bytes are in the blobs core. */
export interface BlobId {
  blockOffset: number
  blockLength: number
  byteOffset: number
  byteLength: number
}

/** A drive entry (hyperdrive's `{ seq, key, value }`). */
export interface DriveEntry {
  seq: number
  /** The path. */
  key: string
  value: {
    executable: boolean
    /** A symlink's target. */
    linkname: string | null
    blob: BlobId | null
    /** Any JSON (null when none). */
    metadata: unknown
  }
}

export interface DrivePutOptions {
  executable?: boolean
  /** Any JSON. */
  metadata?: unknown
}

/** One difference of `drive.diff`: the entry now and at the other version. */
export interface DriveDiff {
  /** The entry in this drive (null: no such path). */
  left: DriveEntry | null
  /** The entry at the other version (null: no such path). */
  right: DriveEntry | null
}

/** One direction of a `DriveMonitor` (JS hyperdrive `monitor.uploadStats` / `downloadStats`). */
export interface MonitorStats {
  /** Milliseconds (the page's clock since the store was opened) of the first block counted; 0 before. */
  startTime: number
  /** `blocks / targetBlocks * 100`, two decimals (Infinity without a file, as JS). */
  percentage: number
  /** Peers of the blobs core. */
  peers: number
  /** Bytes per second at the last block (JS speedometer: a five-second window). */
  speed: number
  /** Blocks counted. */
  blocks: number
  /** Bytes counted (JS: the same as `monitoringBytes`). */
  totalBytes: number
  /** Bytes counted. */
  monitoringBytes: number
  /** The file's byte length (0 without a file). */
  targetBytes: number
  /** The file's block length (0 without a file). */
  targetBlocks: number
}

export interface DriveMonitorEvents {
  /** A block of the file was uploaded or downloaded (the stats changed). */
  update: () => void
  error: (error: Error) => void
}

/** `drive.monitor(name)`: upload and download statistics of one file (JS hyperdrive's monitor). */
export interface DriveMonitor {
  readonly drive: Hyperdrive
  readonly name: string | null
  readonly closed: boolean
  /** Resolves once the file's entry is read and blocks are counted. */
  ready(): Promise<void>
  readonly uploadStats: MonitorStats
  readonly downloadStats: MonitorStats
  /** Peers of the blobs core. */
  readonly peers: number
  /** Bytes per second downloaded now. */
  downloadSpeed(): number
  /** Bytes per second uploaded now. */
  uploadSpeed(): number
  /**
   * Stop counting and free the wasm monitor (it leaves the store's event subscribers): the
   * stats and peers keep their last values, the speeds are 0 from then on.
   */
  close(): Promise<void>
  on<E extends keyof DriveMonitorEvents>(name: E, fn: DriveMonitorEvents[E]): this
  once<E extends keyof DriveMonitorEvents>(name: E, fn: DriveMonitorEvents[E]): this
  off<E extends keyof DriveMonitorEvents>(name: E, fn: DriveMonitorEvents[E]): this
}

export interface DriveWatcherEvents {
  /** A change below the folder (after `current` / `previous` were set). */
  update: () => void
  error: (error: Error) => void
}

/** `drive.watch(folder)`: an async iterable of `[current, previous]` checkouts, one per change. */
export interface DriveWatcher extends AsyncIterableIterator<[Hyperdrive, Hyperdrive]> {
  readonly drive: Hyperdrive
  /** The checkout after the last change (null before the first). */
  readonly current: Hyperdrive | null
  /** The checkout before the last change (null before the first). */
  readonly previous: Hyperdrive | null
  readonly closed: boolean
  /** Resolves once changes are counted from (call before writing what you wait for). */
  ready(): Promise<void>
  /** Stop watching: a pending `next` ends the iteration. */
  destroy(): Promise<void>
  close(): Promise<void>
  on<E extends keyof DriveWatcherEvents>(name: E, fn: DriveWatcherEvents[E]): this
  once<E extends keyof DriveWatcherEvents>(name: E, fn: DriveWatcherEvents[E]): this
  off<E extends keyof DriveWatcherEvents>(name: E, fn: DriveWatcherEvents[E]): this
}

/** `drive.batch()`: file contents written at once, entries appended together by `flush()`. */
export interface DriveBatch {
  put(path: string, data: Uint8Array | string, opts?: DrivePutOptions): Promise<void>
  del(path: string): Promise<void>
  symlink(path: string, target: string): Promise<void>
  /** Append every staged entry in one write; the batch is done afterwards. */
  flush(): Promise<void>
  /** Discard the staged entries. */
  close(): Promise<void>
}

/** Options of `drive.entry(path, opts)`. */
export interface DriveEntryOptions {
  /** Follow symlinks to the entry they end at (at most 16 in a row). */
  follow?: boolean
}

/**
 * A byte range of `drive.createReadStream(path, range)`: from `start` (default 0) to `end`
 * (inclusive), or `length` bytes (`length` wins over `end`).
 */
export interface DriveReadRange {
  start?: number
  end?: number
  length?: number
}

/** What `clear` / `clearAll` with `{ diff: true }` resolve to. */
export interface DriveCleared {
  /** The blocks cleared. */
  blocks: number
}

export interface HyperdriveOptions {
  /** Opening someone else's drive: how long to wait for a peer to send its db core's manifest (default 30000). */
  waitMs?: number
}

/**
 * A Hyperdrive (JS hyperdrive 13) in a `Corestore`: `new Hyperdrive(store)` is the drive the
 * store writes (same drive key as JS for the same primary key), `new Hyperdrive(store, key)`
 * someone else's.
 */
export declare class Hyperdrive {
  constructor(store: Corestore, key?: KeyLike | null, opts?: HyperdriveOptions)
  readonly corestore: Corestore
  ready(): Promise<void>
  readonly opening: Promise<void>
  /** 32 bytes (throws before `ready`). */
  readonly key: Uint8Array
  /** 32 bytes (throws before `ready`). */
  readonly discoveryKey: Uint8Array
  /** The blobs core's key (null before `ready`). */
  readonly contentKey: Uint8Array | null
  /** The db core's length as of `ready`, the last write or `update()` (a checkout: its version). */
  readonly version: number
  /** Whether this page writes the drive (false for a checkout). */
  readonly writable: boolean
  update(): Promise<void>
  put(path: string, data: Uint8Array | string, opts?: DrivePutOptions): Promise<void>
  get(path: string): Promise<Uint8Array | null>
  del(path: string): Promise<void>
  symlink(path: string, target: string): Promise<void>
  /** `path`'s entry, or null; `follow: true` follows symlinks (at most 16 in a row). */
  entry(path: string, opts?: DriveEntryOptions): Promise<DriveEntry | null>
  exists(path: string): Promise<boolean>
  /** Entries under `folder` in path order (`recursive: false`: directly in it). */
  list(folder?: string, opts?: { recursive?: boolean }): AsyncIterable<DriveEntry>
  /** Names directly in `folder`. */
  readdir(folder?: string): AsyncIterable<string>
  /**
   * The file's bytes, one chunk per block read: the whole file, or a byte range of it
   * (`start`..`end` inclusive, or `length` bytes from `start`). Only the blocks in range are
   * read (fetched from the peers when missing). A range is clamped to the file. No such file
   * throws; a symlink yields nothing.
   */
  createReadStream(path: string, opts?: DriveReadRange): AsyncIterable<Uint8Array>
  /** Download every file under `folder` (or the file `folder`); resolves to the number of files. */
  download(folder?: string): Promise<number>
  /**
   * Download the files below `folder` (default '/') added or changed since version `version`;
   * resolves to the number of files downloaded.
   */
  downloadDiff(version: number, folder?: string): Promise<number>
  /**
   * Whether the file `path`, or every file below the folder `path`, is stored in this page
   * in full (a symlink, or a folder without files: false).
   */
  has(path: string): Promise<boolean>
  /**
   * Delete this page's copy of the file's contents; its entry stays and the blocks can be
   * fetched again from a peer. `{ diff: true }`: resolves to `{ blocks }`, the blocks
   * cleared (JS hyperdrive 13 on hypercore 11 always says 0); else to null.
   */
  clear(path: string, opts: { diff: true }): Promise<DriveCleared>
  clear(path: string, opts?: { diff?: false }): Promise<null>
  clear(path: string, opts?: { diff?: boolean }): Promise<DriveCleared | null>
  /** Delete this page's copy of every blob of the drive; `{ diff: true }` as `clear`. */
  clearAll(opts: { diff: true }): Promise<DriveCleared>
  clearAll(opts?: { diff?: false }): Promise<null>
  clearAll(opts?: { diff?: boolean }): Promise<DriveCleared | null>
  /**
   * The blobs core's length the drive's version `version` (default, or 0: now) needs: the end of
   * the last blob its entries point at.
   */
  getBlobsLength(version?: number): Promise<number>
  /**
   * Cut the drive back to `version` (JS `truncate(version, { blobs })`): the db core to
   * `version` blocks, then the blobs core to `opts.blobs` blocks or (default, -1) to what
   * `version`'s files need (`getBlobsLength(version)`; as JS, version 0 keeps the current
   * version's blobs). Files written after `version` are gone, both cores move to their next
   * fork and peers are told. Rejects, truncating nothing, when a length is past its core's
   * end ("bad truncation length"), on a checkout, or on a drive this page cannot write.
   */
  truncate(version: number, opts?: { blobs?: number }): Promise<void>
  /**
   * Delete the drive from its store (JS `purge()`): its db and blobs cores, every block and
   * record, then close it. Other drive objects on those cores fail from then on; opening the
   * drive again gives an empty one (the same key for the store's own drive). Rejects on a
   * checkout.
   */
  purge(): Promise<void>
  /** Replicate the drive's store over a `Swarm` connection. */
  replicate(connection: SwarmConnection): Promise<void>
  /** Whether `close()` was called. */
  readonly closed: boolean
  /** Free this drive's (or checkout's) wasm object; later calls throw. A watcher closes the pair of a change when the next one comes. */
  close(): Promise<void>
  /** The drive as of `version`, read-only. */
  checkout(version: number): Hyperdrive
  /** What differs between the drive and its version `version` below `folder` (default '/'), in path order. */
  diff(version: number, folder?: string): AsyncIterable<DriveDiff>
  /** Watch `folder` (default '/'): `[current, previous]` checkouts per change below it. */
  watch(folder?: string): DriveWatcher
  /**
   * Upload and download statistics of the file `name` (JS `drive.monitor(name)`); no name, or
   * a name not in the drive: every block of both cores counts.
   */
  monitor(name?: string): DriveMonitor
  /** A batch of writes whose entries are appended together by `flush()`. */
  batch(): DriveBatch
  /**
   * A WHATWG `WritableStream` (not a Node stream) writing the file `path`: each chunk is one
   * block of the file; closing the stream (`getWriter().close()`, or the end of a `pipeTo`)
   * puts the entry, aborting it puts none. Holds the drive's blobs write lock until then.
   */
  createWriteStream(path: string, opts?: DrivePutOptions): WritableStream<Uint8Array | string>
}

/** A node `apply` gets (JS autobase's `{ value, from, length, ... }`). */
export interface AutobaseNode<T> {
  /** Confirmed by the indexers (false: on the tip, may still be reordered). */
  indexed: boolean
  /** The writer: `from.key` is its oplog key. */
  from: { key: Uint8Array }
  /** The node's length in its writer's oplog. */
  length: number
  /** The value, decoded with the base's `valueEncoding`. */
  value: T
  /** The DAG heads the writer had seen. */
  heads: Array<{ key: Uint8Array, length: number }>
}

/** The system calls `apply` may make (JS `host`); they take effect when `apply`'s batch ends. */
export interface AutobaseHost {
  /** Add a writer: an indexer unless `{ indexer: false }` (JS's default). */
  addWriter(key: KeyLike, opts?: { indexer?: boolean, isIndexer?: boolean }): Promise<void>
  /** Remove a writer; removing the last indexer fails the base (an 'error'). */
  removeWriter(key: KeyLike): Promise<void>
  /** Record that a writer acked. */
  ackWriter(key: KeyLike): Promise<void>
}

/**
 * A view: an append-only log that `apply` writes (JS's common case, a view hypercore from
 * `store.get(name)`), kept in memory and rebuilt from the oplogs when the base opens.
 */
export interface AutobaseView<B = Uint8Array> {
  readonly name: string
  readonly length: number
  /** Blocks confirmed by the indexers (they do not move any more). */
  readonly indexedLength: number
  /** Block `index`, decoded; null past the length. */
  get(index: number): Promise<B | null>
  /** Append a block or an array of blocks: only inside `apply`. */
  append(block: B | B[]): Promise<{ length: number }>
}

/** What `open(store)` gets. */
export interface AutobaseViewStore {
  /** The view `name` (opened once; later calls give the same view). */
  get<E extends Encoding = 'binary'>(name: string, opts?: { valueEncoding?: E }): AutobaseView<Decoded<E>>
  get<E extends Encoding = 'binary'>(opts: { name: string, valueEncoding?: E }): AutobaseView<Decoded<E>>
}

/** `new Autobase(store, bootstrap, handlers)`. */
export interface AutobaseHandlers<VE extends Encoding, V> {
  /** Called once per batch of new nodes, in order; may be async (the next batch waits for it). */
  apply(nodes: Array<AutobaseNode<Decoded<VE>>>, view: V, host: AutobaseHost): Promise<void> | void
  /** Opens the views (once, at open): what it returns is `base.view` and `apply`'s `view`. */
  open?: (store: AutobaseViewStore) => V | Promise<V>
  /** The values' encoding (default binary). */
  valueEncoding?: VE
  /**
   * JS autobase's ack timer, in milliseconds (default 10000, as JS): an indexer acks when it runs
   * out (every `ackInterval` to `2 × ackInterval`, pushed back by peers' blocks) if `shouldAck`
   * asks, or to break a stall of crossed acks. 0: no timer (call `ack()` yourself; a pending
   * indexer still writes its first ack at once). A whole number, 0 or more.
   */
  ackInterval?: number
}

export interface AutobaseEvents {
  /** The views changed (new nodes applied, reordered, or indexed). */
  update: () => void
  /** An `apply` threw, or a store error: the base stops updating. */
  error: (error: Error) => void
}

/**
 * An autobase (JS autobase 7.28.1) on a `Corestore`: writers' oplogs ordered into views by
 * `apply`, wire-compatible with JS autobase peers (the store's replication carries every oplog).
 * `bootstrap`: the base's key, or null for a new base this page bootstraps. Not supported:
 * writing the system and view cores as a JS indexer does (a page indexer orders and acks; JS
 * members linearize its oplog), fast-forward, encrypted bases, optimistic apply, views that
 * are not append-only logs (e.g. a Hyperbee view).
 */
export interface Autobase<T = Uint8Array, V = null> {
  readonly store: Corestore
  /** What `open` returned (null without `open`). */
  readonly view: V
  /** The base's key: the bootstrap writer's oplog key (32 bytes; throws before `ready`). */
  readonly key: Uint8Array
  /** 32 bytes (throws before `ready`). */
  readonly discoveryKey: Uint8Array
  /** The local writer's oplog (the store's core 'local'; throws before `ready`). */
  readonly local: { key: Uint8Array, discoveryKey: Uint8Array }
  /** A member of the base: `append` is allowed. */
  readonly writable: boolean
  /** One of the indexers the base orders with. */
  readonly isIndexer: boolean
  /** Nodes confirmed by the indexers. */
  readonly indexedLength: number
  readonly closed: boolean
  readonly opening: Promise<void>
  ready(): Promise<void>
  update(): Promise<void>
  /** Append a value, or an array of values as one batch. */
  append(value: T | T[]): Promise<void>
  ack(): Promise<void>
  replicate(connection: SwarmConnection): Promise<void>
  close(): Promise<void>
  on<E extends keyof AutobaseEvents>(name: E, fn: Listener<AutobaseEvents, E>): this
  once<E extends keyof AutobaseEvents>(name: E, fn: Listener<AutobaseEvents, E>): this
  off<E extends keyof AutobaseEvents>(name: E, fn: Listener<AutobaseEvents, E>): this
  emit<E extends keyof AutobaseEvents>(name: E, ...args: Parameters<Listener<AutobaseEvents, E>>): boolean
}

export interface AutobaseConstructor {
  /** `new Autobase(store, bootstrap | null, { apply, open, valueEncoding })`: values typed by `valueEncoding`. */
  new <VE extends Encoding = 'binary', V = null>(store: Corestore, bootstrap: KeyLike | null, handlers: AutobaseHandlers<VE, V>): Autobase<Decoded<VE>, V>
}

export declare const Autobase: AutobaseConstructor
