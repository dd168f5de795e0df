// A new JS autobase 7.28.1 reader (fast-forward on, its default) of a base another process serves
// on 127.0.0.1 over one TCP connection (secret-stream + corestore.replicate), for
// tests/tests/autobase_interop.rs: it joins, updates until its view holds `expect` values, all
// indexed, and reports whether and where it fast-forwarded and how much of the bootstrap's oplog
// it downloaded.
//
// Usage: node autobase-reader.js '<json config>'
//   port, bootstrap (hex), expect (view length), deadline: ms (default 120000)
//   bee: the view is a hyperbee (utf-8 keys and values) and values are operations on it, as
//     autobase-scenario.js's `bee`; `expect` is then the bee core's length, and `done` also
//     prints `bee`: every entry of the bee, and of a checkout at its signed length
//   encryptionKey: 64 hex chars, for an encrypted base (JS `encryptionKey`); `done` then also
//     prints `viewRaw0` and `systemRaw0`, the first view and system blocks as stored (encrypted)
// Prints: {event:'connected'}, then {event:'done', fastForwards:[{to, from}], view:[hex],
// viewIndexedLength, viewKey, systemKey, systemLength, systemSignedLength, oplogLength,
// oplogDownloaded} or {event:'failed', error}. The apply is the one of autobase-scenario.js.
'use strict'

const net = require('net')
const fs = require('fs')
const os = require('os')
const path = require('path')
const Corestore = require('corestore')
const Autobase = require('autobase')
const Hyperbee = require('hyperbee')
const SecretStream = require('@hyperswarm/secret-stream')
const b4a = require('b4a')

const cfg = JSON.parse(process.argv[2] || '{}')
const hex = (b) => b4a.toString(b, 'hex')
const bee = !!cfg.bee
const viewCore = (base) => bee ? base.view.core : base.view

// `put:<k>=<v>`, `del:<k>` or `batch:<op>;<op>;...` on the bee view (as autobase-scenario.js)
async function beeOps (view, s) {
  const batch = s.startsWith('batch:')
  const ops = batch ? s.slice(6).split(';') : [s]
  const b = batch ? view.batch() : view
  for (const op of ops) {
    if (op.startsWith('put:')) {
      const i = op.indexOf('=')
      await b.put(op.slice(4, i), op.slice(i + 1))
    } else if (op.startsWith('del:')) {
      await b.del(op.slice(4))
    }
  }
  if (batch) await b.flush()
}
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-abreader-'))
const cleanup = () => { try { fs.rmSync(dir, { recursive: true, force: true }) } catch {} }
const deadline = setTimeout(() => { out({ event: 'deadline' }); cleanup(); process.exit(2) }, cfg.deadline || 120000)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main () {
  const store = new Corestore(dir)
  const bootstrap = b4a.from(cfg.bootstrap, 'hex')
  const base = new Autobase(store, bootstrap, {
    valueEncoding: 'binary',
    ackInterval: 0,
    encryptionKey: cfg.encryptionKey ? b4a.from(cfg.encryptionKey, 'hex') : undefined,
    open: (s) => bee
      ? new Hyperbee(s.get('view'), { extension: false, keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
      : s.get('view'),
    apply: async (nodes, view, host) => {
      for (const { value } of nodes) {
        const s = b4a.toString(value)
        if (s.startsWith('add:')) {
          const [, k, idx] = s.split(':')
          await host.addWriter(b4a.from(k, 'hex'), { indexer: idx === '1' })
          continue
        }
        if (s.startsWith('rm:')) { await host.removeWriter(b4a.from(s.slice(3), 'hex')); continue }
        if (bee) await beeOps(view, s)
        else await view.append(value)
      }
    }
  })
  const fastForwards = []
  base.on('fast-forward', (to, from) => fastForwards.push({ to, from }))
  await base.ready()
  const socket = net.connect(cfg.port, '127.0.0.1')
  const s = new SecretStream(true, socket)
  s.on('error', () => {})
  store.replicate(s)
  await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  out({ event: 'connected' })
  const started = Date.now()
  for (;;) {
    await base.update()
    const info = await base.system.getIndexedInfo(base.indexedLength)
    const indexed = info.views.length ? info.views[0].length : 0
    if (viewCore(base).length >= cfg.expect && indexed === viewCore(base).length) break
    await sleep(20)
  }
  const ms = Date.now() - started
  const view = []
  const vc = viewCore(base)
  for (let i = 0; i < vc.length; i++) view.push(hex(await vc.get(i)))
  const oplog = store.get({ key: bootstrap })
  await oplog.ready()
  let downloaded = 0
  for (let i = 0; i < oplog.length; i++) if (await oplog.has(i)) downloaded++
  const raw = async (core) => { try { return hex(await core.get(0, { raw: true })) } catch (err) { return 'error: ' + err.message } }
  const viewRaw0 = cfg.encryptionKey ? await raw(viewCore(base)) : null
  let beeReads = null
  if (bee) {
    const entries = async (db) => {
      const out = []
      for await (const e of db.createReadStream()) out.push([e.key, e.value])
      return out
    }
    const signed = base.view.checkout(Math.max(vc.signedLength, 1))
    beeReads = { all: await entries(base.view), signed: await entries(signed), signedLength: vc.signedLength }
    await signed.close()
  }
  const systemRaw0 = cfg.encryptionKey ? await raw(base.system.core) : null
  out({
    event: 'done',
    bee: beeReads,
    viewRaw0,
    systemRaw0,
    ms,
    fastForwards,
    view,
    viewIndexedLength: view.length,
    viewKey: hex(viewCore(base).key),
    systemKey: hex(base.system.core.key),
    systemLength: base.system.core.length,
    systemSignedLength: base.system.core.signedLength,
    oplogLength: oplog.length,
    oplogDownloaded: downloaded
  })
  await oplog.close()
  clearTimeout(deadline)
  s.destroy()
  await base.close()
  await store.close()
  cleanup()
}

main().catch((err) => { out({ event: 'failed', error: err.stack }); cleanup(); process.exit(1) })
