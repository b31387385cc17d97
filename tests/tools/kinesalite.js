// kinesalite.js - kinesalite (npm) for the tests, on 127.0.0.1 only (its CLI binds every
// interface): started through its module API on a free port, it prints
// "kinesalite listening on 127.0.0.1:PORT" once ready, answers commands on stdin, and
// exits when stdin closes (so it never outlives the test that started it).
//   usage: node kinesalite.js NODE_MODULES_DIR
//   stdin: "skew MS"  moves kinesalite's clock MS milliseconds ahead (iterators made
//                     before look that much older: an ExpiredIteratorException without
//                     waiting 5 minutes); answers "ok"
'use strict'
const dir = process.argv[2]
if (!dir) {
  console.error('usage: node kinesalite.js NODE_MODULES_DIR')
  process.exit(2)
}
const kinesalite = require(require('path').resolve(dir, 'kinesalite'))
const realNow = Date.now
let skew = 0
Date.now = () => realNow() + skew
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000})
server.listen(0, '127.0.0.1', () => {
  console.log('kinesalite listening on 127.0.0.1:' + server.address().port)
})
let buf = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => {
  buf += d
  let nl
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl).trim()
    buf = buf.slice(nl + 1)
    const m = /^skew (-?\d+)$/.exec(line)
    if (m) {
      skew += Number(m[1])
      console.log('ok')
    } else {
      console.log('error: unknown command "' + line + '"')
    }
  }
})
process.stdin.on('end', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
