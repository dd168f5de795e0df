// Swarm through the packed package: join a topic through the relay, meet the JS hyperswarm peer
// of scripts/test-pkg.sh there, and exchange a message each way on the encrypted connection.
// Returns a summary that scripts/test-pkg.sh compares.
import { Swarm, toHex, type SwarmConnection, type SwarmPeerInfo } from 'hyperpunch'

export async function swarmCheck (relay: string, topic: string): Promise<string> {
  const swarm = new Swarm({ relay })
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
  const flushed = await discovery.flushed()
  const summary = await met
  const open = swarm.connections.size
  await swarm.destroy()
  return `swarm me=${toHex(swarm.publicKey)} flushed=${flushed} ${summary} open=${open}`
}
