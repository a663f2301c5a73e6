import { GOSSIP } from '../../agent/swarm/tuning.js'
import type { Geography } from './latency.js'
import type { Random } from './random.js'

/** gossipsub's knobs as the agent sets them (agent/swarm/tuning.ts). */
export interface MeshInit {
  D: number
  Dlo: number
  Dhi: number
  /** Direct connections each agent keeps (mesh peers are drawn from them; liveness is known only over them). */
  connections: number
  /** ms a node spends on a message before it forwards it (decode, signature check, validation). */
  hopMs: number
  /** Peers outside the mesh each heartbeat's IHAVE goes to, at least (gossipsub's Dlazy). */
  Dlazy: number
  /** …or this share of the non-mesh peers, if more (gossipsub's gossipFactor). */
  gossipFactor: number
}

export const GOSSIPSUB: Omit<MeshInit, 'connections' | 'hopMs'> = { D: GOSSIP.D, Dlo: GOSSIP.Dlo, Dhi: GOSSIP.Dhi, Dlazy: GOSSIP.Dlazy, gossipFactor: GOSSIP.gossipFactor }

/**
 * Bytes a gossiped message costs on the wire besides its data: the protobuf message (from, seqno,
 * topic, a 64-byte signature), the RPC frame and its length prefix, yamux's header and noise's tag.
 */
export const DATA_OVERHEAD_BYTES = 170
/** A control RPC (IHAVE, IDONTWANT) with its framing, without its message ids. */
export const CONTROL_OVERHEAD_BYTES = 40
/** A message id as the default id function makes it (from + seqno: 38 + 8 bytes) with its protobuf tag. */
export const MESSAGE_ID_BYTES = 48
/** gossipsub v1.2 sends IDONTWANT to its mesh for messages at least this big (as the agent sets it). */
export const IDONTWANT_MIN_BYTES = GOSSIP.idontwantMinBytes

/** What one published message costs the whole swarm, on average over sampled origins. */
export interface ForwardingCost {
  /** Copies of the message sent (by its origin and by forwarders): each is also one received. */
  sends: number
  /** Of those, sent by forwarders (not the origin). */
  forwards: number
  /** IDONTWANT control messages sent. */
  controls: number
  /** ms from publish until half / 99 % / all of the other nodes have it. */
  p50Ms: number
  p99Ms: number
  maxMs: number
}

/** A binary min-heap of (distance, node) for Dijkstra, with lazy deletion. */
class NodeHeap {
  #d: number[] = []
  #n: number[] = []

  get size (): number {
    return this.#d.length
  }

  push (d: number, n: number): void {
    const ds = this.#d
    const ns = this.#n
    ds.push(d); ns.push(n)
    let i = ds.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if ((ds[p] as number) <= d) break
      ds[i] = ds[p] as number; ns[i] = ns[p] as number
      i = p
    }
    ds[i] = d; ns[i] = n
  }

  pop (): [number, number] {
    const ds = this.#d
    const ns = this.#n
    const d0 = ds[0] as number
    const n0 = ns[0] as number
    const d = ds.pop() as number
    const n = ns.pop() as number
    const len = ds.length
    if (len > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= len) break
        const r = l + 1
        const c = r < len && (ds[r] as number) < (ds[l] as number) ? r : l
        if ((ds[c] as number) >= d) break
        ds[i] = ds[c] as number; ns[i] = ns[c] as number
        i = c
      }
      ds[i] = d; ns[i] = n
    }
    return [d0, n0]
  }
}

/**
 * A gossipsub-like mesh over one topic: who is connected to whom (a random graph, `connections`
 * per node), and the mesh each node keeps among its connections (D, repaired on the 1 s heartbeat
 * to within Dlo…Dhi). A message goes from its origin to its mesh peers, and each node forwards its
 * first copy to its mesh peers but the one it came from and the origin (deduplicated by id), each
 * hop taking the link's one-way latency plus `hopMs`. The first copy to reach a node so comes by
 * the shortest path through the mesh: delivery times are Dijkstra distances, computed once per
 * mesh version rather than per message. Lazy gossip is counted (IHAVE to Dlazy non-mesh peers per
 * heartbeat, of the ids of the last 3 heartbeats) but IWANT is not: the mesh delivers nearly every
 * message before an IHAVE for it arrives.
 */
export class Mesh {
  readonly init: MeshInit
  readonly #geo: Geography
  readonly #random: Random
  readonly active: Uint8Array
  readonly conns: Array<Set<number>>
  readonly mesh: Array<Set<number>>
  /** Bumped on every change of the mesh: cached distances are stale after it. */
  version = 0

  constructor (size: number, geo: Geography, random: Random, init: MeshInit) {
    this.init = init
    this.#geo = geo
    this.#random = random
    this.active = new Uint8Array(size)
    this.conns = Array.from({ length: size }, () => new Set<number>())
    this.mesh = Array.from({ length: size }, () => new Set<number>())
  }

  /** Starts the first `n` nodes: each dials connections/2 random others, then meshes form. */
  start (n: number): void {
    for (let i = 0; i < n; i++) this.active[i] = 1
    const half = Math.ceil(this.init.connections / 2)
    for (let i = 0; i < n; i++) {
      for (let tries = 0; this.conns[i]!.size < half && tries < 4 * half; tries++) this.#connect(i, this.#random.int(0, n - 1))
    }
    for (let i = 0; i < n; i++) this.#fill(i)
    while (this.heartbeat()) { /* until every mesh is within Dlo…Dhi */ }
    this.version++
  }

  #connect (a: number, b: number): void {
    if (a === b) return
    this.conns[a]!.add(b)
    this.conns[b]!.add(a)
  }

  #graft (a: number, b: number): void {
    this.mesh[a]!.add(b)
    this.mesh[b]!.add(a)
  }

  #prune (a: number, b: number): void {
    this.mesh[a]!.delete(b)
    this.mesh[b]!.delete(a)
  }

  /** Grafts random connected peers until the node has D mesh peers (or no more candidates). */
  #fill (i: number): boolean {
    const mesh = this.mesh[i]!
    if (mesh.size >= this.init.D) return false
    const candidates = [...this.conns[i]!].filter(p => this.active[p] === 1 && !mesh.has(p))
    let changed = false
    for (const p of this.#random.sample(candidates, this.init.D - mesh.size)) {
      this.#graft(i, p)
      changed = true
    }
    return changed
  }

  /** A node joins: it connects to `peers` (bootstrap and hinted peers) and grafts D of them. */
  join (i: number, peers: number[]): void {
    this.active[i] = 1
    for (const p of peers) this.#connect(i, p)
    this.#fill(i)
    this.version++
  }

  /** A node stops: its connections and mesh links go at once; returns the peers that were connected to it. */
  leave (i: number): number[] {
    this.active[i] = 0
    const peers = [...this.conns[i]!]
    for (const p of peers) {
      this.conns[p]!.delete(i)
      this.mesh[p]!.delete(i)
    }
    this.conns[i]!.clear()
    this.mesh[i]!.clear()
    this.version++
    return peers
  }

  /** gossipsub's heartbeat, mesh maintenance only: graft below Dlo, prune above Dhi. Returns whether anything changed. */
  heartbeat (): boolean {
    let changed = false
    for (let i = 0; i < this.active.length; i++) {
      if (this.active[i] !== 1) continue
      const mesh = this.mesh[i]!
      if (mesh.size < this.init.Dlo) changed = this.#fill(i) || changed
      else if (mesh.size > this.init.Dhi) {
        for (const p of this.#random.sample([...mesh], mesh.size - this.init.D)) this.#prune(i, p)
        changed = true
      }
    }
    if (changed) this.version++
    return changed
  }

  /** Weight of a mesh hop: the link's one-way latency and the receiver's handling. */
  #hop (a: number, b: number): number {
    return this.#geo.oneWayMs(a, b) + this.init.hopMs
  }

  /** ms from `from` to every node through the mesh (Infinity where unreachable); with `parents`, each node's predecessor. */
  distances (from: number, parents?: Int32Array): Float64Array {
    const dist = new Float64Array(this.active.length).fill(Number.POSITIVE_INFINITY)
    if (this.active[from] !== 1) return dist
    dist[from] = 0
    parents?.fill(-1)
    const heap = new NodeHeap()
    heap.push(0, from)
    while (heap.size > 0) {
      const [d, u] = heap.pop()
      if (d > (dist[u] as number)) continue
      for (const v of this.mesh[u]!) {
        const nd = d + this.#hop(u, v)
        if (nd < (dist[v] as number)) {
          dist[v] = nd
          if (parents !== undefined) parents[v] = u
          heap.push(nd, v)
        }
      }
    }
    return dist
  }

  /**
   * What publishing one message of `dataBytes` costs, averaged over `samples` random origins:
   * copies sent (a node forwards its first copy to its mesh peers but the one it came from and the
   * origin, and not to a peer whose IDONTWANT arrived first), IDONTWANTs (v1.2, for messages of
   * IDONTWANT_MIN_BYTES or more: sent on first receipt to the mesh peers but the sender), and how fast it
   * spreads.
   */
  forwardingCost (dataBytes: number, samples: number): ForwardingCost {
    const alive: number[] = []
    for (let i = 0; i < this.active.length; i++) if (this.active[i] === 1) alive.push(i)
    const origins = this.#random.sample(alive, samples)
    const parents = new Int32Array(this.active.length)
    const idontwant = dataBytes >= IDONTWANT_MIN_BYTES
    let sends = 0
    let forwards = 0
    let controls = 0
    const p50: number[] = []
    const p99: number[] = []
    const max: number[] = []
    for (const s of origins) {
      const t = this.distances(s, parents)
      sends += this.mesh[s]!.size
      const times: number[] = []
      for (const v of alive) {
        const tv = t[v] as number
        if (v === s || !Number.isFinite(tv)) continue
        times.push(tv)
        const parent = parents[v] as number
        for (const w of this.mesh[v]!) {
          if (w === parent || w === s) continue
          if (idontwant) {
            controls++
            // w's IDONTWANT leaves on receipt, before w validates: it arrives in time if before v forwards.
            if ((t[w] as number) - this.init.hopMs + this.#geo.oneWayMs(w, v) < tv) continue
          }
          forwards++
        }
      }
      times.sort((a, b) => a - b)
      p50.push(times[Math.floor(times.length * 0.5)] ?? 0)
      p99.push(times[Math.floor(times.length * 0.99)] ?? 0)
      max.push(times.at(-1) ?? 0)
    }
    const n = Math.max(1, origins.length)
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
    return { sends: (sends + forwards) / n, forwards: forwards / n, controls: controls / n, p50Ms: mean(p50), p99Ms: mean(p99), maxMs: mean(max) }
  }

  /** IHAVE messages all nodes together send per heartbeat (each to max(Dlazy, gossipFactor × non-mesh peers) of its non-mesh peers). */
  ihaveTargets (): number {
    let total = 0
    for (let i = 0; i < this.active.length; i++) {
      if (this.active[i] !== 1) continue
      let nonMesh = 0
      for (const p of this.conns[i]!) if (this.active[p] === 1 && !this.mesh[i]!.has(p)) nonMesh++
      total += Math.min(nonMesh, Math.max(this.init.Dlazy, Math.floor(this.init.gossipFactor * nonMesh)))
    }
    return total
  }
}
