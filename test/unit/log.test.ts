import { test } from 'node:test'
import assert from 'node:assert/strict'
import { configureLogs, heldBack, logger, Throttle } from '../../agent/log.js'
import { bootstrapProblem } from '../../agent/swarm/connectivity.js'
import { hostPort, Problems } from '../../agent/swarm/handshakes.js'

/** Runs `fn` with the log going to a list, at `level` and `format`; returns the lines written. */
function captured (level: 'error' | 'warn' | 'info', format: 'text' | 'json', fn: () => void): string[] {
  const lines: string[] = []
  configureLogs({ level, format, write: (line) => { lines.push(...line.split('\n').filter(l => l !== '')) } })
  try {
    fn()
  } finally {
    configureLogs({ level: 'info', format: 'text', write: (line) => { process.stderr.write(line) } })
  }
  return lines
}

test('info lines are text with the level and part, or JSON with the error and its cause', () => {
  const log = logger('edge:agent:trust')
  const text = captured('info', 'text', () => { log.info('now trusting %s (%d devices)', 'abc', 3) })
  assert.equal(text.length, 1)
  assert.match(text[0] ?? '', /^\d{4}-\d\d-\d\dT[\d:.]+Z info  trust: now trusting abc \(3 devices\)$/)
  const err = new Error('cannot read the roster', { cause: new Error('EACCES') })
  const json = captured('info', 'json', () => { log.error('start failed: %e', err) })
  const o = JSON.parse(json[0] ?? '{}') as { level: string, component: string, msg: string, err: { message: string, cause: string, stack: string } }
  assert.equal(o.level, 'error')
  assert.equal(o.component, 'trust')
  assert.equal(o.msg, 'start failed: cannot read the roster (cause: EACCES)')
  assert.equal(o.err.cause, 'EACCES')
  assert.match(o.err.stack, /at /)
})

test('a level hides what is below it; debug lines never reach the info log', () => {
  const log = logger('edge:agent:x')
  assert.deepEqual(captured('warn', 'text', () => { log.info('hidden'); log('debug, hidden') }), [])
  assert.equal(captured('warn', 'text', () => { log.warn('shown') }).length, 1)
})

test('an error in a text line keeps its stack below it, indented; a wire error (with a code) does not', () => {
  const log = logger('edge:agent:x')
  const internal = captured('info', 'text', () => { log.error('boom: %e', new TypeError('x is undefined')) })
  assert.ok(internal.length > 1)
  assert.match(internal[1] ?? '', /^ {4}at /)
  const wire = Object.assign(new Error('busy'), { code: 'BUSY' })
  assert.equal(captured('info', 'text', () => { log.error('refused: %e', wire) }).length, 1)
})

test('a throttle lets one line a key through per period and counts the rest', () => {
  const t = new Throttle(1000)
  assert.equal(t.allow('a', 0), 0)
  assert.equal(t.allow('a', 10), undefined)
  assert.equal(t.allow('a', 20), undefined)
  assert.equal(t.allow('b', 20), 0)
  assert.equal(t.allow('a', 1001), 2)
  assert.equal(heldBack(2), ' (and 2 more like it since the last such line)')
  assert.equal(heldBack(0), '')
})

test('connection problems are kept a minute, repeats counted, and each new one told once', () => {
  const told: string[] = []
  const p = new Problems((m) => { told.push(m) })
  p.note('k', 'refused', 0)
  p.note('k', 'refused', 1000)
  p.note('j', 'other', 2000)
  assert.deepEqual(told, ['refused', 'other'])
  assert.deepEqual(p.list(2000).map(x => [x.message, x.count]), [['other', 1], ['refused', 2]])
  assert.deepEqual(p.list(61_500).map(x => x.message), ['other'])
  p.clear('j')
  assert.deepEqual(p.list(2000).map(x => x.message), ['refused'])
  assert.equal(hostPort('/ip4/10.0.0.5/tcp/4001/p2p/12D3KooW'), '10.0.0.5:4001')
})

test('a bootstrap dial\'s failure reads as what to do', () => {
  const addr = '/ip4/10.0.0.5/tcp/4001/p2p/12D3KooWDdaFcoDxTqz6428s9Xn6ukyR8T8F4uWvU9EN9jvo5fws'
  const refused = new AggregateError([new Error('connect ECONNREFUSED 10.0.0.5:4001')], 'All multiaddr dials failed')
  assert.equal(bootstrapProblem(addr, refused), 'bootstrap peer 10.0.0.5:4001 refused the connection: is its agent running, and listening on that port?')
  assert.match(bootstrapProblem(addr, Object.assign(new Error('The operation was aborted'), { name: 'AbortError' })) ?? '', /did not answer within 5 s/)
  assert.match(bootstrapProblem(addr, new Error('connect EHOSTUNREACH 10.0.0.5:4001')) ?? '', /unreachable from this device/)
  // Another swarm key is said by the handshake watch, not here.
  assert.equal(bootstrapProblem(addr, Object.assign(new Error('read ECONNRESET'), { name: 'EncryptionFailedError' })), undefined)
})
