import { test } from 'node:test'
import assert from 'node:assert/strict'
import { localFirst, near, localOnly, pinnedPeer, type CandidateView } from '../../agent/index.js'

function view (peerId: string, extra: Partial<CandidateView> = {}): CandidateView {
  return { peerId, local: false, rttMs: 5, freeSlots: 2, holds: true, queue: 0, ...extra }
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
    self: self({ freeSlots: 0 }),
    peers: [view('far', { rttMs: 9 }), view('busy', { freeSlots: 0 }), view('near', { rttMs: 1 }), view('nocode', { rttMs: 0.5, holds: false })]
  })
  assert.deepEqual(order(r), ['near', 'far', 'nocode', 'self'])
  assert.equal(r.candidates.at(-1)?.mayQueue, true)
  assert.deepEqual(r.skipped.map(s => s.peerId), ['busy'])
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
  const r = near.rank({ self: self({ holds: true, freeSlots: 0 }), peers: [view('a', { rttMs: 8 })] })
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
