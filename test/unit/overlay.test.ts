import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cachedPairScore, pairScore, picks, wanted } from '../../agent/swarm/overlay.js'

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `12D3KooWpeer${i.toString().padStart(4, '0')}`)

/** Every agent's neighbours (its picks and the peers that pick it), each computed from its own full view. */
function overlay (all: string[], k: number): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const a of all) out.set(a, wanted(a, all.filter(x => x !== a), k, all))
  return out
}

test('the pair score is the same from both ends, and differs between pairs', () => {
  assert.equal(pairScore('a', 'b'), pairScore('b', 'a'))
  assert.notEqual(pairScore('a', 'b'), pairScore('a', 'c'))
})

test('each agent picks k peers, never itself', () => {
  const all = ids(40)
  const p = picks(all[0] as string, all, 6)
  assert.equal(p.size, 6)
  assert.equal(p.has(all[0] as string), false)
})

test('both ends of every connection agree that it is wanted, and each agent keeps about 2k, not all', () => {
  const all = ids(50)
  const k = 6
  const o = overlay(all, k)
  for (const [a, ns] of o) {
    for (const b of ns) assert.ok(o.get(b)?.has(a), `${a} keeps ${b} but ${b} does not keep ${a}`)
    assert.ok(ns.size >= k && ns.size < 4 * k, `${a} keeps ${ns.size}`)
  }
  const edges = [...o.values()].reduce((n, s) => n + s.size, 0) / 2
  assert.ok(edges < 50 * 49 / 2 / 3, `${edges} connections, against ${50 * 49 / 2} for everyone to everyone`)
})

test('the overlay is connected, at 50 and at 1,000 agents', () => {
  for (const n of [50, 1000]) {
    const all = ids(n)
    // At 1,000, the picks alone (both ends of each) stand for the overlay: cheaper, and a subgraph of it.
    const adj = new Map(all.map(a => [a, new Set<string>()]))
    for (const a of all) for (const b of picks(a, all, 6)) { adj.get(a)?.add(b); adj.get(b)?.add(a) }
    const seen = new Set([all[0] as string])
    const queue = [all[0] as string]
    while (queue.length > 0) for (const b of adj.get(queue.shift() as string) ?? []) if (!seen.has(b)) { seen.add(b); queue.push(b) }
    assert.equal(seen.size, n, `${n - seen.size} of ${n} agents unreachable`)
  }
})

test('a swarm no larger than k is kept whole', () => {
  const all = ids(5)
  assert.deepEqual([...wanted(all[0] as string, all.slice(1), 6, [])].sort(), all.slice(1).sort())
  assert.equal(wanted(all[0] as string, all.slice(1), 0, []).size, 4)
})

test('the cached pair score is the pair score, from either end, also once its cache has been emptied', () => {
  const all = ids(30)
  const cached = cachedPairScore(50)
  for (let round = 0; round < 2; round++) {
    for (const a of all) for (const b of all) if (a !== b) assert.equal(cached(a, b), pairScore(b, a))
  }
  const self = all[0] as string
  assert.deepEqual([...wanted(self, all.slice(1), 4, all, cached)].sort(), [...wanted(self, all.slice(1), 4, all)].sort())
})
