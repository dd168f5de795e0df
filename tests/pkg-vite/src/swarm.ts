// Swarm through the packed package: join a topic through the relay, meet the JS hyperswarm peer
// of scripts/test-pkg.sh there, and exchange a message each way on the encrypted connection.
// Through our relay (non-custodial) and a JS dht-relay (custodial): there the relay's first
// connection can time out on the relay's side (a JS dht-relay client sees that too); it closes
// with the error and the swarm dials the peer again, as JS hyperswarm does.
// Returns a summary that scripts/test-pkg.sh compares.
import { Swarm, toHex, type SwarmConnection, type SwarmPeerInfo } from 'hyperpunch'

/** `p`, or a rejection naming `what` after `ms` (a stalled step fails with its name). */
export function within<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

export async function swarmCheck (relay: string, topic: string, label = 'swarm', custodial?: boolean): Promise<string> {
  const swarm = new Swarm({ relay, custodial })
  await swarm.ready()
  const met = new Promise<string>((resolve, reject) => {
    swarm.on('error', reject)
    swarm.on('connection', (conn: SwarmConnection, info: SwarmPeerInfo) => {
      const got: string[] = []
      conn.on('error', (err) => { console.warn('swarm connection:', err.message) })
      conn.on('data', (data) => {
        got.push(new TextDecoder().decode(data))
        if (got.includes('hello from js') && got.includes('echo hello from page')) {
          resolve(`peer=${toHex(info.publicKey).slice(0, 8)} client=${info.client} got=${got.sort().join('+')}`)
        }
      })
      conn.write('hello from page')
    })
  })
  const discovery = swarm.join(topic)
  const flushed = await within(60000, `swarm through ${relay}: flushed`, discovery.flushed())
  const summary = await within(60000, `swarm through ${relay}: the JS peer met`, met)
  const open = swarm.connections.size
  await swarm.destroy()
  return `${label} me=${toHex(swarm.publicKey)} flushed=${flushed} ${summary} open=${open}`
}
