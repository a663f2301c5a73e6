import { TypedEventEmitter } from 'main-event'
import type { Advert, PeerLoad, RuntimeKind, SignedAdvert } from '../../protocol/index.js'

/**
 * A peer's load as this agent sees it, per runtime kind: what others put on it (from its advert or
 * from the load it reported in its latest answer to us) apart from what we ourselves have in flight
 * there, which we know exactly.
 */
export interface LoadView {
  slots: number
  /** Slots busy with calls that are not ours. */
  othersBusy: number
  /** Calls waiting there that are not ours. */
  othersQueued: number
  /** Local clock (ms) of the report this comes from. */
  at: number
  source: 'advert' | 'answer'
}

export interface PeerEntry {
  peerId: string
  advert: Advert
  /** Local clock (ms) when the latest advert arrived. */
  receivedAt: number
  /** Smoothed round-trip time from libp2p ping, in ms; undefined until measured. */
  rttMs: number | undefined
  /** Calls this agent has sent the peer and not had answered, per runtime kind. */
  inFlight: Map<RuntimeKind, number>
  /** Load by others, per runtime kind. */
  load: Map<RuntimeKind, LoadView>
  /**
   * Local clock (ms) when libp2p lost the connection this agent keeps to the peer (a neighbour,
   * connectivity.ts); undefined while connected, and for peers it reaches only when it calls them.
   */
  disconnectedAt: number | undefined
  /** The newest advert of the peer that came by gossip, as signed, to pass on in hellos. */
  signed?: SignedAdvert
  /** Local clock (ms) when a call of ours to the peer last started or ended. */
  lastCallAt?: number
}

export interface PeerTableEvents {
  'peer:join': CustomEvent<PeerEntry>
  'peer:leave': CustomEvent<string>
}

export interface PeerTableInit {
  /**
   * ms of advert silence after which a peer is dropped though libp2p still holds a connection to it
   * (a wedged agent): a long bound, several advert heartbeats.
   */
  expiryMs: number
  /**
   * ms a peer whose connection is gone stays in the table (not offered as a candidate) while libp2p
   * redials it; libp2p giving up (`remove`) drops it sooner. Default: 30 s.
   */
  disconnectGraceMs?: number
  now?: () => number
  /** Take the load peers report in their answers (default). Off only to measure what it is worth. */
  answerLoad?: boolean
}

const RTT_ALPHA = 0.3

/**
 * What others put on a peer that reports `busy` slots and `queued` calls while `ours` of ours are
 * there: ours count as running first (up to its busy slots), the rest of ours as queued.
 */
function othersLoad (slots: number, busy: number, queued: number, ours: number): Pick<LoadView, 'slots' | 'othersBusy' | 'othersQueued'> {
  const ourRunning = Math.min(ours, busy)
  return { slots, othersBusy: Math.max(0, busy - ourRunning), othersQueued: Math.max(0, queued - (ours - ourRunning)) }
}

/**
 * The soft view of the swarm built from gossiped adverts. A peer is alive while libp2p holds a
 * connection to it (connection events, `markConnected`/`markDisconnected`): it leaves when the
 * connection is gone and is not back within the grace (or libp2p gives up redialling it), or when
 * it has been silent past the long advert bound. Load never decides liveness, so a busy peer whose
 * adverts run late does not flap. Nothing here is authoritative; it only ranks candidates.
 *
 * Load accounting: a peer's free slots are its slots less those busy with others' calls (by its
 * latest advert or answer) less the calls this agent has in flight there, counted exactly — a call
 * that returns frees its slot at once, and a BUSY answer with the peer's load corrects the view at
 * once. Our own calls are never counted twice: what a peer reports includes them, and they are
 * taken out (exactly for answers, which say how many of ours are still there; as many as we have in
 * flight for adverts).
 */
export class PeerTable extends TypedEventEmitter<PeerTableEvents> {
  readonly #peers = new Map<string, PeerEntry>()
  readonly #expiryMs: number
  readonly #now: () => number
  readonly #answerLoad: boolean
  readonly #graceMs: number
  #timer: NodeJS.Timeout | undefined

  constructor (init: PeerTableInit) {
    super()
    this.#expiryMs = init.expiryMs
    this.#graceMs = init.disconnectGraceMs ?? 30_000
    this.#now = init.now ?? Date.now
    this.#answerLoad = init.answerLoad ?? true
  }

  start (): void {
    this.#timer = setInterval(() => { this.expire() }, Math.max(100, Math.floor(Math.min(this.#expiryMs, this.#graceMs) / 4)))
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  /**
   * Records an advert; returns false when it is older than the one held (reordered gossip), or was
   * already `ageMs` old past the advert bound (a copy passed on late). `signed`: the copy as its
   * author signed it, kept to pass on. `ageMs`: how old the advert was on arrival (a copy passed on
   * by another agent), so that a passed-on copy does not keep a silent peer alive longer.
   */
  upsert (advert: Advert, signed?: SignedAdvert, ageMs = 0): boolean {
    const now = this.#now()
    if (ageMs >= this.#expiryMs) return false
    const received = now - Math.max(0, ageMs)
    const known = this.#peers.get(advert.peerId)
    if (known !== undefined) {
      const order = newness(advert, known.advert)
      // The advert held, now with its signature (a hello's advert, then its signed copy).
      if (order === 0 && signed !== undefined) known.signed ??= signed
      if (order <= 0) return false
      known.advert = advert
      known.receivedAt = Math.max(known.receivedAt, received)
      if (signed !== undefined) known.signed = signed
      this.#fromAdvert(known, now)
      return true
    }
    const entry: PeerEntry = { peerId: advert.peerId, advert, receivedAt: received, rttMs: undefined, inFlight: new Map(), load: new Map(), disconnectedAt: undefined, ...(signed !== undefined ? { signed } : {}) }
    this.#fromAdvert(entry, now)
    this.#peers.set(advert.peerId, entry)
    this.safeDispatchEvent('peer:join', { detail: entry })
    return true
  }

  /**
   * Whether `upsert` would take this advert (with a signed copy, `ageMs` old): it is of a new
   * peer, newer than the one held, or the one held, which lacks its signed copy. Lets a hello's
   * relays skip checking the signatures of adverts this agent has already (most of them, in a
   * swarm that is up: every new connection brings one hello of all the peers the other side knows).
   */
  isNews (advert: Advert, ageMs = 0): boolean {
    if (ageMs >= this.#expiryMs) return false
    const known = this.#peers.get(advert.peerId)
    if (known === undefined) return true
    const order = newness(advert, known.advert)
    return order > 0 || (order === 0 && known.signed === undefined)
  }

  /** An advert counts the calls we had in flight when it was sent: take them out. */
  #fromAdvert (entry: PeerEntry, now: number): void {
    const { advert } = entry
    const kinds = new Set(advert.runtimes.map(r => r.kind))
    for (const kind of entry.load.keys()) if (!kinds.has(kind)) entry.load.delete(kind)
    for (const rt of advert.runtimes) {
      entry.load.set(rt.kind, { ...othersLoad(rt.slots, rt.busy, advert.queue, entry.inFlight.get(rt.kind) ?? 0), at: now, source: 'advert' })
    }
  }

  recordRtt (peerId: string, rttMs: number): void {
    const entry = this.#peers.get(peerId)
    if (entry === undefined) return
    entry.rttMs = entry.rttMs === undefined ? rttMs : entry.rttMs * (1 - RTT_ALPHA) + rttMs * RTT_ALPHA
  }

  /** A call of ours is on its way to the peer: one of its slots (or a place in its queue) is taken. */
  callStarted (peerId: string, kind: RuntimeKind): void {
    const entry = this.#peers.get(peerId)
    if (entry === undefined) return
    entry.inFlight.set(kind, (entry.inFlight.get(kind) ?? 0) + 1)
    entry.lastCallAt = this.#now()
  }

  /**
   * A call of ours there ended (answered, refused, cancelled or lost). With the load the peer
   * reported in its answer, the view of what others put on it is replaced by that fresher one.
   */
  callEnded (peerId: string, kind: RuntimeKind, load?: PeerLoad): void {
    const entry = this.#peers.get(peerId)
    if (entry === undefined) return
    entry.inFlight.set(kind, Math.max(0, (entry.inFlight.get(kind) ?? 0) - 1))
    entry.lastCallAt = this.#now()
    if (load !== undefined && this.#answerLoad) this.#fromAnswer(entry, kind, load)
  }

  #fromAnswer (entry: PeerEntry, kind: RuntimeKind, load: PeerLoad): void {
    entry.load.set(kind, { ...othersLoad(load.slots, load.busy, load.queued, load.yours), at: this.#now(), source: 'answer' })
  }

  /** libp2p connected to the peer (again). */
  markConnected (peerId: string): void {
    const entry = this.#peers.get(peerId)
    if (entry !== undefined) entry.disconnectedAt = undefined
  }

  /** libp2p lost its last connection to the peer: it is not a candidate until it is back. */
  markDisconnected (peerId: string): void {
    const entry = this.#peers.get(peerId)
    if (entry !== undefined) entry.disconnectedAt ??= this.#now()
  }

  /** Connected, as far as libp2p's events told. */
  isConnected (entry: PeerEntry): boolean {
    return entry.disconnectedAt === undefined
  }

  /** Drops peers disconnected past the grace, or silent past the advert bound; returns their ids. */
  expire (): string[] {
    const now = this.#now()
    const cutoff = now - this.#expiryMs
    const gone: string[] = []
    for (const [id, entry] of this.#peers) {
      if (entry.receivedAt < cutoff || (entry.disconnectedAt !== undefined && now - entry.disconnectedAt > this.#graceMs)) {
        this.#peers.delete(id)
        gone.push(id)
        this.safeDispatchEvent('peer:leave', { detail: id })
      }
    }
    return gone
  }

  remove (peerId: string): void {
    if (this.#peers.delete(peerId)) this.safeDispatchEvent('peer:leave', { detail: peerId })
  }

  get (peerId: string): PeerEntry | undefined {
    return this.#peers.get(peerId)
  }

  list (): PeerEntry[] {
    return [...this.#peers.values()]
  }

  /** Up to `max` signed adverts of peers heard from within the advert bound, freshest first, to pass on. */
  signedAdverts (max: number): SignedAdvert[] {
    return this.list().filter(e => e.signed !== undefined).sort((a, b) => b.receivedAt - a.receivedAt).slice(0, max).map(e => e.signed as SignedAdvert)
  }

  get size (): number {
    return this.#peers.size
  }

  /** Calls of ours in flight at the peer, over all runtimes. */
  callsAt (entry: PeerEntry): number {
    let n = 0
    for (const v of entry.inFlight.values()) n += v
    return n
  }

  /** Calls of ours in flight at the peer for a runtime kind. */
  inFlight (entry: PeerEntry, kind: RuntimeKind): number {
    return entry.inFlight.get(kind) ?? 0
  }

  /** Free slots for a runtime: its slots, less those busy with others' calls, less our calls in flight. */
  freeSlots (entry: PeerEntry, kind: RuntimeKind): number {
    const load = entry.load.get(kind)
    if (load === undefined) return 0
    return Math.max(0, load.slots - load.othersBusy - this.inFlight(entry, kind))
  }

  /** Calls waiting there for a slot: others' queued calls, and ours beyond its free slots. */
  queued (entry: PeerEntry, kind: RuntimeKind): number {
    const load = entry.load.get(kind)
    if (load === undefined) return 0
    return load.othersQueued + Math.max(0, load.othersBusy + this.inFlight(entry, kind) - load.slots)
  }

  ageMs (entry: PeerEntry): number {
    return this.#now() - entry.receivedAt
  }
}

/** An advert against the one held of the same peer, by its author's clock then its seq: 1 newer, 0 the same, -1 older. */
function newness (advert: Advert, held: Advert): -1 | 0 | 1 {
  if (advert.sentAt !== held.sentAt) return advert.sentAt > held.sentAt ? 1 : -1
  if (advert.seq !== held.seq) return advert.seq > held.seq ? 1 : -1
  return 0
}
