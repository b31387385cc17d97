// dynalite.js - dynalite (npm) for the tests, on 127.0.0.1 only (its CLI binds every
// interface unless told): started through its module API on a free port, it prints
// "dynalite listening on 127.0.0.1:PORT" once ready and exits when stdin closes (so it
// never outlives the test that started it). Tables are in memory.
//   usage: node dynalite.js NODE_MODULES_DIR
'use strict'
const dir = process.argv[2]
if (!dir) {
  console.error('usage: node dynalite.js NODE_MODULES_DIR')
  process.exit(2)
}
const dynalite = require(require('path').resolve(dir, 'dynalite'))
// a table takes 100 ms to become ACTIVE: dynamodb.create.table's wait is exercised
const server = dynalite({createTableMs: 100, deleteTableMs: 0, updateTableMs: 0})
server.listen(0, '127.0.0.1', () => {
  console.log('dynalite listening on 127.0.0.1:' + server.address().port)
})
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
