import { TypedEventEmitter } from 'main-event'
import type { Advert, RuntimeKind } from '../protocol/index.js'

export interface PeerEntry {
  peerId: string
  advert: Advert
  /** Local clock (ms) when the latest advert arrived. */
  receivedAt: number
  /** Smoothed round-trip time from libp2p ping, in ms; undefined until measured. */
  rttMs: number | undefined
  /** Calls we sent this peer since its latest advert: its advert does not count them yet. */
  sentSinceAdvert: number
}

export interface PeerTableEvents {
  'peer:join': CustomEvent<PeerEntry>
  'peer:leave': CustomEvent<string>
}

export interface PeerTableInit {
  /** ms of silence after which a peer is dropped (about three missed adverts). */
  expiryMs: number
  now?: () => number
}

const RTT_ALPHA = 0.3

/**
 * The soft view of the swarm built from gossiped adverts. Entries expire when a peer stops
 * advertising; nothing here is authoritative, it only ranks candidates for late binding.
 */
export class PeerTable extends TypedEventEmitter<PeerTableEvents> {
  readonly #peers = new Map<string, PeerEntry>()
  readonly #expiryMs: number
  readonly #now: () => number
  #timer: NodeJS.Timeout | undefined

  constructor (init: PeerTableInit) {
    super()
    this.#expiryMs = init.expiryMs
    this.#now = init.now ?? Date.now
  }

  start (): void {
    this.#timer = setInterval(() => { this.expire() }, Math.max(100, Math.floor(this.#expiryMs / 4)))
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  /** Records an advert; returns false when it is older than the one held (reordered gossip). */
  upsert (advert: Advert): boolean {
    const now = this.#now()
    const known = this.#peers.get(advert.peerId)
    if (known !== undefined) {
      const older = advert.sentAt < known.advert.sentAt || (advert.sentAt === known.advert.sentAt && advert.seq <= known.advert.seq)
      if (older) return false
      known.advert = advert
      known.receivedAt = now
      known.sentSinceAdvert = 0
      return true
    }
    const entry: PeerEntry = { peerId: advert.peerId, advert, receivedAt: now, rttMs: undefined, sentSinceAdvert: 0 }
    this.#peers.set(advert.peerId, entry)
    this.safeDispatchEvent('peer:join', { detail: entry })
    return true
  }

  recordRtt (peerId: string, rttMs: number): void {
    const entry = this.#peers.get(peerId)
    if (entry === undefined) return
    entry.rttMs = entry.rttMs === undefined ? rttMs : entry.rttMs * (1 - RTT_ALPHA) + rttMs * RTT_ALPHA
  }

  noteSent (peerId: string): void {
    const entry = this.#peers.get(peerId)
    if (entry !== undefined) entry.sentSinceAdvert++
  }

  /** Drops peers silent for longer than the expiry; returns their ids. */
  expire (): string[] {
    const cutoff = this.#now() - this.#expiryMs
    const gone: string[] = []
    for (const [id, entry] of this.#peers) {
      if (entry.receivedAt < cutoff) {
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

  get size (): number {
    return this.#peers.size
  }

  /** Free slots for a runtime by the peer's last advert, less what we sent it since. */
  freeSlots (entry: PeerEntry, kind: RuntimeKind): number {
    const rt = entry.advert.runtimes.find(r => r.kind === kind)
    if (rt === undefined) return 0
    return Math.max(0, rt.slots - rt.busy - entry.sentSinceAdvert)
  }

  ageMs (entry: PeerEntry): number {
    return this.#now() - entry.receivedAt
  }
}
