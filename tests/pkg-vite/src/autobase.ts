// Autobase through the packed package. With a JS autobase bootstrap (tests/interop/
// pkg-autobase-peer.js, found on the base's discovery key through the relay): the page opens
// the base by key in its Corestore, tells the JS peer its writer key (the first message on the
// connection), replicates its store on the rest, waits to be added (writable), appends
// `page0`..`page<n-1>` (the last two as a batch) while the JS peer answers each with a value of
// its own (concurrent writes), and waits until its view holds every value, indexed by the JS
// indexer; then a reopen of the base from IndexedDB alone (the store's
// connections closed). Page-only: a base the page bootstraps (its only indexer), reopened.
import { Autobase, Corestore, Swarm, discoveryKey, toHex, type AutobaseHost, type AutobaseNode, type AutobaseView } from 'hyperpunch'

interface Value { add?: string, text?: string }

async function apply (nodes: Array<AutobaseNode<Value>>, view: AutobaseView<string>, host: AutobaseHost): Promise<void> {
  for (const { value } of nodes) {
    if (value.add !== undefined) await host.addWriter(value.add, { indexer: false })
    else if (value.text !== undefined) await view.append(value.text)
  }
}

const valueCodec = {
  encode: (v: Value): Uint8Array => new TextEncoder().encode(JSON.stringify(v)),
  decode: (b: Uint8Array): Value => JSON.parse(new TextDecoder().decode(b)) as Value
}

function open (store: Corestore, key: string | null, ackInterval?: number): Autobase<Value, AutobaseView<string>> {
  return new Autobase(store, key, {
    valueEncoding: valueCodec,
    ackInterval,
    open: (s) => s.get('view', { valueEncoding: 'utf-8' }),
    apply
  })
}

async function viewOf (base: Autobase<Value, AutobaseView<string>>): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < base.view.length; i++) out.push((await base.view.get(i)) ?? '?')
  return out
}

// Resolves once `done()` holds (checked now and after each 'update'); rejects after `ms`.
function until (base: Autobase<Value, AutobaseView<string>>, what: string, done: () => boolean, ms = 120000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { base.off('update', check); reject(new Error(`autobase: ${what} timed out`)) }, ms)
    const check = (): void => {
      if (!done()) return
      clearTimeout(timer)
      base.off('update', check)
      resolve()
    }
    base.on('update', check)
    check()
  })
}

export async function autobaseCheck (relay: string, key: string, n: number): Promise<string> {
  const name = 'hyperpunch-vite-autobase'
  await Corestore.delete(name)
  const store = new Corestore(name)
  const base = open(store, key)
  await base.ready()
  const local = base.local
  const sameKey = toHex(base.key) === key
  const before = base.writable
  const swarm = new Swarm({ relay })
  await swarm.ready()
  swarm.on('connection', (conn) => {
    conn.write(local.key)
    base.replicate(conn).catch(() => {})
  })
  await swarm.join(await discoveryKey(key), { server: false }).flushed()
  await until(base, 'being added', () => base.writable)
  for (let i = 0; i < n - 2; i++) await base.append({ text: `page${i}` })
  await base.append([{ text: `page${n - 2}` }, { text: `page${n - 1}` }])
  // the JS peer's 4 values and its answer `re:pageN` to each of ours
  const total = 2 * n + 4
  await until(base, 'indexing', () => base.view.length === total && base.view.indexedLength === total)
  const view = await viewOf(base)
  await swarm.destroy()
  await base.close()
  // Reopened from IndexedDB alone: the oplogs replayed, the same view, still writable.
  const again = open(store, key)
  await again.ready()
  const reopened = (await viewOf(again)).join(',') === view.join(',') && again.writable && again.view.indexedLength === total
  await again.close()

  // A base this page bootstraps: its only indexer.
  const soloName = 'hyperpunch-vite-autobase-solo'
  await Corestore.delete(soloName)
  const soloStore = new Corestore(soloName)
  const solo = open(soloStore, null)
  await solo.ready()
  await solo.append({ text: 'a' })
  await solo.append([{ text: 'b' }, { text: 'c' }])
  const soloKey = toHex(solo.key)
  const soloLocal = toHex(solo.local.key)
  const soloView = (await viewOf(solo)).join('')
  const soloIndexed = solo.view.indexedLength
  await solo.close()
  const solo2 = open(soloStore, null)
  await solo2.ready()
  const soloReopened = (await viewOf(solo2)).join('') === soloView && toHex(solo2.key) === soloKey && solo2.isIndexer
  await solo2.close()
  // An apply that throws fails the append that ran it (and the base stops there).
  const failing = new Autobase(soloStore.namespace('failing'), null, {
    valueEncoding: 'utf-8',
    apply: async (nodes) => { for (const { value } of nodes) if (value === 'boom') throw new Error('apply says boom') }
  })
  await failing.ready()
  await failing.append('fine')
  const threw = await failing.append('boom').then(() => 'no error', (err: unknown) => err instanceof Error ? err.message : String(err))
  await failing.close()
  return `autobase key=${sameKey} before=${before} writable=${base.writable} view=${view.join(',')} reopened=${reopened} ` +
    `solo=${soloView}/${soloIndexed}/${soloKey === soloLocal}/${solo.isIndexer} solo-reopened=${soloReopened} throws=${threw.includes('apply threw: apply says boom')}`
}

// The page bootstraps a base (its only indexer) and adds a JS writer (tests/interop/
// pkg-autobase-writer.js, whose key `writer` is known beforehand; found on `topic`): it sends the
// base's key as its first message, replicates, appends `boot0`..`boot<n-1>` and waits until its
// view holds them and the JS writer's `count` values, all indexed (by its own acks).
export async function autobaseBootstrapCheck (relay: string, topic: string, writer: string, n: number, count: number): Promise<string> {
  const name = 'hyperpunch-vite-autobase-boot'
  await Corestore.delete(name)
  const store = new Corestore(name)
  // the page indexes on its ack timer: 1 s here (JS's default is 10 s)
  const base = open(store, null, 1000)
  await base.ready()
  await base.append({ add: writer })
  const swarm = new Swarm({ relay })
  await swarm.ready()
  swarm.on('connection', (conn) => {
    conn.write(base.key)
    base.replicate(conn).catch(() => {})
  })
  await swarm.join(topic, { server: false }).flushed()
  for (let i = 0; i < n; i++) await base.append({ text: `boot${i}` })
  const total = n + count
  await until(base, 'the JS writer\'s values, indexed', () => base.view.length === total && base.view.indexedLength === total)
  const view = await viewOf(base)
  await swarm.destroy()
  await base.close()
  return `autobase-boot indexer=${base.isIndexer} view=${view.join(',')} end`
}
