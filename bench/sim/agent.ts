import { AdvertService, type AdvertChannel } from '../../agent/swarm/adverts.js'
import { PeerTable } from '../../agent/swarm/peer-table.js'
import { Backlog, RunTimes } from '../../agent/calls/load-estimates.js'
import { LOST_FOR_MS } from '../../agent/swarm/connectivity.js'
import { MAX_LOST_PEERS, RuntimeKind, WIRE_VERSION, type Advert, type FunctionRef, type PeerLoad } from '../../protocol/index.js'
import type { CandidateView } from '../../agent/calls/policies/index.js'
import type { Clock } from './clock.js'
import type { Design } from './designs.js'
import type { Random } from './random.js'

/** The one function every agent holds and every simulated call runs. */
export const FUNCTION: FunctionRef = { name: 'resize', version: 3, sha256: 'a'.repeat(64) }
const OTHER_FUNCTIONS: FunctionRef[] = [
  { name: 'thumbnail', version: 1, sha256: 'b'.repeat(64) },
  { name: 'detect', version: 7, sha256: 'c'.repeat(64) }
]


/** A call waiting for, or holding, one of an agent's slots. */
interface Job {
  /** The caller's agent index (-1: a local call). */
  from: number
  work: { started: () => void, done: () => void }
  /** Takes the slot and starts the call. */
  start: () => void
}

/**
 * One simulated agent: the real AdvertService (driven by `tick()` from virtual time, publishing
 * into the modelled mesh) and PeerTable (virtual `now`, expired from virtual time), with a
 * runtime of `slots` slots modelled as a FIFO queue, and the scheduler's real load estimates
 * (RunTimes, Backlog) for the expected waits policies rank by.
 */
export class SimAgent {
  readonly index: number
  readonly peerId: string
  readonly slots: number
  readonly region: string
  readonly table: PeerTable
  readonly adverts: AdvertService
  readonly runTimes = new RunTimes()
  readonly backlog: Backlog
  busy = 0
  readonly #queue: Job[] = []
  /** Calls of each caller here (running or queued), for the `yours` of answers. */
  readonly #byCaller = new Map<number, number>()
  /** Of those, running. */
  readonly #running = new Map<number, number>()
  alive = false
  /** Neighbours whose connection dropped and whose redial was refused, when: reported in adverts for a minute (Connectivity.lost). */
  readonly lostAt = new Map<string, number>()
  /** Peers reported lost by others, when this agent last dialled one to check (Connectivity.checkLost). */
  readonly probedAt = new Map<string, number>()
  readonly #clock: Clock
  /** Calls this agent ran for others or itself, to tell loaded agents apart. */
  ran = 0
  readonly #fixed: Omit<Advert, 'seq' | 'sentAt' | 'runtimes' | 'queue'>

  constructor (index: number, peerId: string, slots: number, region: string, clock: Clock, design: Design, random: Random, channel: AdvertChannel) {
    this.index = index
    this.peerId = peerId
    this.slots = slots
    this.region = region
    this.#clock = clock
    this.backlog = new Backlog(() => clock.now)
    this.table = new PeerTable({ expiryMs: design.expiryMs, now: clock.nowMs })
    // What agent.ts puts in an advert, with values an edge device would have (two addresses, a few functions).
    this.#fixed = {
      v: WIRE_VERSION,
      type: 'advert',
      peerId,
      addrs: [`/ip4/10.${index >> 16 & 255}.${index >> 8 & 255}.${index & 255}/tcp/4001/p2p/${peerId}`, `/ip6/fd00::${index.toString(16)}/tcp/4001/p2p/${peerId}`],
      arch: 'arm64',
      platform: 'linux',
      cpus: 4,
      memTotal: 4 * 1024 ** 3,
      memFree: 3 * 1024 ** 3,
      labels: { region },
      warm: [FUNCTION.sha256],
      functions: [FUNCTION, ...OTHER_FUNCTIONS],
      trusted: []
    }
    this.adverts = new AdvertService(channel, this.table, peerId, {
      heartbeatMs: design.heartbeatMs,
      minIntervalMs: design.minIntervalMs,
      snapshot: () => this.snapshot(),
      now: clock.nowMs,
      random: design.jitter ? () => random.next() : () => 0.5
    })
  }

  snapshot (): Omit<Advert, 'seq' | 'sentAt'> {
    const advert = { ...this.#fixed, runtimes: [{ kind: RuntimeKind.wasm, slots: this.slots, busy: this.busy }], queue: this.#queue.length }
    if (this.lostAt.size === 0) return advert
    const now = this.#clock.now
    for (const [id, at] of this.lostAt) if (now - at > LOST_FOR_MS) this.lostAt.delete(id)
    return this.lostAt.size === 0 ? advert : { ...advert, lost: [...this.lostAt.keys()].slice(-MAX_LOST_PEERS) }
  }

  get queued (): number {
    return this.#queue.length
  }

  /** The load an answer to `caller` carries (after the answered call gave its slot back). */
  loadFor (caller: number): PeerLoad {
    return { slots: this.slots, busy: this.busy, queued: this.#queue.length, yours: this.#byCaller.get(caller) ?? 0 }
  }

  /** Slots busy with calls that are not `caller`'s: the truth a caller's view of others' load is held against. */
  othersBusy (caller: number): number {
    return this.busy - (this.#running.get(caller) ?? 0)
  }

  /** Expected ms before a call handed over now gets a slot, as the scheduler's #localWaitMs reckons it. */
  waitMs (): number {
    return this.backlog.expectedWaitMs(this.slots, this.busy, this.runTimes.estimate(FUNCTION.sha256, RuntimeKind.wasm))
  }

  /** This agent as the scheduler's #selfView sees it. */
  selfView (): CandidateView {
    const freeSlots = this.#queue.length > 0 ? 0 : Math.max(0, this.slots - this.busy)
    const runMs = this.runTimes.estimate(FUNCTION.sha256, RuntimeKind.wasm)
    return {
      peerId: this.peerId, local: true, rttMs: 0, freeSlots, slots: this.slots, holds: true, warm: true,
      queue: this.#queue.length, inFlight: this.busy, waitMs: freeSlots > 0 ? 0 : this.waitMs(), runMs, fetchMs: 0
    }
  }

  /**
   * Takes a call: runs it when a slot is free, else queues it if `mayQueue` and the work ahead lets
   * it finish within `leftMs` (the scheduler's #run rule); returns false when refused (BUSY).
   * `run` is called when it gets its slot; `finish` must be called when it ends.
   */
  take (from: number, mayQueue: boolean, leftMs: number, run: (finish: () => void) => void): boolean {
    const estimate = this.runTimes.estimate(FUNCTION.sha256, RuntimeKind.wasm)
    const free = this.busy < this.slots && this.#queue.length === 0
    if (!free) {
      if (!mayQueue) return false
      const wait = this.waitMs()
      if (wait > 0 && wait + estimate > leftMs) return false
    }
    this.#byCaller.set(from, (this.#byCaller.get(from) ?? 0) + 1)
    const job: Job = {
      from,
      work: this.backlog.add(estimate),
      start: () => {
        this.busy++
        this.#running.set(from, (this.#running.get(from) ?? 0) + 1)
        job.work.started()
        run(() => { this.#finish(job) })
      }
    }
    if (free) job.start()
    else this.#queue.push(job)
    return true
  }

  #finish (job: Job): void {
    this.busy--
    this.ran++
    job.work.done()
    for (const counts of [this.#byCaller, this.#running]) {
      const left = (counts.get(job.from) ?? 1) - 1
      if (left === 0) counts.delete(job.from)
      else counts.set(job.from, left)
    }
    const next = this.#queue.shift()
    if (next !== undefined) next.start()
  }
}
