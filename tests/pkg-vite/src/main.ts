// The app Vite builds: it uses the package as a user would (a writable core in IndexedDB,
// append, get, reopen; a Hyperbee, src/bee.ts; a Corestore and Hyperdrive, src/drive.ts; the
// rest of their JS API (history, diff, watch, checkouts, CAS, namespaces, batches, write
// streams), src/api.ts; a
// Swarm on a topic, src/swarm.ts; two pages meeting, src/pages.ts; replication over a swarm
// connection, src/replicate.ts; an Autobase with a JS bootstrap, src/autobase.ts) and
// reports in document.title, which scripts/test-pkg.sh
// reads in headless Chromium. The package README's examples (src/example-N.ts, copied in by
// the test) are type-checked by `tsc --noEmit` with this file.
import { Hypercore, discoveryKey, toHex, version } from 'hyperpunch'
import { beeApiCheck, beeMoreCheck, storeApiCheck, watchCheck } from './api'
import { autobaseBootstrapCheck, autobaseCheck } from './autobase'
import { beeCheck } from './bee'
import { driveCheck } from './drive'
import { replicateCheck } from './replicate'
import { pagesCheck } from './pages'
import { swarmCheck } from './swarm'

async function main (): Promise<string> {
  const name = 'hyperpunch-vite-check'
  await Hypercore.delete(name)
  const core = new Hypercore(name)
  await core.ready()
  const appended: number[] = []
  core.on('append', (length) => { appended.push(length) })
  const length = await core.append(['hello', new TextEncoder().encode('world')])
  const block = await core.get(1)
  const dkey = await discoveryKey(core.key)
  const key = toHex(core.key)
  const reopened = new Hypercore(name)
  await reopened.ready()
  const same = toHex(reopened.key) === key && reopened.length === length
  // With ?relay=ws://...&topic=HEX (scripts/test-pkg.sh), the swarm too.
  const params = new URLSearchParams(location.search)
  const relay = params.get('relay')
  const topic = params.get('topic')
  // With &jsrelay=ws://... (a JS @hyperswarm/dht-relay), the swarm through it too (custodially,
  // the JS relay's only mode), and two pages meeting through our relay and through that one.
  const jsRelay = params.get('jsrelay')
  const swarmJs = jsRelay !== null && topic !== null ? ` | ${await swarmCheck(jsRelay, topic, 'swarm-js', true)}` : ''
  const swarm = relay !== null && topic !== null ? ` | ${await swarmCheck(relay, topic)}${swarmJs}` : ''
  const pages = relay !== null && jsRelay !== null
    ? ` | ${await pagesCheck('ours', { relay })} | ${await pagesCheck('js', { relay: jsRelay, custodial: true })}`
    : ''
  // With &drive=KEY&notes=KEY&files=N, a drive and a core replicated over a swarm connection.
  const drive = params.get('drive')
  const notes = params.get('notes')
  const files = params.get('files')
  const replica = relay !== null && drive !== null && notes !== null && files !== null
    ? ` | ${await replicateCheck(relay, drive, notes, Number(files))}`
    : ''
  // With &autobase=KEY&abn=N, the page as a writer of a JS autobase bootstrap's base.
  const abKey = params.get('autobase')
  const abN = params.get('abn')
  const autobase = relay !== null && abKey !== null && abN !== null
    ? ` | ${await autobaseCheck(relay, abKey, Number(abN))}`
    : ''
  // With &abtopic=HEX&abwriter=KEY&abcount=N, the page as the bootstrap that adds a JS writer.
  const abTopic = params.get('abtopic')
  const abWriter = params.get('abwriter')
  const abCount = params.get('abcount')
  const autobaseBoot = relay !== null && abTopic !== null && abWriter !== null && abN !== null && abCount !== null
    ? ` | ${await autobaseBootstrapCheck(relay, abTopic, abWriter, Number(abN), Number(abCount))}`
    : ''
  return `ok ${await version()} length=${length} block1=${new TextDecoder().decode(block)} ` +
    `keyhex=${key.length} dkey=${dkey.length} writable=${core.writable} reopened=${same} | ${await beeCheck()} | ${await driveCheck()} | ${await beeApiCheck()} | ${await beeMoreCheck()} | ${await storeApiCheck()} | ${await watchCheck()}${swarm}${pages}${replica}${autobase}${autobaseBoot}`
}

main().then(
  (title) => { document.title = title },
  (err: unknown) => { document.title = `error: ${err instanceof Error ? err.message : String(err)}` }
)
