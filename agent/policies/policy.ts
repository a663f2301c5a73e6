/** How a scheduler sees one place a call could run: this agent or a peer from the peer table. */
export interface CandidateView {
  peerId: string
  local: boolean
  /** Smoothed RTT in ms (0 for this agent); undefined when not measured yet. */
  rttMs: number | undefined
  freeSlots: number
  /** Slots of the runtime that runs this function, busy or not. */
  slots: number
  /** Holds the function's code already (no fetch needed). */
  holds: boolean
  /** Has the function ready to run without a cold start (a compiled module, a started container). */
  warm: boolean
  queue: number
}

export interface Candidate {
  peerId: string
  local: boolean
  /** Run here even if every slot is busy, waiting in the bounded local queue. */
  mayQueue: boolean
  reason: string
}

export interface PolicyInput {
  self: CandidateView
  peers: CandidateView[]
  /** For the `peer` policy: the peer asked for. */
  target?: string
  /** For `p2c`: a uniform random number in [0, 1) (Math.random unless a test fixes it). */
  random?: () => number
}

export interface Ranking {
  candidates: Candidate[]
  skipped: Array<{ peerId: string, reason: string }>
}

/** Orders the places to try; the scheduler walks the list until one accepts (late binding). */
export interface Policy {
  readonly name: string
  rank: (input: PolicyInput) => Ranking
}

export function rttOf (c: CandidateView): number {
  return c.rttMs ?? Number.POSITIVE_INFINITY
}

/** Holders first (no fetch), then by RTT, then by queue length. */
export function byHoldsThenRtt (a: CandidateView, b: CandidateView): number {
  if (a.holds !== b.holds) return a.holds ? -1 : 1
  const d = rttOf(a) - rttOf(b)
  if (d !== 0 && !Number.isNaN(d)) return d
  return a.queue - b.queue
}

/** Busy slots and queued calls per slot: 0 is idle, 1 is full, above 1 has a queue. */
export function loadOf (c: CandidateView): number {
  return (Math.max(0, c.slots - c.freeSlots) + c.queue) / Math.max(1, c.slots)
}

/** Least loaded first; among equals, holders before places that would fetch, then by RTT. */
export function byLoad (a: CandidateView, b: CandidateView): number {
  return loadOf(a) - loadOf(b) || byHoldsThenRtt(a, b)
}

export function describe (c: CandidateView): string {
  const rtt = c.local ? 'local' : c.rttMs === undefined ? 'rtt ?' : `rtt ${c.rttMs.toFixed(2)} ms`
  return `${rtt}, ${c.freeSlots}/${c.slots} free, ${c.warm ? 'warm' : c.holds ? 'holds code' : 'would fetch code'}`
}

export function candidate (c: CandidateView, why: string, mayQueue = false): Candidate {
  return { peerId: c.peerId, local: c.local, mayQueue, reason: `${why} (${describe(c)})` }
}

/**
 * The places with a free slot (this agent among them when it has one), and, when this agent has
 * none, a last resort that waits in its local queue; the ranking functions order the pool.
 */
export function rankPool (input: PolicyInput, order: (pool: CandidateView[]) => Candidate[], queueReason: string): Ranking {
  const skipped: Ranking['skipped'] = []
  const pool = withFreeSlots(input.peers, skipped)
  if (input.self.freeSlots > 0) pool.push(input.self)
  const candidates = order(pool)
  if (input.self.freeSlots === 0) candidates.push(candidate(input.self, queueReason, true))
  return { candidates, skipped }
}

/** Splits peers into those with a free slot and the skipped rest. */
export function withFreeSlots (peers: CandidateView[], skipped: Ranking['skipped']): CandidateView[] {
  const free: CandidateView[] = []
  for (const p of peers) {
    if (p.freeSlots > 0) free.push(p)
    else skipped.push({ peerId: p.peerId, reason: 'no free slot by its last advert' })
  }
  return free
}
