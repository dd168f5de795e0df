// Two pages meeting through the packed package: two `Swarm`s in this page, each on its own
// relay session (its own WebSocket), as two pages of a browser-to-browser app would be, join one
// random topic and meet; the first pair exchanges a message each way (a chat), the second
// replicates a core one way (`core.replicate(conn)`). Run through our relay non-custodially (the
// default) and through the JS @hyperswarm/dht-relay custodially (scripts/test-pkg.sh).
// Returns a summary that scripts/test-pkg.sh compares.
import { Hypercore, Swarm, toHex, type SwarmConnection, type SwarmOptions } from 'hyperpunch'
import { within } from './swarm'

type Met = { swarm: Swarm, conn: SwarmConnection }

/** Two swarms with `opts` on a fresh topic, each with its first connection. */
async function meet (opts: SwarmOptions): Promise<[Met, Met]> {
  const topic = crypto.getRandomValues(new Uint8Array(32))
  const open = async (): Promise<{ swarm: Swarm, first: Promise<SwarmConnection> }> => {
    const swarm = new Swarm(opts)
    const first = new Promise<SwarmConnection>((resolve, reject) => {
      swarm.once('connection', resolve)
      swarm.once('error', reject)
    })
    await swarm.ready()
    return { swarm, first }
  }
  const a = await open()
  const b = await open()
  const where = `two pages through ${opts.relay}`
  await within(60000, `${where}: a's join flushed`, a.swarm.join(topic).flushed())
  await within(60000, `${where}: b's join flushed`, b.swarm.join(topic).flushed())
  return [
    { swarm: a.swarm, conn: await within(60000, `${where}: a met b`, a.first) },
    { swarm: b.swarm, conn: await within(60000, `${where}: b met a`, b.first) }
  ]
}

/** The first `n` messages of `conn`, as text. */
function messages (conn: SwarmConnection, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const got: string[] = []
    conn.on('error', reject)
    conn.on('data', (data) => {
      got.push(new TextDecoder().decode(data))
      if (got.length === n) resolve(got)
    })
  })
}

export async function pagesCheck (label: string, opts: SwarmOptions): Promise<string> {
  // A chat: a message each way, an answer, then both end.
  const [a, b] = await meet(opts)
  const keys = toHex(a.conn.remotePublicKey) === toHex(b.swarm.publicKey) &&
    toHex(b.conn.remotePublicKey) === toHex(a.swarm.publicKey) &&
    a.conn.isInitiator !== b.conn.isInitiator
  const atA = messages(a.conn, 2)
  const atB = messages(b.conn, 1)
  a.conn.write('hello from a')
  b.conn.write('hello from b')
  const gotB = await within(60000, 'b reads a message', atB)
  b.conn.write(`echo ${gotB[0]}`)
  const gotA = await within(60000, 'a reads two messages', atA)
  const open = `${a.swarm.connections.size}/${b.swarm.connections.size}`
  const closed = Promise.all([a.conn, b.conn].map((c) => new Promise<void>((resolve) => { c.once('close', () => resolve()) })))
  a.conn.end()
  b.conn.end()
  await within(60000, 'both connections close', closed)
  await a.swarm.destroy()
  await b.swarm.destroy()

  // A core replicated one way over a connection of another pair.
  const length = 20
  const [wname, rname] = ['hyperpunch-vite-pages-w', 'hyperpunch-vite-pages-r']
  await Hypercore.delete(wname)
  await Hypercore.delete(rname)
  const writer = new Hypercore(wname)
  await writer.ready()
  await writer.append(Array.from({ length }, (_, i) => `page block ${i}`))
  const reader = new Hypercore(rname, writer.key)
  await reader.ready()
  const [c, d] = await meet(opts)
  c.conn.on('error', () => {})
  d.conn.on('error', () => {})
  writer.replicate(c.conn).catch(() => {})
  reader.replicate(d.conn).catch(() => {})
  const blocks: string[] = []
  for (let i = 0; i < length; i++) {
    const block = await within(60000, `block ${i} replicated`, reader.get(i))
    blocks.push(block === undefined ? 'none' : new TextDecoder().decode(block))
  }
  const replicated = blocks.every((t, i) => t === `page block ${i}`)
  const open2 = `${c.swarm.connections.size}/${d.swarm.connections.size}`
  await c.swarm.destroy()
  await d.swarm.destroy()
  return `pages-${label} keys=${keys} a=${gotA.sort().join('+')} b=${gotB.join('+')} open=${open} ` +
    `replicated=${replicated}/${reader.length} open=${open2}`
}
