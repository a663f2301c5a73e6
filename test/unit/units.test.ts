import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseBytes, parseDuration, parseLabels } from '../../agent/index.js'

test('sizes accept binary and decimal units', () => {
  assert.equal(parseBytes('64MiB'), 64 * 1024 * 1024)
  assert.equal(parseBytes('512k'), 512_000)
  assert.equal(parseBytes('1048576'), 1048576)
  assert.throws(() => parseBytes('lots'), { name: 'BadRequestError', message: /bad size 'lots'/ })
})

test('durations accept ms, s, m and h; a bare number is seconds', () => {
  assert.equal(parseDuration('5s'), 5000)
  assert.equal(parseDuration('250ms'), 250)
  assert.equal(parseDuration('2m'), 120_000)
  assert.equal(parseDuration('1h'), 3_600_000)
  assert.equal(parseDuration('10'), 10_000)
  assert.equal(parseDuration('0.5'), 500)
  assert.throws(() => parseDuration('10x'), { message: /a bare number is seconds/ })
  assert.throws(() => parseDuration('0s'), { message: /must be positive/ })
  assert.throws(() => parseDuration('soon'), { name: 'BadRequestError' })
})

test('labels parse from k=v,k=v', () => {
  assert.deepEqual(parseLabels('site=lab, floor=2'), { site: 'lab', floor: '2' })
  assert.throws(() => parseLabels('oops'), { name: 'ConfigError' })
})
