// The prologue the live JS peer scripts share (replicate-peer.js, replicate-features-peer.js,
// corestore-peer.js, drive-peer.js, replicate-matrix.js): the JSON config of argv[2], hex helpers,
// one JSON object per stdout line, a temporary folder removed by `cleanup`, and a deadline after
// which the script prints {event:'deadline'}, cleans up and exits 2.
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const b4a = require('b4a')

const hex = (b) => b4a.toString(b, 'hex')
const unhex = (s) => b4a.from(s, 'hex')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

// `prefix` names the temporary folder; `defaultDeadline` (ms) applies unless the config gives
// `deadline`. Returns the config, the helpers, the folder, its cleanup and the deadline timer
// (clear it once the script is done).
function peer (prefix, defaultDeadline) {
  const cfg = JSON.parse(process.argv[2] || '{}')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  function cleanup () {
    try { fs.rmSync(dir, { recursive: true, force: true }) } catch {}
  }
  const deadline = setTimeout(() => {
    out({ event: 'deadline' })
    cleanup()
    process.exit(2)
  }, cfg.deadline || defaultDeadline)
  return { cfg, hex, unhex, out, dir, cleanup, deadline }
}

// Block k of the replication tests: `block ${k} ` then (k * 37) % 3000 bytes equal to k & 255
// (tests/tests/replication_interop.rs builds the same).
function block (k) {
  return b4a.concat([b4a.from(`block ${k} `), b4a.alloc((k * 37) % 3000, k & 255)])
}

module.exports = { peer, block, hex, unhex, out }
