import { peerViews } from '../../agent/calls/scheduler.js'
import { RuntimeKind } from '../../protocol/index.js'
import { FUNCTION, type SimAgent } from './agent.js'
import type { Policy } from '../../agent/calls/policies/index.js'
import type { Random } from './random.js'
import type { Swarm } from './swarm.js'

export interface CallOutcome {
  /** Completed within its deadline. */
  ok: boolean
  /** ms from arrival at the origin to the answer. */
  ms: number
  /** Places tried. */
  tries: number
  /** Where it ran (when it ran). */
  ranOn?: SimAgent
  /** Ran on its origin. */
  local: boolean
}

export interface OffloadInit {
  policy: Policy
  deadlineMs: number
  /** Mean service time of a call, exponentially distributed. */
  serviceMs: number
  random: Random
}

/**
 * Calls placed as the scheduler places them: the policy ranks this agent's own view (as
 * #selfView builds it) and the peers' views (the scheduler's exported peerViews over the real
 * PeerTable); candidates are tried in order, each with the link's one-way latency each way; a
 * peer that is full answers BUSY at once with its load (the next candidate is then tried, up to
 * the deadline); every answer's load goes into the table by callEnded, as the invoke client does.
 */
export class Offloader {
  readonly #swarm: Swarm
  readonly #init: OffloadInit
  readonly #holders: Set<string>
  /** Wall-clock ms spent building views and ranking, and decisions made: what a decision costs the real code at this table size. */
  decisionMs = 0
  decisions = 0

  constructor (swarm: Swarm, init: OffloadInit) {
    this.#swarm = swarm
    this.#init = init
    // Every agent holds the function: no fetch, and holders do not reorder candidates.
    this.#holders = new Set(swarm.agents.map(a => a.peerId))
  }

  call (origin: SimAgent, done: (outcome: CallOutcome) => void): void {
    const { clock } = this.#swarm
    const started = clock.now
    const t0 = performance.now()
    const ranking = this.#init.policy.rank({
      self: origin.selfView(),
      peers: peerViews(origin.table, { sha256: FUNCTION.sha256, kind: RuntimeKind.wasm, holders: this.#holders, runMs: origin.runTimes.estimate(FUNCTION.sha256, RuntimeKind.wasm), fetchMs: 0 }),
      deadlineMs: this.#init.deadlineMs,
      random: () => this.#init.random.next()
    })
    this.decisionMs += performance.now() - t0
    this.decisions++
    const { candidates } = ranking
    const finish = (ok: boolean, tries: number, ranOn?: SimAgent): void => {
      const ms = clock.now - started
      done({ ok: ok && ms <= this.#init.deadlineMs, ms, tries, local: ranOn === origin, ...(ranOn !== undefined ? { ranOn } : {}) })
    }
    const attempt = (i: number): void => {
      const c = candidates[i]
      const left = this.#init.deadlineMs - (clock.now - started)
      if (c === undefined || left <= 0) { finish(false, i); return }
      if (c.local) {
        const taken = origin.take(-1, c.mayQueue, left, (end) => {
          const ms = this.#init.random.exp(this.#init.serviceMs)
          clock.after(ms, () => {
            origin.runTimes.observe(FUNCTION.sha256, RuntimeKind.wasm, ms)
            end()
            finish(true, i + 1, origin)
          })
        })
        if (!taken) attempt(i + 1)
        return
      }
      const peer = this.#swarm.agentOf(c.peerId)
      const oneWay = this.#swarm.geo.oneWayMs(origin.index, peer.index)
      origin.table.callStarted(c.peerId, RuntimeKind.wasm)
      clock.after(oneWay, () => {
        const taken = peer.alive && peer.take(origin.index, c.mayQueue, left - oneWay, (end) => {
          const ms = this.#init.random.exp(this.#init.serviceMs)
          clock.after(ms, () => {
            peer.runTimes.observe(FUNCTION.sha256, RuntimeKind.wasm, ms)
            end()
            const load = peer.loadFor(origin.index)
            clock.after(oneWay, () => {
              origin.table.callEnded(c.peerId, RuntimeKind.wasm, load)
              origin.runTimes.observe(FUNCTION.sha256, RuntimeKind.wasm, ms)
              finish(true, i + 1, peer)
            })
          })
        })
        if (taken) return
        const load = peer.loadFor(origin.index)
        clock.after(oneWay, () => {
          origin.table.callEnded(c.peerId, RuntimeKind.wasm, load)
          attempt(i + 1)
        })
      })
    }
    attempt(0)
  }
}
