import { GOSSIP } from '../../agent/swarm/tuning.js'
import { PROBE_EVERY_MS } from '../../agent/swarm/connectivity.js'
import { decode, encode, MAX_GOSSIP_BYTES, MAX_HELLO_RELAYS, validateAdvert, type Advert } from '../../protocol/index.js'
import { Clock } from './clock.js'
import { Geography } from './latency.js'
import { CONTROL_OVERHEAD_BYTES, DATA_OVERHEAD_BYTES, GOSSIPSUB, IDONTWANT_MIN_BYTES, MESSAGE_ID_BYTES, Mesh, type ForwardingCost } from './mesh.js'
import { fakePeerId, Random } from './random.js'
import { SimAgent } from './agent.js'
import type { Design } from './designs.js'

export interface SwarmInit {
  /** Agents at the start. */
  size: number
  /** Agents that may join later (made up front, inactive). */
  joiners: number
  design: Design
  seed: number
  /** Agents whose tables are fed every advert; undefined: all of them. The rest only publish. */
  observers?: number
  /** Direct connections per agent. Default 12 (the overlay's 6 picks and about as many that pick it). */
  connections?: number
  /** ms each node spends on a gossiped message before forwarding it. Default 2. */
  hopMs?: number
  /** Origins sampled to cost one message's spread through the mesh. Default 16. */
  costSamples?: number
}

/** Gossip traffic so far, summed over the swarm. */
export interface Traffic {
  adverts: number
  /** Copies of adverts sent (each also received once). */
  sends: number
  /** Of those, forwarded by a node that is not the advert's origin. */
  forwards: number
  /** Control messages sent: IDONTWANT and IHAVE. */
  controls: number
  /** Bytes sent (each also received once). */
  bytes: number
}

/** After a lost connection, Connectivity redials once after this long; refused, the peer leaves the table. */
const REDIAL_CHECK_MS = 1000
/** PeerTable's default grace for a disconnected peer (its expiry timer runs at a quarter of the smaller bound). */
const DISCONNECT_GRACE_MS = 30_000
/** gossipsub's heartbeat, and the heartbeats of message ids its IHAVEs carry (mcacheGossip), capped at maxIHaveLength. */
const HEARTBEAT_MS = GOSSIP.heartbeatMs
const GOSSIP_HISTORY = 3
const MAX_IHAVE = 5000

interface Wave { order: Int32Array, times: Float64Array }

/**
 * A swarm of simulated agents over one modelled gossip topic. Every agent runs the real
 * AdvertService, ticked from virtual time at its timer's period; what it publishes is encoded and
 * validated with the real wire code once, costed by the mesh model, and delivered to each observer
 * (an agent whose real PeerTable takes every advert) at its Dijkstra distance through the mesh.
 * Liveness as the real Connectivity has it, over `connections` direct connections per agent: a
 * stopped agent's connected peers mark it disconnected when its connection drops and remove it
 * when the redial is refused; every other table drops it when the advert silence passes expiry
 * (expire() on the PeerTable's own period, from virtual time).
 */
export class Swarm {
  readonly clock: Clock
  readonly geo: Geography
  readonly mesh: Mesh
  readonly agents: SimAgent[]
  readonly observers: SimAgent[]
  readonly design: Design
  readonly random: Random
  readonly traffic: Traffic = { adverts: 0, sends: 0, forwards: 0, controls: 0, bytes: 0 }
  /** Last encoded advert size, bytes of CBOR. */
  advertBytes = 0
  readonly #observerSlot: Int32Array
  readonly #byId = new Map<string, number>()
  readonly #costSamples: number
  #cost: { version: number, big: boolean, cost: ForwardingCost } | undefined
  #dist: Float64Array[] = []
  #distVersion = -1
  readonly #waves = new Map<number, Wave>()
  #ihave: { version: number, targets: number } | undefined
  readonly #beats: number[] = []
  #thisBeat = 0
  /** Agents of the pool that have joined (they do not join twice). */
  readonly #newcomers = new Set<string>()
  #alive = 0
  readonly #size: number

  constructor (init: SwarmInit) {
    const total = init.size + init.joiners
    this.#size = init.size
    this.design = init.design
    this.random = new Random(init.seed)
    this.#costSamples = init.costSamples ?? 16
    this.clock = new Clock(1_700_000_000_000)
    this.geo = new Geography(total, this.random.fork())
    this.mesh = new Mesh(total, this.geo, this.random.fork(), { ...GOSSIPSUB, connections: init.connections ?? 12, hopMs: init.hopMs ?? 2 })
    const ids = this.random.fork()
    const slots = this.random.fork()
    const jitter = this.random.fork()
    this.agents = []
    for (let i = 0; i < total; i++) {
      const index = i
      const agent = new SimAgent(i, fakePeerId(ids), slots.int(1, 4), this.geo.region(i), this.clock, init.design, jitter.fork(), {
        publish: async (advert) => { this.#publish(index, advert) }
      })
      this.agents.push(agent)
      this.#byId.set(agent.peerId, i)
    }
    const chosen = init.observers === undefined || init.observers >= total ? [...this.agents] : this.random.sample(this.agents, init.observers).sort((a, b) => a.index - b.index)
    this.observers = chosen
    this.#observerSlot = new Int32Array(total).fill(-1)
    chosen.forEach((o, k) => { this.#observerSlot[o.index] = k })
    for (const o of chosen) {
      o.table.addEventListener('peer:join', (evt) => {
        const peer = this.#byId.get(evt.detail.peerId)
        // Connectivity pings every peer that appears: its RTT is known from then on.
        if (peer !== undefined) o.table.recordRtt(evt.detail.peerId, this.geo.rttMs(o.index, peer))
      })
    }
    this.mesh.start(init.size)
    for (let i = 0; i < init.size; i++) this.#activate(this.agents[i] as SimAgent)
    this.clock.every(HEARTBEAT_MS, this.clock.now + HEARTBEAT_MS * this.random.next(), () => { this.#heartbeat(); return true })
  }

  isObserver (a: SimAgent): boolean {
    return this.#observerSlot[a.index] !== -1
  }

  agentOf (peerId: string): SimAgent {
    const i = this.#byId.get(peerId)
    if (i === undefined) throw new Error(`unknown peer ${peerId}`)
    return this.agents[i] as SimAgent
  }

  get aliveCount (): number {
    return this.#alive
  }

  async runUntil (time: number): Promise<void> {
    await this.clock.run(time)
  }

  /** Starts an agent's timers as its start() would: a tick now, then one per minIntervalMs; and its table's expiry. */
  #activate (a: SimAgent): void {
    a.alive = true
    this.#alive++
    const phase = this.design.minIntervalMs * this.random.next()
    this.clock.every(this.design.minIntervalMs, this.clock.now + phase, () => {
      if (a.alive) void a.adverts.tick()
      return a.alive
    })
    if (!this.isObserver(a)) return
    const period = Math.max(100, Math.floor(Math.min(this.design.expiryMs, DISCONNECT_GRACE_MS) / 4))
    this.clock.every(period, this.clock.now + period * this.random.next(), () => {
      if (a.alive) a.table.expire()
      return a.alive
    })
  }

  #publish (src: number, advert: Advert): void {
    const data = encode(advert)
    // Receivers get what the real validator makes of the real encoding.
    const wire = validateAdvert(decode(data, MAX_GOSSIP_BYTES))
    this.advertBytes = data.byteLength
    const cost = this.#forwardingCost(data.byteLength)
    const t = this.traffic
    t.adverts++
    t.sends += cost.sends
    t.forwards += cost.forwards
    t.controls += cost.controls
    t.bytes += cost.sends * (data.byteLength + DATA_OVERHEAD_BYTES) + cost.controls * (CONTROL_OVERHEAD_BYTES + MESSAGE_ID_BYTES)
    this.#thisBeat++
    this.#deliver(src, wire)
  }

  #forwardingCost (bytes: number): ForwardingCost {
    const big = bytes >= IDONTWANT_MIN_BYTES
    if (this.#cost === undefined || this.#cost.version !== this.mesh.version || this.#cost.big !== big) {
      this.#cost = { version: this.mesh.version, big, cost: this.mesh.forwardingCost(bytes, this.#costSamples) }
    }
    return this.#cost.cost
  }

  /** The cost of one advert as the mesh stands now. */
  forwardingCost (): ForwardingCost {
    return this.#forwardingCost(this.advertBytes)
  }

  #wave (src: number): Wave {
    if (this.#distVersion !== this.mesh.version) {
      this.#dist = this.observers.map(o => this.mesh.distances(o.index))
      this.#distVersion = this.mesh.version
      this.#waves.clear()
    }
    let wave = this.#waves.get(src)
    if (wave === undefined) {
      const slots: number[] = []
      for (let k = 0; k < this.#dist.length; k++) {
        if (Number.isFinite((this.#dist[k] as Float64Array)[src] as number) && (this.observers[k] as SimAgent).index !== src) slots.push(k)
      }
      slots.sort((a, b) => ((this.#dist[a] as Float64Array)[src] as number) - ((this.#dist[b] as Float64Array)[src] as number))
      wave = { order: Int32Array.from(slots), times: Float64Array.from(slots, k => (this.#dist[k] as Float64Array)[src] as number) }
      this.#waves.set(src, wave)
    }
    return wave
  }

  /** Delivers an advert to every observer at its distance through the mesh: one event per arrival time, walking the wave. */
  #deliver (src: number, advert: Advert): void {
    const { order, times } = this.#wave(src)
    if (order.length === 0) return
    const t0 = this.clock.now
    const step = (k: number): void => {
      let i = k
      for (; i < order.length && t0 + (times[i] as number) <= this.clock.now; i++) {
        const o = this.observers[order[i] as number] as SimAgent
        if (!o.alive) continue
        o.adverts.receive(advert)
        if (advert.lost !== undefined) this.#checkLost(o, advert.lost)
      }
      if (i < order.length) this.clock.at(t0 + (times[i] as number), () => { step(i) })
    }
    this.clock.at(t0 + (times[0] as number), () => { step(0) })
  }

  /**
   * Connectivity.checkLost: peers another reports lost, that this agent has in its table and no
   * connection to, are dialled (each at most once per 10 s); refused — the agent is gone — they
   * leave the table. A refused dial takes a round trip.
   */
  #checkLost (o: SimAgent, lost: readonly string[]): void {
    const now = this.clock.now
    for (const id of lost) {
      const i = this.#byId.get(id)
      if (i === undefined || o.table.get(id) === undefined || this.mesh.conns[o.index]?.has(i) === true || now - (o.probedAt.get(id) ?? Number.NEGATIVE_INFINITY) < PROBE_EVERY_MS) continue
      o.probedAt.set(id, now)
      this.clock.after(this.geo.rttMs(o.index, i), () => {
        if (o.alive && !(this.agents[i] as SimAgent).alive) o.table.remove(id)
      })
    }
  }

  /** gossipsub's heartbeat: mesh repair, and the IHAVEs of the message ids of the last heartbeats. */
  #heartbeat (): void {
    this.mesh.heartbeat()
    this.#beats.push(this.#thisBeat)
    this.#thisBeat = 0
    if (this.#beats.length > GOSSIP_HISTORY) this.#beats.shift()
    const ids = Math.min(MAX_IHAVE, this.#beats.reduce((a, b) => a + b, 0))
    if (ids === 0) return
    if (this.#ihave === undefined || this.#ihave.version !== this.mesh.version) this.#ihave = { version: this.mesh.version, targets: this.mesh.ihaveTargets() }
    this.traffic.controls += this.#ihave.targets
    this.traffic.bytes += this.#ihave.targets * (CONTROL_OVERHEAD_BYTES + ids * MESSAGE_ID_BYTES)
  }

  /**
   * `k` agents of the pool join now: each connects to `connections` random live agents (the
   * neighbours the overlay gives it), grafts its mesh, and exchanges hellos with them: its advert
   * one way; the neighbour's advert and up to MAX_HELLO_RELAYS of the adverts its table holds,
   * freshest first, as of the join, the other (hello.ts; the signature checks are not modelled). A neighbour
   * without a fed table (not an observer) relays what a random observer's table holds.
   */
  join (k: number): SimAgent[] {
    const pool = this.agents.slice(this.#size).filter(a => !a.alive && !this.#newcomers.has(a.peerId))
    const joining = pool.slice(0, k)
    const alive = this.agents.filter(a => a.alive)
    const fed = this.observers.filter(o => o.alive)
    // What each neighbour's table holds as the joins begin (sorting a table of 10,000 per hello would dominate the run).
    const held = new Map<SimAgent, Advert[]>()
    const relaysOf = (a: SimAgent): Advert[] => {
      let list = held.get(a)
      if (list === undefined) {
        list = a.table.list().sort((x, y) => y.receivedAt - x.receivedAt).slice(0, MAX_HELLO_RELAYS).map(e => e.advert)
        held.set(a, list)
      }
      return list
    }
    for (const j of joining) {
      this.#newcomers.add(j.peerId)
      const peers = this.random.sample(alive, this.mesh.init.connections)
      this.mesh.join(j.index, peers.map(p => p.index))
      this.#activate(j)
      for (const p of peers) {
        const ow = this.geo.oneWayMs(j.index, p.index)
        const hello = j.adverts.current()
        const relaysFrom = this.isObserver(p) || fed.length === 0 ? p : this.random.pick(fed)
        this.clock.after(ow, () => {
          if (!p.alive) return
          if (this.isObserver(p)) p.adverts.receive(hello)
          p.adverts.peerListening(j.peerId)
          const answer = p.adverts.current()
          const relays = relaysOf(relaysFrom)
          this.clock.after(ow, () => {
            if (!j.alive || !this.isObserver(j)) return
            j.adverts.receive(answer)
            const now = this.clock.nowMs()
            for (const a of relays) j.adverts.receive(a, undefined, now - a.sentAt)
          })
        })
      }
    }
    return joining
  }

  /**
   * `k` random live agents stop (not those in `keep`): their connections drop at once, so their
   * connected peers mark them disconnected when the close arrives and remove them when the redial
   * is refused a second later; the others wait for expiry.
   */
  leave (k: number, keep: ReadonlySet<SimAgent> = new Set()): SimAgent[] {
    const leaving = this.random.sample(this.agents.filter(a => a.alive && !keep.has(a)), k)
    for (const l of leaving) {
      l.alive = false
      this.#alive--
      for (const p of this.mesh.leave(l.index)) {
        const peer = this.agents[p] as SimAgent
        const ow = this.geo.oneWayMs(l.index, p)
        this.clock.after(ow, () => { if (peer.alive) peer.table.markDisconnected(l.peerId) })
        // The redial is refused: the neighbour leaves the table and is reported lost in this agent's adverts.
        this.clock.after(ow + REDIAL_CHECK_MS + 2 * ow, () => {
          if (!peer.alive) return
          peer.table.remove(l.peerId)
          peer.lostAt.set(l.peerId, this.clock.now)
        })
      }
    }
    return leaving
  }

  /** Whether an observer's table lists exactly the live agents but itself, none of `gone` among them. */
  tableRight (o: SimAgent, gone: readonly SimAgent[]): boolean {
    if (o.table.size !== this.#alive - 1) return false
    for (const g of gone) if (o.table.get(g.peerId) !== undefined) return false
    return true
  }
}
