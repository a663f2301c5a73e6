import { candidate, expectedMs, rankPool, type CandidateView, type Policy } from './policy.js'

/**
 * `weighted` (ServerlessOnEdge's e-router): places with a free slot drawn at random, each with a
 * probability in proportion to 1 / its expected latency (RTT + the wait for a slot + the run, and
 * the fetch where the code is not held), without replacement. Near and idle places get most calls,
 * but none gets all of them, so callers that share a stale view do not all rush one place.
 */
export const weighted: Policy = {
  name: 'weighted',
  rank: (input) => rankPool(input, pool => {
    const random = input.random ?? Math.random
    const left = pool.map(c => ({ c, w: 1 / Math.max(0.01, expectedMs(c)) }))
    const total = left.reduce((n, x) => n + x.w, 0)
    const drawn: Array<{ c: CandidateView, p: number }> = []
    while (left.length > 0) {
      const sum = left.reduce((n, x) => n + x.w, 0)
      let r = random() * sum
      let i = 0
      for (; i < left.length - 1; i++) {
        r -= (left[i] as { w: number }).w
        if (r < 0) break
      }
      const [x] = left.splice(i, 1) as [{ c: CandidateView, w: number }]
      drawn.push({ c: x.c, p: x.w / total })
    }
    return drawn.map(({ c, p }, k) => candidate(c, `${k === 0 ? 'drawn' : 'drawn next'}, weight ${(p * 100).toFixed(0)}% (~${Math.round(expectedMs(c))} ms expected)`))
  }, 'queue locally: no place had a free slot')
}

/** The probability of each place to be drawn first by `weighted`, for tests and --explain. */
export function weights (pool: CandidateView[]): Map<string, number> {
  const w = pool.map(c => [c.peerId, 1 / Math.max(0.01, expectedMs(c))] as const)
  const total = w.reduce((n, [, x]) => n + x, 0)
  return new Map(w.map(([id, x]) => [id, x / total]))
}
