import { RuntimeKind } from '../../protocol/index.js'
import { pct, sorted } from '../stats.js'
import { Offloader, type CallOutcome } from './offload.js'
import { Swarm, type Traffic } from './swarm.js'
import type { Policy } from '../../agent/calls/policies/index.js'
import type { Design } from './designs.js'
import type { SimAgent } from './agent.js'

export interface ScenarioInit {
  size: number
  design: Design
  seed: number
  /** Observers (agents with fed tables); undefined: every agent. */
  observers?: number
  connections: number
  /** Least virtual seconds of the idle window (it is at least 2.5 heartbeats). */
  idleSeconds: number
  /** Share of the swarm that joins, then leaves. */
  churn: number
  /** Agents overloaded in the load phase (the callers), chosen among observers. */
  overloaded: number
  /** Their load in the loaded phase, as a multiple of their capacity; the unloaded phase runs at `unloadedFactor`. */
  loadFactor: number
  unloadedFactor: number
  unloadedSeconds: number
  loadSeconds: number
  serviceMs: number
  deadlineMs: number
  policy: Policy
  progress?: (line: string) => void
}

export interface Convergence {
  /** Virtual s from the change until 99 % / all live observers' tables were right (Infinity: not within the bound). */
  p99S: number
  allS: number
  boundS: number
}

export interface Figures {
  size: number
  design: Design
  observers: number
  advertBytes: number
  /** Share of observer tables listing exactly the live agents at the end of warm-up. */
  warmRight: number
  idle: { advertsPerAgentS: number, msgsPerAgentS: number, controlsPerAgentS: number, kBPerAgentS: number, spreadP50Ms: number, spreadP99Ms: number }
  join: Convergence
  leave: Convergence
  load: {
    calls: number
    advertsPerBusyAgentS: number
    ageP50S: number
    ageP99S: number
    wrongPct: number
    refusedPct: number
    p99Ms: number
    unloadedP99Ms: number
    offloadedPct: number
    triesMean: number
    decisionUs: number
  }
  wallS: number
  events: number
}

const WARM_MS = 5000
const CHECK_MS = 100
const STALENESS_SAMPLE_MS = 250

function perAgentSecond (a: Traffic, b: Traffic, agents: number, ms: number): Figures['idle'] {
  const d = (k: keyof Traffic): number => (b[k] - a[k]) / agents / (ms / 1000)
  return {
    advertsPerAgentS: d('adverts'),
    // Each copy sent is one received somewhere; forwards are the copies a non-origin sent on.
    msgsPerAgentS: d('sends') + d('forwards'),
    controlsPerAgentS: 2 * d('controls'),
    kBPerAgentS: 2 * d('bytes') / 1000,
    spreadP50Ms: 0,
    spreadP99Ms: 0
  }
}

/** Runs virtual time until every live observer's table is right (or the bound passes), noting when each first was. */
async function converge (swarm: Swarm, gone: readonly SimAgent[], boundMs: number): Promise<Convergence> {
  const start = swarm.clock.now
  const pending = new Set(swarm.observers.filter(o => o.alive))
  const n = pending.size
  const times: number[] = []
  while (pending.size > 0 && swarm.clock.now < start + boundMs) {
    await swarm.runUntil(swarm.clock.now + CHECK_MS)
    for (const o of pending) {
      if (!o.alive) { pending.delete(o); continue }
      if (swarm.tableRight(o, gone)) { times.push((swarm.clock.now - start) / 1000); pending.delete(o) }
    }
  }
  times.sort((a, b) => a - b)
  const at = (q: number): number => times[Math.ceil(q * n) - 1] ?? Number.POSITIVE_INFINITY
  return { p99S: at(0.99), allS: at(1), boundS: boundMs / 1000 }
}

/**
 * One size under one design, phase by phase on one swarm: warm-up; idle (gossip per agent); a
 * `churn` share joins, then as many leave (time until tables are right); then the load phase
 * (a few agents called at `unloadedFactor`, then `loadFactor`, of their capacity).
 */
export async function runScenario (init: ScenarioInit): Promise<Figures> {
  const wall = performance.now()
  const { design } = init
  const churn = Math.max(1, Math.round(init.churn * init.size))
  const swarm = new Swarm({ size: init.size, joiners: churn, design, seed: init.seed, connections: init.connections, ...(init.observers !== undefined ? { observers: init.observers } : {}) })
  const { clock } = swarm
  const say = (what: string): void => { init.progress?.(`${init.size} ${design.name}: ${what} (virtual ${((clock.now - 1_700_000_000_000) / 1000).toFixed(0)} s, wall ${((performance.now() - wall) / 1000).toFixed(1)} s)`) }

  await swarm.runUntil(clock.now + WARM_MS)
  const live = swarm.observers.filter(o => o.alive)
  const warmRight = live.filter(o => swarm.tableRight(o, [])).length / Math.max(1, live.length)
  say(`warm, ${(100 * warmRight).toFixed(1)} % of tables right`)

  const idleMs = Math.max(init.idleSeconds * 1000, 2.5 * design.heartbeatMs)
  const before = { ...swarm.traffic }
  await swarm.runUntil(clock.now + idleMs)
  const idle = perAgentSecond(before, swarm.traffic, swarm.aliveCount, idleMs)
  const spread = swarm.forwardingCost()
  idle.spreadP50Ms = spread.p50Ms
  idle.spreadP99Ms = spread.p99Ms
  say('idle measured')

  swarm.join(churn)
  const join = await converge(swarm, [], 2 * design.heartbeatMs + 10_000)
  say(`join converged in ${join.allS} s`)
  const expirePeriod = Math.max(100, Math.floor(Math.min(design.expiryMs, 30_000) / 4))
  const gone = swarm.leave(churn)
  const leave = await converge(swarm, gone, design.expiryMs + expirePeriod + 15_000)
  say(`leave converged in ${leave.allS} s`)

  const load = await loadPhase(swarm, init)
  say('load measured')
  return { size: init.size, design, observers: swarm.observers.length, advertBytes: swarm.advertBytes, warmRight, idle, join, leave, load, wallS: (performance.now() - wall) / 1000, events: clock.ran }
}

async function loadPhase (swarm: Swarm, init: ScenarioInit): Promise<Figures['load']> {
  const { clock, random } = swarm
  const origins = random.sample(swarm.observers.filter(o => o.alive), init.overloaded)
  const offloader = new Offloader(swarm, { policy: init.policy, deadlineMs: init.deadlineMs, serviceMs: init.serviceMs, random: random.fork() })
  const unloaded: CallOutcome[] = []
  const loaded: CallOutcome[] = []
  const arrivals = random.fork()
  let issued = 0
  const drive = (factor: number, from: number, until: number, into: CallOutcome[]): void => {
    for (const o of origins) {
      const rate = factor * o.slots * 1000 / init.serviceMs
      const next = (): void => {
        if (clock.now >= until || !o.alive) return
        issued++
        offloader.call(o, (outcome) => { into.push(outcome) })
        clock.after(arrivals.exp(1000 / rate), next)
      }
      clock.at(from + arrivals.exp(1000 / rate), next)
    }
  }
  const t0 = clock.now
  const tLoad = t0 + init.unloadedSeconds * 1000
  const tEnd = tLoad + init.loadSeconds * 1000
  drive(init.unloadedFactor, t0, tLoad, unloaded)
  drive(init.loadFactor, tLoad, tEnd, loaded)

  // Staleness, from the callers' tables: entries of peers with others' load on them (or believed to have).
  const ages: number[] = []
  let active = 0
  let wrong = 0
  clock.every(STALENESS_SAMPLE_MS, tLoad + STALENESS_SAMPLE_MS, () => {
    for (const o of origins) {
      for (const entry of o.table.list()) {
        const view = entry.load.get(RuntimeKind.wasm)
        if (view === undefined) continue
        const truth = swarm.agentOf(entry.peerId).othersBusy(o.index)
        if (truth === 0 && view.othersBusy === 0) continue
        active++
        ages.push((clock.now - (view.source === 'advert' ? entry.advert.sentAt : view.at)) / 1000)
        // Wrong where it matters: full by others' calls in the view but not in truth, or the other way round.
        if ((view.othersBusy >= view.slots) !== (truth >= view.slots)) wrong++
      }
    }
    return clock.now < tEnd
  })
  // Adverts of the agents that ran calls while loaded.
  let sentBefore: number[] = []
  let ranBefore: number[] = []
  clock.at(tLoad, () => {
    sentBefore = swarm.agents.map(a => a.adverts.sent)
    ranBefore = swarm.agents.map(a => a.ran)
  })
  await swarm.runUntil(tEnd)
  const busyAgents = swarm.agents.filter((a, i) => a.ran > (ranBefore[i] as number))
  const busyAdverts = busyAgents.reduce((n, a) => n + a.adverts.sent - (sentBefore[a.index] as number), 0)
  // Drain: until every call has its outcome (at most a deadline past the end).
  const calls = (): number => unloaded.length + loaded.length
  while (calls() < issued && clock.now < tEnd + init.deadlineMs) await swarm.runUntil(clock.now + CHECK_MS)

  const ms = (xs: CallOutcome[]): number[] => sorted(xs.filter(x => x.ok).map(x => x.ms))
  const ok = loaded.filter(x => x.ok)
  const a = sorted(ages)
  return {
    calls: loaded.length,
    advertsPerBusyAgentS: busyAdverts / Math.max(1, busyAgents.length) / init.loadSeconds,
    ageP50S: pct(a, 0.5),
    ageP99S: pct(a, 0.99),
    wrongPct: 100 * wrong / Math.max(1, active),
    refusedPct: 100 * (loaded.length - ok.length) / Math.max(1, loaded.length),
    p99Ms: pct(ms(loaded), 0.99),
    unloadedP99Ms: pct(ms(unloaded), 0.99),
    offloadedPct: 100 * ok.filter(x => !x.local).length / Math.max(1, ok.length),
    triesMean: loaded.reduce((n, x) => n + x.tries, 0) / Math.max(1, loaded.length),
    decisionUs: 1000 * offloader.decisionMs / Math.max(1, offloader.decisions)
  }
}
