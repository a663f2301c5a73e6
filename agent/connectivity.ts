import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { KEEP_ALIVE, type PeerId } from '@libp2p/interface'
import { deadline } from './deadline.js'
import type { EdgeNode } from './node.js'
import type { PeerTable } from './peer-table.js'

const log = logger('edge:agent:connectivity')

/** The tag that asks libp2p to keep, and redial with backoff, the connection to a peer of the swarm. */
export const SWARM_KEEP_ALIVE = `${KEEP_ALIVE}-edge-swarm`

export interface ConnectivityInit {
  bootstrap: string[]
  /** How often RTTs are copied from libp2p's connection monitor into the table. Default 5 s. */
  rttIntervalMs?: number
  /** With no connection at all, the bootstrap peers are dialled this often. Default 10 s. */
  aloneRedialMs?: number
  /** After a connection to a peer goes, it is redialled once after this long; failing that, it leaves the table. Default 1 s. */
  redialCheckMs?: number
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
  #dialling = false

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
    // A peer that cannot be redialled at once (its process gone, its port closed) leaves the
    // table; libp2p keeps redialling it with backoff, and its next advert brings it back.
    clearTimeout(this.#checks.get(id))
    const timer = setTimeout(() => { this.#checks.delete(id); void this.#redialOrDrop(id) }, this.#init.redialCheckMs)
    timer.unref()
    this.#checks.set(id, timer)
  }

  readonly #onReconnectFailure = (evt: CustomEvent<PeerId>): void => {
    log('libp2p gave up redialling %s: it leaves the peer table', evt.detail.toString())
    this.#table.remove(evt.detail.toString())
  }

  readonly #onJoin = (evt: CustomEvent<{ peerId: string }>): void => {
    const id = evt.detail.peerId
    void this.#keep(id, true)
    // Heard of through gossip only: calls need a connection of our own.
    if (this.#node.getConnections(peerIdFromString(id)).length === 0) {
      this.#table.markDisconnected(id)
      void this.#dial(id).then(async () => { await this.#ping(id) })
    } else {
      void this.#ping(id)
    }
  }

  readonly #onLeave = (evt: CustomEvent<string>): void => { void this.#keep(evt.detail, false) }

  constructor (node: EdgeNode, table: PeerTable, init: ConnectivityInit) {
    this.#node = node
    this.#table = table
    this.#init = { rttIntervalMs: 5000, aloneRedialMs: 10_000, redialCheckMs: 1000, ...init }
  }

  start (): void {
    this.#controller = new AbortController()
    this.#node.addEventListener('peer:connect', this.#onConnect)
    this.#node.addEventListener('peer:disconnect', this.#onDisconnect)
    this.#node.addEventListener('peer:reconnect-failure', this.#onReconnectFailure)
    this.#table.addEventListener('peer:join', this.#onJoin)
    this.#table.addEventListener('peer:leave', this.#onLeave)
    this.#timers.push(setInterval(() => { this.#copyRtts() }, this.#init.rttIntervalMs))
    this.#timers.push(setInterval(() => { void this.dialBootstrapIfAlone() }, this.#init.aloneRedialMs))
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

  /** Tags (or untags) a peer KEEP_ALIVE in the peer store: libp2p then redials it when it is lost. */
  async #keep (peerId: string, keep: boolean): Promise<void> {
    try {
      await this.#node.peerStore.merge(peerIdFromString(peerId), { tags: { [SWARM_KEEP_ALIVE]: keep ? { value: 50 } : undefined } })
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

  /** Dials a peer of the table (the connection then marks it connected); a failure leaves it to the grace. */
  async #dial (peerId: string): Promise<void> {
    const { signal, done } = deadline(this.#controller.signal, 5000)
    try {
      await this.#node.dial(peerIdFromString(peerId), { signal })
    } catch (err) {
      log('cannot dial %s: %s', peerId, (err as Error).message)
    } finally {
      done()
    }
  }

  /** The check after a lost connection: connected again (by libp2p or by this dial), or gone. */
  async #redialOrDrop (peerId: string): Promise<void> {
    const entry = this.#table.get(peerId)
    if (entry === undefined || this.#table.isConnected(entry)) return
    await this.#dial(peerId)
    const now = this.#table.get(peerId)
    if (now !== undefined && !this.#table.isConnected(now) && this.#node.getConnections(peerIdFromString(peerId)).length === 0) {
      log('%s cannot be redialled: it leaves the peer table', peerId)
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
    if (this.#dialling || this.#init.bootstrap.length === 0 || this.#node.getConnections().length > 0) return
    this.#dialling = true
    const { signal, done } = deadline(this.#controller.signal, 5000)
    try {
      const results = await Promise.allSettled(this.#init.bootstrap.map(async (addr) => await this.#node.dial(multiaddr(addr), { signal })))
      log('alone: dialled %d bootstrap peers, %d answered', results.length, results.filter(r => r.status === 'fulfilled').length)
    } finally {
      done()
      this.#dialling = false
    }
  }
}
