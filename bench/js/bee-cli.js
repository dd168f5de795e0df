// What `hyperpunch bee batch` and `hyperpunch bee list` do, as one node process each, for the
// whole-process rows of the hyperbee benchmark (bench/run.sh):
//   node bee-cli.js batch DIR < lines   KEY<TAB>VALUE lines of stdin as one batch (utf-8)
//   node bee-cli.js list DIR > out      every entry as KEY<TAB>VALUE lines
//   node bee-cli.js list DIR GTE LIMIT  the LIMIT entries from key GTE on (what `hyperpunch bee
//                                       list --gte GTE --limit LIMIT` prints)
//   node bee-cli.js put DIR KEY VALUE   one put (what `hyperpunch bee put` does)
//   node bee-cli.js get DIR KEY         the value, or exit code 1 when absent
// Run with NODE_PATH=tests/interop/node_modules.
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')
const fs = require('fs')

;(async () => {
  const [cmd, dir, key, value] = process.argv.slice(2)
  // `list DIR GTE LIMIT`: the range (KEY and VALUE are then the bounds)
  const range = cmd === 'list' && key !== undefined ? { gte: key, limit: Number(value) } : {}
  const core = new Hypercore(dir)
  const db = new Hyperbee(core, { keyEncoding: 'utf-8', valueEncoding: 'utf-8' })
  await db.ready()
  if (cmd === 'batch') {
    const text = fs.readFileSync(0, 'utf-8')
    const b = db.batch()
    for (const line of text.split('\n')) {
      if (!line) continue
      const tab = line.indexOf('\t')
      await b.put(line.slice(0, tab), line.slice(tab + 1))
    }
    await b.flush()
  } else if (cmd === 'list') {
    let out = ''
    for await (const e of db.createReadStream(range)) {
      out += e.key + '\t' + e.value + '\n'
      if (out.length > 1 << 16) {
        if (!process.stdout.write(out)) await new Promise((resolve) => process.stdout.once('drain', resolve))
        out = ''
      }
    }
    process.stdout.write(out)
  } else if (cmd === 'put') {
    await db.put(key, value)
  } else if (cmd === 'get') {
    const e = await db.get(key)
    if (e) process.stdout.write(e.value + '\n')
    else process.exitCode = 1
  } else {
    throw new Error('usage: bee-cli.js batch|list DIR, list DIR GTE LIMIT, put DIR KEY VALUE, get DIR KEY')
  }
  await db.close()
})()
