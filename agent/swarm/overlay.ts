import { createHash } from 'node:crypto'

/**
 * Which peers an agent keeps a connection to, when the swarm is larger than that: every agent
 * picks the `k` peers whose pair score with it is lowest. The score of a pair is a hash of the two
 * ids, the same whichever end computes it, so the picks form a random graph (connected, with a
 * small diameter, for k ≥ 3) that any agent can recompute from the ids it knows — in particular,
 * both ends of a connection agree on whether either of them wants it.
 */
export function pairScore (a: string, b: string): number {
  const h = createHash('sha256').update(a < b ? `${a}\n${b}` : `${b}\n${a}`).digest()
  return h.readUIntBE(0, 6)
}

/**
 * `pairScore` behind a cache, for an agent that recomputes the overlay every few seconds: each
 * recomputation scores every known peer against each connected one (a swarm of 50 spent 3 % of
 * its idle CPU hashing the same pairs again). Scores never change; the cache is emptied when it
 * holds `max` pairs (a swarm of a thousand, with twenty connections each, needs about 20,000).
 */
export function cachedPairScore (max = 100_000): (a: string, b: string) => number {
  const cache = new Map<string, number>()
  return (a, b) => {
    const key = a < b ? `${a}\n${b}` : `${b}\n${a}`
    let v = cache.get(key)
    if (v === undefined) {
      if (cache.size >= max) cache.clear()
      v = pairScore(a, b)
      cache.set(key, v)
    }
    return v
  }
}

/** The `k` ids of `among` (which may include `of` itself) with the lowest pair score with `of`. */
export function picks (of: string, among: Iterable<string>, k: number, score: (a: string, b: string) => number = pairScore): Set<string> {
  const scored: Array<[string, number]> = []
  for (const id of among) if (id !== of) scored.push([id, score(of, id)])
  scored.sort((x, y) => x[1] - y[1] || (x[0] < y[0] ? -1 : 1))
  return new Set(scored.slice(0, k).map(([id]) => id))
}

/**
 * The peers `self` keeps, out of `peers` (every peer it knows): those it picks, and those of
 * `candidates` (the peers it is connected to) that pick it. With k ≤ 0 or no more peers than k, all.
 */
export function wanted (self: string, peers: readonly string[], k: number, candidates: Iterable<string>, score: (a: string, b: string) => number = pairScore): Set<string> {
  if (k <= 0 || peers.length <= k) return new Set(peers)
  const out = picks(self, peers, k, score)
  const everyone = [...peers, self]
  const known = new Set(peers)
  for (const c of candidates) {
    if (out.has(c) || !known.has(c)) continue
    if (picks(c, everyone, k, score).has(self)) out.add(c)
  }
  return out
}
