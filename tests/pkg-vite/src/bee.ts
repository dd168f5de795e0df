// Hyperbee through the packed package: put/get/del, a batch, range scans (bounds, reverse,
// limit), a sub, and the same bee reopened from IndexedDB by name. Returns a summary that
// scripts/test-pkg.sh compares.
import { Hypercore, Hyperbee, toHex } from 'hyperpunch'

interface Doc { n: number }

async function keysOf (bee: Hyperbee<string, Doc>, range: Parameters<Hyperbee<string, Doc>['createReadStream']>[0]): Promise<string> {
  const out: string[] = []
  for await (const { key, value } of bee.createReadStream(range)) out.push(`${key}=${value === null ? 'null' : value.n}`)
  return out.join(',')
}

export async function beeCheck (): Promise<string> {
  const name = 'hyperpunch-vite-bee'
  await Hypercore.delete(name)
  const core = new Hypercore(name)
  const bee: Hyperbee<string, Doc> = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'json' })
  await bee.ready()
  for (const [i, k] of ['a', 'b', 'c', 'd'].entries()) await bee.put(k, { n: i })
  await bee.del('b')
  const batch = bee.batch()
  await batch.put('e', { n: 4 })
  await batch.put('f', { n: 5 })
  await batch.del('d')
  const staged = await batch.get('e')
  await batch.flush()
  const a = await bee.get('a')
  const gone = await bee.get('b')
  const all = await keysOf(bee, {})
  const bounded = await keysOf(bee, { gt: 'a', lte: 'e' })
  const reversed = await keysOf(bee, { reverse: true, limit: 2 })
  const sub = bee.sub('users')
  await sub.put('x', { n: 9 })
  const inSub = await sub.get('x')
  const outside = await bee.get('x')
  const subKeys = await keysOf(sub, {})
  const version = bee.version
  const key = toHex(core.key)
  const everything = await keysOf(bee, {})

  // Reopen by name: the same core and entries, from IndexedDB.
  const again = new Hypercore(name)
  const bee2: Hyperbee<string, Doc> = new Hyperbee(again, { keyEncoding: 'utf-8', valueEncoding: 'json' })
  await bee2.ready()
  const reopened = toHex(again.key) === key && (await keysOf(bee2, {})) === everything && (await bee2.get('f'))?.value?.n === 5
  const peek = await bee2.peek({ gte: 'c' })

  // Binary keys and values (the default encodings).
  const raw = new Hyperbee(new Hypercore('hyperpunch-vite-bee-raw'))
  await raw.put(new Uint8Array([1, 2]), new Uint8Array([3]))
  const rawGet = await raw.get(new Uint8Array([1, 2]))
  const rawOk = rawGet !== null && rawGet.value !== null && rawGet.value[0] === 3
  await Hypercore.delete('hyperpunch-vite-bee-raw')

  return `bee a=${a?.value?.n}@${a?.seq} b=${gone === null ? 'null' : 'found'} staged=${staged?.value?.n} ` +
    `all=${all} bounded=${bounded} reversed=${reversed} sub=${inSub?.value?.n}/${outside === null ? 'null' : 'leak'}/${subKeys} ` +
    `version=${version} reopened=${reopened} peek=${peek?.key} raw=${rawOk}`
}
