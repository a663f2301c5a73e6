import { logger } from '../log.js'
import { hostPort, Problems } from './handshakes.js'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { KEEP_ALIVE, type PeerId } from '@libp2p/interface'
import { MAX_LOST_PEERS } from '../../protocol/index.js'
import { deadline } from '../deadline.js'
import type { EdgeNode } from './node.js'
import type { PeerEntry, PeerTable } from './peer-table.js'
import { cachedPairScore, wanted } from './overlay.js'
import { setMaxListeners } from 'node:events'

const log = logger('edge:agent:connectivity')

/** The tag that asks libp2p to keep, and redial with backoff, the connection to a peer of the swarm. */
export const SWARM_KEEP_ALIVE = `${KEEP_ALIVE}-edge-swarm`

export interface ConnectivityInit {
  bootstrap: string[]
  /** How often RTTs are copied from libp2p's connection monitor into the table. Default 5 s. */
  rttIntervalMs?: number
  /** Where a bootstrap address that does not answer is noted, for the log and `edge status`. */
  problems?: Problems
  /** With no connection at all, the bootstrap peers are dialled this often. Default 10 s. */
  aloneRedialMs?: number
  /** After a connection to a peer goes, it is redialled once after this long; refused, it leaves the table. Default 1 s. */
  redialCheckMs?: number
  /** The overlay is checked this often: kept peers without a connection dialled (at most 8 at once), idle unkept connections closed. Default 5 s. */
  reconcileMs?: number
  /**
   * Peers this agent picks to keep a connection to (overlay.ts); with those that pick it, about
   * twice as many connections. 0: every peer of the table. Default 6.
   */
  neighbours?: number
  /** A connection this agent dialled to a peer neither end keeps is closed once unused this long. Default 30 s. */
  idleCloseMs?: number
}

/** A peer reported lost is reported in this agent's adverts this long. */
export const LOST_FOR_MS = 60_000
/** A peer reported lost by others is dialled to check at most this often. */
export const PROBE_EVERY_MS = 10_000

/** Dials this agent makes at once to peers it heard of (hints, neighbours without a connection). */
const MAX_DIALS = 8
/** The first look at the bootstrap peers, when still alone this long after start. */
const FIRST_BOOTSTRAP_CHECK_MS = 1500

/** Dial failures that say the peer is not there at all (as opposed to slow). */
const REFUSED = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|no valid addresses/i

/** Whether a hinted id is a peer id at all (hints are unauthenticated). */
function parses (peerId: string): boolean {
  try {
    peerIdFromString(peerId)
    return true
  } catch {
    return false
  }
}

function refusal (err: unknown): boolean {
  for (let e = err as { message?: string, cause?: unknown, errors?: unknown[] } | undefined, i = 0; e !== undefined && i < 5; e = e.cause as typeof e, i++) {
    if (REFUSED.test(e.message ?? '')) return true
    if (Array.isArray(e.errors) && e.errors.some(x => REFUSED.test((x as Error)?.message ?? ''))) return true
  }
  return false
}

/**
 * Connections and liveness from libp2p itself, with no ping loop of its own.
 *
 * Which connections: not one to every peer (the idle cost of a swarm grew with its square), but
 * to a few neighbours — the peers it picks and the peers that pick it (overlay.ts), tagged
 * KEEP_ALIVE so that libp2p redials them with backoff; kad-dht keeps its closest peers too. Other
 * peers are dialled when a call goes to them; such a connection, unused for a while, is closed.
 *
 * Liveness: a neighbour is alive while libp2p holds a connection to it. When it drops, the
 * neighbour is redialled; if the redial is refused (or libp2p gives up), it leaves the table and
 * this agent's adverts report it lost for a minute. An agent that reads such a report dials the
 * peer itself and drops it only if refused too, so a hostile report costs a dial, not a peer.
 * Peers that are no one's neighbour here leave by those reports or, at worst, by advert silence.
 * RTT is what libp2p's connection monitor measures on every connection. Alone (no connection at
 * all), the agent dials its bootstrap peers every so often: libp2p's retries end, an edge
 * device's outage may not.
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
  /** Peers tagged KEEP_ALIVE by this agent: its neighbours, as of the latest reconcile. */
  readonly #kept = new Set<string>()
  /** Peers whose connection this agent is closing itself (their disconnect is no news). */
  readonly #closing = new Set<string>()
  /** Peers this agent watched go: when. */
  readonly #lost = new Map<string, number>()
  /** Peers others reported lost: when this agent last dialled one to check. */
  readonly #probed = new Map<string, number>()
  #soon: NodeJS.Timeout | undefined
  /** Pair scores of the overlay, computed once per pair. */
  readonly #score = cachedPairScore()

  readonly #onConnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    clearTimeout(this.#checks.get(id))
    this.#checks.delete(id)
    this.#table.markConnected(id)
  }

  readonly #onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    if (this.#closing.delete(id) || this.#table.get(id) === undefined) return
    // Not a neighbour: a connection for calls, closed by the other end; no news of its health.
    if (!this.#kept.has(id) && !this.#wanted([id]).has(id)) return
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
    const id = evt.detail.toString()
    if (this.#table.get(id) === undefined) return
    log('libp2p gave up redialling %s: it leaves the peer table', id)
    this.#gone(id)
  }

  readonly #onJoin = (evt: CustomEvent<PeerEntry>): void => {
    const id = evt.detail.peerId
    // The addresses its own signed advert gives, for a call's dial; kept or not, the overlay says.
    void this.#keep(id, false, evt.detail.advert.addrs)
    if (this.#connected(id)) void this.#ping(id)
    this.#reconcileSoon()
  }

  readonly #onLeave = (evt: CustomEvent<string>): void => {
    if (this.#kept.delete(evt.detail)) void this.#keep(evt.detail, false)
    this.#reconcileSoon()
  }

  constructor (node: EdgeNode, table: PeerTable, init: ConnectivityInit) {
    this.#node = node
    this.#table = table
    this.#init = { rttIntervalMs: 5000, aloneRedialMs: 10_000, redialCheckMs: 1000, reconcileMs: 5000, neighbours: 6, idleCloseMs: 30_000, problems: new Problems(), ...init }
  }

  /** Whether libp2p holds a connection to the peer (false for an id that does not parse). */
  #connected (peerId: string): boolean {
    try {
      return this.#node.getConnections(peerIdFromString(peerId)).length > 0
    } catch {
      return false
    }
  }

  /** The peers this agent keeps a connection to, by the overlay over the peers it knows. */
  #wanted (also: string[] = []): Set<string> {
    const self = this.#node.peerId.toString()
    const connected = this.#node.getConnections().map(c => c.remotePeer.toString())
    return wanted(self, this.#table.list().map(e => e.peerId), this.#init.neighbours, [...connected, ...also], this.#score)
  }

  /** Peers this agent watched go in the last minute (its adverts report them). */
  lost (): string[] {
    const now = Date.now()
    for (const [id, at] of this.#lost) if (now - at > LOST_FOR_MS || this.#table.get(id) !== undefined) this.#lost.delete(id)
    return [...this.#lost.keys()].slice(-MAX_LOST_PEERS)
  }

  /** A neighbour is gone (refused a redial, or libp2p gave up): out of the table, and reported. */
  #gone (peerId: string): void {
    this.#table.remove(peerId)
    this.#lost.set(peerId, Date.now())
  }

  /**
   * Another agent reports these peers lost: each one this agent has in its table and no connection
   * to is dialled (at most once per 10 s); refused, it leaves the table.
   */
  checkLost (peerIds: readonly string[]): void {
    const now = Date.now()
    for (const id of peerIds) {
      if (id === this.#node.peerId.toString() || this.#table.get(id) === undefined || (now - (this.#probed.get(id) ?? -Infinity)) < PROBE_EVERY_MS || this.#connected(id)) continue
      this.#probed.set(id, now)
      void this.#dial(id).then((outcome) => {
        if (outcome === 'refused' && this.#table.get(id) !== undefined && !this.#connected(id)) {
          log('%s, reported lost, refuses a dial: it leaves the peer table', id)
          this.#table.remove(id)
        }
      })
    }
    for (const [id, at] of this.#probed) if (now - at > PROBE_EVERY_MS) this.#probed.delete(id)
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
    // A first try soon after start: a device that cannot reach its bootstrap peers says so in seconds.
    this.#timers.push(setTimeout(() => { void this.dialBootstrapIfAlone() }, FIRST_BOOTSTRAP_CHECK_MS))
    for (const t of this.#timers) t.unref()
    void this.#keepBootstrap()
  }

  stop (): void {
    this.#controller.abort()
    for (const t of this.#timers) clearInterval(t)
    this.#timers = []
    clearTimeout(this.#soon)
    this.#soon = undefined
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

  /**
   * Bootstrap peers' addresses go in the peer store; they are kept only if the overlay picks them
   * (were every agent to keep them, a bootstrap peer would hold a connection to the whole swarm).
   */
  async #keepBootstrap (): Promise<void> {
    for (const addr of this.#init.bootstrap) {
      const ma = multiaddr(addr)
      const id = ma.getComponents().find(c => c.name === 'p2p')?.value
      if (id === undefined) continue
      try {
        await this.#node.peerStore.merge(peerIdFromString(id), { multiaddrs: [ma] })
      } catch (err) {
        log('cannot note bootstrap peer %s: %s', addr, (err as Error).message)
      }
    }
  }

  /** Copies libp2p's connection-monitor RTTs into the table (the smallest over a peer's connections). */
  #copyRtts (): void {
    // Over the connections (a handful), not the table (every peer, each id parsed again).
    const best = new Map<string, number>()
    for (const c of this.#node.getConnections()) {
      if (typeof c.rtt !== 'number') continue
      const id = c.remotePeer.toString()
      const known = best.get(id)
      if (known === undefined || c.rtt < known) best.set(id, c.rtt)
    }
    for (const [id, rtt] of best) this.#table.recordRtt(id, rtt)
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
   * Peers another agent knows of. Their adverts come signed in the same hello, so they need no
   * dial; only an agent with fewer connections than its neighbours dials some (a few at a time:
   * their hello then brings their adverts), so that a newcomer whose one contact holds no signed
   * adverts yet still finds the swarm.
   */
  hint (peers: Array<{ peerId: string, addrs: string[] }>): void {
    let want = this.#init.neighbours <= 0 ? Infinity : this.#init.neighbours - this.#node.getConnections().length
    const self = this.#node.peerId.toString()
    for (const p of peers) {
      if (want <= 0) break
      if (p.peerId === self || this.#table.get(p.peerId) !== undefined || this.#hinted.has(p.peerId) || !parses(p.peerId) || this.#connected(p.peerId)) continue
      this.#hinted.set(p.peerId, p.addrs)
      want--
    }
    this.#pumpHints()
  }

  #pumpHints (): void {
    for (const [peerId, addrs] of this.#hinted) {
      if (this.#dialling.size >= MAX_DIALS) return
      this.#hinted.delete(peerId)
      // Addresses only: whether the connection is kept, the overlay says at the next reconcile.
      void this.#keep(peerId, false, addrs)
        .then(async () => await this.#dial(peerId))
        .finally(() => { this.#pumpHints() })
    }
  }

  #reconcileSoon (): void {
    if (this.#soon !== undefined) return
    this.#soon = setTimeout(() => { this.#soon = undefined; this.#reconcile() }, 250)
    this.#soon.unref()
  }

  /**
   * Brings the connections in line with the overlay: neighbours tagged KEEP_ALIVE (and others
   * untagged), neighbours without a connection dialled a few at a time, and connections this
   * agent dialled to peers neither end keeps (a call's, a former neighbour's) closed once unused.
   */
  #reconcile (): void {
    const keep = this.#wanted()
    for (const id of keep) {
      if (this.#kept.has(id)) continue
      this.#kept.add(id)
      void this.#keep(id, true, this.#table.get(id)?.advert.addrs)
    }
    for (const id of this.#kept) {
      if (keep.has(id)) continue
      this.#kept.delete(id)
      void this.#keep(id, false)
    }
    const free = MAX_DIALS - this.#dialling.size
    if (free > 0) {
      const connected = new Set(this.#node.getConnections().map(c => c.remotePeer.toString()))
      const lacking = [...keep].filter(id => !this.#dialling.has(id) && !connected.has(id))
      for (const id of lacking.slice(0, free)) void this.#dial(id)
    }
    void this.#closeIdle(keep)
  }

  async #closeIdle (keep: Set<string>): Promise<void> {
    const now = Date.now()
    for (const c of this.#node.getConnections()) {
      const id = c.remotePeer.toString()
      const entry = this.#table.get(id)
      if (keep.has(id) || c.direction !== 'outbound' || now - c.timeline.open < this.#init.idleCloseMs) continue
      if (entry !== undefined && (this.#table.callsAt(entry) > 0 || now - (entry.lastCallAt ?? -Infinity) < this.#init.idleCloseMs)) continue
      try {
        // Still tagged KEEP_ALIVE (by another service, or ours not yet removed): closed, it would be redialled.
        const tags = (await this.#node.peerStore.get(c.remotePeer)).tags
        if ([...tags.keys()].some(t => t.startsWith(KEEP_ALIVE))) continue
        this.#closing.add(id)
        log('closing the idle connection to %s (neither end keeps it)', id)
        await c.close()
        // Its disconnect, if it was the last connection, has been seen by now.
        setTimeout(() => { this.#closing.delete(id) }, 2000).unref()
      } catch (err) {
        this.#closing.delete(id)
        log('cannot close the connection to %s: %s', id, (err as Error).message)
      }
    }
  }

  /** The check after a lost connection: connected again (by libp2p or by this dial), or gone. */
  async #redialOrDrop (peerId: string): Promise<void> {
    const entry = this.#table.get(peerId)
    if (entry === undefined || this.#table.isConnected(entry)) return
    const outcome = await this.#dial(peerId)
    const now = this.#table.get(peerId)
    if (outcome === 'refused' && now !== undefined && !this.#table.isConnected(now) && !this.#connected(peerId)) {
      log('%s refuses to be redialled: it leaves the peer table', peerId)
      this.#gone(peerId)
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
      results.forEach((r, i) => {
        const addr = this.#init.bootstrap[i] as string
        if (r.status === 'fulfilled') this.#init.problems.clear(`bootstrap ${addr}`)
        else {
          // Another swarm key is the handshake watch's to say (handshakes.ts), however the dial ended.
          const why = this.#init.problems.has(`handshake ${hostPort(addr)}`) ? undefined : bootstrapProblem(addr, r.reason as Error)
          if (why !== undefined) this.#init.problems.note(`bootstrap ${addr}`, why)
        }
      })
    } finally {
      done()
      this.#diallingBootstrap = false
    }
  }
}

/** A bootstrap dial's failure as the user should read it; undefined when the handshake watch says it better (another swarm key). */
export function bootstrapProblem (addr: string, err: Error): string | undefined {
  const errors = (err as { errors?: Error[] }).errors
  const all = [err, ...(Array.isArray(errors) ? errors : [])]
  const text = all.map(e => `${e.name}: ${e.message}`).join(' ')
  if (/EncryptionFailed/.test(text)) return undefined
  const where = `bootstrap peer ${hostPort(addr)}`
  if (/ECONNREFUSED/.test(text)) return `${where} refused the connection: is its agent running, and listening on that port?`
  if (/EHOSTUNREACH|ENETUNREACH/.test(text)) return `${where} is unreachable from this device (no route): check the address`
  if (/Timeout|Abort|deadline/i.test(text)) return `${where} did not answer within 5 s: is the address right, and open to this device?`
  if (/UnexpectedPeer|peer id/i.test(text)) return `${where} answered as another peer than its /p2p/ id: has that device been initialised again? Use its new address`
  return `${where} could not be dialled: ${err.message.split('\n')[0] ?? ''}`
}
