import { test } from 'node:test'
import assert from 'node:assert/strict'
import { localFirst, near, leastLoaded, powerOfTwo, warmAffinity, localOnly, pinnedPeer, type CandidateView } from '../../agent/index.js'

function view (peerId: string, extra: Partial<CandidateView> = {}): CandidateView {
  return { peerId, local: false, rttMs: 5, freeSlots: 2, slots: 2, holds: true, warm: false, queue: 0, inFlight: 0, waitMs: 0, runMs: 10, fetchMs: extra.holds === false ? 200 : 0, ...extra }
}
const self = (extra: Partial<CandidateView> = {}): CandidateView => view('self', { local: true, rttMs: 0, holds: false, ...extra })
const order = (r: { candidates: Array<{ peerId: string }> }): string[] => r.candidates.map(c => c.peerId)

test('local-first runs here when a local slot is free', () => {
  const r = localFirst.rank({ self: self(), peers: [view('a')] })
  assert.equal(r.candidates[0]?.peerId, 'self')
  assert.equal(r.candidates[0]?.mayQueue, false)
})

test('local-first offloads when every local slot is busy, holders and near peers first', () => {
  const r = localFirst.rank({
    self: self({ freeSlots: 0, holds: true, waitMs: 500 }),
    peers: [view('far', { rttMs: 9 }), view('busy', { freeSlots: 0, waitMs: 900 }), view('near', { rttMs: 1 }), view('nocode', { rttMs: 0.5, holds: false })]
  })
  // Then the queues, soonest first: here (~510 ms), then the busy peer's (~915 ms).
  assert.deepEqual(order(r), ['near', 'far', 'nocode', 'self', 'busy'])
  assert.deepEqual(r.candidates.map(c => c.mayQueue), [false, false, false, true, true])
  assert.deepEqual(r.skipped.map(s => s.peerId), ['busy'])
})

test('local-first queues here rather than offload to a peer that would finish later (it must fetch the code)', () => {
  const r = localFirst.rank({ self: self({ freeSlots: 0, holds: true, waitMs: 30 }), peers: [view('nocode', { holds: false }), view('holder', { freeSlots: 0, waitMs: 400 })] })
  assert.deepEqual(order(r), ['self', 'holder', 'nocode'])
  assert.equal(r.candidates[0]?.mayQueue, true)
})

test('a call waits in the queue of the place that would finish it soonest, here or on a peer', () => {
  const r = localFirst.rank({ self: self({ freeSlots: 0, holds: true, waitMs: 800 }), peers: [view('soon', { freeSlots: 0, waitMs: 40 }), view('later', { freeSlots: 0, waitMs: 300 })] })
  assert.deepEqual(order(r), ['soon', 'later', 'self'])
  assert.ok(r.candidates.every(c => c.mayQueue))
  assert.match(r.candidates[0]?.reason ?? '', /wait in its queue/)
})

test('a place that cannot run the function at all (no wait is finite) is no reason for a Retry-After', () => {
  const r = localFirst.rank({ deadlineMs: 5000, self: self({ freeSlots: 0, waitMs: Number.POSITIVE_INFINITY }), peers: [] })
  assert.deepEqual(order(r), [])
  assert.equal(r.overloaded, undefined)
})

test('a free slot is tried if the call can start there in time, though its average run would not fit', () => {
  const r = localFirst.rank({ deadlineMs: 50, self: self({ freeSlots: 0, holds: true, waitMs: 900 }), peers: [view('free', { runMs: 80 })] })
  assert.deepEqual(order(r), ['free'])
})

test('with no place able to finish before the deadline, the ranking is empty and says when to retry', () => {
  const r = localFirst.rank({ deadlineMs: 200, self: self({ freeSlots: 0, holds: true, waitMs: 900 }), peers: [view('full', { freeSlots: 0, waitMs: 400 }), view('far', { rttMs: 300 })] })
  assert.deepEqual(order(r), [])
  assert.deepEqual(r.overloaded, { retryAfterMs: 400 })
  assert.ok(r.skipped.some(s => s.peerId === 'far' && /could not start/.test(s.reason)))
  // With time enough, the same places are tried.
  assert.deepEqual(order(localFirst.rank({ deadlineMs: 2000, self: self({ freeSlots: 0, holds: true, waitMs: 900 }), peers: [view('full', { freeSlots: 0, waitMs: 400 }), view('far', { rttMs: 300 })] })), ['far', 'full', 'self'])
})

test('near picks the lowest-RTT holder with a free slot', () => {
  const r = near.rank({ self: self({ holds: false }), peers: [view('a', { rttMs: 4 }), view('b', { rttMs: 2 }), view('c', { rttMs: 1, freeSlots: 0 })] })
  assert.equal(r.candidates[0]?.peerId, 'b')
})

test('near counts this agent as RTT 0 when it holds the code and has a free slot', () => {
  const r = near.rank({ self: self({ holds: true }), peers: [view('a', { rttMs: 0.1 })] })
  assert.equal(r.candidates[0]?.peerId, 'self')
})

test('near does not pick this agent without a free slot', () => {
  const r = near.rank({ self: self({ holds: true, freeSlots: 0, waitMs: 50 }), peers: [view('a', { rttMs: 8 })] })
  assert.equal(r.candidates[0]?.peerId, 'a')
  assert.equal(r.candidates.at(-1)?.mayQueue, true)
})

test('near prefers peers with an RTT over unmeasured ones', () => {
  const r = near.rank({ self: self({ freeSlots: 0 }), peers: [view('unknown', { rttMs: undefined }), view('known', { rttMs: 30 })] })
  assert.deepEqual(order(r).slice(0, 2), ['known', 'unknown'])
})

test('--peer names one peer and no fallback; --local only here', () => {
  assert.deepEqual(order(pinnedPeer.rank({ self: self(), peers: [view('a'), view('b')], target: 'b' })), ['b'])
  assert.deepEqual(order(pinnedPeer.rank({ self: self(), peers: [view('a')], target: 'zzz' })), [])
  assert.deepEqual(order(localOnly.rank({ self: self({ freeSlots: 0 }), peers: [view('a')] })), ['self'])
})

test('least-loaded picks the smallest share of busy slots, this agent included', () => {
  const r = leastLoaded.rank({
    self: self({ slots: 4, freeSlots: 1 }),
    peers: [view('half', { slots: 4, freeSlots: 2 }), view('idle', { slots: 8, freeSlots: 8, rttMs: 20 }), view('queued', { slots: 4, freeSlots: 2, queue: 1 }), view('full', { freeSlots: 0 })]
  })
  assert.deepEqual(order(r), ['idle', 'half', 'queued', 'self'])
  assert.match(r.candidates[0]?.reason ?? '', /load 0%/)
  assert.deepEqual(r.skipped.map(s => s.peerId), ['full'])
})

test('least-loaded breaks ties by holding the code, then by RTT, and queues here when nothing is free', () => {
  const r = leastLoaded.rank({ self: self({ freeSlots: 0, holds: true, waitMs: 1000 }), peers: [view('far', { rttMs: 9 }), view('fetch', { rttMs: 1, holds: false }), view('near', { rttMs: 2 })] })
  assert.deepEqual(order(r), ['near', 'far', 'fetch', 'self'])
  assert.equal(r.candidates.at(-1)?.mayQueue, true)
})

test('p2c tries the less loaded of two random places first, then the rest by load', () => {
  const peers = [view('a', { freeSlots: 1 }), view('b', { freeSlots: 2 }), view('c', { freeSlots: 1 }), view('d', { freeSlots: 2, rttMs: 1 })]
  // Draws 'a' and then 'c' (index 1 of the other three), both half loaded: drawn order stands. The
  // idle 'b' and 'd' follow, nearer first, though less loaded than either drawn place.
  const fixed = (...xs: number[]) => () => xs.shift() ?? 0
  const r = powerOfTwo.rank({ self: self({ freeSlots: 0, holds: true, waitMs: 100 }), peers, random: fixed(0, 0.5) })
  assert.deepEqual(order(r), ['a', 'c', 'd', 'b', 'self'])
  // Draws 'a' (half loaded) and 'b' (idle): 'b' goes first.
  const r2 = powerOfTwo.rank({ self: self({ freeSlots: 0 }), peers, random: fixed(0, 0) })
  assert.deepEqual(order(r2).slice(0, 2), ['b', 'a'])
  assert.match(r2.candidates[0]?.reason ?? '', /less loaded of two \(0% vs 50%\)/)
})

test('p2c spreads calls: over many draws, every idle place is tried first sometimes', () => {
  const peers = ['a', 'b', 'c', 'd'].map(id => view(id))
  const firsts = new Set<string>()
  for (let i = 0; i < 200; i++) firsts.add(order(powerOfTwo.rank({ self: self({ freeSlots: 0 }), peers }))[0] ?? '')
  assert.deepEqual([...firsts].sort(), ['a', 'b', 'c', 'd'])
  // A single free place is the only choice.
  assert.deepEqual(order(powerOfTwo.rank({ self: self({ freeSlots: 0, holds: true, waitMs: 100 }), peers: [view('only')] })), ['only', 'self'])
})

test('warm-affinity sends calls where the function is warm, this agent first among warm places', () => {
  const peers = [view('cold-near', { rttMs: 0.5 }), view('warm-busy', { warm: true, freeSlots: 1 }), view('warm-idle', { warm: true, rttMs: 9 }), view('warm-full', { warm: true, freeSlots: 0 })]
  assert.deepEqual(order(warmAffinity.rank({ self: self(), peers })), ['warm-idle', 'warm-busy', 'self', 'cold-near'])
  assert.deepEqual(order(warmAffinity.rank({ self: self({ warm: true, holds: true }), peers })), ['self', 'warm-idle', 'warm-busy', 'cold-near'])
  // Nothing warm: as local-first.
  assert.deepEqual(order(warmAffinity.rank({ self: self(), peers: [view('far', { rttMs: 9 }), view('near', { rttMs: 1 })] })), ['self', 'near', 'far'])
})
