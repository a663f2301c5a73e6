import { createHash } from 'node:crypto'
import { logger } from '../log.js'
import type { Advert, FunctionRef, FunctionSpec } from '../../protocol/index.js'
import type { FetchService } from './fetch.js'
import { vouchedBy } from './trust.js'
import type { ManifestStore } from './manifests.js'
import type { PeerTable } from '../swarm/peer-table.js'
import type { FunctionRegistry, KnownFunction } from './registry.js'

const log = logger('edge:agent:replicator')

export interface ReplicatorInit {
  selfId: string
  /** Copies of each function's code the swarm keeps (the deployer's included). */
  replicas: number
  registry: FunctionRegistry
  peers: PeerTable
  manifests: ManifestStore
  fetcher: FetchService
  /** Only code whose manifest is signed by a trusted key is replicated. */
  trusts: (signer: string) => boolean
  /** Peers that count as copies and may be chosen to hold one (this owner's devices). */
  trustsPeer: (peerId: string) => boolean
  /** Whether the peer of `advert` runs what `signer` signed (default: its advert's trusted keys name it). */
  peerTrusts?: (advert: Advert, signer: string) => boolean
  /** The signer of a version's manifest, when known: only agents that trust it are ranked. */
  signerOf?: (ref: FunctionRef) => string | undefined
  /** Stores fetched code here (registry + runtime bookkeeping). */
  hold: (spec: FunctionSpec, code: Uint8Array, cids: string[]) => void
  intervalMs?: number
}

/**
 * Keeps R copies of every function's code in the swarm, so that the deployer may leave. Which
 * agents hold a function is decided without coordination by rendezvous hashing: every agent ranks
 * the live agents by sha256(name, peer id) and the first R hold it. When a function has fewer than
 * R live holders and this agent ranks among the first R, it fetches the code — chunk by chunk from
 * DHT providers, as the signed manifest lists it — verifies it, holds it and provides it.
 */
export class Replicator {
  readonly #init: ReplicatorInit
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  readonly #failures = new Map<string, number>()

  constructor (init: ReplicatorInit) {
    this.#init = init
  }

  start (): void {
    this.#timer = setInterval(() => { void this.reconcile() }, this.#init.intervalMs ?? 5000)
    this.#timer.unref()
    this.#init.peers.addEventListener('peer:leave', () => { void this.reconcile() })
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  /** The agents that should hold `name`, best first. */
  static rank (name: string, agents: string[]): string[] {
    const score = (id: string): string => createHash('sha256').update(`${name}\0${id}`).digest('hex')
    return [...agents].sort((a, b) => score(a) < score(b) ? -1 : score(a) > score(b) ? 1 : 0)
  }

  async reconcile (): Promise<void> {
    this.#running ??= this.#reconcile().finally(() => { this.#running = undefined })
    await this.#running
  }

  async #reconcile (): Promise<void> {
    const { registry, peers, selfId, replicas } = this.#init
    for (const known of registry.all()) {
      if (known.local) continue
      const holders = new Set([...known.holders].filter(h => peers.get(h) !== undefined))
      if (holders.size >= replicas) continue
      // Agents that do not trust the deployer would decline: the next ones in the ranking take their place.
      const signer = this.#init.signerOf?.(known.ref)
      if (signer !== undefined && !this.#init.trusts(signer)) continue
      const live = [selfId, ...peers.list().filter(e => this.#init.trustsPeer(e.peerId) && (signer === undefined || e.peerId === signer || (this.#init.peerTrusts?.(e.advert, signer) ?? (e.advert.trusted ?? []).includes(signer)))).map(e => e.peerId)]
      const chosen = Replicator.rank(known.ref.name, live).filter(id => !holders.has(id)).slice(0, replicas - holders.size)
      if (!chosen.includes(selfId)) continue
      await this.#replicate(known, [...holders])
    }
  }

  async #replicate (known: KnownFunction, holders: string[]): Promise<void> {
    const { name, version, sha256 } = known.ref
    const { registry } = this.#init
    const id = `${name}@${version}`
    // Back off from a function whose code cannot be had right now (no provider, bad bytes).
    if ((this.#failures.get(id) ?? 0) > Date.now()) return
    try {
      const resolved = await this.#init.manifests.find(known.ref)
      const body = resolved?.record.body
      if (resolved === undefined || body?.type !== 'manifest' || body.version !== version || body.sha256 !== sha256) throw new Error('no manifest in the DHT for this version')
      if (!this.#init.trusts(resolved.record.signer)) throw new Error(`signed by ${resolved.record.signer}, not trusted here`)
      // Everything the manifest says of how it runs (a container function's entry, env and settings too).
      const spec: FunctionSpec = { name, version, sha256, ...vouchedBy(body) }
      if (!registry.hasRoom(body.size, sha256)) throw new Error(`no room for ${body.size} bytes within this agent's storage quota`)
      const code = (await this.#init.fetcher.fetchChunks(body, holders)).code
      // The chunks were checked against the manifest's CIDs as they arrived: no need to hash again.
      this.#init.hold(spec, code, body.chunks)
      await this.#init.manifests.provide(body.chunks)
      log.info('now holding a copy of %s v%d (the swarm keeps %d)', name, version, this.#init.replicas)
    } catch (err) {
      this.#failures.set(id, Date.now() + 10_000)
      log('could not replicate %s: %s', id, (err as Error).message)
    }
  }
}
