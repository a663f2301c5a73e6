import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { KEEP_ALIVE, type PeerId } from '@libp2p/interface'
import { deadline } from '../deadline.js'
import type { EdgeNode } from './node.js'
import type { PeerEntry, PeerTable } from './peer-table.js'
import { setMaxListeners } from 'node:events'

const log = logger('edge:agent:connectivity')

/** The tag that asks libp2p to keep, and redial with backoff, the connection to a peer of the swarm. */
export const SWARM_KEEP_ALIVE = `${KEEP_ALIVE}-edge-swarm`

export interface ConnectivityInit {
  bootstrap: string[]
  /** How often RTTs are copied from libp2p's connection monitor into the table. Default 5 s. */
  rttIntervalMs?: number
  /** With no connection at all, the bootstrap peers are dialled this often. Default 10 s. */
  aloneRedialMs?: number
  /** After a connection to a peer goes, it is redialled once after this long; refused, it leaves the table. Default 1 s. */
  redialCheckMs?: number
  /** Peers of the table without a connection are dialled again this often (at most 8 at once). Default 5 s. */
  reconcileMs?: number
}

/** Dials this agent makes at once to peers it heard of (hints, the table's unconnected peers). */
const MAX_DIALS = 8

/** Dial failures that say the peer is not there at all (as opposed to slow). */
const REFUSED = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|no valid addresses/i

function refusal (err: unknown): boolean {
  for (let e = err as { message?: string, cause?: unknown, errors?: unknown[] } | undefined, i = 0; e !== undefined && i < 5; e = e.cause as typeof e, i++) {
    if (REFUSED.test(e.message ?? '')) return true
    if (Array.isArray(e.errors) && e.errors.some(x => REFUSED.test((x as Error)?.message ?? ''))) return true
  }
  return false
}

/**
 * Liveness and RTT from libp2p itself, with no ping loop of its own: a peer of the table is alive
 * while libp2p holds a connection to it (`peer:connect` / `peer:disconnect`); every peer of the
 * swarm is tagged KEEP_ALIVE, so libp2p redials it with backoff when the connection drops, and
 * when libp2p gives up (`peer:reconnect-failure`) the peer leaves the table. RTT is what
 * libp2p's connection monitor measures on every connection (one ping per connection every
 * 10 s), plus one ping when a peer first appears. Alone (no connection at all), the agent dials
 * its bootstrap peers every so often: libp2p's retries end, an edge device's outage may not.
 */
export class Connectivity {
  readonly #node: EdgeNode
  readonly #table: PeerTable
  readonly #init: Required<ConnectivityInit>
  #timers: NodeJS.Timeout[] = []
  #controller = new AbortController()
  #diallingBootstrap = false

  /** Peers whose connection just went, waiting for the check that they can be redialled. */
  readonly #checks = new Map<string, NodeJS.Timeout>()

  readonly #onConnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    clearTimeout(this.#checks.get(id))
    this.#checks.delete(id)
    this.#table.markConnected(id)
  }

  readonly #onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    if (this.#table.get(id) === undefined) return
    log('lost the connection to %s; redialling it', id)
    this.#table.markDisconnected(id)
    // A peer that refuses the redial (its process gone, its port closed) leaves the table; one
    // that is merely slow to answer (a loaded machine) is redialled until the grace ends.
    clearTimeout(this.#checks.get(id))
    const timer = setTimeout(() => { this.#checks.delete(id); void this.#redialOrDrop(id) }, this.#init.redialCheckMs)
    timer.unref()
    this.#checks.set(id, timer)
  }

  readonly #onReconnectFailure = (evt: CustomEvent<PeerId>): void => {
    log('libp2p gave up redialling %s: it leaves the peer table', evt.detail.toString())
    this.#table.remove(evt.detail.toString())
  }

  readonly #onJoin = (evt: CustomEvent<PeerEntry>): void => {
    const id = evt.detail.peerId
    const connected = this.#node.getConnections(peerIdFromString(id)).length > 0
    // Heard of through gossip only: calls need a connection of our own, to the addresses the
    // peer's own signed advert gives.
    if (!connected) this.#table.markDisconnected(id)
    void this.#keep(id, true, evt.detail.advert.addrs).then(async () => {
      if (!connected) await this.#dial(id)
      await this.#ping(id)
    })
  }

  readonly #onLeave = (evt: CustomEvent<string>): void => { void this.#keep(evt.detail, false) }

  constructor (node: EdgeNode, table: PeerTable, init: ConnectivityInit) {
    this.#node = node
    this.#table = table
    this.#init = { rttIntervalMs: 5000, aloneRedialMs: 10_000, redialCheckMs: 1000, reconcileMs: 5000, ...init }
  }

  start (): void {
    this.#controller = new AbortController()
    // Every dial and ping hangs a listener on it for its duration.
    setMaxListeners(Infinity, this.#controller.signal)
    this.#node.addEventListener('peer:connect', this.#onConnect)
    this.#node.addEventListener('peer:disconnect', this.#onDisconnect)
    this.#node.addEventListener('peer:reconnect-failure', this.#onReconnectFailure)
    this.#table.addEventListener('peer:join', this.#onJoin)
    this.#table.addEventListener('peer:leave', this.#onLeave)
    this.#timers.push(setInterval(() => { this.#copyRtts() }, this.#init.rttIntervalMs))
    this.#timers.push(setInterval(() => { void this.dialBootstrapIfAlone() }, this.#init.aloneRedialMs))
    this.#timers.push(setInterval(() => { this.#reconcile() }, this.#init.reconcileMs))
    for (const t of this.#timers) t.unref()
    void this.#keepBootstrap()
  }

  stop (): void {
    this.#controller.abort()
    for (const t of this.#timers) clearInterval(t)
    this.#timers = []
    for (const t of this.#checks.values()) clearTimeout(t)
    this.#checks.clear()
    this.#node.removeEventListener('peer:connect', this.#onConnect)
    this.#node.removeEventListener('peer:disconnect', this.#onDisconnect)
    this.#node.removeEventListener('peer:reconnect-failure', this.#onReconnectFailure)
    this.#table.removeEventListener('peer:join', this.#onJoin)
    this.#table.removeEventListener('peer:leave', this.#onLeave)
  }

  /** Tags (or untags) a peer KEEP_ALIVE in the peer store, with its advertised addresses: libp2p then redials it when it is lost. */
  async #keep (peerId: string, keep: boolean, addrs: string[] = []): Promise<void> {
    try {
      const multiaddrs = addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      await this.#node.peerStore.merge(peerIdFromString(peerId), { tags: { [SWARM_KEEP_ALIVE]: keep ? { value: 50 } : undefined }, ...(multiaddrs.length > 0 ? { multiaddrs } : {}) })
    } catch (err) {
      log('cannot %s %s: %s', keep ? 'tag' : 'untag', peerId, (err as Error).message)
    }
  }

  /** Bootstrap peers are kept too, with their addresses, so that libp2p redials them. */
  async #keepBootstrap (): Promise<void> {
    for (const addr of this.#init.bootstrap) {
      const ma = multiaddr(addr)
      const id = ma.getComponents().find(c => c.name === 'p2p')?.value
      if (id === undefined) continue
      try {
        await this.#node.peerStore.merge(peerIdFromString(id), { multiaddrs: [ma], tags: { [SWARM_KEEP_ALIVE]: { value: 50 } } })
      } catch (err) {
        log('cannot keep bootstrap peer %s: %s', addr, (err as Error).message)
      }
    }
  }

  /** Copies libp2p's connection-monitor RTTs into the table (the smallest over a peer's connections). */
  #copyRtts (): void {
    for (const entry of this.#table.list()) {
      let best: number | undefined
      for (const c of this.#node.getConnections(peerIdFromString(entry.peerId))) {
        if (typeof c.rtt === 'number' && (best === undefined || c.rtt < best)) best = c.rtt
      }
      if (best !== undefined) this.#table.recordRtt(entry.peerId, best)
    }
  }

  /** Peers being dialled by #dial. */
  readonly #dialling = new Set<string>()

  /**
   * Dials a peer of the table (the connection then marks it connected). Resolves 'refused' when
   * the peer is plainly not there, 'failed' for anything else (a timeout on a loaded machine).
   */
  async #dial (peerId: string): Promise<'ok' | 'refused' | 'failed'> {
    if (this.#dialling.has(peerId)) return 'failed'
    this.#dialling.add(peerId)
    const { signal, done } = deadline(this.#controller.signal, 10_000)
    try {
      await this.#node.dial(peerIdFromString(peerId), { signal })
      return 'ok'
    } catch (err) {
      log('cannot dial %s: %s', peerId, (err as Error).message)
      return refusal(err) ? 'refused' : 'failed'
    } finally {
      done()
      this.#dialling.delete(peerId)
    }
  }

  /** Peers another told of (a hello), to dial, with the addresses given. */
  readonly #hinted = new Map<string, string[]>()

  /**
   * Peers another agent knows of: the ones this agent neither has in its table nor is connected
   * to are dialled, a few at a time (their hello then brings their advert).
   */
  hint (peers: Array<{ peerId: string, addrs: string[] }>): void {
    const self = this.#node.peerId.toString()
    for (const p of peers) {
      if (p.peerId === self || this.#table.get(p.peerId) !== undefined || this.#hinted.has(p.peerId)) continue
      try {
        if (this.#node.getConnections(peerIdFromString(p.peerId)).length > 0) continue
      } catch {
        continue
      }
      this.#hinted.set(p.peerId, p.addrs)
    }
    this.#pumpHints()
  }

  #pumpHints (): void {
    for (const [peerId, addrs] of this.#hinted) {
      if (this.#dialling.size >= MAX_DIALS) return
      this.#hinted.delete(peerId)
      void this.#keep(peerId, true, addrs)
        .then(async () => await this.#dial(peerId))
        .finally(() => { this.#pumpHints() })
    }
  }

  /** Dials, a few at a time, the peers of the table that have no connection (gossip-only, or lost). */
  #reconcile (): void {
    const free = MAX_DIALS - this.#dialling.size
    if (free <= 0) return
    const lacking = this.#table.list().filter(e => !this.#table.isConnected(e) && !this.#dialling.has(e.peerId))
    for (const e of lacking.slice(0, free)) void this.#dial(e.peerId)
  }

  /** The check after a lost connection: connected again (by libp2p or by this dial), or gone. */
  async #redialOrDrop (peerId: string): Promise<void> {
    const entry = this.#table.get(peerId)
    if (entry === undefined || this.#table.isConnected(entry)) return
    const outcome = await this.#dial(peerId)
    const now = this.#table.get(peerId)
    if (outcome === 'refused' && now !== undefined && !this.#table.isConnected(now) && this.#node.getConnections(peerIdFromString(peerId)).length === 0) {
      log('%s refuses to be redialled: it leaves the peer table', peerId)
      this.#table.remove(peerId)
    }
  }

  /** One ping when a peer appears, so that it has an RTT before the connection monitor's first. */
  async #ping (peerId: string): Promise<void> {
    const { signal, done } = deadline(this.#controller.signal, 2000)
    try {
      this.#table.recordRtt(peerId, await this.#node.services.ping.ping(peerIdFromString(peerId), { signal }))
    } catch (err) {
      log('ping %s failed: %s', peerId, (err as Error).message)
    } finally {
      done()
    }
  }

  /** With no connection at all, dials the bootstrap peers. */
  async dialBootstrapIfAlone (): Promise<void> {
    if (this.#diallingBootstrap || this.#init.bootstrap.length === 0 || this.#node.getConnections().length > 0) return
    this.#diallingBootstrap = true
    const { signal, done } = deadline(this.#controller.signal, 5000)
    try {
      const results = await Promise.allSettled(this.#init.bootstrap.map(async (addr) => await this.#node.dial(multiaddr(addr), { signal })))
      log('alone: dialled %d bootstrap peers, %d answered', results.length, results.filter(r => r.status === 'fulfilled').length)
    } finally {
      done()
      this.#diallingBootstrap = false
    }
  }
}
