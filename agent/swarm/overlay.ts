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
  const cache = new Map<string, number>()
  const mine = (a: string, b: string): number => {
    if (a !== self && b !== self) return score(a, b)
    const other = a === self ? b : a
    let v = cache.get(other)
    if (v === undefined) { v = score(self, other); cache.set(other, v) }
    return v
  }
  const out = picks(self, peers, k, mine)
  const everyone = [...peers, self]
  const known = new Set(peers)
  for (const c of candidates) {
    if (out.has(c) || !known.has(c)) continue
    if (picks(c, everyone, k, mine).has(self)) out.add(c)
  }
  return out
}
