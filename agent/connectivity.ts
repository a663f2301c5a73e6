import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { deadline } from './deadline.js'
import type { EdgeNode } from './node.js'
import type { PeerTable } from './peer-table.js'

const log = logger('edge:agent:connectivity')

export interface ConnectivityInit {
  bootstrap: string[]
  pingIntervalMs?: number
  redialIntervalMs?: number
  /** How long a peer that went silent is still redialled. */
  forgetAfterMs?: number
}

/**
 * Measures RTT to every peer in the table (libp2p ping, smoothed in the table) and redials
 * bootstrap peers and recently seen peers when their connection is lost.
 */
export class Connectivity {
  readonly #node: EdgeNode
  readonly #table: PeerTable
  readonly #init: Required<ConnectivityInit>
  readonly #seen = new Map<string, number>()
  #timers: NodeJS.Timeout[] = []
  #controller = new AbortController()
  #redialing = false

  constructor (node: EdgeNode, table: PeerTable, init: ConnectivityInit) {
    this.#node = node
    this.#table = table
    this.#init = { pingIntervalMs: 2000, redialIntervalMs: 3000, forgetAfterMs: 10 * 60_000, ...init }
  }

  start (): void {
    this.#controller = new AbortController()
    this.#timers.push(setInterval(() => { void this.pingAll() }, this.#init.pingIntervalMs))
    this.#timers.push(setInterval(() => { void this.redial() }, this.#init.redialIntervalMs))
    for (const t of this.#timers) t.unref()
    this.#table.addEventListener('peer:join', (evt) => { void this.#ping(evt.detail.peerId) })
  }

  stop (): void {
    this.#controller.abort()
    for (const t of this.#timers) clearInterval(t)
    this.#timers = []
  }

  async pingAll (): Promise<void> {
    await Promise.all(this.#table.list().map(async (e) => { await this.#ping(e.peerId) }))
  }

  async #ping (peerId: string): Promise<void> {
    this.#seen.set(peerId, Date.now())
    const { signal, done } = deadline(this.#controller.signal, 2000)
    try {
      const rtt = await this.#node.services.ping.ping(peerIdFromString(peerId), { signal })
      this.#table.recordRtt(peerId, rtt)
    } catch (err) {
      log('ping %s failed: %s', peerId, (err as Error).message)
    } finally {
      done()
    }
  }

  async redial (): Promise<void> {
    if (this.#redialing) return
    this.#redialing = true
    try {
      await this.#redial()
    } finally {
      this.#redialing = false
    }
  }

  async #redial (): Promise<void> {
    const connected = new Set(this.#node.getConnections().map(c => c.remotePeer.toString()))
    const now = Date.now()
    const dials: Array<Promise<unknown>> = []
    const { signal, done } = deadline(this.#controller.signal, 3000)
    for (const addr of this.#init.bootstrap) {
      const ma = multiaddr(addr)
      const peer = ma.getComponents().find(c => c.name === 'p2p')?.value
      if (peer !== undefined && connected.has(peer)) continue
      dials.push(this.#node.dial(ma, { signal }))
    }
    for (const [peer, lastSeen] of this.#seen) {
      if (now - lastSeen > this.#init.forgetAfterMs) { this.#seen.delete(peer); continue }
      if (connected.has(peer)) continue
      dials.push(this.#node.dial(peerIdFromString(peer), { signal }))
    }
    const results = await Promise.allSettled(dials)
    done()
    const failed = results.filter(r => r.status === 'rejected').length
    if (dials.length > 0) log('redialled %d peers, %d failed', dials.length, failed)
  }
}
