/** How a scheduler sees one place a call could run: this agent or a peer from the peer table. */
export interface CandidateView {
  peerId: string
  local: boolean
  /** Smoothed RTT in ms (0 for this agent); undefined when not measured yet. */
  rttMs: number | undefined
  freeSlots: number
  /** Holds the function's code already (no fetch needed). */
  holds: boolean
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

export function describe (c: CandidateView): string {
  const rtt = c.local ? 'local' : c.rttMs === undefined ? 'rtt ?' : `rtt ${c.rttMs.toFixed(2)} ms`
  return `${rtt}, ${c.freeSlots} free, ${c.holds ? 'holds code' : 'would fetch code'}`
}

export function candidate (c: CandidateView, why: string, mayQueue = false): Candidate {
  return { peerId: c.peerId, local: c.local, mayQueue, reason: `${why} (${describe(c)})` }
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
