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
