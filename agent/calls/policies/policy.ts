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
  /** Calls waiting there for a slot. */
  queue: number
  /** Calls of this agent's there now: in flight to a peer (counted exactly), or running here. */
  inFlight: number
  /** Expected ms until a call sent now would get a slot there (0 with a free slot). */
  waitMs: number
  /** Expected ms of the call's own run there. */
  runMs: number
  /** Expected ms to fetch the code there first (0 where it is held). */
  fetchMs: number
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
  /** For `p2c` and `weighted`: a uniform random number in [0, 1) (Math.random unless a test fixes it). */
  random?: () => number
  /** ms left before the call's deadline: a place where it would not finish by then is not tried. */
  deadlineMs?: number
}

export interface Ranking {
  candidates: Candidate[]
  skipped: Array<{ peerId: string, reason: string }>
  /** Set when no place can start the call in time: when the soonest expects a free slot. */
  overloaded?: { retryAfterMs: number }
}

/** Orders the places to try; the scheduler walks the list until one accepts (late binding). */
export interface Policy {
  readonly name: string
  rank: (input: PolicyInput) => Ranking
}

export function rttOf (c: CandidateView): number {
  return c.rttMs ?? Number.POSITIVE_INFINITY
}

/** RTT assumed for a peer not measured yet. */
const UNMEASURED_RTT_MS = 5

/** Expected ms from sending the call to its answer: RTT, the wait for a slot, the fetch if any, the run. */
export function expectedMs (c: CandidateView): number {
  const rtt = c.local ? 0 : (c.rttMs ?? UNMEASURED_RTT_MS)
  return rtt + c.waitMs + c.fetchMs + c.runMs
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
  const ours = c.local ? `${c.inFlight} running here` : `${c.inFlight} in flight from here`
  return `${rtt}, ${c.freeSlots}/${c.slots} free, ${ours}, ${c.queue} queued, wait ~${Math.round(c.waitMs)} ms, run ~${Math.round(c.runMs)} ms, ${c.warm ? 'warm' : c.holds ? 'holds code' : 'would fetch code'}`
}

export function candidate (c: CandidateView, why: string, mayQueue = false): Candidate {
  return { peerId: c.peerId, local: c.local, mayQueue, reason: `${why} (${describe(c)})` }
}

/** Peers waited on in their queues, at most, when no place has a free slot. */
const QUEUE_FALLBACKS = 3

/** Expected ms from sending the call until it starts there (it has a free slot): RTT and fetch. */
function startMs (c: CandidateView): number {
  return expectedMs(c) - c.runMs - c.waitMs
}

/**
 * The places with a free slot (this agent among them when it has one), ordered by the policy; and,
 * when this agent has none, the queues to wait in, soonest to finish first, among places where the
 * call is expected to finish before its deadline. A free slot is tried whenever the call can start
 * there in time (run times are averages, this call may be short); a queue only when the work ahead
 * and the call's own expected run fit in what is left. A peer with a free slot that would still
 * finish later than the local queue (it must fetch the code, it is far) comes after the local
 * queue: a call is offloaded when that beats waiting here. With no place that can take it in time,
 * the ranking says so (`overloaded`) and when the soonest expects a free slot.
 */
export function rankPool (input: PolicyInput, order: (pool: CandidateView[]) => Candidate[], queueReason: string): Ranking {
  const skipped: Ranking['skipped'] = []
  const deadline = input.deadlineMs ?? Number.POSITIVE_INFINITY
  const pool = withFreeSlots(input.peers, skipped).filter(p => {
    if (startMs(p) <= deadline) return true
    skipped.push({ peerId: p.peerId, reason: `could not start within the ${Math.round(deadline)} ms left (~${Math.round(startMs(p))} ms away)` })
    return false
  })
  if (input.self.freeSlots > 0) {
    pool.push(input.self)
    return { candidates: order(pool), skipped }
  }
  const ordered = order(pool)
  const queues = [input.self, ...input.peers.filter(p => p.freeSlots === 0)].sort((a, b) => expectedMs(a) - expectedMs(b))
  const fitting = queues.filter(c => expectedMs(c) <= deadline)
  if (ordered.length === 0 && fitting.length === 0) {
    // Busy everywhere (when a slot is expected), or nowhere able to run it at all (no wait is finite).
    const soonest = Math.min(...queues.map(c => c.waitMs))
    return { candidates: [], skipped, ...(Number.isFinite(soonest) ? { overloaded: { retryAfterMs: Math.max(1, Math.round(soonest)) } } : {}) }
  }
  const waits: Candidate[] = []
  let peersQueued = 0
  for (const c of fitting) {
    if (!c.local && peersQueued++ >= QUEUE_FALLBACKS) continue
    waits.push(candidate(c, c.local ? queueReason : `wait in its queue: finishes soonest (~${Math.round(expectedMs(c))} ms)`, true))
  }
  if (!fitting.includes(input.self)) skipped.push({ peerId: input.self.peerId, reason: `local queue would not finish within the ${Math.round(deadline)} ms left (~${Math.round(expectedMs(input.self))} ms)` })
  // Free places that beat the local queue first; those that would not, after it.
  const localQueue = fitting.includes(input.self) ? expectedMs(input.self) : Number.POSITIVE_INFINITY
  const byId = new Map(pool.map(c => [c.peerId, c]))
  const better = ordered.filter(c => expectedMs(byId.get(c.peerId) as CandidateView) <= localQueue)
  const worse = ordered.filter(c => !better.includes(c))
  return { candidates: [...better, ...waits, ...worse], skipped }
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
