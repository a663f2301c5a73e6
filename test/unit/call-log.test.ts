import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CallLog, STDERR_BYTES, type CallLogEntry } from '../../agent/calls/call-log.js'

const entry = (name: string, n: number, stderr = ''): CallLogEntry => ({ at: n, name, version: 1, from: 'local', outcome: 'ok', warm: true, runMs: 1, stderr })

test('the call log keeps the newest entries, oldest first, by function if asked', () => {
  const log = new CallLog(3)
  assert.deepEqual(log.recent(), [])
  log.add(entry('a', 1))
  log.add(entry('b', 2))
  assert.deepEqual(log.recent().map(e => e.at), [1, 2])
  for (let i = 3; i <= 7; i++) log.add(entry(i % 2 === 0 ? 'a' : 'b', i))
  assert.deepEqual(log.recent().map(e => e.at), [5, 6, 7])
  assert.deepEqual(log.recent({ name: 'a' }).map(e => e.at), [6])
  assert.deepEqual(log.recent({ limit: 2 }).map(e => e.at), [6, 7])
})

test('a call\'s stderr is kept up to its last STDERR_BYTES', () => {
  const log = new CallLog()
  log.add(entry('noisy', 1, 'x'.repeat(STDERR_BYTES) + 'the end\n'))
  const kept = log.recent()[0]?.stderr ?? ''
  assert.ok(kept.startsWith('…'))
  assert.ok(kept.endsWith('the end\n'))
  assert.equal(kept.length, STDERR_BYTES + 1)
})
