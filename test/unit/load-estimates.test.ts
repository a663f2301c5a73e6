import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Backlog, RunTimes, UNKNOWN_RUN_MS } from '../../agent/calls/load-estimates.js'
import { weighted, weights, type CandidateView } from '../../agent/calls/policies/index.js'

test('run times are smoothed per function; one never seen gets the default', () => {
  const t = new RunTimes()
  assert.equal(t.estimate('f', 'wasm'), UNKNOWN_RUN_MS)
  t.observe('f', 'wasm', 100)
  assert.equal(t.estimate('f', 'wasm'), 100)
  t.observe('f', 'wasm', 200)
  assert.equal(t.estimate('f', 'wasm'), 120)
  // Another function of the same kind says nothing of this one.
  assert.equal(t.estimate('g', 'wasm'), UNKNOWN_RUN_MS)
  t.observe('f', 'wasm', Number.NaN)
  assert.equal(t.estimate('f', 'wasm'), 120, 'a bad sample is ignored')
})

test('run times remember a bounded number of functions, the oldest forgotten first', () => {
  const t = new RunTimes(2)
  t.observe('a', 'wasm', 1)
  t.observe('b', 'wasm', 2)
  t.observe('c', 'wasm', 3)
  assert.deepEqual(['a', 'b', 'c'].map(f => t.known(f)), [false, true, true])
})

test('the expected wait is the work ahead spread over the slots, not the count of calls', () => {
  let now = 0
  const b = new Backlog(() => now)
  assert.equal(b.expectedWaitMs(2, 0, 10), 0)
  const long = b.add(1000)
  long.started()
  // One slot of two is free: no wait.
  assert.equal(b.expectedWaitMs(2, 1, 10), 0)
  const short = b.add(100)
  short.started()
  now = 50
  // Full: 950 + 50 ms left on the running calls, over 2 slots.
  assert.equal(b.expectedWaitMs(2, 2, 10), 500)
  const queued = [b.add(100), b.add(100)]
  assert.equal(b.expectedWaitMs(2, 2, 10), 600)
  // A call that outran its estimate is a long one: half of what it ran so far is still ahead.
  now = 5000
  assert.equal(b.expectedWaitMs(2, 2, 10), (2500 + 2500 + 200) / 2)
  for (const q of queued) q.done()
  long.done()
  short.done()
  assert.equal(b.size, 0)
  // Busy slots taken by calls the backlog never saw count half a call each.
  assert.equal(b.expectedWaitMs(1, 1, 40), 20)
})

function place (peerId: string, extra: Partial<CandidateView> = {}): CandidateView {
  return { peerId, local: false, rttMs: 0, freeSlots: 1, slots: 1, holds: true, warm: false, queue: 0, inFlight: 0, waitMs: 0, runMs: 10, fetchMs: extra.holds === false ? 200 : 0, ...extra }
}

test('weighted draws places in proportion to 1 / expected latency', () => {
  // Expected latency 10, 20 and 40 ms: weights 4/7, 2/7, 1/7.
  const pool = [place('fast'), place('mid', { rttMs: 10 }), place('slow', { rttMs: 30 })]
  const p = weights(pool)
  assert.ok(Math.abs((p.get('fast') ?? 0) - 4 / 7) < 1e-9)
  let seed = 42
  const random = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  const firsts = new Map<string, number>()
  const n = 7000
  for (let i = 0; i < n; i++) {
    const r = weighted.rank({ self: place('self', { local: true, freeSlots: 0, waitMs: 1e6 }), peers: pool, random })
    const first = r.candidates[0]?.peerId ?? ''
    firsts.set(first, (firsts.get(first) ?? 0) + 1)
  }
  for (const [id, want] of [['fast', 4 / 7], ['mid', 2 / 7], ['slow', 1 / 7]] as const) {
    const got = (firsts.get(id) ?? 0) / n
    assert.ok(Math.abs(got - want) < 0.03, `${id}: drawn first ${got.toFixed(3)} of the time, expected ${want.toFixed(3)}`)
  }
})

test('weighted counts the wait for a slot and the fetch in a place\'s latency, and ranks every place once', () => {
  const pool = [place('idle'), place('queued', { freeSlots: 1, waitMs: 90 }), place('fetch', { holds: false })]
  const p = weights(pool)
  assert.ok((p.get('idle') ?? 0) > 9 * (p.get('queued') ?? 0))
  assert.ok((p.get('idle') ?? 0) > 9 * (p.get('fetch') ?? 0))
  const r = weighted.rank({ self: place('self', { local: true }), peers: pool })
  assert.deepEqual(r.candidates.map(c => c.peerId).sort(), ['fetch', 'idle', 'queued', 'self'])
  assert.match(r.candidates[0]?.reason ?? '', /weight \d+%/)
})
